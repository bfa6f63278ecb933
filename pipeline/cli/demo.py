"""`shoal demo`: the main job end to end on the bundled demo site."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import typer

from pipeline.cli.common import (
    JSON_OPTION,
    console,
    err_console,
    print_json,
    print_table,
    progress_bar,
)
from pipeline.demo.run import DEMO_SOURCES, DemoOptions, DemoSummary, run_demo

DEFAULT_FISHDATA = Path("../shared/fishdata")


def demo_cmd(
    fishdata: Path = typer.Option(DEFAULT_FISHDATA, help="Folder holding web-20/ photos."),
    limit: int = typer.Option(60, help="Images per species and source."),
    source: list[str] = typer.Option(list(DEMO_SOURCES), "--source", help="Sources to crawl."),
    species: list[str] = typer.Option([], "--species", help="Only these web-20 folders."),
    arch: str = typer.Option("efficientnet_lite0", help="Architecture to train."),
    weights: str = typer.Option("imagenet", help="imagenet, none, or a weights file."),
    epochs: int = typer.Option(30, help="Epochs of the head on the feature cache."),
    views: int = typer.Option(4, help="Feature views per image (1 clean + augmented)."),
    lr: float = typer.Option(1e-3, help="Learning rate of the head."),
    auto_accept: float = typer.Option(0.5, "--auto-accept", min=0.01, max=1.0,
                                      help="Out-of-fold probability the model needs to "
                                      "approve an image under its keyword alone."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Crawl the demo site, dedupe, curate, review (suspects held back), create a dataset
    version, train, predict, summarise."""
    opts = DemoOptions(fishdata=fishdata, limit=limit, sources=tuple(source), arch=arch,
                       weights=weights, epochs=epochs, views=views, lr=lr,
                       species=tuple(species), auto_accept=auto_accept)
    started = time.monotonic()
    with progress_bar() as bar:
        summary = run_demo(opts, lambda line: bar.console.print(line, highlight=False), bar)
    summary.seconds["total"] = round(time.monotonic() - started, 1)
    if as_json:
        print_json(asdict(summary))
        return
    show_summary(summary)


def show_summary(s: DemoSummary) -> None:
    err_console.print()
    print_table("images by stage", ["stage", "images"], sorted(s.stages.items()))
    if s.rejects or s.url_failures:
        rows = [(f"image: {k}", v) for k, v in sorted(s.rejects.items())]
        rows += [(f"url: {k}", v) for k, v in sorted(s.url_failures.items())]
        print_table("rejected, by reason", ["reason", "count"], rows)
    run = s.run
    print_table("summary", ["", ""], [
        ("species crawled", s.species),
        ("crawl jobs", f"{s.crawl_jobs} ok, {len(s.crawl_failures)} failed"),
        ("duplicates", f"{s.duplicates} in {s.duplicate_groups} groups, {s.conflicts} conflicts"),
        ("first pass", f"curation run {s.curation.get('run_id')}: {s.curation.get('suspects')} "
                       f"suspects of {s.curation.get('pool')} images, "
                       f"{s.curation.get('copies_linked')} copies linked; gallery "
                       f"{s.curation.get('gallery')}"),
        ("review", s.review),
        ("held back", f"{s.held_back.get('suspects', 0)} suspects: " + ", ".join(
            f"{k} {v}" for k, v in s.held_back.get("reasons", {}).items())),
        ("dataset version", f"{s.version.get('name')}: {s.version.get('train')} train / "
                            f"{s.version.get('val')} val, {s.version.get('classes')} classes"),
        ("training run", f"{run.get('id')} {run.get('arch')}: best val accuracy "
                         f"{run.get('best_val_accuracy')}"),
        ("accuracy before", f"{s.accuracy.get('before', {}).get('accuracy')} "
                            f"({s.accuracy.get('before', {}).get('what')})"),
        ("accuracy after", f"{s.accuracy.get('after', {}).get('accuracy')} "
                           f"({s.accuracy.get('after', {}).get('what')})"),
        ("predicted", f"{s.predicted.get('images')} images awaiting review scored by run "
                      f"{s.predicted.get('run')}"),
        ("TensorBoard", f"tensorboard --logdir {run.get('tensorboard_dir')}"),
        ("report", run.get("report")),
        ("time", ", ".join(f"{k} {v}s" for k, v in s.seconds.items())),
    ])
    for failure in s.crawl_failures:
        console.print(f"[yellow]crawl failed:[/] {failure}")
