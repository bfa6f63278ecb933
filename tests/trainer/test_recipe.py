"""Recipe selection by cross-validation on the training split only, from Python and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from catalog.db import session_scope
from catalog.models import TrainingRun
from catalog.settings import get_settings
from catalog.store import ImageStore
from tests.trainer.conftest import FAST
from tests.trainer.test_cli_report import last_json, shoal
from trainer.data import Record, load_source
from trainer.errors import TrainingError
from trainer.recipe import BEST_RECIPE, assign_folds, candidates, select_recipe
from trainer.runs import RECIPE

# small enough to cross-validate in seconds on the 3-species set
TINY_SPACE = {"tta": ["none", "hflip"], ("epochs", "lr"): [(1, 1e-4), (2, 1e-3)]}


def source():  # type: ignore[no-untyped-def]
    with session_scope() as session:
        return load_source(session, "small-v1", ImageStore(get_settings().image_dir))


def test_candidates_are_the_grid_without_settings_that_cannot_matter() -> None:
    space = {"views": [1, 4], "min_scale": [0.08, 0.25], "eval_fit": ["crop", "whole"],
             "crop_ratio": [0.875, 1.0]}
    cands = candidates(space)
    # one view has no augmented copies to scale, and "whole" crops nothing
    assert len(cands) == 3 * 3
    assert all(c["min_scale"] == RECIPE["min_scale"] for c in cands if c["views"] == 1)
    assert all(c["crop_ratio"] == RECIPE["crop_ratio"] for c in cands
               if c["eval_fit"] == "whole")
    # fixed settings override the grid, and the duplicates they make collapse
    fixed = candidates({("epochs", "lr"): [(10, 1e-4), (30, 1e-3), (60, 1e-3)]},
                       fixed={"epochs": 5})
    assert [(c["epochs"], c["lr"]) for c in fixed] == [(5, 1e-4), (5, 1e-3)]
    assert all(set(c) == set(RECIPE) for c in cands + fixed)  # whole recipes, for create_run


def test_folds_are_stratified_and_fixed_by_content() -> None:
    records = [Record(Path(f"{i}.jpg"), f"{i:064x}", label)
               for i, label in enumerate([0] * 11 + [1] * 7 + [2] * 5)]
    folds = assign_folds(records, 5)
    for label in (0, 1, 2):
        per_fold = [sum(1 for r, f in zip(records, folds, strict=True)
                        if r.label == label and f == k) for k in range(5)]
        assert max(per_fold) - min(per_fold) <= 1
    assert assign_folds(list(reversed(records)), 5) == list(reversed(folds))
    assert assign_folds(records, 5, seed=1) != folds


def test_copies_of_a_photo_share_a_fold() -> None:
    """Images of one duplicate group (one split key) never sit on both sides of a fold."""
    records = [Record(Path(f"{i}.jpg"), f"{i:064x}", i % 3,
                      group=f"g{i % 3}-{i // 6}" if i < 24 else "")  # pairs of one class
               for i in range(60)]
    folds = assign_folds(records, 5)
    by_group: dict[str, set[int]] = {}
    for record, fold in zip(records, folds, strict=True):
        by_group.setdefault(record.key, set()).add(fold)
    assert all(len(f) == 1 for f in by_group.values())
    assert len(set(folds)) == 5
    for label in (0, 1, 2):
        per_fold = [sum(1 for r, f in zip(records, folds, strict=True)
                        if r.label == label and f == k) for k in range(5)]
        assert max(per_fold) - min(per_fold) <= 2


def test_selection_never_reads_validation_and_picks_the_best_cv_score(small_env) -> None:
    src = source()
    progress: list[tuple[str, int, int]] = []
    selection = select_recipe(src, "resnet34", "none", space=TINY_SPACE, base=FAST, folds=2,
                              progress=lambda *p: progress.append(p))
    assert len(selection.scores) == 4 and selection.n_train == 12
    assert selection.varied == ["epochs", "lr", "tta"]
    best = max(selection.scores, key=lambda s: (s.accuracy, -s.loss))
    assert selection.best == best.hyper and selection.score is best
    assert all(len(s.fold_accuracy) == 2 and 0 <= s.accuracy <= 1 for s in selection.scores)
    assert progress[-1] == ("cross-validation", 4, 4)
    # the validation images' features were never computed
    cached = {p.name.split(".")[0] for p in (small_env.data_dir / "features").rglob("*.npy")}
    assert cached == {r.sha256 for r in src.train}
    # and the same data give the same choice
    again = select_recipe(src, "resnet34", "none", space=TINY_SPACE, base=FAST, folds=2)
    assert [s.accuracy for s in again.scores] == [s.accuracy for s in selection.scores]
    assert json.dumps(selection.as_dict(), default=str)


def test_selection_refuses_too_few_images_per_fold(small_env) -> None:
    with pytest.raises(TrainingError, match="too few for 5-fold"):
        select_recipe(source(), "resnet34", "none", space=TINY_SPACE, base=FAST, folds=5)


def test_cli_selects_a_recipe_by_cross_validation_then_trains_it(small_env, monkeypatch) -> None:
    monkeypatch.setattr("trainer.recipe.SPACE", TINY_SPACE)
    out = last_json(shoal("train", "--dataset", "small-v1", "--arch", "resnet34", "--weights",
                          "none", "--recipe", "select", "--folds", "2", "--image-size",
                          str(FAST["image_size"]), "--batch-size", "8", "--json"))
    assert len(out) == 1 and out[0]["state"] == "succeeded"
    assert 0 <= out[0]["cv_accuracy"] <= 1
    with session_scope() as session:
        run = session.get(TrainingRun, out[0]["run"])
        hyper = run.hyperparams
    assert {k: hyper[k] for k in ("epochs", "lr", "tta")} == {
        k: out[0]["recipe"][k] for k in ("epochs", "lr", "tta")}
    assert hyper["image_size"] == FAST["image_size"] and hyper["batch_size"] == 8  # fixed
    saved = json.loads((Path(run.checkpoint_path).parent / "recipe-selection.json").read_text())
    assert len(saved["scores"]) == 4 and saved["best"]["lr"] == hyper["lr"]
    # the headline figure: nested cross-validation over the 12 training photos (4 a class)
    honest = out[0]["honest_estimate"]
    assert honest["n"] == 12 and honest["outer_folds"] == 4 and honest["inner_folds"] == 3
    assert honest["interval"][0] <= honest["accuracy"] <= honest["interval"][1]
    assert saved["honest_estimate"] == honest
    assert out[0]["n_val"] == 6 and out[0]["val_interval"][0] <= out[0]["val_accuracy"]


def test_select_trains_the_feature_ensemble_unless_an_arch_is_named(
    small_env, monkeypatch
) -> None:
    """--recipe select without --arch takes efficientnet_lite012, the one lever that raised the
    honest estimate beyond its interval; the study's and the best recipe keep ResNet50."""
    from trainer.plan import default_arch

    monkeypatch.setattr("trainer.recipe.SPACE", {"tta": ["none", "hflip"]})
    monkeypatch.setattr("trainer.recipe.NESTED_SPACE", {"tta": ["none", "hflip"]})
    out = last_json(shoal("train", "--dataset", "small-v1", "--weights", "none", "--recipe",
                          "select", "--folds", "2", "--epochs", "1", "--image-size",
                          str(FAST["image_size"]), "--json"))
    with session_scope() as session:
        assert session.get(TrainingRun, out[0]["run"]).arch == "efficientnet_lite012"
    assert out[0]["honest_estimate"]["n"] == 12
    assert default_arch("study") == default_arch("best") == "resnet50"
    with pytest.raises(TrainingError, match="--recipe must be one of"):
        default_arch("fastest")


def test_cli_best_recipe_and_study_default(small_env) -> None:
    best = last_json(shoal("train", "--dataset", "small-v1", "--arch", "resnet34", "--weights",
                           "none", "--recipe", "best", "--epochs", "1", "--image-size",
                           str(FAST["image_size"]), "--json"))[0]
    study = last_json(shoal("train", "--dataset", "small-v1", "--arch", "resnet34",
                            "--weights", "none", "--epochs", "1", "--image-size",
                            str(FAST["image_size"]), "--json"))[0]
    with session_scope() as session:
        chosen = session.get(TrainingRun, best["run"]).hyperparams
        default = session.get(TrainingRun, study["run"]).hyperparams
    # workers: the recipe leaves it to SHOAL_TRAIN_WORKERS (0), written on the run
    assert chosen == {**RECIPE, **BEST_RECIPE, "epochs": 1, "image_size": FAST["image_size"],
                      "workers": 0}
    assert default == {**RECIPE, "epochs": 1, "image_size": FAST["image_size"], "workers": 0}
    assert default["lr"] == 1e-4 and default["batch_size"] == 16 and default["tta"] == "none"


def test_nested_estimate_chooses_inside_each_outer_fold_and_never_reads_validation(
    small_env, monkeypatch
) -> None:
    from trainer import recipe

    src = source()
    seen: list[set[str]] = []
    real_select = recipe.select_recipe

    def spy(inner_source, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append({r.sha256 for r in inner_source.train})
        return real_select(inner_source, *args, **kwargs)

    monkeypatch.setattr(recipe, "select_recipe", spy)
    est = recipe.nested_estimate(src, "resnet34", "none", space=TINY_SPACE,
                                 base={**FAST, "views": 2}, outer=2, inner=2)
    assert est.n == len(src.train) == 12 and len(est.outer) == 2
    assert sum(f.n_held for f in est.outer) == 12
    folds = recipe.assign_folds(src.train, 2, 0)
    for fold, inner_shas in zip(est.outer, seen, strict=True):
        held = {r.sha256 for r, f in zip(src.train, folds, strict=True) if f == fold.fold}
        assert inner_shas.isdisjoint(held) and len(inner_shas) + len(held) == 12
    assert est.interval[0] <= est.accuracy <= est.interval[1]
    assert est.probe_interval[0] <= est.probe_accuracy <= est.probe_interval[1]
    # per image, for paired comparisons: the hits add up to the fold counts
    assert len(est.hits) == len(est.probe_hits) == 12
    assert sum(est.hits) == est.correct and sum(est.probe_hits) == est.probe_correct
    for fold in est.outer:
        assert sum(h for h, f in zip(est.hits, folds, strict=True) if f == fold.fold) \
            == fold.correct
    cached = {p.name.split(".")[0] for p in (small_env.data_dir / "features").rglob("*.npy")}
    assert cached == {r.sha256 for r in src.train}
    assert json.dumps(est.as_dict())


def test_accuracy_interval_is_a_bootstrap_over_images() -> None:
    from trainer.metrics import accuracy_interval

    lo, hi = accuracy_interval(63, 83)
    assert lo < 63 / 83 < hi and 0.12 < hi - lo < 0.22  # about +-9 points on 83 images
    assert accuracy_interval(63, 83) == (lo, hi)  # the same for the same seed
    assert accuracy_interval(830, 1000)[1] - accuracy_interval(830, 1000)[0] < 0.06
    assert accuracy_interval(0, 0) == (0.0, 0.0)


def test_paired_difference_resamples_images_on_both_sides_together() -> None:
    from trainer.metrics import accuracy_interval, paired_difference

    rng = np.random.default_rng(0)
    b = rng.random(600) < 0.6
    a = b.copy()
    a[np.flatnonzero(~b)[:30]] = True  # a gets 30 more right, loses none: +5 points
    diff, lo, hi = paired_difference(a.tolist(), b.tolist())
    assert diff == pytest.approx(0.05) and 0.03 < lo < diff < hi < 0.07
    # two separate intervals overlap, yet the paired one sits clear of zero
    assert accuracy_interval(int(a.sum()), 600)[0] < accuracy_interval(int(b.sum()), 600)[1]
    assert paired_difference(b.tolist(), b.tolist()) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="same images"):
        paired_difference([True], [True, False])


def test_balanced_class_weights_count_each_class_the_same() -> None:
    import torch

    from trainer.loops import class_weights

    labels = torch.tensor([0] * 60 + [1] * 20 + [2] * 20)
    w = class_weights(labels, 3, "balanced")
    assert w is not None
    assert torch.allclose(w * torch.bincount(labels).float(), torch.full((3,), 100 / 3))
    assert class_weights(labels, 3, "none") is None
    with pytest.raises(TrainingError, match="class weight"):
        class_weights(labels, 3, "inverse")
