"""Training runs in the catalog: create one with the study's recipe as defaults, find one,
and summarise runs as the study's comparison table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from catalog.models import (
    ClassMetric,
    DatasetVersion,
    EpochMetric,
    JobState,
    RunPromotion,
    TrainingRun,
)
from catalog.settings import get_settings
from trainer.data import get_dataset_version
from trainer.errors import TrainingError
from trainer.loops import CLASS_WEIGHTS
from trainer.metrics import accuracy_interval
from trainer.model import MODES, check_feature_norm, layer_names
from trainer.registry import get_arch
from trainer.transforms import FITS, TTAS

# The study's recipe: new FC head on a frozen base, Adam lr 1e-4, batch 16, 10 epochs, 224 px.
RECIPE: dict[str, Any] = {
    "epochs": 10,
    "lr": 1e-4,
    "batch_size": 16,
    "weight_decay": 0.0,
    "seed": 0,
    "image_size": 224,
    "crop_ratio": 0.875,  # eval "crop": crop size / short side (224 of 256)
    "eval_fit": "crop",  # eval: "crop" (resize + centre crop) or "whole" (the whole image)
    "tta": "none",  # eval and predict: "none", "hflip" (mean of the image and its mirror) or
    # "crops" (mean over the mirror pair and ten crops)
    "label_smoothing": 0.0,
    "class_weight": "none",  # "balanced": the loss weighs each class by 1 / its image count
    "min_scale": 0.08,  # training augmentation: smallest area of a random resized crop
    "jitter": 0.4,  # training augmentation: colour jitter strength
    "views": 1,  # fast path: view 0 is the clean centre crop, 1..n-1 augmented copies
    "feature_layers": 1,  # the head's input: the pooled output, plus the last n-1 stages'
    "feature_norm": "none",  # "l2": each feature layer scaled to unit RMS before the head
    "fast": True,  # frozen mode trains the head on cached features
    "precision": "auto",  # feature extraction: bf16 where the CPU has native support
    "workers": None,  # image decoding processes (None: SHOAL_TRAIN_WORKERS, written on the run)
    "checkpoint_seconds": 60,  # write checkpoints at most this often (and after the last epoch)
}


def loader_workers(hyper: dict[str, Any]) -> int:
    """The recipe's data-loading processes, else ``SHOAL_TRAIN_WORKERS``."""
    given = hyper.get("workers")
    return int(given) if given is not None else get_settings().train.workers


def run_dir(run_id: int) -> Path:
    return get_settings().data_dir / "runs" / str(run_id)


def create_run(
    session: Session,
    *,
    dataset: str | int | Path,
    arch: str,
    weights: str = "imagenet",
    mode: str = "frozen",
    **hyper: Any,
) -> TrainingRun:
    get_arch(arch)
    if mode not in MODES:
        raise TrainingError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
    unknown = sorted(set(hyper) - set(RECIPE))
    if unknown:
        raise TrainingError(f"unknown hyperparameter(s): {', '.join(unknown)}")
    params = {**RECIPE, **{k: v for k, v in hyper.items() if v is not None}}
    params["workers"] = loader_workers(params)  # written on the run, whatever it was
    if int(params["epochs"]) < 1 or int(params["batch_size"]) < 1 or int(params["views"]) < 1:
        raise TrainingError("epochs, batch size and views must be at least 1")
    if not float(params["lr"]) > 0:
        raise TrainingError(f"learning rate must be positive, not {params['lr']}")
    if params["eval_fit"] not in FITS:
        raise TrainingError(f"eval fit must be one of {', '.join(FITS)}, not "
                            f"{params['eval_fit']!r}")
    if params["tta"] not in TTAS:
        raise TrainingError(f"tta must be one of {', '.join(TTAS)}, not {params['tta']!r}")
    if not 0 < float(params["crop_ratio"]) <= 1 or not 0 < float(params["min_scale"]) <= 1:
        raise TrainingError("crop ratio and min scale must be in (0, 1]")
    layer_names(get_arch(arch), params["feature_layers"])  # refuses a count the arch lacks
    check_feature_norm(params["feature_norm"])
    if params["class_weight"] not in CLASS_WEIGHTS:
        raise TrainingError(f"class weight must be one of {', '.join(CLASS_WEIGHTS)}, not "
                            f"{params['class_weight']!r}")
    if not 0 <= float(params["label_smoothing"]) < 1:
        raise TrainingError("label smoothing must be in [0, 1)")
    run = TrainingRun(arch=arch, weights=str(weights), mode=mode, hyperparams=params,
                      state=JobState.QUEUED)
    if isinstance(dataset, Path) or (isinstance(dataset, str) and Path(dataset).is_dir()):
        run.dataset_path = str(Path(dataset).resolve())
    else:
        version = get_dataset_version(session, dataset)
        run.dataset_version_id = version.id
    session.add(run)
    session.flush()
    return run


def get_run(session: Session, run_id: int) -> TrainingRun:
    run = session.get(TrainingRun, int(run_id))
    if run is None:
        raise TrainingError(f"no training run {run_id}")
    return run


def epochs_done(session: Session, run_id: int) -> int:
    return session.scalar(
        select(func.coalesce(func.max(EpochMetric.epoch), 0)).where(EpochMetric.run_id == run_id)
    ) or 0


def run_summary(session: Session, run: TrainingRun) -> dict[str, Any]:
    """One row of the study's table: architecture, epochs, best val accuracy, final val loss,
    training time."""
    dataset = run.dataset_path
    if run.dataset_version_id is not None:
        version = session.get(DatasetVersion, run.dataset_version_id)
        dataset = version.name if version else str(run.dataset_version_id)
    hyper = run.hyperparams or {}
    last = session.scalar(select(EpochMetric.val_accuracy).where(EpochMetric.run_id == run.id)
                          .order_by(EpochMetric.epoch.desc()).limit(1))
    n_val = sum(sum(row) for row in run.confusion) if run.confusion else 0
    interval = accuracy_interval(round(last * n_val), n_val) if last is not None and n_val else None
    return {
        "id": run.id,
        "arch": run.arch,
        "mode": run.mode,
        "weights": run.weights,
        "dataset": dataset,
        "state": run.state,
        "epochs": epochs_done(session, run.id),
        "epochs_planned": hyper.get("epochs"),
        "lr": hyper.get("lr"),
        "views": hyper.get("views"),
        # the last epoch's, scored once: the best epoch's figure peeks at validation
        "val_accuracy": last,
        "val_interval": [round(x, 4) for x in interval] if interval else None,
        "n_val": n_val,
        "best_val_accuracy": run.best_val_accuracy,
        "best_epoch": run.best_epoch,
        "final_val_loss": run.final_val_loss,
        "train_seconds": run.train_seconds,
        "error": run.error,
        "created_at": run.created_at,
    }


def resume_run(session: Session, run_id: int, epochs: int | None = None) -> TrainingRun:
    """Ready a run to train again from its last checkpoint (``epochs``: train it further)."""
    run = get_run(session, run_id)
    if epochs:
        run.hyperparams = {**run.hyperparams, "epochs": epochs}
    run.state = JobState.QUEUED  # a queue worker skips runs that already succeeded
    return run


def list_runs(session: Session, limit: int = 50) -> list[dict[str, Any]]:
    """The newest runs first, as rows of the study's table."""
    runs = session.scalars(select(TrainingRun).order_by(TrainingRun.id.desc()).limit(limit))
    return [run_summary(session, r) for r in runs]


def run_detail(session: Session, run_id: int) -> dict[str, Any]:
    """One run: its summary, settings, every epoch, per-class metrics and confusion matrix."""
    run = get_run(session, run_id)
    data = run_summary(session, run)
    data["hyperparams"] = run.hyperparams
    data["classes"] = run.classes
    data["confusion"] = run.confusion
    data["checkpoint"] = run.best_checkpoint_path
    data["tensorboard"] = run.tensorboard_dir
    data["epoch_metrics"] = [
        {"epoch": m.epoch, "train_loss": m.train_loss, "train_accuracy": m.train_accuracy,
         "val_loss": m.val_loss, "val_accuracy": m.val_accuracy, "lr": m.lr,
         "seconds": m.seconds}
        for m in session.scalars(select(EpochMetric).where(EpochMetric.run_id == run.id)
                                 .order_by(EpochMetric.epoch))
    ]
    data["class_metrics"] = [
        {"label": c.label, "precision": c.precision, "recall": c.recall, "f1": c.f1,
         "support": c.support}
        for c in session.scalars(select(ClassMetric).where(ClassMetric.run_id == run.id)
                                 .order_by(ClassMetric.label))
    ]
    return data


def compare_runs(session: Session, run_ids: list[int] | None = None) -> list[dict[str, Any]]:
    """Runs side by side, best validation accuracy first (default: every scored run)."""
    query = select(TrainingRun)
    query = (query.where(TrainingRun.id.in_(run_ids)) if run_ids
             else query.where(TrainingRun.best_val_accuracy.is_not(None)))
    rows = [run_summary(session, r) for r in session.scalars(query)]
    missing = sorted(set(run_ids or []) - {r["id"] for r in rows})
    if missing:
        raise TrainingError(f"no training run(s) {', '.join(map(str, missing))}")
    rows.sort(key=lambda r: -(r["best_val_accuracy"] or 0.0))
    return rows


def promote_run(session: Session, run_id: int, note: str | None = None) -> RunPromotion:
    """Pin a succeeded run with a checkpoint as the one that serves predictions."""
    run = get_run(session, run_id)
    if run.state != JobState.SUCCEEDED or not (run.best_checkpoint_path or run.checkpoint_path):
        raise TrainingError(f"run {run_id} cannot serve: it is {run.state} and needs a "
                            "checkpoint (only a succeeded run can be promoted)")
    row = RunPromotion(run_id=run.id, note=note)
    session.add(row)
    session.flush()
    return row


def promoted_run_id(session: Session) -> int | None:
    return session.scalar(select(RunPromotion.run_id).order_by(RunPromotion.id.desc()).limit(1))


def serving_run(session: Session) -> TrainingRun:
    """The run predictions come from: the latest promoted one, else the succeeded run with the
    best validation accuracy (the newest of equals)."""
    pinned = promoted_run_id(session)
    if pinned is not None:
        return get_run(session, pinned)
    best = session.scalars(
        select(TrainingRun)
        .where(TrainingRun.state == JobState.SUCCEEDED,
               TrainingRun.best_val_accuracy.is_not(None))
        .order_by(TrainingRun.best_val_accuracy.desc(), TrainingRun.id.desc()).limit(1)
    ).first()
    if best is None:
        raise TrainingError("no trained model yet: train one with `shoal train` (or pin one "
                            "with `shoal runs promote R`)")
    return best
