"""Which runs a training request makes: the recipe (the study's, Shoal's best, or one chosen by
cross-validation on the training split) and the learning rates of a sweep.

torch is imported only to select a recipe, so planning a study or best run stays light.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from trainer.errors import TrainingError

if TYPE_CHECKING:
    from trainer.recipe import Selection

RECIPES = ("study", "best", "select")

# The backbone a recipe trains when none is named. The study's and the best recipe keep the
# study's ResNet50; selection, which already spends minutes on its search, takes the feature
# ensemble of EfficientNet-Lite0, 1 and 2, the one lever that raised the honest estimate beyond
# its interval (web-20, nested cross-validation, same folds; 2026-12-01): 0.701 [0.664, 0.736]
# against Lite0's 0.659 [0.621, 0.696], paired +4.2 points [+1.7, +6.8]; Lite1 0.653 and Lite2
# 0.668 alone did not (docs/trainer.md).
DEFAULT_ARCH = {"study": "resnet50", "best": "resnet50", "select": "efficientnet_lite012"}


def check_recipe(recipe: str) -> None:
    if recipe not in RECIPES:
        raise TrainingError(f"--recipe must be one of {', '.join(RECIPES)}, not {recipe!r}")


def default_arch(recipe: str) -> str:
    check_recipe(recipe)
    return DEFAULT_ARCH[recipe]


Progress = Callable[[str, int, int], None]


@dataclass
class TrainPlan:
    hyper: dict[str, Any]  # every run's hyperparameters but the learning rate
    lrs: list[float | None]  # one run per learning rate; None: the recipe's
    selection: Selection | None = None  # how --recipe select chose ``hyper``


def plan_runs(
    session: Session,
    *,
    dataset: str | int | Path,
    arch: str,
    weights: str,
    mode: str,
    recipe: str = "study",
    given: dict[str, Any] | None = None,
    lrs: list[float] | None = None,
    folds: int = 5,
    progress: Progress | None = None,
) -> TrainPlan:
    """The runs to make. ``given``: hyperparameters the user fixed (they override the recipe;
    with ``select`` they are fixed and the rest is searched); ``lrs``: one run each."""
    from trainer.recipe import BEST_RECIPE

    given = {k: v for k, v in (given or {}).items() if v is not None}
    check_recipe(recipe)
    if recipe == "study":
        return TrainPlan(given, list(lrs) if lrs else [None])
    if recipe == "best":
        hyper = {**BEST_RECIPE, **given}
        return TrainPlan(_without_lr(hyper), list(lrs) if lrs else [hyper.get("lr")])
    if lrs and len(lrs) > 1:
        raise TrainingError("--recipe select chooses the learning rate: give one --lr at most")
    selection = select_for(session, dataset, arch, weights, mode,
                           {**given, **({"lr": lrs[0]} if lrs else {})}, folds, progress)
    return TrainPlan(_without_lr(selection.best), [selection.best["lr"]], selection)


def _without_lr(hyper: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in hyper.items() if k != "lr"}


def select_for(session: Session, dataset: str | int | Path, arch: str, weights: str, mode: str,
               fixed: dict[str, Any], folds: int, progress: Progress | None = None) -> Selection:
    """Choose the recipe by cross-validation on the dataset's training split (here, now)."""
    from catalog.settings import get_settings
    from catalog.store import ImageStore
    from trainer.data import check_source, load_source
    from trainer.recipe import select_recipe

    if mode != "frozen":
        raise TrainingError("--recipe select trains heads on cached features: it needs "
                            "--mode frozen")
    from trainer.recipe import groups_per_class, nested_estimate

    source = load_source(session, dataset, ImageStore(get_settings().image_dir))
    check_source(source)
    selection = select_recipe(source, arch, weights, fixed=fixed, folds=folds, progress=progress)
    # the headline: nested cross-validation (up to 5 outer folds, 3 inner) of the smaller
    # search NESTED_SPACE, so that it costs a fraction of the selection above
    outer = min(5, min(groups_per_class(source.train, len(source.classes))))
    if outer >= 3:
        selection.estimate = nested_estimate(source, arch, weights, fixed=fixed, outer=outer,
                                             inner=min(3, outer - 1), progress=progress)
    return selection


def save_selection(selection: Selection, run_dir: Path) -> Path:
    """Keep how the recipe was chosen beside the run it was chosen for."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "recipe-selection.json"
    path.write_text(json.dumps(selection.as_dict(), indent=1, default=str))
    return path
