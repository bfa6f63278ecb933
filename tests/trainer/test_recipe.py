"""Recipe selection by cross-validation on the training split only, from Python and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

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
    assert chosen == {**RECIPE, **BEST_RECIPE, "epochs": 1, "image_size": FAST["image_size"]}
    assert default == {**RECIPE, "epochs": 1, "image_size": FAST["image_size"]}
    assert default["lr"] == 1e-4 and default["batch_size"] == 16 and default["tta"] == "none"
