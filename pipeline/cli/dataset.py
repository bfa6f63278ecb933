"""`shoal dataset`: create, list, show, diff and export immutable dataset versions."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from catalog.dataset_versions import ItemFilter, diff_versions, list_versions
from catalog.splits import SPLITS
from pipeline.cli.common import (
    JSON_OPTION,
    JobBars,
    ShoalGroup,
    catalog_session,
    console,
    print_json,
    print_table,
    progress_bar,
)
from pipeline.datasets.export import FORMATS
from pipeline.datasets.versions import get_version, version_detail, version_summary
from pipeline.errors import UsageError, printable
from pipeline.jobs.actions import create_dataset, export_dataset

dataset_app = typer.Typer(
    cls=ShoalGroup, help="Immutable dataset versions: create, list, show, diff, export."
)


DIFF_COLUMNS = {
    "added": ["sha256", "label", "split"],
    "removed": ["sha256", "label", "split"],
    "relabelled": ["sha256", "old", "new", "split"],
    "moved": ["sha256", "label", "old", "new"],
}


@dataset_app.command("create")
def create_cmd(
    name: str = typer.Option(None, "--name", help="Version name; default v1, v2, ..."),
    species: list[str] = typer.Option(
        [], "--species", "-s", help="Only these species (repeat); default every approved one."
    ),
    min_per_class: int = typer.Option(
        1, "--min-per-class", help="Refuse when a class has fewer approved images."
    ),
    val_ratio: float = typer.Option(0.1, "--val-ratio", help="Share of split keys in val."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Freeze the approved images into a new immutable version, with its manifest."""
    args = {"name": name, "species": species or None, "min_per_class": min_per_class,
            "val_ratio": val_ratio}
    with progress_bar() as bar:
        bars = JobBars(bar, label=lambda _kind, _args: "dataset create")
        data = create_dataset(args, listener=bars.step, watch=bars.row).result
    if as_json:
        print_json(data)
        return
    console.print(
        f"created [bold]{data['name']}[/]: {data['n_items']} images in "
        f"{len(data['classes'])} classes ({data['n_train']} train, {data['n_val']} val); "
        f"manifest {data['manifest']} sha256 {data['manifest_sha256']}"
    )


@dataset_app.command("list")
def list_cmd(as_json: bool = JSON_OPTION) -> None:
    """List the dataset versions, oldest first."""
    with catalog_session() as session:
        data = [version_summary(v) for v in list_versions(session)]
    if as_json:
        print_json(data)
        return
    print_table(
        f"{len(data)} dataset version{'' if len(data) == 1 else 's'}",
        ["name", "created", "images", "train", "val", "classes", "manifest sha256"],
        [
            (d["name"], f"{d['created_at']:%Y-%m-%d %H:%M}", d["n_items"], d["n_train"],
             d["n_val"], len(d["classes"]), (d["manifest_sha256"] or "")[:16])
            for d in data
        ],
    )


@dataset_app.command("show")
def show_cmd(
    version: str = typer.Argument(..., help="Version name, id or 'latest'."),
    species: list[str] = typer.Option([], "--species", "-s", help="Only these labels (repeat)."),
    split: str = typer.Option(None, "--split", help="Only train or val."),
    site: str = typer.Option(None, "--site", help="Only images whose primary source is this site."),
    license_: str = typer.Option(None, "--license", help="Only images under this license."),
    items: bool = typer.Option(False, "--items", help="List the matching images too."),
    limit: int = typer.Option(50, "--limit", help="With --items: at most this many (0: all)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Summarise a version per class and split; filter by species, split, site, license."""
    if split is not None and split not in SPLITS:
        raise UsageError(f"--split must be one of {', '.join(SPLITS)} (got {split!r})")
    flt = ItemFilter(tuple(species), split, site, license_)
    with catalog_session() as session:
        data = version_detail(session, version, flt, items=items, limit=limit)
    if as_json:
        print_json(data)
        return
    console.print(
        f"[bold]{data['name']}[/] (id {data['id']}, {data['created_at']:%Y-%m-%d %H:%M}): "
        f"{data['n_items']} images, {data['n_train']} train / {data['n_val']} val, "
        f"val ratio {data['params'].get('val_ratio')}; manifest sha256 {data['manifest_sha256']}"
    )
    print_table(
        f"{data['matching']} matching images",
        ["species", "train", "val"],
        [(label, c["train"], c["val"]) for label, c in data["counts"].items()],
    )
    if items:
        print_table(
            None, ["sha256", "species", "split", "site", "license", "url"],
            [(i["sha256"][:16], i["label"], i["split"], i["site"], i["license"], i["url"])
             for i in data["items"]],
        )


@dataset_app.command("diff")
def diff_cmd(
    old: str = typer.Argument(..., help="The earlier version."),
    new: str = typer.Argument(..., help="The later version."),
    limit: int = typer.Option(20, "--limit", help="Images listed per kind of change (0: all)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Images added, removed, relabelled, and moved between train and val (should be none)."""
    with catalog_session() as session:
        diff = diff_versions(session, get_version(session, old), get_version(session, new))
    data = diff.as_dict(limit or None)
    if as_json:
        print_json(data)
        return
    counts = data["counts"]
    console.print(
        f"{diff.old} → {diff.new}: [green]{counts['added']} added[/], "
        f"[red]{counts['removed']} removed[/], [yellow]{counts['relabelled']} relabelled[/], "
        f"{counts['moved']} moved split"
    )
    if counts["moved"]:
        console.print("[bold red]warning:[/] images changed split; their duplicate groups changed")
    for kind, columns in DIFF_COLUMNS.items():
        if data[kind]:
            print_table(kind, columns, [
                [d[c][:16] if c == "sha256" else d[c] for c in columns] for d in data[kind]
            ])


@dataset_app.command("export")
def export_cmd(
    version: str = typer.Argument(..., help="Version name, id or 'latest'."),
    fmt: str = typer.Option(
        "imagefolder", "--format", "-f", help=f"One of: {', '.join(FORMATS)}."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write (empty or a re-export)."),
    copy: bool = typer.Option(False, "--copy", help="Copy files instead of hard-linking them."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Write a version out: imagefolder (train|val/<species>/<sha256>.jpg) or its manifest."""
    with progress_bar() as bar:
        bars = JobBars(bar, label=lambda _kind, _args: f"export {version}")
        data = export_dataset(version, fmt, out, copy, listener=bars.step, watch=bars.row).result
    if as_json:
        print_json(data)
        return
    console.print(f"exported {escape(str(data['version']))} ({data['n_items']} images) as "
                  f"{escape(fmt)} to {escape(printable(str(data['out'])))}")
