"""Predictions from a trained run: top-k species for image files, and ``ImagePrediction`` rows
(top label, confidence and the top k) for catalog images, which review uses to order by
uncertainty. A run of the fast path (frozen base, cached features) predicts catalog images
through the feature cache: the backbone's views are computed once, and again never."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.models import Image as ImageRow
from catalog.models import ImagePrediction, utcnow
from catalog.settings import get_settings
from catalog.store import ImageStore, file_sha256
from trainer.checkpoint import load_checkpoint
from trainer.data import Record, open_rgb
from trainer.errors import TrainingError
from trainer.model import ShoalNet, build_model, head_input
from trainer.registry import get_arch
from trainer.runs import get_run
from trainer.transforms import EvalPreset, presets, tta_logits


@dataclass
class Predictor:
    model: ShoalNet
    classes: list[str]
    transform: EvalPreset

    @classmethod
    def from_checkpoint(cls, path: Path | str) -> Predictor:
        ckpt = load_checkpoint(path)
        layers, norm = head_input(ckpt.get("hyperparams") or {})
        model = build_model(ckpt["arch"], len(ckpt["classes"]), "none", layers=layers, norm=norm)
        model.load_state_dict(ckpt["model"])
        model.eval().to(memory_format=torch.channels_last)
        return cls(model, list(ckpt["classes"]),
                   EvalPreset.from_spec(ckpt["transforms"]["eval"]))

    @classmethod
    def from_run(cls, session: Session, run_id: int) -> Predictor:
        run = get_run(session, run_id)
        path = run.best_checkpoint_path or run.checkpoint_path
        if not path:
            raise TrainingError(f"run {run_id} has no checkpoint yet (state {run.state})")
        return cls.from_checkpoint(path)

    @torch.inference_mode()
    def predict(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        if not tensors:
            return torch.empty(0, len(self.classes))
        # the model's weights are channels_last, so its convolutions run in that layout
        return tta_logits(self.model, torch.stack(list(tensors))).softmax(1)

    def probabilities(self, records: Sequence[Record], batch_size: int = 32) -> torch.Tensor:
        out = [self.predict([self.transform(open_rgb(r)) for r in records[i:i + batch_size]])
               for i in range(0, len(records), batch_size)]
        return torch.cat(out) if out else torch.empty(0, len(self.classes))

    def top_k(self, probs: torch.Tensor, k: int) -> list[list[dict[str, Any]]]:
        values, indices = probs.topk(min(k, len(self.classes)), dim=1)
        return [
            [{"label": self.classes[i], "probability": float(p)}
             for p, i in zip(vs.tolist(), ix.tolist(), strict=True)]
            for vs, ix in zip(values, indices, strict=True)
        ]


def predict_files(
    session: Session, run_id: int, files: Iterable[Path], top_k: int = 3
) -> list[dict[str, Any]]:
    predictor = Predictor.from_run(session, run_id)
    records = []
    for path in files:
        if not Path(path).is_file():
            raise TrainingError(f"no such image file: {path}")
        records.append(Record(Path(path), file_sha256(Path(path)), -1))
    probs = predictor.probabilities(records)
    return [
        {"file": str(r.path), "predictions": preds}
        for r, preds in zip(records, predictor.top_k(probs, top_k), strict=True)
    ]


@dataclass
class PredictionReport:
    run_id: int
    predicted: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "predicted": self.predicted,
                "failed": [{"image_id": i, "reason": r} for i, r in self.failed]}


def cached_probabilities(
    session: Session, run_id: int, predictor: Predictor, records: Sequence[Record]
) -> torch.Tensor | None:
    """Probabilities through the run's feature cache, or None when the run's backbone is not
    the frozen one the cache holds (finetune, full, or --plain)."""
    run = get_run(session, run_id)
    hyper = dict(run.hyperparams or {})
    if run.mode != "frozen" or not hyper.get("fast", True):
        return None
    from trainer.train import fast_features

    spec = get_arch(run.arch)
    train_tf, eval_tf = presets(spec.mean, spec.std, hyper)
    features = fast_features(run.arch, run.weights, hyper, train_tf, eval_tf)
    features.fill(predictor.model, [], records, 1)
    with torch.inference_mode():
        return predictor.model.head(features.evaluation(records)).softmax(1)


def _probabilities(session: Session, run_id: int, predictor: Predictor,
                   records: list[Record], report: PredictionReport
                   ) -> tuple[list[Record], torch.Tensor]:
    """The readable records and their probabilities; unreadable ones go to ``report.failed``."""
    try:
        probs = cached_probabilities(session, run_id, predictor, records)
        if probs is not None:
            return records, probs
    except TrainingError:
        if len(records) > 1:  # one bad file: find it, the others are cached by now
            kept, parts = [], []
            for record in records:
                ok, p = _probabilities(session, run_id, predictor, [record], report)
                kept += ok
                parts.append(p)
            return kept, torch.cat(parts)
        report.failed.append((int(records[0].image_id or 0),
                              f"corrupt or unreadable image (sha256 {records[0].sha256[:12]})"))
        return [], torch.empty(0, len(predictor.classes))
    readable, tensors = [], []
    for record in records:
        try:
            tensors.append(predictor.transform(open_rgb(record)))
            readable.append(record)
        except TrainingError as exc:
            report.failed.append((int(record.image_id or 0), str(exc)))
    return readable, predictor.predict(tensors)


def predict_images(
    session: Session, run_id: int, image_ids: Iterable[int], batch_size: int = 256,
    top_k: int = 3,
) -> PredictionReport:
    """Write (or refresh) one ImagePrediction row per image and run: the top label, its
    probability and the ``top_k`` most probable species. Images without a readable stored
    file are listed in ``failed``; rows of other runs are left as they are."""
    predictor = Predictor.from_run(session, run_id)
    store = ImageStore(get_settings().image_dir)
    report = PredictionReport(run_id)
    ids = list(dict.fromkeys(int(i) for i in image_ids))
    found = {}
    for start in range(0, len(ids), 5000):
        found.update({row.id: row for row in session.execute(
            select(ImageRow.id, ImageRow.sha256, ImageRow.path)
            .where(ImageRow.id.in_(ids[start:start + 5000])))})
    records: list[Record] = []
    for image_id in ids:
        row = found.get(image_id)
        if row is None or not row.path or not store.path(row.path).is_file():
            report.failed.append((image_id, "no stored image file"))
        else:
            records.append(Record(store.path(row.path), row.sha256, -1, image_id))
    for start in range(0, len(records), batch_size):
        batch = records[start:start + batch_size]
        readable, probs = _probabilities(session, run_id, predictor, batch, report)
        existing = {p.image_id: p for p in session.scalars(
            select(ImagePrediction).where(ImagePrediction.run_id == run_id,
                                          ImagePrediction.image_id.in_(
                                              [r.image_id for r in readable])))}
        for record, top in zip(readable, predictor.top_k(probs, top_k), strict=True):
            row = existing.get(record.image_id) or ImagePrediction(image_id=record.image_id,
                                                                   run_id=run_id)
            row.label, row.confidence = top[0]["label"], round(top[0]["probability"], 6)
            row.top_k = [{"label": t["label"], "probability": round(t["probability"], 6)}
                         for t in top]
            row.created_at = utcnow()
            session.add(row)
            report.predicted += 1
        session.flush()
    return report
