"""Parse health, checked by Spidermon monitors when a crawl's spider closes.

A changed site rarely fails a crawl: its pages still answer 200 and simply yield nothing. So
each crawl runs ``ParseHealth`` (``SPIDERMON_SPIDER_CLOSE_MONITORS``); a failed check writes
its reason under ``shoal/warnings/<check>`` in the crawl's stats, and the crawl ends as
succeeded *with a warning* (``crawl_jobs.warning``), shown by ``shoal crawl`` and ``shoal jobs``.
"""

from __future__ import annotations

from typing import Any

from spidermon import Monitor, MonitorSuite, monitors
from spidermon.contrib.monitors.mixins import StatsMonitorMixin

from crawler.stats import Drop

# drops that say the parse went wrong (not licenses or repeats, which are the source's own)
PARSE_DROPS = (Drop.NOT_AN_IMAGE_TYPE, Drop.NO_URL, Drop.BAD_URL, Drop.WRONG_TAXON)
MOST = 0.5  # more than half of the results dropped by the parse is a warning ...
MIN_RESULTS = 4  # ... once there are at least this many


def _skipped(stats: dict[str, Any]) -> dict[str, int]:
    prefix = "shoal/skipped/"
    return {k[len(prefix):]: int(v) for k, v in stats.items() if k.startswith(prefix)}


def no_images_reason(stats: dict[str, Any]) -> str | None:
    pages, found = int(stats.get("shoal/pages_ok", 0)), int(stats.get("shoal/images_found", 0))
    if not pages or found:
        return None
    skipped = _skipped(stats)
    why = [f"{n} {reason}" for reason, n in sorted(skipped.items())]
    bare = int(stats.get("shoal/articles_without_picture", 0))
    if bare:
        why.append(f"{bare} article pages without a picture the selectors find "
                   "(has the page layout changed?)")
    return f"{pages} pages yielded no image" + (f": {', '.join(why)}" if why else "")


def most_dropped_reason(stats: dict[str, Any]) -> str | None:
    skipped = _skipped(stats)
    dropped = {r: skipped[r] for r in PARSE_DROPS if skipped.get(r)}
    total = int(stats.get("shoal/images_found", 0)) + sum(dropped.values())
    if total < MIN_RESULTS or sum(dropped.values()) <= MOST * total:
        return None
    parts = ", ".join(f"{n} {r}" for r, n in sorted(dropped.items()))
    return f"the parse dropped {sum(dropped.values())} of {total} results ({parts})"


@monitors.name("Parse health")
class ParseHealthMonitor(Monitor, StatsMonitorMixin):
    def _check(self, name: str, reason: str | None) -> None:
        if reason:
            self.data.crawler.stats.set_value(f"shoal/warnings/{name}", reason)
            self.fail(reason)

    @monitors.name("pages yield images")
    def test_pages_yield_images(self) -> None:
        self._check("no_images", no_images_reason(self.stats))

    @monitors.name("the parse keeps most results")
    def test_parse_keeps_most_results(self) -> None:
        self._check("most_dropped", most_dropped_reason(self.stats))


class ParseHealth(MonitorSuite):
    monitors = [ParseHealthMonitor]
