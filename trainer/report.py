"""`shoal report`: one self-contained HTML file per run, PNGs and thumbnails embedded."""

from __future__ import annotations

import base64
import io
import json
import os
from contextlib import suppress
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.models import ClassMetric, EpochMetric, TrainingRun
from catalog.settings import get_settings
from catalog.store import ImageStore
from trainer.data import Record, load_source, open_rgb
from trainer.metrics import plot_confusion
from trainer.runs import get_run, run_dir, run_summary

SAMPLES = 12


def _png_b64(fig) -> str:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode()


def curves_png(epochs: list[EpochMetric]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    xs = [m.epoch for m in epochs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(xs, [m.train_loss for m in epochs], "o-", label="train")
    left.plot(xs, [m.val_loss for m in epochs], "o-", label="validation")
    left.set_title("loss")
    right.plot(xs, [m.train_accuracy for m in epochs], "o-", label="train")
    right.plot(xs, [m.val_accuracy for m in epochs], "o-", label="validation")
    right.set_title("accuracy")
    right.set_ylim(0, 1)
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        return _png_b64(fig)
    finally:
        plt.close(fig)


def confusion_png(run: TrainingRun, tmp: Path) -> str:
    plot_confusion(run.confusion or [], list(run.classes), tmp, f"run {run.id}")
    return base64.b64encode(tmp.read_bytes()).decode()


def _thumb(record: Record) -> str:
    img = open_rgb(record)
    img.thumbnail((200, 200))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return base64.b64encode(buf.getvalue()).decode()


def sample_predictions(session: Session, run: TrainingRun, n: int = SAMPLES) -> list[dict]:
    """The best model on an even spread of validation images."""
    from trainer.predict import Predictor

    dataset: Any = Path(run.dataset_path) if run.dataset_path else run.dataset_version_id
    source = load_source(session, dataset, ImageStore(get_settings().image_dir))
    step = max(1, len(source.val) // n)
    picked = source.val[::step][:n]
    predictor = Predictor.from_run(session, run.id)
    probs = predictor.probabilities(picked)
    out = []
    for record, p in zip(picked, probs, strict=True):
        conf, idx = p.max(0)
        out.append({"true": source.classes[record.label], "pred": predictor.classes[int(idx)],
                    "prob": float(conf), "thumb": _thumb(record)})
    return out


def render(session: Session, run_id: int) -> str:
    run = get_run(session, run_id)
    epochs = list(session.scalars(select(EpochMetric).where(EpochMetric.run_id == run_id)
                                  .order_by(EpochMetric.epoch)))
    classes = list(session.scalars(select(ClassMetric).where(ClassMetric.run_id == run_id)
                                   .order_by(ClassMetric.label)))
    has_model = bool(run.best_checkpoint_path and Path(run.best_checkpoint_path).is_file())
    env = Environment(loader=PackageLoader("trainer", "templates"),
                      autoescape=select_autoescape(["html"]))
    out_dir = run_dir(run_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    return env.get_template("report.html").render(
        run=run, summary=run_summary(session, run), classes=classes,
        hyper=json.dumps(run.hyperparams, sort_keys=True),
        curves=curves_png(epochs) if epochs else None,
        confusion=confusion_png(run, out_dir / "confusion.png") if run.confusion else None,
        samples=sample_predictions(session, run) if has_model else [],
    )


def write_report(session: Session, run_id: int, out: Path | None = None) -> Path:
    html = render(session, run_id)
    path = out or run_dir(run_id) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part")  # a full disk leaves no cut-off report
    try:
        part.write_text(html, encoding="utf-8")
        os.replace(part, path)
    except OSError as exc:
        with suppress(OSError):
            part.unlink(missing_ok=True)
        if exc.filename is None:  # a full disk seen at close names no file: name the report
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        with suppress(OSError):
            part.unlink(missing_ok=True)
        raise
    return path
