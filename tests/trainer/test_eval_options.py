"""The evaluation options a recipe may choose (framing, mirror TTA) and label smoothing, as
runs, checkpoints, predictions and the feature caches apply them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sqlalchemy import select

from catalog.db import session_scope
from catalog.models import EpochMetric
from catalog.settings import get_settings
from catalog.store import ImageStore
from tests.trainer.test_training import new_run
from trainer.checkpoint import load_checkpoint
from trainer.data import load_source, open_rgb
from trainer.errors import TrainingError
from trainer.predict import Predictor
from trainer.runs import create_run
from trainer.train import train_run
from trainer.transforms import EvalPreset


def val_records():  # type: ignore[no-untyped-def]
    with session_scope() as session:
        return load_source(session, "small-v1", ImageStore(get_settings().image_dir)).val


def predict_val_like_the_run(run):  # type: ignore[no-untyped-def]
    """The run's checkpoint predicting its validation images gives the run's final val loss."""
    predictor = Predictor.from_checkpoint(run.best_checkpoint_path)
    val = val_records()
    probs = predictor.probabilities(val)
    targets = torch.tensor([r.label for r in val])
    loss = torch.nn.functional.nll_loss(probs.log(), targets).item()
    assert loss == pytest.approx(run.final_val_loss, abs=1e-4)
    return predictor, probs, targets


@pytest.mark.parametrize("tta", ["hflip", "crops"])
def test_tta_and_whole_framing_reach_checkpoint_and_predictions(small_env, tta: str) -> None:
    run = train_run(new_run(tta=tta, eval_fit="whole", views=2, label_smoothing=0.1,
                            precision="fp32"))
    ckpt = load_checkpoint(run.best_checkpoint_path)
    assert ckpt["transforms"]["eval"]["tta"] == tta
    assert ckpt["transforms"]["eval"]["fit"] == "whole"
    assert set(ckpt["feature_cache"]) == {"eval", "train"}
    # predicting the validation images from the checkpoint (each image's views, averaged
    # logits) reproduces the fast path's evaluation (cached features, averaged over the views)
    predictor, probs, targets = predict_val_like_the_run(run)
    val = val_records()
    with session_scope() as session:
        metric = session.scalars(select(EpochMetric).where(EpochMetric.run_id == run.id)).one()
    assert float((probs.argmax(1) == targets).float().mean()) == metric.val_accuracy
    # without TTA the same image gives other probabilities
    plain = Predictor(predictor.model, predictor.classes,
                      EvalPreset.from_spec({**ckpt["transforms"]["eval"], "tta": "none"}))
    assert not torch.allclose(plain.probabilities(val[:1]), probs[:1])


def test_tta_reuses_the_augmented_views_and_a_new_framing_gets_its_own_cache(small_env) -> None:
    def files() -> dict[Path, int]:
        return {p: p.stat().st_mtime_ns for p in (small_env.data_dir / "features").rglob("*.npy")}

    train_run(new_run(views=3))
    first = files()
    assert len(first) == 12 * 3 + 6  # eval: 18 images' view 0; train: 12 x 2 augmented
    train_run(new_run(views=3, tta="hflip"))
    second = files()
    assert len(second) == len(first) + 18 and all(second[p] == t for p, t in first.items())
    train_run(new_run(views=3, eval_fit="whole"))
    third = files()
    assert len(third) == len(second) + 18  # a new eval cache, the augmented views reused
    keys = {p.relative_to(small_env.data_dir / "features").parts[0] for p in third}
    assert len(keys) == 3


def test_crops_views_and_their_cache(small_env) -> None:
    preset = EvalPreset(64, 64, (0.5,) * 3, (0.5,) * 3, tta="crops")
    [record] = val_records()[:1]
    views = preset.views(open_rgb(record))
    assert views.shape == (12, 3, 64, 64) and preset.n_views == 12
    assert preset.spec["crops_resize"] == 82  # 64 x 9/7
    for i in range(0, 12, 2):  # each view is followed by its mirror image
        assert torch.equal(views[i + 1], views[i].flip(-1))
    assert torch.equal(views[0], EvalPreset(64, 64, (0.5,) * 3, (0.5,) * 3)(open_rgb(record)))
    assert len({views[i].sum().item() for i in range(0, 12, 2)}) == 6  # six different framings
    assert EvalPreset.from_spec(preset.spec).spec == preset.spec

    def files() -> dict[Path, int]:
        return {p: p.stat().st_mtime_ns for p in (small_env.data_dir / "features").rglob("*.npy")}

    train_run(new_run(views=3, tta="hflip"))
    first = files()
    train_run(new_run(views=3, tta="crops"))
    second = files()
    # an eval cache of its own, 12 views of each of 18 images; the augmented views reused
    assert len(second) == len(first) + 18 * 12 and all(second[p] == t for p, t in first.items())


def test_plain_loop_evaluates_crops_like_the_predictor(small_env) -> None:
    predict_val_like_the_run(train_run(new_run(fast=False, epochs=1, tta="crops")))


def test_bad_eval_options_are_refused(small_env) -> None:
    with session_scope() as session:
        for kwargs, fragment in [({"tta": "vflip"}, "tta must be"),
                                 ({"eval_fit": "pad"}, "eval fit must be"),
                                 ({"label_smoothing": 1.0}, "label smoothing")]:
            with pytest.raises(TrainingError, match=fragment):
                create_run(session, dataset="small-v1", arch="resnet34", **kwargs)


def test_views_are_made_on_one_thread_and_batched_like_a_loader(small_env) -> None:
    """Without loader processes the views of a batch are made on one thread (small tensor work
    loses to thread hand-offs), the forward keeps the others; the batches are a loader's."""
    from trainer.features import EvalViews, TrainViews, _batches, _Todo
    from trainer.transforms import TrainPreset

    records = val_records()[:3]
    seen: list[int] = []

    class Counting(TrainViews):
        def __call__(self, record, view):  # type: ignore[no-untyped-def]
            seen.append(torch.get_num_threads())
            return super().__call__(record, view)

    mean = std = (0.5,) * 3
    todo = _Todo([(0, r, v) for r in records for v in range(2)]
                 + [(1, r, v) for r in records for v in (1, 2)],
                 [EvalViews(EvalPreset(64, 64, mean, std, tta="hflip")),
                  Counting(TrainPreset(64, mean, std))])
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ours = list(_batches(todo, 4, 0))
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
        loader = list(torch.utils.data.DataLoader(todo, 4, num_workers=0))
    finally:
        torch.set_num_threads(threads)
    assert [b.shape[0] for b in ours] == [4, 4, 4]
    assert all(torch.equal(a, b) for a, b in zip(ours, loader, strict=True))
