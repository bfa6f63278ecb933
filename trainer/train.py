"""Run one training run end to end and write everything back to the catalog: per-epoch rows
as each epoch ends, TensorBoard scalars, checkpoints (best and last), per-class metrics and the
confusion matrix; a failure is recorded on the run with its reason."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from sqlalchemy import delete
from torch.utils.tensorboard import SummaryWriter

from catalog.db import session_scope
from catalog.models import ClassMetric, EpochMetric, JobState, TrainingRun, utcnow
from catalog.settings import get_settings
from catalog.store import ImageStore
from trainer.checkpoint import link_as, load_checkpoint, save_checkpoint
from trainer.data import DatasetSource, check_source, load_source
from trainer.errors import TrainingError
from trainer.features import JoinedFeatures, ViewFeatures, resolve_precision, torch_threads
from trainer.loops import EvalStats, FeatureLoop, ImageLoop, class_weights
from trainer.metrics import class_scores, confusion_matrix, plot_confusion
from trainer.model import ShoalNet, build_model, head_input, layer_names, set_mode
from trainer.registry import get_arch, weight_files
from trainer.runs import get_run, loader_workers, run_dir
from trainer.transforms import presets

Progress = Callable[[str, int, int], None]


def weights_id(arch: str, weights: str, seed: int) -> str:
    """What identifies a backbone's weights, for the feature-cache key."""
    if weights == "imagenet":
        return "imagenet:" + "+".join(f.name for f in weight_files(get_arch(arch)))
    if weights == "none":
        return f"none:seed={seed}"  # a random backbone is a function of the seed
    path = Path(weights)
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else weights
    return f"file:{digest}"


@dataclass
class Plan:
    """Everything a run needs, resolved once from its row."""

    run_id: int
    arch: str
    mode: str
    weights: str
    hyper: dict[str, Any]
    source: DatasetSource
    out: Path

    @property
    def fast(self) -> bool:
        return self.mode == "frozen" and bool(self.hyper.get("fast", True))


def _mark(run_id: int, **values: Any) -> None:
    with session_scope() as session:
        run = get_run(session, run_id)
        for key, value in values.items():
            setattr(run, key, value)


def _plan(run_id: int) -> Plan:
    settings = get_settings()
    with session_scope() as session:
        run = get_run(session, run_id)
        dataset: str | int | Path = (
            Path(run.dataset_path) if run.dataset_path else int(run.dataset_version_id or 0)
        )
        source = load_source(session, dataset, ImageStore(settings.image_dir))
        plan = Plan(run.id, run.arch, run.mode, run.weights, dict(run.hyperparams or {}),
                    source, run_dir(run.id))
    check_source(plan.source)
    return plan


def train_run(run_id: int, *, progress: Progress | None = None) -> TrainingRun:
    """Train (or resume) run ``run_id``; returns the finished row. Raises TrainingError after
    recording it on the run when the input is bad or the loss diverges."""
    _mark(run_id, state=JobState.RUNNING, error=None, started_at=utcnow(),
          finished_at=None, host=socket.gethostname())
    try:
        with torch_threads(get_settings().train.threads):
            _train(_plan(run_id), progress)
    except Exception as exc:
        reason = str(exc) if isinstance(exc, TrainingError) else f"{type(exc).__name__}: {exc}"
        _mark(run_id, state=JobState.FAILED, error=reason, finished_at=utcnow())
        raise
    with session_scope() as session:
        return get_run(session, run_id)


def _resume_state(plan: Plan, model: ShoalNet, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    with session_scope() as session:
        last = get_run(session, plan.run_id).checkpoint_path
    if not last or not Path(last).is_file():
        return {"epoch": 0, "seconds": 0.0, "best_accuracy": None, "best_epoch": None,
                "best_confusion": None}
    ckpt = load_checkpoint(last, plan.arch)
    if ckpt["classes"] != plan.source.classes:
        raise TrainingError(f"checkpoint {last} was trained on other classes: cannot resume")
    if ckpt["dataset"]["manifest_sha256"] != plan.source.manifest_sha256:
        raise TrainingError(f"checkpoint {last} was trained on another dataset: cannot resume")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    return ckpt["progress"]


def fast_features(arch: str, weights: str, hyper: dict[str, Any], train_tf, eval_tf,  # type: ignore[no-untyped-def]
                  ) -> ViewFeatures | JoinedFeatures:
    """The fast path's cached views for a backbone, a pair of transforms and the recipe's
    feature layers. An ensemble's are its members' own caches, joined: a member's features
    are computed once whether it runs alone or in an ensemble."""
    precision = resolve_precision(str(hyper.get("precision", "auto")))
    layers, norm = head_input(hyper)
    spec = get_arch(arch)
    root, wid = get_settings().data_dir / "features", weights_id(arch, weights, int(hyper["seed"]))
    if not spec.members:
        return ViewFeatures(root, arch, wid, train_tf, eval_tf, precision,
                            layer_names(spec, layers), norm)
    layer_names(spec, layers)  # an ensemble has one feature layer: refuse more
    # ImageNet members are the members' own weights; any other weights (random, a file) are
    # the ensemble's, so each member's cache is keyed by them and its place in the ensemble
    return JoinedFeatures([
        (member, ViewFeatures(root, member, weights_id(member, weights, 0)
                              if weights == "imagenet" else f"{wid}:{member}",
                              train_tf, eval_tf, precision))
        for member in spec.members], norm)


def _fast_loop(plan: Plan, model: ShoalNet, optimizer, train_tf, eval_tf, progress):  # type: ignore[no-untyped-def]
    hyper, src = plan.hyper, plan.source
    features = fast_features(plan.arch, plan.weights, hyper, train_tf, eval_tf)
    views = int(hyper.get("views", 1))
    features.fill(model, src.train, src.val, views, progress=progress,
                  workers=loader_workers(hyper))
    labels = torch.tensor([r.label for r in src.train])
    return FeatureLoop(
        model.head, optimizer, features.pool(src.train, views), labels,
        features.evaluation(src.val), torch.tensor([r.label for r in src.val]),
        int(hyper["batch_size"]), int(hyper["seed"]),
        float(hyper.get("label_smoothing", 0.0)), _class_weight(hyper, labels, src.classes),
    ), {"feature_cache": features.keys, "precision": features.precision}


def _class_weight(hyper: dict[str, Any], labels: torch.Tensor,
                  classes: list[str]) -> torch.Tensor | None:
    return class_weights(labels, len(classes), str(hyper.get("class_weight", "none")))


def _train(plan: Plan, progress: Progress | None) -> None:
    hyper, src = plan.hyper, plan.source
    seed = int(hyper["seed"])
    arch = get_arch(plan.arch)
    model = build_model(plan.arch, len(src.classes), plan.weights, seed, *head_input(hyper))
    params = set_mode(model, plan.mode)
    optimizer = torch.optim.Adam(params, lr=float(hyper["lr"]),
                                 weight_decay=float(hyper.get("weight_decay", 0.0)))
    state = _resume_state(plan, model, optimizer)
    train_tf, eval_tf = presets(arch.mean, arch.std, hyper)
    started = time.perf_counter()
    if plan.fast:
        loop, extra = _fast_loop(plan, model, optimizer, train_tf, eval_tf, progress)
    else:
        loop, extra = ImageLoop(
            model, optimizer, plan.mode, src.train, src.val, train_tf, eval_tf,
            int(hyper["batch_size"]), seed, loader_workers(hyper),
            float(hyper.get("label_smoothing", 0.0)),
            _class_weight(hyper, torch.tensor([r.label for r in src.train]), src.classes),
        ), {}
    seconds = state["seconds"] + time.perf_counter() - started
    meta = {
        "arch": plan.arch, "classes": src.classes, "mode": plan.mode, "weights": plan.weights,
        "hyperparams": hyper, "transforms": {"train": train_tf.spec, "eval": eval_tf.spec},
        "dataset": {"version_id": src.version_id, "name": src.name, "path": src.path,
                    "manifest_sha256": src.manifest_sha256},
        **extra,
    }
    writer = SummaryWriter(str(plan.out / "tensorboard"), purge_step=state["epoch"] + 1)
    _mark(plan.run_id, classes=src.classes, tensorboard_dir=str(plan.out / "tensorboard"))
    epochs = int(hyper["epochs"])
    # checkpoints are written at most every `checkpoint_seconds` and after the last epoch;
    # the best model waits in memory until then
    every, last_saved = float(hyper.get("checkpoint_seconds", 60)), time.perf_counter()
    best_model: dict[str, torch.Tensor] | None = None
    try:
        for epoch in range(state["epoch"] + 1, epochs + 1):
            tick = time.perf_counter()
            stats = loop.train_epoch(epoch, progress)
            val = loop.evaluate()
            took = time.perf_counter() - tick
            seconds += took
            lr = optimizer.param_groups[0]["lr"]
            for tag, value in (("loss/train", stats.loss), ("loss/val", val.loss),
                               ("accuracy/train", stats.accuracy),
                               ("accuracy/val", val.accuracy), ("lr", lr)):
                writer.add_scalar(tag, value, epoch)
            writer.flush()
            improved = state["best_accuracy"] is None or val.accuracy > state["best_accuracy"]
            if improved:
                state.update(best_accuracy=val.accuracy, best_epoch=epoch,
                             best_confusion=_confusion(val, len(src.classes)))
                best_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
            state.update(epoch=epoch, seconds=seconds)
            saved = None
            if epoch == epochs or time.perf_counter() - last_saved >= every:
                saved = _save(plan, meta, state, model, optimizer, best_model, improved)
                best_model, last_saved = None, time.perf_counter()
            _record_epoch(plan.run_id, epoch, stats, val, lr, took, state, saved)
            if progress:
                progress("epoch", epoch, epochs)
    finally:
        writer.close()
    _finish(plan, state)


def _confusion(val: EvalStats, n: int) -> list[list[int]]:
    return confusion_matrix(val.targets, val.preds, n).tolist()


def _save(plan, meta, state, model, optimizer, best_model, improved) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    last = save_checkpoint(plan.out / "last.pt", {
        **meta, "epoch": state["epoch"], "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "progress": dict(state),
    })
    best = plan.out / "best.pt"
    if improved:
        link_as(last, best)
    elif best_model is not None:
        save_checkpoint(best, {**meta, "epoch": state["best_epoch"], "model": best_model})
    return last, best


def _record_epoch(run_id, epoch, stats, val, lr, took, state, saved) -> None:  # type: ignore[no-untyped-def]
    with session_scope() as session:
        session.execute(delete(EpochMetric).where(EpochMetric.run_id == run_id,
                                                  EpochMetric.epoch == epoch))
        session.add(EpochMetric(run_id=run_id, epoch=epoch, train_loss=stats.loss,
                                train_accuracy=stats.accuracy, val_loss=val.loss,
                                val_accuracy=val.accuracy, lr=lr, seconds=took))
        run = session.get(TrainingRun, run_id)
        if saved is not None:
            run.checkpoint_path, run.best_checkpoint_path = str(saved[0]), str(saved[1])
        run.best_val_accuracy = state["best_accuracy"]
        run.best_epoch = state["best_epoch"]
        run.final_val_loss = val.loss
        run.train_seconds = state["seconds"]


def _finish(plan: Plan, state: dict[str, Any]) -> None:
    confusion = state["best_confusion"]
    classes = plan.source.classes
    plot_confusion(confusion, classes, plan.out / "confusion.png",
                   f"run {plan.run_id}: {plan.arch}, epoch {state['best_epoch']}")
    scores = class_scores(torch.tensor(confusion), classes)
    with session_scope() as session:
        session.execute(delete(ClassMetric).where(ClassMetric.run_id == plan.run_id))
        session.add_all(
            ClassMetric(run_id=plan.run_id, epoch=state["best_epoch"], label=s.label,
                        precision=s.precision, recall=s.recall, f1=s.f1, support=s.support)
            for s in scores
        )
        run = session.get(TrainingRun, plan.run_id)
        run.confusion = confusion
        run.state = JobState.SUCCEEDED
        run.finished_at = utcnow()
