"""`shoal crawl`: crawl sources for species keywords into the catalog."""

from __future__ import annotations

from typing import Any

import typer
from sqlalchemy import select

from catalog.models import CrawlJob, Species
from catalog.species import get_species
from pipeline.cli.common import (
    JSON_OPTION,
    ShoalGroup,
    catalog_session,
    console,
    err_console,
    print_json,
    print_table,
    progress_bar,
)
from pipeline.errors import ShoalError, UsageError

app = typer.Typer(cls=ShoalGroup, help="Crawl encyclopedias, shops and species databases.")


def _plan(species: str | None, all_: bool, sources: list[str]) -> list[tuple[str, str]]:
    from crawler.sources import UnknownSource, chosen_sources, default_sources  # Scrapy

    if bool(species) == all_:
        raise UsageError("give --species SLUG or --all (for every active species)")
    try:
        chosen = chosen_sources(sources, default_sources())
    except UnknownSource as exc:
        raise UsageError(str(exc)) from exc
    with catalog_session() as session:
        if all_:
            slugs = list(session.scalars(
                select(Species.slug).where(Species.active.is_(True)).order_by(Species.id)))
            if not slugs:
                raise UsageError("no active species: add some with `shoal species add`")
        else:
            assert species is not None
            slugs = [get_species(session, species).slug]
    return [(slug, source) for slug in slugs for source in chosen]


def _row(slug: str, source: str, crawl_job_id: int | None, error: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {"species": slug, "source": source, "crawl_job_id": crawl_job_id,
                            "state": "failed", "stats": {}, "error": error, "warning": None}
    if crawl_job_id is None:
        return data
    with catalog_session() as session:
        row = session.get(CrawlJob, crawl_job_id)
        assert row is not None
        data.update(state=row.state, stats=row.stats or {}, error=row.error,
                    warning=row.warning, keyword=row.keyword)
    return data


def dedupe_after_crawl() -> dict[str, Any]:
    """Duplicate detection runs after every crawl, so new images leave `downloaded` at once."""
    from pipeline.dedupe.grouping import run_dedupe

    with catalog_session() as session:
        return run_dedupe(session).as_dict()


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
def crawl(
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
    from crawler.runner import CrawlFailed, run_crawl  # imports Scrapy: only to crawl

    plan = _plan(species, all_, source)
    rows: list[dict[str, Any]] = []
    with progress_bar() as bar:
        for slug, src in plan:
            task = bar.add_task(f"{slug} · {src}", total=limit)
            crawl_job_id, error = None, None
            try:
                crawl_job_id = run_crawl(slug, src, limit=limit,
                                         progress=lambda _r, t=task: bar.advance(t))
            except CrawlFailed as exc:
                crawl_job_id, error = exc.crawl_job_id, str(exc)
            bar.update(task, total=bar.tasks[task].completed)
            rows.append(_row(slug, src, crawl_job_id, error))
    dedupe = dedupe_after_crawl()
    failed = [r for r in rows if r["state"] != "succeeded"]
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
