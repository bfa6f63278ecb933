"""`shoal dedupe`: find exact and near-duplicate images, group them, keep one of each."""

from __future__ import annotations

import typer

from pipeline.cli.common import (
    JSON_OPTION,
    catalog_session,
    console,
    print_json,
    print_table,
    progress_bar,
)
from pipeline.dedupe.grouping import (
    DEFAULT_DHASH_RADIUS,
    DEFAULT_RADIUS,
    MAX_RADIUS,
    DedupeReport,
    run_dedupe,
)
from pipeline.errors import UsageError


def dedupe_cmd(
    radius: int = typer.Option(
        DEFAULT_RADIUS, "--radius", "-r", help=f"pHash Hamming radius (0..{MAX_RADIUS})."),
    dhash_radius: int = typer.Option(
        DEFAULT_DHASH_RADIUS, "--dhash-radius", help="dHash radius that confirms a pHash match."),
    rescan: bool = typer.Option(
        False, "--rescan", help="Compare every pair, not only images not yet deduplicated."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Report what would change; write nothing."),
    top: int = typer.Option(10, "--top", help="How many of the largest groups to list."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Mark new images unique or duplicate, link duplicates to their group's canonical image."""
    if not 0 <= radius <= MAX_RADIUS:
        raise UsageError(f"--radius must be within 0..{MAX_RADIUS}, got {radius}")
    if not 0 <= dhash_radius <= 64:
        raise UsageError(f"--dhash-radius must be within 0..64, got {dhash_radius}")
    with catalog_session() as session, progress_bar() as bar:
        tasks: dict[str, int] = {}

        def step(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        report = run_dedupe(session, radius=radius, dhash_radius=dhash_radius, rescan=rescan,
                            dry_run=dry_run, top=top, progress=step)
        if dry_run:
            session.rollback()
    if as_json:
        print_json(report.as_dict())
        return
    _print_report(report)


def _print_report(report: DedupeReport) -> None:
    what = "would change" if report.dry_run else "changed"
    console.print(
        f"{report.images} hashed images, {report.new_images} new "
        f"({report.mode}, pHash <= {report.radius}, dHash <= {report.dhash_radius}); "
        f"{report.pixel_pairs} identical-pixel and {report.near_pairs} near pairs "
        f"({report.rejected_by_dhash} refused by dHash) in {report.seconds:.1f}s"
    )
    console.print(
        f"{what}: {report.groups_created} groups created, {report.groups_merged} merged, "
        f"{report.groups_changed} updated; {report.marked_unique} marked unique, "
        f"{report.marked_duplicate} duplicate, {report.links_written} links"
    )
    console.print(f"{report.groups} groups holding {report.duplicates} duplicates; sizes: "
                  + ", ".join(f"{k}: {v}" for k, v in sorted(report.sizes.items())))
    if report.top_groups:
        print_table("largest groups", ["group", "size", "canonical", "species", "conflict"], [
            (g.group_id or "new", g.size, g.canonical_id, ", ".join(g.species_slugs),
             "yes" if g.conflict else "")
            for g in report.top_groups
        ])
    if report.conflicts:
        print_table(f"{len(report.conflicts)} conflicts: one photo, several species",
                    ["group", "size", "canonical", "species"], [
            (g.group_id or "new", g.size, g.canonical_id, ", ".join(g.species_slugs))
            for g in report.conflicts
        ])
