"""`shoal train`, `shoal runs list|show|compare`, `shoal predict`, `shoal report`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from pipeline.cli.common import (
    JSON_OPTION,
    STEP_LABELS,
    JobBars,
    ShoalGroup,
    catalog_session,
    console,
    print_json,
    print_table,
    progress_bar,
)
from pipeline.errors import UsageError, printable
from pipeline.jobs.actions import TrainRequest, train

runs_app = typer.Typer(cls=ShoalGroup, help="Training runs: list, show, compare.")


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.add_typer(runs_app, name="runs")
    app.command("predict")(predict_cmd)
    app.command("report")(report_cmd)


def _parse_lrs(text: str) -> list[float]:
    try:
        lrs = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise UsageError(f"--lr takes numbers separated by commas, not {text!r}") from exc
    if not lrs or any(lr <= 0 for lr in lrs):
        raise UsageError("--lr must be one or more positive numbers")
    return lrs


def _progress(bar, prefix: str):  # type: ignore[no-untyped-def]
    tasks: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(f"{prefix}: {STEP_LABELS.get(stage, stage)}",
                                        total=total)
        bar.update(tasks[stage], completed=done, total=total)

    return progress


def train_cmd(
    dataset: str = typer.Option(None, "--dataset", "-d",
                                help="Dataset version (name or id) or an exported ImageFolder."),
    arch: str = typer.Option(None, "--arch", "-a",
                             help="Architecture: resnet34, resnet50 (the default of the study's "
                             "and the best recipe), resnet101, efficientnet_lite0, "
                             "efficientnet_lite1, efficientnet_lite2, or the feature ensemble "
                             "efficientnet_lite012 (the default of --recipe select; "
                             "trainer/registry.py)."),
    epochs: int = typer.Option(None, help="Epochs (recipe: 10)."),
    lr: str = typer.Option(None, "--lr", help="Learning rate (recipe: 1e-4); several, "
                           "comma-separated, queue a sweep."),
    batch_size: int = typer.Option(None, "--batch-size", help="Batch size (recipe: 16)."),
    mode: str = typer.Option("frozen", help="frozen (head only), finetune (last stage + "
                             "head) or full."),
    weights: str = typer.Option("imagenet", help="imagenet, none, or a path to weights."),
    views: int = typer.Option(None, help="Fast path: cached views per training image "
                              "(1 = centre crop only; more add augmented copies)."),
    weight_decay: float = typer.Option(None, "--weight-decay", help="Adam weight decay."),
    seed: int = typer.Option(None, help="Random seed (recipe: 0)."),
    image_size: int = typer.Option(None, "--image-size", help="Model input size (recipe: 224)."),
    tta: str = typer.Option(None, "--tta", help="Evaluation and prediction: none (recipe), "
                            "hflip (average over the image and its mirror image) or crops "
                            "(hflip plus five crops of the image at 9/7 scale, and their "
                            "mirrors)."),
    eval_fit: str = typer.Option(None, "--eval-fit", help="Evaluation and prediction: crop "
                                 "(recipe: resize, centre crop) or whole (the whole image)."),
    label_smoothing: float = typer.Option(None, "--label-smoothing",
                                          help="Cross-entropy label smoothing (recipe: 0)."),
    feature_layers: int = typer.Option(None, "--feature-layers", help="The head's input: "
                                       "the pooled output (1, recipe) plus the globally pooled "
                                       "outputs of the last n-1 stages."),
    feature_norm: str = typer.Option(None, "--feature-norm", help="none (recipe) or l2: each "
                                     "feature layer scaled to unit RMS before the head."),
    recipe: str = typer.Option("study", "--recipe", help="study: the study's recipe; best: "
                               "Shoal's best recipe for a frozen base (chosen by "
                               "cross-validation on web-20's training split); select: choose "
                               "by cross-validation on this dataset's training split, then "
                               "train the winner. Options given here override the recipe "
                               "(select: they are fixed, the rest is searched)."),
    folds: int = typer.Option(5, "--folds", help="Folds of --recipe select."),
    plain: bool = typer.Option(False, "--plain", help="Frozen mode without the feature cache."),
    queue: bool = typer.Option(False, "--queue", help="Enqueue on the train queue."),
    resume: int = typer.Option(None, "--resume", help="Resume run R from its last checkpoint "
                               "(with --epochs to train it further)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Train a classifier with the study's recipe (frozen base, new head, Adam), Shoal's best
    recipe, one chosen by cross-validation on the training split, or a sweep."""
    given: dict[str, Any] = {
        "epochs": epochs, "batch_size": batch_size, "views": views,
        "weight_decay": weight_decay, "seed": seed, "image_size": image_size, "tta": tta,
        "eval_fit": eval_fit, "label_smoothing": label_smoothing,
        "feature_layers": feature_layers, "feature_norm": feature_norm,
        "fast": False if plain else None,
    }
    req = TrainRequest(dataset=dataset, arch=arch, weights=weights, mode=mode, recipe=recipe,
                       given=given, lrs=_parse_lrs(lr) if lr else None, folds=folds,
                       resume=resume, epochs=epochs)
    with progress_bar() as bar:
        bars = JobBars(bar)
        outcome = train(req, wait=False if queue else None, listener=bars.step,
                        watch=bars.row, selecting=_progress(bar, "recipe selection"))
    results, selection = outcome.result, outcome.selection
    if as_json:
        print_json(results)
        return
    if selection is not None and selection.estimate is not None:
        e = selection.estimate
        console.print(f"honest estimate: {e.accuracy:.3f} [{e.interval[0]:.3f}, "
                      f"{e.interval[1]:.3f}] (95%) on {e.n} training photos nobody tuned on "
                      f"(nested cross-validation, the recipe chosen inside each of "
                      f"{len(e.outer)} outer folds); linear probe {e.probe_accuracy:.3f} "
                      f"[{e.probe_interval[0]:.3f}, {e.probe_interval[1]:.3f}]")
    elif selection is not None:
        console.print("no honest estimate: too few distinct photos per class for nested "
                      "cross-validation (3 outer folds need 3 per class)")
    if selection is not None:
        console.print(f"recipe chosen by {selection.folds}-fold cross-validation on "
                      f"{selection.n_train} training images ({len(selection.scores)} "
                      f"recipes, {selection.seconds:.0f} s): cv accuracy "
                      f"{selection.score.accuracy:.3f}; "
                      + ", ".join(f"{k} {selection.best[k]}" for k in selection.varied))
    for r in results:
        if r.get("queued"):
            console.print(f"run {r['run']}: job {r['job']} ({r['job_state']}); follow it with "
                          f"`shoal jobs show {r['job']}` and `shoal runs show {r['run']}`")
        else:
            interval = r.get("val_interval") or [0.0, 0.0]
            console.print(f"run {r['run']}: {r['state']}, val accuracy "
                          f"{r['val_accuracy']:.3f} [{interval[0]:.3f}, {interval[1]:.3f}] "
                          f"(last epoch), best epoch {r['best_val_accuracy']:.3f} (peeks at "
                          f"validation), final val loss "
                          f"{r['final_val_loss']:.3f}, {r['train_seconds']:.0f} s; TensorBoard "
                          f"logs in {r['tensorboard']}")


def _table(rows: list[dict[str, Any]], title: str) -> None:
    def fmt(value: Any, spec: str) -> str:
        return "" if value is None else format(value, spec)

    print_table(title, ["run", "arch", "dataset", "epochs", "best val acc", "final val loss",
                        "time", "state"], [
        (r["id"], r["arch"], r["dataset"], f"{r['epochs']}/{r['epochs_planned']}",
         fmt(r["best_val_accuracy"], ".3f"), fmt(r["final_val_loss"], ".3f"),
         "" if r["train_seconds"] is None else f"{r['train_seconds']:.0f} s", r["state"])
        for r in rows
    ])


@runs_app.command("list")
def runs_list(
    limit: int = typer.Option(50, help="Show at most this many, newest first."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The study's table for recent runs: arch, epochs, best val accuracy, final val loss,
    training time."""
    from trainer.runs import list_runs

    with catalog_session() as session:
        rows = list_runs(session, limit)
    if as_json:
        print_json(rows)
    else:
        _table(rows, f"{len(rows)} training runs")


@runs_app.command("show")
def runs_show(
    run_id: int = typer.Argument(..., help="Run id."),
    as_json: bool = JSON_OPTION,
) -> None:
    """One run: its settings, every epoch, per-class precision/recall/F1, the error if any."""
    from trainer.runs import run_detail

    with catalog_session() as session:
        data = run_detail(session, run_id)
    if as_json:
        print_json(data)
        return
    _table([data], f"run {run_id}")
    if data["error"]:
        console.print(f"[red]error:[/] {data['error']}")
    print_table("epochs", ["epoch", "train loss", "train acc", "val loss", "val acc", "s"], [
        (m["epoch"], f"{m['train_loss']:.4f}", f"{m['train_accuracy']:.3f}",
         f"{m['val_loss']:.4f}", f"{m['val_accuracy']:.3f}", f"{m['seconds']:.1f}")
        for m in data["epoch_metrics"]
    ])
    if data["class_metrics"]:
        print_table("per class (best epoch)", ["class", "precision", "recall", "F1", "support"], [
            (c["label"], f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}",
             c["support"]) for c in data["class_metrics"]
        ])


@runs_app.command("compare")
def runs_compare(
    run_ids: list[int] = typer.Argument(None, help="Runs to compare (default: all finished)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Runs side by side, best validation accuracy first."""
    from trainer.runs import compare_runs

    with catalog_session() as session:
        rows = compare_runs(session, run_ids or None)
    if as_json:
        print_json(rows)
    else:
        _table(rows, "runs compared (best validation accuracy first)")


@runs_app.command("promote")
def runs_promote(
    run_id: int = typer.Argument(..., help="A succeeded run."),
    note: str = typer.Option(None, "--note", help="Why (kept with the promotion)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Pin the run `shoal serve` predicts with (default: the best succeeded run).

    Every replica picks it up within seconds; earlier promotions stay as history."""
    from trainer.runs import promote_run

    with catalog_session() as session:
        row = promote_run(session, run_id, note)  # TrainingError: exit 2 (cli.common)
        data = {"run": row.run_id, "promoted_at": row.created_at, "note": row.note}
    if as_json:
        print_json(data)
    else:
        console.print(f"run {run_id} now serves predictions")


def predict_cmd(
    images: list[Path] = typer.Argument(..., help="Image files."),
    run: int = typer.Option(..., "--run", "-r", help="Training run whose best model predicts."),
    top_k: int = typer.Option(3, "--top-k", help="How many species per image."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Top-k species with probabilities for each image."""
    from trainer.predict import predict_files

    with catalog_session() as session:
        results = predict_files(session, run, images, top_k)
    if as_json:
        print_json(results)
        return
    print_table(f"run {run}: top {top_k}", ["image", "species", "probability"], [
        (r["file"] if i == 0 else "", p["label"], f"{p['probability']:.3f}")
        for r in results for i, p in enumerate(r["predictions"])
    ])


def report_cmd(
    run: int = typer.Option(..., "--run", "-r", help="Training run."),
    out: Path = typer.Option(None, "--out", "-o", help="HTML file (default: in the run's folder)."),
) -> None:
    """Write a self-contained HTML report: curves, per-class table, confusion matrix, samples."""
    from trainer.report import write_report

    with catalog_session() as session:
        path = write_report(session, run, out)
    console.print(f"report written to {escape(printable(str(path)))}")
