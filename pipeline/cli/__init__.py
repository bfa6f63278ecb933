"""The `shoal` command. Each group lives in its own module and is registered here."""

from __future__ import annotations

import typer

from pipeline.cli import (
    config,
    crawl,
    curate,
    db,
    dedupe,
    demo,
    jobs,
    photos,
    review,
    schedule,
    serve,
    sources,
    species,
    workers,
)
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
app.add_typer(db.db_app, name="db")
app.add_typer(species.species_app, name="species")
app.add_typer(sources.sources_app, name="sources")
app.add_typer(review.review_app, name="review")
app.add_typer(dataset_app, name="dataset")
app.command("import")(photos.import_cmd)
app.command("config")(config.config_cmd)
app.add_typer(jobs.jobs_app, name="jobs")
app.add_typer(schedule.schedule_app, name="schedule")
app.command("worker")(workers.worker_cmd)
app.command("beat")(workers.beat_cmd)
app.add_typer(crawl.app, name="crawl")
app.command("dedupe")(dedupe.dedupe_cmd)
app.add_typer(curate.curate_app, name="curate")
train_cmds.register(app)
app.command("demo")(demo.demo_cmd)
app.command("serve")(serve.serve_cmd)


def main() -> None:
    app()
