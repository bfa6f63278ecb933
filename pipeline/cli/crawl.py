"""`shoal crawl`: crawl sources for species keywords into the catalog."""

from __future__ import annotations

from typing import Any

import typer

from pipeline.cli.common import (
    JSON_OPTION,
    JobBars,
    ShoalGroup,
    console,
    err_console,
    print_json,
    print_table,
    progress_bar,
)
from pipeline.errors import ShoalError
from pipeline.jobs.actions import crawl, crawl_targets

app = typer.Typer(cls=ShoalGroup, help="Crawl encyclopedias, shops and species databases.")


def _summary(rows: list[dict[str, Any]]) -> None:
    from crawler.stats import drops

    table = []
    for r in rows:
        s = r["stats"]
        state = f"{r['state']} (warning)" if r.get("warning") else r["state"]
        table.append((r["species"], r["source"], r["crawl_job_id"], state,
                      s.get("pages", ""), s.get("images_found", ""), s.get("stored", ""),
                      s.get("duplicates", ""), s.get("existing", ""),
                      sum(drops(s).values()) if s else "",
                      (r["error"] or r.get("warning") or "")[:80]))
    print_table(f"{len(rows)} crawls", ["species", "source", "job", "state", "pages", "found",
                                        "stored", "dupes", "known", "dropped", "error / warning"],
                table)
    reasons: dict[tuple[str, str], int] = {}
    for r in rows:
        for stage, key in (("parse", "skipped"), ("fetch / content", "rejected")):
            for reason, n in (r["stats"].get(key) or {}).items():
                reasons[(reason, stage)] = reasons.get((reason, stage), 0) + n
    if reasons:
        print_table("dropped by reason", ["reason", "stage", "count"],
                    [(reason, stage, n) for (reason, stage), n in sorted(reasons.items())])
    for r in rows:
        if r.get("warning"):
            err_console.print(f"[yellow]warning: {r['species']} · {r['source']}:[/] "
                              f"{r['warning']}", highlight=False)


@app.callback(invoke_without_command=True)
def crawl_cmd(
    species: str = typer.Option(None, "--species", "-s", help="Slug of the species to crawl."),
    all_: bool = typer.Option(False, "--all", help="Crawl every active species."),
    source: list[str] = typer.Option(
        [], "--source", help="wikimedia | inaturalist | gbif | baike | shop:PROFILE (repeatable; "
                             "default: all but the shops marked crawl_by_default: false)."),
    limit: int = typer.Option(None, "--limit", min=1, help="At most N images per crawl."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Crawl sources for species keywords: images are validated, normalised, hashed and
    catalogued with where they came from; duplicates are found after the crawl."""
    targets = crawl_targets(species, all_, source)
    with progress_bar() as bar:
        bars = JobBars(bar)
        outcome = crawl(targets, limit, listener=bars.step, watch=bars.row)
    rows, dedupe = outcome.result["crawls"], outcome.result["dedupe"]
    failed = outcome.failed
    if as_json:
        print_json({"crawls": rows, "dedupe": dedupe})
    else:
        _summary(rows)
        if dedupe is not None:
            console.print(f"dedupe: {dedupe}")
    if failed:
        if not as_json:
            for r in failed:
                err_console.print(f"[red]{r['species']} · {r['source']}:[/] {r['error']}")
        raise ShoalError(f"{len(failed)} of {len(rows)} crawls failed", exit_code=1)
