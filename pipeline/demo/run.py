"""The main job end to end on the embedded default: crawl the bundled demo site, dedupe,
review, freeze a dataset version, train the fast path, and summarise every stage.

The demo site serves the real photos of ../shared/fishdata/web-20 behind pages shaped like the
real sources (pipeline.demo.site), so the whole platform runs with no network and no services.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from catalog.db import session_scope, upgrade
from catalog.settings import get_settings
from catalog.species import ensure_default_species, load_species_file, upsert_species
from catalog.stats import catalog_stats
from pipeline.datasets.approve import approve_by_keyword
from pipeline.errors import UsageError

DEMO_SPECIES_FILE = Path(__file__).parent / "demo_species.yaml"
DEMO_SOURCES = ("wikimedia", "inaturalist", "gbif", "baike", "shop:market")
Say = Callable[[str], None]


@dataclass
class DemoOptions:
    fishdata: Path
    limit: int = 60  # images per species and source
    sources: tuple[str, ...] = DEMO_SOURCES
    arch: str = "efficientnet_lite0"
    weights: str = "imagenet"
    epochs: int = 30
    views: int = 4
    lr: float = 1e-3
    species: tuple[str, ...] = ()  # folder names of web-20; empty: all


@dataclass
class DemoSummary:
    species: int = 0
    crawl_jobs: int = 0
    crawl_failures: list[str] = field(default_factory=list)
    stages: dict[str, int] = field(default_factory=dict)
    rejects: dict[str, int] = field(default_factory=dict)
    url_failures: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    duplicate_groups: int = 0
    conflicts: int = 0
    review: str = ""
    version: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    report: str = ""
    tensorboard: str = ""
    seconds: dict[str, float] = field(default_factory=dict)


def web20_species(fishdata: Path, only: tuple[str, ...] = ()) -> list[tuple[str, str, Path]]:
    """(slug, Latin name, photo folder) of each demo species whose photos are present."""
    root = fishdata / "web-20"
    if not root.is_dir():
        raise UsageError(f"the demo's photos are missing: no folder {root} (set --fishdata)")
    wanted = {s.lower() for s in only}
    out = []
    for spec in load_species_file(DEMO_SPECIES_FILE):
        folder = root / spec.keywords["bn"][0]
        if folder.is_dir() and (not wanted or folder.name.lower() in wanted):
            out.append((spec.slug, spec.latin_name, folder))
    if not out:
        raise UsageError(f"no demo species found under {root}")
    return out


def register_species(session: Session, chosen: list[tuple[str, str, Path]]) -> None:
    ensure_default_species(session)
    slugs = {slug for slug, _, _ in chosen}
    upsert_species(session, [s for s in load_species_file(DEMO_SPECIES_FILE) if s.slug in slugs])


@contextmanager
def demo_site(chosen: list[tuple[str, str, Path]]) -> Iterator[Any]:
    """The local site, with every spider pointed at it through the environment."""
    from pipeline.demo.site.server import serve

    species_map: dict[str, Path] = {}
    for _slug, latin, folder in chosen:
        species_map[latin] = folder
        species_map[folder.name] = folder
    with serve(chosen[0][2].parent, species_map) as site:
        saved = {k: os.environ.get(k) for k in site.env()}
        os.environ.update(site.env())
        try:
            yield site
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def crawl_all(chosen: list[tuple[str, str, Path]], opts: DemoOptions, summary: DemoSummary,
              advance: Callable[[str], None]) -> None:
    from crawler.runner import CrawlFailed, run_crawl

    for slug, _latin, _folder in chosen:
        for source in opts.sources:
            try:
                run_crawl(slug, source, limit=opts.limit)
                summary.crawl_jobs += 1
            except CrawlFailed as exc:  # recorded on the crawl job; the demo goes on
                summary.crawl_failures.append(f"{slug} {source}: {exc}")
            advance(f"{slug} · {source}")


def review_in_label_studio(session: Session, say: Say) -> str:
    from labeling.client import make_client
    from labeling.project import setup_project
    from labeling.pull import pull_annotations
    from labeling.push import push_tasks

    s = get_settings()
    token = s.label_studio_token.get_secret_value() if s.label_studio_token else None
    client = make_client(s.label_studio_url, token)
    setup_project(session, client)
    pushed = push_tasks(session, client)
    pulled = pull_annotations(session, client)
    session.commit()
    say(f"review: pushed to Label Studio at {s.label_studio_url}: {pushed.as_dict()}")
    say(f"review: pulled annotations: {pulled.as_dict()}")
    accepted = approve_by_keyword(session)
    return (f"Label Studio at {s.label_studio_url}: tasks pushed and annotations pulled; "
            f"{accepted} images nobody has annotated yet were accepted under their crawl "
            f"keyword so the demo can go on")


def stage_counts(session: Session, summary: DemoSummary) -> None:
    stats = catalog_stats(session)
    summary.stages, summary.rejects = stats["stages"], stats["rejects"]
    summary.url_failures = stats["url_failures"]
    summary.duplicate_groups, summary.conflicts = stats["duplicate_groups"], stats["conflicts"]
    summary.species = stats["species"]


def run_demo(opts: DemoOptions, say: Say, progress: Any) -> DemoSummary:
    """Every stage in order; ``progress`` is a rich Progress the stages report to."""
    from pipeline.datasets.versions import create_version
    from pipeline.dedupe.grouping import run_dedupe

    summary = DemoSummary()
    settings = get_settings()
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        summary.seconds[name] = round(now - clock, 1)
        clock = now

    chosen = web20_species(opts.fishdata, opts.species)
    upgrade()
    with session_scope() as session:
        register_species(session, chosen)
    say(f"catalog: {settings.resolved_database_url} · images: {settings.image_dir}")
    lap("setup")

    with demo_site(chosen) as site:
        say(f"demo site: {site.base_url} serving {len(chosen)} species from {opts.fishdata}")
        task = progress.add_task("crawling", total=len(chosen) * len(opts.sources))
        crawl_all(chosen, opts, summary,
                  lambda what: progress.update(task, advance=1, description=f"crawl {what}"))
    lap("crawl")

    with session_scope() as session:
        report = run_dedupe(session)
        summary.duplicates = report.duplicates
    say(f"dedupe: {report.pixel_pairs} identical-pixel and {report.near_pairs} near pairs; "
        f"{report.duplicates} duplicates in {report.groups} groups")
    lap("dedupe")

    with session_scope() as session:
        if settings.label_studio_url:
            summary.review = review_in_label_studio(session, say)
        else:
            accepted = approve_by_keyword(session)
            summary.review = (f"no Label Studio configured (SHOAL_LABEL_STUDIO_URL unset): "
                              f"{accepted} unique images ACCEPTED UNDER THEIR CRAWL KEYWORD "
                              f"without human review; conflicted duplicate groups held back")
    say(f"review: {summary.review}")
    lap("review")

    with session_scope() as session:
        version = create_version(session, min_per_class=2)
        summary.version = {"name": version.name, "classes": len(version.classes),
                           "items": version.n_items, "train": version.n_train,
                           "val": version.n_val, "manifest_sha256": version.manifest_sha256}
    say(f"dataset: version {version.name}: {version.n_items} images, "
        f"{len(version.classes)} classes, {version.n_train} train / {version.n_val} val")
    lap("dataset")

    summary.run = train_demo_model(version.id, opts, progress)
    lap("train")
    with session_scope() as session:
        stage_counts(session, summary)
    return summary


def train_demo_model(version_id: int, opts: DemoOptions, progress: Any) -> dict[str, Any]:
    from trainer.report import write_report
    from trainer.runs import create_run, get_run, run_summary
    from trainer.train import train_run

    with session_scope() as session:
        run = create_run(session, dataset=version_id, arch=opts.arch, weights=opts.weights,
                         mode="frozen", epochs=opts.epochs, views=opts.views, lr=opts.lr)
        run_id = run.id
    task = progress.add_task(f"train run {run_id} ({opts.arch}, fast path)", total=None)

    def on_progress(stage: str, done: int, total: int) -> None:
        if stage in ("features", "epoch"):
            progress.update(task, total=total, completed=done,
                            description=f"train run {run_id}: {stage}")

    train_run(run_id, progress=on_progress)
    with session_scope() as session:
        run = get_run(session, run_id)
        info = run_summary(session, run)
        info["tensorboard_dir"] = run.tensorboard_dir
        info["report"] = str(write_report(session, run_id))
    return info
