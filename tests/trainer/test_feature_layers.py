"""Multi-layer features (``feature_layers``, ``feature_norm``): the model, the per-layer feature
caches of the fast path, checkpoints and predictions, recipe selection and bad options."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from catalog.db import session_scope
from catalog.settings import get_settings
from catalog.store import ImageStore
from tests.trainer.conftest import FAST
from tests.trainer.test_eval_options import val_records
from tests.trainer.test_training import new_run
from trainer.checkpoint import load_checkpoint
from trainer.data import load_source
from trainer.errors import TrainingError
from trainer.features import cache_key
from trainer.model import build_model, join_layers
from trainer.predict import Predictor
from trainer.recipe import select_recipe
from trainer.runs import create_run
from trainer.train import train_run


def test_model_concatenates_pooled_stage_outputs() -> None:
    model = build_model("resnet34", 3, "none", layers=3, norm="l2")
    assert model.layers == ["out", "layer3", "layer2"]
    assert model.layer_dims == [512, 256, 128] and model.head.in_features == 896
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    parts = model.layer_features(x)
    assert [p.shape for p in parts] == [(2, 512), (2, 256), (2, 128)]
    joined = model.features(x)
    assert joined.shape == (2, 896)
    # each layer is scaled to unit root mean square, so no layer drowns another
    for part in joined.split(model.layer_dims, 1):
        assert part.pow(2).mean(1).sqrt().tolist() == pytest.approx([1.0, 1.0], abs=1e-4)
    # the hooks that catch the stage outputs live only during the call
    assert not any(m._forward_hooks for m in model.body.modules())
    # one layer is the plain pooled output, as before layers existed
    one = build_model("resnet34", 3, "none", layers=1)
    assert one.head.in_features == 512
    assert torch.equal(join_layers([parts[0]]), parts[0])


def test_layers_beyond_the_arch_or_an_unknown_norm_are_refused(small_env) -> None:
    with session_scope() as session:
        for kwargs, fragment in [({"feature_layers": 4}, "feature_layers must be 1 to 3"),
                                 ({"feature_layers": 0}, "feature_layers must be 1 to 3"),
                                 ({"feature_norm": "zscore"}, "feature norm must be")]:
            with pytest.raises(TrainingError, match=fragment):
                create_run(session, dataset="small-v1", arch="resnet34", **kwargs)


def test_multi_layer_run_checkpoint_and_prediction_use_the_same_features(small_env) -> None:
    run = train_run(new_run(feature_layers=3, feature_norm="l2", tta="hflip", views=2,
                            epochs=2, precision="fp32"))
    ckpt = load_checkpoint(run.checkpoint_path)  # the last epoch's, which final_val_loss is
    assert ckpt["hyperparams"]["feature_layers"] == 3
    assert ckpt["hyperparams"]["feature_norm"] == "l2"
    assert len(ckpt["feature_cache"]["eval"]) == 3 and len(ckpt["feature_cache"]["train"]) == 3
    # the checkpoint rebuilds the same model: predicting the validation images from their
    # pixels reproduces the fast path's evaluation on cached, per-layer features
    predictor = Predictor.from_checkpoint(run.checkpoint_path)
    assert predictor.model.layers == ["out", "layer3", "layer2"]
    assert predictor.model.norm == "l2"
    val = val_records()
    probs = predictor.probabilities(val)
    targets = torch.tensor([r.label for r in val])
    loss = torch.nn.functional.nll_loss(probs.log(), targets).item()
    assert loss == pytest.approx(run.final_val_loss, abs=1e-4)


def test_layers_are_cached_apart_and_shared_between_runs(small_env) -> None:
    root = small_env.data_dir / "features"

    def files() -> dict[Path, int]:
        return {p: p.stat().st_mtime_ns for p in root.rglob("*.npy")}

    def dirs() -> set[str]:
        return {p.relative_to(root).parts[0] for p in root.rglob("*.npy")}

    train_run(new_run(views=2, precision="fp32"))
    first, first_dirs = files(), dirs()
    assert len(first) == 18 + 12 and len(first_dirs) == 2  # eval: 18 images; train: 12
    # the classifier input's key is what it was before layers existed: old caches stay valid
    eval_spec = {"kind": "eval", "resize": 73, "crop": 64, "mean": [0.485, 0.456, 0.406],
                 "std": [0.229, 0.224, 0.225], "fit": "crop"}
    old = hashlib.sha256(json.dumps(
        {"arch": "resnet34", "weights": "none:seed=0", "transform": {"eval": eval_spec},
         "precision": "fp32"}, sort_keys=True).encode()).hexdigest()[:20]
    assert old in first_dirs
    assert cache_key("resnet34", "none:seed=0", {"eval": eval_spec}, "fp32") == old
    # two layers: the first layer's files are reused untouched, the second gets its own caches
    train_run(new_run(views=2, precision="fp32", feature_layers=2))
    second = files()
    assert len(second) == 2 * len(first) and all(second[p] == t for p, t in first.items())
    assert len(dirs()) == 4
    # fewer layers, or another norm, compute nothing
    train_run(new_run(views=2, precision="fp32", feature_layers=1, feature_norm="l2"))
    assert files() == second


def test_selection_searches_layers_over_one_forward(small_env) -> None:
    with session_scope() as session:
        src = load_source(session, "small-v1", ImageStore(get_settings().image_dir))
    threads = torch.get_num_threads()
    selection = select_recipe(src, "resnet34", "none", folds=2,
                              space={"feature_layers": [1, 2, 3], "feature_norm": ["none", "l2"]},
                              base={**FAST, "precision": "fp32"})
    assert len(selection.scores) == 6
    assert torch.get_num_threads() == threads  # heads train on one thread, then it is restored
    assert selection.varied == ["feature_layers", "feature_norm"]
    root = get_settings().data_dir / "features"
    cached = list(root.rglob("*.npy"))
    # three layers' eval caches of the 12 training images (views=1), validation never read
    assert len(cached) == 3 * 12
    assert {p.name.split(".")[0] for p in cached} == {r.sha256 for r in src.train}
