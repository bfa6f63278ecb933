"""The `shoal` command. Each group lives in its own module and is registered here."""

from __future__ import annotations

import typer

from pipeline.cli import catalog_cmds
from pipeline.cli import train as train_cmds
from pipeline.cli.common import ShoalGroup

app = typer.Typer(
    cls=ShoalGroup,
    help="Shoal: build fish-species image datasets from the web and train classifiers on them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(catalog_cmds.db_app, name="db")
app.add_typer(catalog_cmds.species_app, name="species")
app.command("import")(catalog_cmds.import_cmd)
app.command("config")(catalog_cmds.config_cmd)
train_cmds.register(app)


def main() -> None:
    app()
