"""`shoal schedule`: crawl each species again every so often (stored in the catalog)."""

from __future__ import annotations

import typer

from pipeline.cli.common import (
    JSON_OPTION,
    ShoalGroup,
    catalog_session,
    console,
    print_json,
    print_table,
)
from pipeline.jobs.schedules import (
    enqueue_due,
    list_schedules,
    parse_every,
    remove_schedules,
    set_schedule,
)
from pipeline.jobs.submit import job_dict

schedule_app = typer.Typer(cls=ShoalGroup, help="Per-species crawl schedules that `shoal beat` "
                           "(or `shoal schedule tick` from cron) turns into crawl jobs.")

SOURCE_OPTION = typer.Option([], "--source", help="wikimedia, inaturalist, baike or "
                             "shop:<profile>; repeatable (default: wikimedia).")


@schedule_app.command("set")
def schedule_set(
    species: str = typer.Option(..., "--species", "-s", help="Species slug."),
    every: str = typer.Option(..., "--every", help="Interval: 7d, 12h, 1d12h, 90m."),
    source: list[str] = SOURCE_OPTION,
    limit: int = typer.Option(None, help="At most this many images per crawl."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create or change a schedule; a new one is due at once."""
    seconds = parse_every(every)
    with catalog_session() as session:
        rows = set_schedule(session, species, list(source), seconds, limit)
        ids = {r.id for r in rows}
        data = [d for d in list_schedules(session) if d["id"] in ids]
    if as_json:
        print_json(data)
        return
    for d in data:
        console.print(f"{d['species']} from {d['source']} every {d['every']}; "
                      f"next run {d['next_run_at']}", highlight=False)


@schedule_app.command("list")
def schedule_list(as_json: bool = JSON_OPTION) -> None:
    """List the schedules with their next and last runs."""
    with catalog_session() as session:
        data = list_schedules(session)
    if as_json:
        print_json(data)
        return
    print_table(f"{len(data)} schedules",
                ["species", "source", "every", "limit", "next run", "last run", "last job"],
                [(d["species"], d["source"], d["every"], d["limit"], d["next_run_at"],
                  d["last_run_at"], d["last_job_id"]) for d in data])


@schedule_app.command("remove")
def schedule_remove(
    species: str = typer.Option(..., "--species", "-s", help="Species slug."),
    source: list[str] = typer.Option([], "--source", help="Only this source (default: all)."),
) -> None:
    """Remove a species' schedules (its past jobs stay)."""
    with catalog_session() as session:
        n = remove_schedules(session, species, list(source))
    console.print(f"removed {n} schedule(s) of {species}")


@schedule_app.command("tick")
def schedule_tick(as_json: bool = JSON_OPTION) -> None:
    """Queue every due crawl once, now (what beat does each tick).

    Safe beside a running beat; with no broker the crawls run here."""
    with catalog_session():
        pass
    jobs = enqueue_due()
    if as_json:
        print_json([job_dict(j) for j in jobs])
    else:
        console.print(f"{len(jobs)} due crawl(s) queued" + (
            f": jobs {', '.join(str(j.id) for j in jobs)}" if jobs else ""))
