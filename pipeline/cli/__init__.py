"""The `shoal` command. Each group lives in its own module and is registered here."""

from __future__ import annotations

import typer

from pipeline.cli import catalog_cmds, crawl, dedupe, demo, jobs, review, schedule, workers
from pipeline.cli import train as train_cmds
from pipeline.cli.common import ShoalGroup
from pipeline.cli.dataset import dataset_app

app = typer.Typer(
    cls=ShoalGroup,
    help="Shoal: build fish-species image datasets from the web and train classifiers on them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(catalog_cmds.db_app, name="db")
app.add_typer(catalog_cmds.species_app, name="species")
app.add_typer(review.review_app, name="review")
app.add_typer(dataset_app, name="dataset")
app.command("import")(catalog_cmds.import_cmd)
app.command("config")(catalog_cmds.config_cmd)
app.add_typer(jobs.jobs_app, name="jobs")
app.add_typer(schedule.schedule_app, name="schedule")
app.command("worker")(workers.worker_cmd)
app.command("beat")(workers.beat_cmd)
app.add_typer(crawl.app, name="crawl")
app.command("dedupe")(dedupe.dedupe_cmd)
train_cmds.register(app)
app.command("demo")(demo.demo_cmd)


def main() -> None:
    app()
