"""`shoal dedupe`: find exact and near-duplicate images, group them, keep one of each."""

from __future__ import annotations

from typing import Any

import typer

from pipeline.cli.common import (
    JSON_OPTION,
    JobBars,
    console,
    print_json,
    print_table,
    progress_bar,
)
from pipeline.dedupe.grouping import DEFAULT_DHASH_RADIUS, DEFAULT_RADIUS, MAX_RADIUS
from pipeline.errors import UsageError
from pipeline.jobs.actions import dedupe


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
    args = {"radius": radius, "dhash_radius": dhash_radius, "rescan": rescan,
            "dry_run": dry_run, "top": top}
    with progress_bar() as bar:
        bars = JobBars(bar, label=lambda _kind, _args: "dedupe")
        report = dedupe(args, listener=bars.step, watch=bars.row).result
    if as_json:
        print_json(report)
        return
    _print_report(report)


def _print_report(r: dict[str, Any]) -> None:
    """A DedupeReport, as its job result (``DedupeReport.as_dict``) holds it."""
    what = "would change" if r["dry_run"] else "changed"
    console.print(
        f"{r['images']} hashed images, {r['new_images']} new "
        f"({r['mode']}, pHash <= {r['radius']}, dHash <= {r['dhash_radius']}); "
        f"{r['pixel_pairs']} identical-pixel and {r['near_pairs']} near pairs "
        f"({r['rejected_by_dhash']} refused by dHash) in {r['seconds']:.1f}s"
    )
    console.print(
        f"{what}: {r['groups_created']} groups created, {r['groups_merged']} merged, "
        f"{r['groups_changed']} updated; {r['marked_unique']} marked unique, "
        f"{r['marked_duplicate']} duplicate, {r['links_written']} links"
    )
    console.print(f"{r['groups']} groups holding {r['duplicates']} duplicates; sizes: "
                  + ", ".join(f"{k}: {v}" for k, v in sorted(r["sizes"].items(),
                                                             key=lambda kv: int(kv[0]))))
    if r["top_groups"]:
        print_table("largest groups", ["group", "size", "canonical", "species", "conflict"], [
            (g["group_id"] or "new", g["size"], g["canonical_id"], ", ".join(g["species_slugs"]),
             "yes" if g["conflict"] else "")
            for g in r["top_groups"]
        ])
    if r["conflicts"]:
        print_table(f"{len(r['conflicts'])} conflicts: one photo, several species",
                    ["group", "size", "canonical", "species"], [
            (g["group_id"] or "new", g["size"], g["canonical_id"], ", ".join(g["species_slugs"]))
            for g in r["conflicts"]
        ])
