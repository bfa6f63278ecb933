"""Feature-pass benchmark: what the inference copy's rewrites and the shared decode save.

    python benchmarks/features.py [--images 64] [--batch 32] [--rounds 3]

On --images web-20 photos (``../shared/fishdata/web-20``, evenly spaced over the species in name
order), per EfficientNet-Lite member of the feature ensemble at its precision (``auto``: bf16
where the CPU has it natively):

1. forward ms a view of the baseline copy (BatchNorms folded, nothing else: what the feature
   pass ran before) beside ``trainer.fusion.folded_copy`` (pads in the convolutions, clamps in
   place), on the same batches of real views, best of --rounds; the largest difference between
   their features is printed too, since both rewrites are meant to be exact;
2. ms an augmented view takes to make: the image decoded for every view (the baseline) beside
   ``trainer.features.TrainViews``, which decodes an image once for its seven views.

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FISHDATA = Path(__file__).resolve().parents[2] / "shared" / "fishdata" / "web-20"
# measured per member of this ensemble, each fed the recipe's 224 px views as the ensemble is
ENSEMBLE = "efficientnet_lite012"


def baseline_copy(model):  # type: ignore[no-untyped-def]
    """The inference copy as it was: BatchNorms folded into their convolutions, no more."""
    import torch

    from trainer.fusion import PROBE, _conv_bn_pairs, _fold

    folded = copy.deepcopy(model).eval()
    probe = torch.randn(PROBE, generator=torch.Generator().manual_seed(0))
    pairs, _ = _conv_bn_pairs(folded, probe)
    for conv_name, bn_name in pairs:
        _fold(folded, conv_name, bn_name)
    return folded


def best_of(rounds: int, run) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        tick = time.perf_counter()
        run()
        times.append(time.perf_counter() - tick)
    return min(times)


def make_views(records, train_tf, views: int, shared: bool) -> list:  # type: ignore[no-untyped-def]
    """Every record's augmented views 1..``views``: decoded once (TrainViews) or for every
    view."""
    import torch

    from trainer.data import open_rgb
    from trainer.features import TrainViews, view_seed

    if shared:
        maker = TrainViews(train_tf)
        return [maker(r, v) for r in records for v in range(1, views + 1)]
    made = []
    for record in records:
        for view in range(1, views + 1):
            img = open_rgb(record)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(view_seed(record.sha256, view))
                made.append(train_tf(img))
    return made


def forward(model, batches, precision: str) -> list:  # type: ignore[no-untyped-def]
    from trainer.features import extract

    return [extract(model, b, precision)[0] for b in batches]


def measure(arch: str, records, args, precision: str) -> dict:  # type: ignore[no-untyped-def]
    import torch

    from trainer.features import one_thread
    from trainer.fusion import folded_copy
    from trainer.model import build_model
    from trainer.recipe import BEST_RECIPE
    from trainer.registry import get_arch
    from trainer.runs import RECIPE
    from trainer.transforms import presets

    spec = get_arch(arch)
    train_tf, _ = presets(spec.mean, spec.std, {**RECIPE, **BEST_RECIPE})
    n = int(BEST_RECIPE["views"]) - 1  # augmented views an image gets (view 0 is the eval one)
    with one_thread():  # views are made on one thread, as the feature pass does
        views = make_views(records, train_tf, n, True)
        same = all(torch.equal(a, b) for a, b in zip(
            views, make_views(records, train_tf, n, False), strict=True))
        make_old = best_of(args.rounds,
                           lambda: make_views(records, train_tf, n, False)) / len(views)
        make_new = best_of(args.rounds,
                           lambda: make_views(records, train_tf, n, True)) / len(views)

    model = build_model(arch, 1, "imagenet", 0).eval()
    old = baseline_copy(model).to(memory_format=torch.channels_last)
    new = folded_copy(model).to(memory_format=torch.channels_last)
    batches = [torch.stack(views[i:i + args.batch]) for i in range(0, len(views), args.batch)]
    a, b = forward(old, batches, precision), forward(new, batches, precision)  # warm-up
    diff = max(float((x - y).abs().max() / x.abs().max().clamp_min(1.0))
               for x, y in zip(a, b, strict=True))
    fwd_old = best_of(args.rounds, lambda: forward(old, batches, precision)) / len(views)
    fwd_new = best_of(args.rounds, lambda: forward(new, batches, precision)) / len(views)
    return {"forward_ms_baseline": round(1000 * fwd_old, 2),
            "forward_ms": round(1000 * fwd_new, 2),
            "forward_speedup": round(fwd_old / fwd_new, 2),
            "features_max_rel_diff": round(diff, 5),
            "make_view_ms_baseline": round(1000 * make_old, 2),
            "make_view_ms": round(1000 * make_new, 2),
            "make_view_speedup": round(make_old / make_new, 2),
            "views_identical": same,
            "view_ms_baseline": round(1000 * (fwd_old + make_old), 2),
            "view_ms": round(1000 * (fwd_new + make_new), 2),
            "view_speedup": round((fwd_old + make_old) / (fwd_new + make_new), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ["SHOAL_DATA_DIR"] = tempfile.mkdtemp(prefix="shoal-bench-features-")

    import torch
    from train import cpu_model  # benchmarks/train.py's: the model name and its bf16 flags

    from catalog.store import file_sha256
    from trainer.data import Record
    from trainer.features import bf16_supported, resolve_precision
    from trainer.registry import get_arch

    files = sorted(p for d in sorted(FISHDATA.iterdir()) for p in sorted(d.iterdir()))
    files = files[:: max(1, len(files) // args.images)][:args.images]
    records = [Record(p, file_sha256(p), 0) for p in files]
    precision = resolve_precision("auto")
    out: dict = {"benchmark": "features", "images": len(records), "batch": args.batch,
                 "precision": precision, "bf16_native": bf16_supported(),
                 "threads": torch.get_num_threads(), "cpu": cpu_model(), "members": {}}
    for arch in get_arch(ENSEMBLE).members:
        row = measure(arch, records, args, precision)
        print(f"{arch}: {row}", flush=True)
        out["members"][arch] = row
    total = {k: sum(r[k] for r in out["members"].values())
             for k in ("view_ms_baseline", "view_ms")}
    out["ensemble_view_ms_baseline"] = round(total["view_ms_baseline"], 2)
    out["ensemble_view_ms"] = round(total["view_ms"], 2)
    out["ensemble_view_speedup"] = round(total["view_ms_baseline"] / total["view_ms"], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
