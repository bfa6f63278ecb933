"""`shoal curate`: the model's first pass over the pool, written to the catalog.

1. embed the pool with a frozen backbone (cached: ``trainer.embed``);
2. link flipped and cropped copies, verified by keypoints and aligned pixels, into the
   duplicate groups (``copies``, ``verify``, dedupe's rules);
3. out-of-fold label scores by cleanlab (``label_issues``), folds cut by split key;
4. not a fish (``outliers``) and bad images (``quality``);
5. one ``image_suspicions`` row per pool image (and per linked copy) under a new
   ``curation_runs`` row, unless a run over the same input exists: then nothing is written.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.limits import limits_from_settings
from catalog.models import CurationRun, DuplicateLink, Image, ImageSuspicion
from pipeline.curate.copies import (
    DEFAULT_THRESHOLD,
    NEIGHBOURS,
    copy_pairs,
    neighbours,
    verified_pairs,
)
from pipeline.curate.label_issues import (
    DEFAULT_FOLDS,
    assign_folds,
    out_of_fold,
    score_labels,
)
from pipeline.curate.outliers import K, outliers
from pipeline.curate.pool import Pool, load_pool
from pipeline.curate.quality import NOTED_ONLY, quality_flags
from pipeline.curate.suspects import COPY, LABEL, NOT_A_FISH, get_run, reason_counts
from pipeline.dedupe.grouping import FEATURES, link_pairs
from pipeline.errors import UsageError

Progress = Callable[[str, int, int], None]

NOT_A_FISH_CHOICE, BAD_IMAGE_CHOICE = "not-a-fish", "bad-image"  # labeling.config's verdicts
QUALITY_SCORE = 0.5  # a bad image alone: below a sure label error or a sure outlier
# a flagged outlier goes before the label suspects: on web-20 with skimage's photographs its
# flag was right 17 times in 19, a label flag about 1 in 4 (benchmarks/curate.py)
NOT_A_FISH_FLOOR = 0.99


@dataclass
class CurateOptions:
    folds: int = DEFAULT_FOLDS
    copy_threshold: float = DEFAULT_THRESHOLD
    arch: str = "efficientnet_lite0"
    weights: str = "imagenet"
    model_run_id: int | None = None  # take arch, weights and eval framing from this run
    species: list[str] | None = None
    quality: bool = True
    ensemble: bool = True  # label scores on trainer.embed.ENSEMBLE's features, not arch's alone
    seed: int = 0
    hyper: dict[str, Any] = field(default_factory=dict)

    def params(self) -> dict[str, Any]:
        return {"folds": self.folds, "copy_threshold": self.copy_threshold, "arch": self.arch,
                "weights": self.weights, "model_run_id": self.model_run_id,
                "species": sorted(self.species or []), "quality": self.quality,
                "ensemble": self.ensemble,
                "seed": self.seed, "hyper": self.hyper}


@dataclass
class CurateReport:
    run_id: int
    reused: bool
    pool: int
    judged: int
    suspects: int
    reasons: dict[str, int]
    copies_linked: int
    failed: list[dict[str, Any]]
    seconds: float
    gallery: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 2)}


def backbone(session: Session, opts: CurateOptions) -> CurateOptions:
    """The options with the model run's backbone and eval framing, when one is named."""
    if opts.model_run_id is None:
        return opts
    from trainer.errors import TrainingError
    from trainer.runs import get_run

    try:
        run = get_run(session, opts.model_run_id)
    except TrainingError as exc:
        raise UsageError(str(exc)) from exc
    if run.mode != "frozen":
        raise UsageError(f"run {run.id} trained its backbone ({run.mode}): curation reads a "
                         "frozen backbone's cached features; name a frozen run")
    keep = ("image_size", "crop_ratio", "eval_fit", "precision", "seed")
    hyper = {k: v for k, v in (run.hyperparams or {}).items() if k in keep}
    return CurateOptions(**{**asdict(opts), "arch": run.arch, "weights": run.weights,
                            "hyper": hyper})


def input_hash(pool: Pool, copies: list[tuple[str, str]], params: dict[str, Any]) -> str:
    blob = json.dumps({"pool": sorted(zip(pool.sha256, pool.labels, pool.keys, strict=True)),
                       "copies": sorted(copies), "params": params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def feature_copies(session: Session) -> list[tuple[int, int, str, str]]:
    """(copy image id, canonical id, their sha256s) of every link curation made."""
    rows = session.execute(
        select(DuplicateLink.image_id, DuplicateLink.canonical_id)
        .where(DuplicateLink.method == FEATURES).order_by(DuplicateLink.image_id)).all()
    ids = {i for row in rows for i in row}
    sha = dict(session.execute(select(Image.id, Image.sha256).where(Image.id.in_(ids))).all()) \
        if ids else {}
    return [(a, b, sha[a], sha[b]) for a, b in rows]


def curate(session: Session, opts: CurateOptions | None = None,
           progress: Progress | None = None, job_id: int | None = None) -> CurateReport:
    from trainer.embed import embed, ensemble_features, imagenet_fish_probability
    from trainer.errors import TrainingError

    started = time.perf_counter()
    opts = backbone(session, opts or CurateOptions())
    step = progress or (lambda _s, _d, _t: None)
    pool = load_pool(session, opts.species)
    if not len(pool):
        raise UsageError("nothing to curate: no unique, in-review or approved image with a "
                         "species and a stored file")
    assign_folds(pool.keys, opts.folds)  # a pool too small fails before any work
    hyper = {**opts.hyper, "seed": opts.seed}
    emb = embed(pool.records(), opts.arch, opts.weights, hyper, progress=step)
    failed = [{"image_id": r.image_id, "reason": why} for r, why in emb.failed]
    vectors = emb.mirror_invariant()
    ids = [int(r.image_id or 0) for r in emb.records]
    row_of = {image_id: i for i, image_id in enumerate(ids)}

    sims, pos = neighbours(vectors, NEIGHBOURS)
    candidates = copy_pairs(sims, pos, opts.copy_threshold)
    step("copies", 0, len(candidates))
    pairs, compared = verified_pairs(candidates, [r.path for r in emb.records],
                                     limits_from_settings().max_pixels)
    verified = {frozenset((ids[p.a], ids[p.b])): p for p in pairs}
    linked = link_pairs(session, [(ids[p.a], ids[p.b]) for p in pairs]) if pairs else None
    session.flush()
    step("copies", compared, len(candidates))

    pool = load_pool(session, opts.species)  # the copies are duplicates now: out of the pool
    keep = [i for i, image_id in enumerate(pool.image_ids) if image_id in row_of]
    pool = pool.subset(keep)
    copies = feature_copies(session)
    digest = input_hash(pool, [(c, o) for _, _, c, o in copies], opts.params())
    existing = session.scalar(select(CurationRun).where(CurationRun.input_sha256 == digest))
    if existing is not None:
        return report_of(session, existing, True, time.perf_counter() - started)

    rows = [row_of[i] for i in pool.image_ids]
    x = vectors[rows]
    records = [emb.records[r] for r in rows]
    try:
        label_x = ensemble_features(records, opts.hyper, step) if opts.ensemble else x
    except TrainingError as exc:
        raise UsageError(str(exc)) from exc
    step("label scores", 0, opts.folds)
    oof = out_of_fold(label_x, pool.labels, pool.keys, opts.folds, opts.seed)
    labels = score_labels(oof, pool.labels)
    step("label scores", opts.folds, opts.folds)
    step("outliers", 0, 1)
    pool_sims, _ = neighbours(x, K)
    fish = imagenet_fish_probability(emb.views[rows], opts.arch)
    odd = outliers(pool_sims, fish)
    step("outliers", 1, 1)
    step("quality", 0, 1)
    quality = quality_flags(pool.paths) if opts.quality else None
    step("quality", 1, 1)

    run = CurationRun(input_sha256=digest, model_run_id=opts.model_run_id,
                      params=opts.params(), job_id=job_id)
    session.add(run)
    session.flush()
    suspicions = []
    odd_score = odd.score()
    for i, image_id in enumerate(pool.image_ids):
        reasons: list[str] = []
        given_p = labels.given_probability[i]
        label_score = 0.0 if np.isnan(labels.quality[i]) else 1 - float(labels.quality[i])
        score = label_score
        suggested = labels.suggested[i]
        if labels.issue[i] and suggested != pool.labels[i]:
            reasons.append(LABEL)
        if odd.flagged[i]:
            reasons.append(NOT_A_FISH)
            score = max(score, NOT_A_FISH_FLOOR + (1 - NOT_A_FISH_FLOOR) * float(odd_score[i]))
            suggested = NOT_A_FISH_CHOICE
        flags = quality.reasons[i] if quality else []
        bad = [f for f in flags if f not in NOTED_ONLY]
        if bad:
            reasons += bad
            score = max(score, QUALITY_SCORE)
            if suggested == pool.labels[i]:
                suggested = BAD_IMAGE_CHOICE
        details: dict[str, Any] = {
            "fold": int(oof.folds[i]), "outlier_z": round(float(odd.z[i]), 3),
            "imagenet_fish": round(float(fish[i]), 4), "quality_flags": flags}
        if not oof.judged[i]:
            details["label"] = "not judged: its species has fewer than 2 images in the pool"
        suspicions.append(ImageSuspicion(
            run_id=run.id, image_id=int(image_id), suspect=bool(reasons),
            score=round(score, 6), reasons=reasons, given_label=pool.labels[i],
            suggested_label=suggested,
            suggested_probability=round(float(labels.suggested_probability[i]), 6),
            given_probability=None if np.isnan(given_p) else round(float(given_p), 6),
            details=details))
    for copy_id, canonical_id, _, _ in copies:
        if copy_id in row_of or canonical_id in row_of:
            similarity = float(vectors[row_of[copy_id]] @ vectors[row_of[canonical_id]]) \
                if copy_id in row_of and canonical_id in row_of else None
            pair = verified.get(frozenset((copy_id, canonical_id)))
            suspicions.append(ImageSuspicion(
                run_id=run.id, image_id=copy_id, suspect=True, score=1.0, reasons=[COPY],
                details={"copy_of": canonical_id, "similarity":
                         None if similarity is None else round(similarity, 4),
                         "verified": pair.agreement.as_dict() if pair else None}))
    session.add_all(suspicions)
    run.stats = {"pool": len(pool), "judged": int(oof.judged.sum()),
                 "copies_linked": linked.links_written if linked else 0,
                 "copy_candidates": len(candidates), "copy_pairs": len(pairs),
                 "failed": failed,
                 "seconds": round(time.perf_counter() - started, 2)}
    session.flush()
    return report_of(session, run, False, time.perf_counter() - started)


def report_of(session: Session, run: CurationRun, reused: bool, seconds: float) -> CurateReport:
    suspects, reasons = reason_counts(session, run.id)
    stats = run.stats or {}
    return CurateReport(run.id, reused, stats.get("pool", 0), stats.get("judged", 0), suspects,
                        reasons, stats.get("copies_linked", 0), stats.get("failed", []),
                        seconds, run.gallery_path)


def latest_run(session: Session) -> CurationRun | None:
    return get_run(session, None)
