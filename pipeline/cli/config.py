"""`shoal config`: the settings in force, section by section."""

from __future__ import annotations

from catalog.settings import get_settings, shown_settings
from pipeline.cli.common import JSON_OPTION, print_json, print_table


def config_cmd(as_json: bool = JSON_OPTION) -> None:
    """Print every section of the settings in force (secrets masked)."""
    shown = shown_settings(get_settings())
    if as_json:
        print_json(shown)
        return
    rows = [(section, name, value) for section, values in shown.items()
            for name, value in values.items()]
    print_table("settings", ["section", "name", "value"], rows)
