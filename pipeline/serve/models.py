"""The models a server predicts with: loaded once per run, kept warm, each behind its own
micro-batcher. Which run is the default is asked of the catalog (a promotion, else the best
succeeded run) and re-read every few seconds, so every replica follows `shoal runs promote`
with no state shared between processes."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from sqlalchemy import select

from catalog.db import session_scope
from catalog.models import DatasetVersion, Species
from pipeline.serve.batcher import MicroBatcher
from trainer.predict import Predictor
from trainer.runs import get_run, serving_run

DEFAULT_TTL_S = 5.0
KEEP_WARM = 2  # runs held in memory at once (the default and one asked for by id)


@dataclass
class ServedModel:
    run: dict[str, Any]  # id, arch, dataset version
    predictor: Predictor
    names: dict[str, dict[str, str | None]]  # slug -> latin, zh, en
    batcher: MicroBatcher

    def top_k(self, probs: torch.Tensor, k: int) -> list[dict[str, Any]]:
        values, indices = probs.topk(min(k, len(self.predictor.classes)))
        out = []
        for p, i in zip(values.tolist(), indices.tolist(), strict=True):
            slug = self.predictor.classes[i]
            out.append({"species": slug, "probability": round(float(p), 6),
                        **self.names.get(slug, {"latin_name": None, "name_zh": None,
                                                "name_en": None})})
        return out


def _run_info(session: Any, run_id: int) -> dict[str, Any]:
    run = get_run(session, run_id)
    version = (session.get(DatasetVersion, run.dataset_version_id)
               if run.dataset_version_id is not None else None)
    return {
        "id": run.id, "arch": run.arch, "state": run.state,
        "best_val_accuracy": run.best_val_accuracy,
        "dataset_version": None if version is None else {
            "id": version.id, "name": version.name, "manifest_sha256": version.manifest_sha256},
        "dataset_path": run.dataset_path,
    }


def _names(session: Any, slugs: list[str]) -> dict[str, dict[str, str | None]]:
    rows = session.execute(select(Species.slug, Species.latin_name, Species.name_zh,
                                  Species.name_en).where(Species.slug.in_(slugs)))
    return {r.slug: {"latin_name": r.latin_name, "name_zh": r.name_zh, "name_en": r.name_en}
            for r in rows}


class ModelCache:
    def __init__(self, max_batch: int = 32, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.max_batch = max_batch
        self.ttl_s = ttl_s
        self._models: OrderedDict[int, ServedModel] = OrderedDict()
        self._default: tuple[int, float] | None = None
        self._lock = threading.Lock()

    def default_run_id(self) -> int:
        now = time.monotonic()
        cached = self._default
        if cached is not None and now - cached[1] < self.ttl_s:
            return cached[0]
        with session_scope() as session:
            run_id = serving_run(session).id
        self._default = (run_id, now)
        return run_id

    def get(self, run_id: int | None = None) -> ServedModel:
        """The warm model of ``run_id`` (default: the serving run), loading it the first time.
        Blocking: call it from a worker thread."""
        run_id = self.default_run_id() if run_id is None else run_id
        with self._lock:
            model = self._models.get(run_id)
            if model is None:
                model = self._load(run_id)
                self._models[run_id] = model
                while len(self._models) > KEEP_WARM:
                    _, old = self._models.popitem(last=False)
                    old.batcher.close()
            self._models.move_to_end(run_id)
            return model

    def _load(self, run_id: int) -> ServedModel:
        with session_scope() as session:
            info = _run_info(session, run_id)
            predictor = Predictor.from_run(session, run_id)
            names = _names(session, predictor.classes)
        batcher = MicroBatcher(predictor.predict, self.max_batch, name=f"run-{run_id}")
        return ServedModel(info, predictor, names, batcher)

    def stats(self) -> list[dict[str, Any]]:
        """Per warm model: its run, and how many forward passes ran on how many images."""
        return [{"run": run_id, "batches": m.batcher.batches, "images": m.batcher.images}
                for run_id, m in list(self._models.items())]

    def close(self) -> None:
        with self._lock:
            for model in self._models.values():
                model.batcher.close()
            self._models.clear()
