"""The main job end to end on the embedded default: crawl the bundled demo site, dedupe, let
the model make its first pass (curate), review (Label Studio when configured, suspects first;
else the model approves only what it is sure of and holds the suspects back), freeze a dataset
version, train the fast path, predict the images still waiting for review, and summarise every
stage with the suspects held back and the accuracy before and after.

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

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.db import session_scope, upgrade
from catalog.models import Image, ImageStatus
from catalog.settings import get_settings
from catalog.species import ensure_default_species, load_species_file, upsert_species
from catalog.stats import catalog_stats
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
    folds: int = 5  # of the first pass's out-of-fold label scores
    auto_accept: float = 0.5  # out-of-fold probability the model needs to approve alone


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
    curation: dict[str, Any] = field(default_factory=dict)
    held_back: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, Any] = field(default_factory=dict)
    predicted: dict[str, Any] = field(default_factory=dict)
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


def review_in_label_studio(session: Session, say: Say, auto_accept_at: float) -> str:
    from labeling.client import make_client
    from labeling.project import setup_project
    from labeling.pull import pull_annotations
    from labeling.push import push_tasks

    s = get_settings()
    token = s.label_studio_token.get_secret_value() if s.label_studio_token else None
    client = make_client(s.label_studio_url, token)
    setup_project(session, client)
    pushed = push_tasks(session, client, auto_accept_at=auto_accept_at)
    pulled = pull_annotations(session, client)
    session.commit()
    say(f"review: pushed to Label Studio at {s.label_studio_url}: {pushed.as_dict()}")
    say(f"review: pulled annotations: {pulled.as_dict()}")
    accepted = pushed.auto_accepted.approved if pushed.auto_accepted else 0
    return (f"Label Studio at {s.label_studio_url}: {pushed.pushed} tasks pushed, suspects "
            f"first ({pushed.order} order), annotations pulled; {accepted} images APPROVED BY "
            f"THE MODEL (out-of-fold probability >= {auto_accept_at}, recorded as its "
            "decision); the rest wait for a person")


def curate_pool(opts: DemoOptions, say: Say, summary: DemoSummary) -> None:
    """The model's first pass: suspects, reasons, copies, and its out-of-fold accuracy on the
    keyword labels (the first model: 'before')."""
    from pipeline.curate.gallery import write_gallery
    from pipeline.curate.passes import CurateOptions, curate

    with session_scope() as session:
        report = curate(session, CurateOptions(folds=opts.folds))
        report.gallery = str(write_gallery(session, report.run_id))
        summary.curation = report.as_dict()
        summary.accuracy["before"] = first_pass_accuracy(session, report.run_id)
    say(f"curate: run {report.run_id}: {report.pool} images, {report.suspects} suspects "
        f"({', '.join(f'{k} {v}' for k, v in report.reasons.items()) or 'none'}), "
        f"{report.copies_linked} copies linked; gallery {report.gallery}")


def first_pass_accuracy(session: Session, run_id: int) -> dict[str, Any]:
    """How often the out-of-fold top species agrees with the crawl keyword."""
    from catalog.models import ImageSuspicion

    rows = session.execute(select(ImageSuspicion.given_label, ImageSuspicion.suggested_label)
                           .where(ImageSuspicion.run_id == run_id,
                                  ImageSuspicion.given_probability.is_not(None))).all()
    agree = sum(given == suggested for given, suggested in rows)
    return {"what": "first pass: out-of-fold logistic heads on the frozen backbone, against "
                    "the crawl keywords, every pool image",
            "accuracy": round(agree / len(rows), 4) if rows else None, "images": len(rows)}


def approve_by_model(session: Session, opts: DemoOptions, summary: DemoSummary) -> str:
    from labeling.autoaccept import auto_accept

    accepted = auto_accept(session, opts.auto_accept)
    return (f"no Label Studio configured (SHOAL_LABEL_STUDIO_URL unset): {accepted.approved} "
            f"images APPROVED BY THE MODEL (curation run {accepted.curation_run_id}: the crawl "
            f"keyword is the out-of-fold top species with probability >= {opts.auto_accept}, "
            f"nothing suspect; recorded as decided by the model, see `shoal review status`); "
            f"{summary.held_back.get('suspects', 0)} suspects held back, the rest left for "
            "review")


def held_back(session: Session, run_id: int | None) -> dict[str, Any]:
    """The suspects of the curation run that are not in the dataset: how many and why."""
    from collections import Counter

    from catalog.models import ImageSuspicion

    if run_id is None:
        return {}
    reasons: Counter[str] = Counter()
    n = 0
    for (row_reasons,) in session.execute(
        select(ImageSuspicion.reasons).join(Image, Image.id == ImageSuspicion.image_id)
        .where(ImageSuspicion.run_id == run_id, ImageSuspicion.suspect.is_(True),
               Image.status != ImageStatus.APPROVED)
    ):
        n += 1
        reasons.update(row_reasons)
    return {"suspects": n, "reasons": dict(sorted(reasons.items()))}


def predict_waiting(run_id: int, summary: DemoSummary) -> None:
    """The new model scores the images still waiting for review (the next round's order)."""
    from pipeline.curate.predict import PredictSelection, predict_catalog

    with session_scope() as session:
        out = predict_catalog(session, PredictSelection(run_id, [ImageStatus.UNIQUE,
                                                                 ImageStatus.IN_REVIEW]))
    summary.predicted = {"run": run_id, "images": out["predicted"],
                         "failed": len(out["failed"])}


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

    curate_pool(opts, say, summary)
    lap("curate")

    with session_scope() as session:
        summary.held_back = held_back(session, summary.curation.get("run_id"))
        if settings.label_studio_url:
            summary.review = review_in_label_studio(session, say, opts.auto_accept)
        else:
            summary.review = approve_by_model(session, opts, summary)
        session.flush()
        summary.held_back = held_back(session, summary.curation.get("run_id"))
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
    summary.accuracy["after"] = {
        "what": f"run {summary.run.get('id')} trained on version {version.name}, best "
                "validation accuracy", "accuracy": summary.run.get("best_val_accuracy"),
        "images": version.n_val}
    lap("train")
    predict_waiting(int(summary.run["id"]), summary)
    lap("predict")
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
