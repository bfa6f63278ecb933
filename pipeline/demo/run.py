"""The main job end to end on the embedded default: crawl the bundled demo site, dedupe, let
the model make its first pass (curate), review (Label Studio, else the model approves what it
is sure of), freeze a dataset version, train the fast path, score what still waits for review,
and summarise every stage.

The demo site serves the real photos of ../shared/fishdata/web-20 behind pages shaped like the
real sources (pipeline.demo.site), so the whole platform runs with no network and no services.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.db import session_scope, upgrade
from catalog.models import DatasetVersion, Image, ImageStatus, ImageSuspicion, Job, JobState
from catalog.settings import get_settings
from catalog.species import ensure_default_species, load_species_file, upsert_species
from catalog.stats import catalog_stats
from pipeline.errors import UsageError
from pipeline.jobs.actions import first_line
from pipeline.jobs.flow import Done, FlowRequest, where_jobs_run

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
    version: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    report: str = ""
    tensorboard: str = ""
    curation: dict[str, Any] = field(default_factory=dict)
    held_back: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, Any] = field(default_factory=dict)
    predicted: dict[str, Any] = field(default_factory=dict)
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
    """The local site serving the chosen species (on loopback: crawl workers, if any, must run
    on this machine). Its ``env()`` points a crawl's spiders at it."""
    from pipeline.demo.site.server import serve

    species_map: dict[str, Path] = {}
    for _slug, latin, folder in chosen:
        species_map[latin] = folder
        species_map[folder.name] = folder
    with serve(chosen[0][2].parent, species_map) as site:
        yield site


def stage_counts(session: Session, summary: DemoSummary) -> None:
    stats = catalog_stats(session)
    summary.stages, summary.rejects = stats["stages"], stats["rejects"]
    summary.url_failures = stats["url_failures"]
    summary.duplicate_groups, summary.conflicts = stats["duplicate_groups"], stats["conflicts"]
    summary.species = stats["species"]


def demo_request(chosen: list[tuple[str, str, Path]], opts: DemoOptions) -> FlowRequest:
    """Every demo species from every demo source; curated by the first model; reviewed in
    Label Studio when it is configured (suspects first), otherwise the model approves what it
    is sure of and the suspects are held back."""
    review = "curated" if get_settings().review.label_studio_url else "auto"
    hyper = {"epochs": opts.epochs, "views": opts.views, "lr": opts.lr}
    return FlowRequest(
        crawls=tuple((slug, source) for slug, _latin, _folder in chosen
                     for source in opts.sources),
        limit=opts.limit, review=review,
        args={"curate": {"folds": opts.folds},
              "auto_accept": {"threshold": opts.auto_accept},
              "review_push": {"auto_accept": opts.auto_accept},
              "dataset_create": {"min_per_class": 2},
              "predict": {"status": [ImageStatus.UNIQUE, ImageStatus.IN_REVIEW]}},
        runs=({"arch": opts.arch, "weights": opts.weights, "mode": "frozen",
               "hyper": hyper},),
    )


class DemoBars:
    """The demo's progress: one bar over all crawls, one for the training run."""

    def __init__(self, progress: Any, crawls: int) -> None:
        self.progress = progress
        self.crawling = progress.add_task("crawling", total=crawls)
        self.training: Any = None

    def step(self, ctx: Any, stage: str, done: int, total: int) -> None:
        if ctx.kind != "train" or stage not in ("features", "epoch"):
            return
        if self.training is None:
            self.training = self.progress.add_task("training", total=None)
        self.progress.update(self.training, total=total, completed=done,
                             description=f"train ({ctx.args.get('arch')}, fast path): {stage}")

    def row(self, job: Job) -> None:
        if job.kind == "crawl" and job.state in JobState.FINISHED:
            a = job.args
            self.progress.update(self.crawling, advance=1,
                                 description=f"crawl {a['species']} · {a['source']}")


def run_demo(opts: DemoOptions, say: Say, progress: Any) -> DemoSummary:
    """Every stage of the flow in order, as jobs; ``progress`` is a rich Progress the stages
    report to."""
    from pipeline.jobs.flow import STAGE_NAMES, run_flow

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
    say(f"catalog: {settings.resolved_database_url} · images: {settings.image_dir} · "
        f"jobs {where_jobs_run()}")
    lap("setup")

    req = demo_request(chosen, opts)
    bars = DemoBars(progress, len(req.crawls))
    with demo_site(chosen) as site:
        say(f"demo site: {site.base_url} serving {len(chosen)} species from {opts.fishdata}")
        # each crawl job carries the site's address: the spiders find it wherever they run
        req = replace(req, crawl_env=site.env())
        done = run_flow(req, STAGE_NAMES[:1], listener=bars.step, watch=bars.row)
    lap("crawl")
    for job in done["crawl"]:
        if job.state == JobState.SUCCEEDED:
            summary.crawl_jobs += 1
        else:
            summary.crawl_failures.append(
                f"{job.args['species']} {job.args['source']}: {first_line(job.error)}")

    for stage in STAGE_NAMES[1:]:
        done.update(run_flow(req, (stage,), listener=bars.step, watch=bars.row, done=done))
        report_stage(stage, done, summary, say)
        lap(stage)
    with session_scope() as session:
        stage_counts(session, summary)
    summary.run = run_info(done["train"][-1].result["run_id"])
    return summary


def report_stage(stage: str, done: Done, summary: DemoSummary, say: Say) -> None:
    """One line about a stage that finished, from its jobs' results."""
    results = [job.result or {} for job in done.get(stage, [])]
    if stage == "dedupe":
        r = results[-1]
        summary.duplicates = r["duplicates"]
        say(f"dedupe: {r['pixel_pairs']} identical-pixel and {r['near_pairs']} near pairs; "
            f"{r['duplicates']} duplicates in {r['groups']} groups")
    elif stage == "curate":
        summary.curation = results[-1]
        with session_scope() as session:
            summary.accuracy["before"] = first_pass_accuracy(session, summary.curation["run_id"])
        c = summary.curation
        say(f"curate: run {c['run_id']}: {c['pool']} images, {c['suspects']} suspects "
            f"({', '.join(f'{k} {v}' for k, v in c['reasons'].items()) or 'none'}), "
            f"{c['copies_linked']} copies linked; gallery {c['gallery']}")
    elif stage == "review":
        with session_scope() as session:
            summary.held_back = held_back(session, summary.curation.get("run_id"))
        summary.review = review_summary(done["review"], summary.held_back)
        say(f"review: {summary.review}")
    elif stage == "train":
        run = results[-1]
        summary.accuracy["after"] = {
            "what": f"run {run['run_id']} trained on version {summary.version.get('name')}, "
                    "best validation accuracy", "accuracy": run["best_val_accuracy"],
            "images": summary.version.get("val")}
    elif stage == "predict":
        summary.predicted = {"run": done["predict"][-1].args["run"],
                             "images": results[-1]["predicted"],
                             "failed": len(results[-1]["failed"])}
    elif stage == "dataset":
        with session_scope() as session:
            version = session.get_one(DatasetVersion, results[-1]["version"])
            summary.version = {"name": version.name, "classes": len(version.classes),
                               "items": version.n_items, "train": version.n_train,
                               "val": version.n_val, "manifest_sha256": version.manifest_sha256}
        v = summary.version
        say(f"dataset: version {v['name']}: {v['items']} images, {v['classes']} classes, "
            f"{v['train']} train / {v['val']} val")


def review_summary(jobs: list[Job], held: dict[str, Any]) -> str:
    by_kind = {job.kind: job.result or {} for job in jobs}
    suspects = held.get("suspects", 0)
    if "review_push" not in by_kind:
        a = by_kind.get("auto_accept", {})
        rest = by_kind.get("approve_unsuspected", {}).get("approved", 0)
        return (f"no Label Studio configured (SHOAL_LABEL_STUDIO_URL unset): "
                f"{a.get('approved', 0)} images APPROVED BY THE MODEL (curation run "
                f"{a.get('curation_run_id')}: the crawl keyword is the out-of-fold top species "
                f"with probability >= {a.get('threshold')}, nothing suspect; recorded as decided "
                f"by the model, see `shoal review status`); {rest} more that curation found "
                f"nothing wrong with approved under their crawl keyword; {suspects} suspects "
                "held back for a person")
    push = by_kind["review_push"]
    accepted = (push.get("auto_accepted") or {}).get("approved", 0)
    url = get_settings().review.label_studio_url
    return (f"Label Studio at {url}: {push.get('pushed')} tasks pushed, suspects first "
            f"({push.get('order')} order), annotations pulled; {accepted} images APPROVED BY "
            f"THE MODEL (recorded as its decision); {suspects} suspects held back, the rest "
            "wait for a person")


def first_pass_accuracy(session: Session, run_id: int) -> dict[str, Any]:
    """How often the out-of-fold top species agrees with the crawl keyword."""
    rows = session.execute(select(ImageSuspicion.given_label, ImageSuspicion.suggested_label)
                           .where(ImageSuspicion.run_id == run_id,
                                  ImageSuspicion.given_probability.is_not(None))).all()
    agree = sum(given == suggested for given, suggested in rows)
    return {"what": "first pass: out-of-fold logistic heads on the frozen backbone, against "
                    "the crawl keywords, every pool image",
            "accuracy": round(agree / len(rows), 4) if rows else None, "images": len(rows)}


def held_back(session: Session, run_id: int | None) -> dict[str, Any]:
    """The suspects of the curation run that are not in the dataset: how many and why."""
    from collections import Counter

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


def run_info(run_id: int) -> dict[str, Any]:
    from trainer.report import write_report
    from trainer.runs import get_run, run_summary

    with session_scope() as session:
        run = get_run(session, run_id)
        info = run_summary(session, run)
        info["tensorboard_dir"] = run.tensorboard_dir
        info["report"] = str(write_report(session, run_id))
    return info
