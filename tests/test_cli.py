import json
from pathlib import Path

from typer.testing import CliRunner

from catalog.settings import get_settings
from pipeline.cli import app

runner = CliRunner()


def test_species_list_prints_thirty(shoal_env):
    result = runner.invoke(app, ["species", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 30
    slugs = {r["slug"] for r in rows}
    assert {"large-yellow-croaker", "small-yellow-croaker", "hairtail", "silver-pomfret",
            "chub-mackerel", "japanese-spanish-mackerel"} <= slugs
    assert all(r["latin_name"] and r["name_zh"] and r["name_en"] for r in rows)
    table = runner.invoke(app, ["species", "list"])
    assert "Larimichthys" in table.stdout and "30 species" in table.stdout


def test_species_add_and_import(shoal_env, tmp_path):
    assert runner.invoke(app, ["species", "add", "hilsa", "--latin", "Tenualosa ilisha",
                               "--en", "Hilsa shad", "--no-resolve"]).exit_code == 0
    f = tmp_path / "more.yaml"
    f.write_text("species:\n- slug: rohu\n  latin_name: Labeo rohita\n"
                 "- slug: hilsa\n  latin_name: Tenualosa ilisha\n  name_zh: 鲥鱼\n")
    result = runner.invoke(app, ["species", "import", str(f), "--no-resolve"])
    assert result.exit_code == 0, result.output
    assert "1 added, 1 updated" in result.stdout
    rows = json.loads(runner.invoke(app, ["species", "list", "--json"]).stdout)
    assert len(rows) == 32
    assert {r["slug"]: r for r in rows}["hilsa"]["name_zh"] == "鲥鱼"


def test_species_import_bad_yaml_fails_clearly(shoal_env, tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("species: [ {slug: x\n")
    result = runner.invoke(app, ["species", "import", str(f)])
    assert result.exit_code == 2 and "not valid YAML" in result.output
    f.write_text("species:\n- slug: Bad Slug\n  latin_name: X\n")
    result = runner.invoke(app, ["species", "import", str(f)])
    assert result.exit_code == 2 and "slug" in result.output
    result = runner.invoke(app, ["species", "import", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "cannot read" in result.output


def test_unreachable_database_fails_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv("SHOAL_DATABASE_URL",
                       "postgresql+psycopg://shoal:secret@127.0.0.1:1/none?connect_timeout=2")
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["species", "list"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 3
    assert "cannot reach the catalog database" in result.output
    assert "secret" not in result.output


def test_unmigrated_database_says_what_to_run(monkeypatch, tmp_path):
    monkeypatch.setenv("SHOAL_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["species", "list"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 3 and "shoal db upgrade" in result.output


def test_config_masks_token(monkeypatch, shoal_env):
    monkeypatch.setenv("SHOAL_LABEL_STUDIO_TOKEN", "abcdef0123456789abcdef")
    get_settings.cache_clear()
    result = runner.invoke(app, ["config", "--json"])
    data = json.loads(result.stdout)
    assert data["review"]["SHOAL_LABEL_STUDIO_TOKEN"] == "abcd…"
    assert "0123456789" not in result.stdout


def test_every_command_has_help():
    import click
    import typer.main

    root = typer.main.get_command(app)

    def walk(cmd, path):
        yield path
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*path, name])

    for path in walk(root, []):
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


def test_help_imports_no_heavy_library():
    """`shoal --help` (and every command's parsing) stays quick: torch, cleanlab, scikit-learn,
    faiss and Scrapy are imported inside the commands that use them."""
    import subprocess
    import sys

    probe = ("import sys\nfrom typer.testing import CliRunner\nfrom pipeline.cli import app\n"
             "CliRunner().invoke(app, ['--help'])\n"
             "print(','.join(m for m in ('torch', 'cleanlab', 'sklearn', 'faiss', 'scrapy') "
             "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
