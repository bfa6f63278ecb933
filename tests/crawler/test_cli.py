"""`shoal crawl`: one species or all active ones, the summary, JSON, and clear user errors."""

from __future__ import annotations

import json

from sqlalchemy import update
from typer.testing import CliRunner

from catalog.db import session_scope
from catalog.models import Species
from pipeline.cli import app
from tests.crawler.conftest import allow_local

runner = CliRunner()


def test_crawl_all_active_species_with_limit_as_json(crawl_env):
    with session_scope() as s:
        s.execute(update(Species).where(Species.slug.not_in(["mola", "shing"]))
                  .values(active=False))
    result = runner.invoke(app, ["crawl", "--all", "--source", "baike", "--limit", "3",
                                 "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout[result.stdout.index("{"):])
    assert [(c["species"], c["source"], c["state"]) for c in data["crawls"]] == [
        ("mola", "baike", "succeeded"), ("shing", "baike", "succeeded")]
    assert all(c["stats"]["images_found"] == 3 for c in data["crawls"])
    assert all(c["stats"]["stored"] + c["stats"]["duplicates"] == 3 for c in data["crawls"])


def test_crawl_failure_is_reported_with_exit_code(crawl_env, monkeypatch):
    monkeypatch.setenv("SHOAL_CRAWL_SITE_BAIKE", "http://127.0.0.1:9/baike")
    allow_local(monkeypatch, "http://127.0.0.1:9")  # reachable, not served
    result = runner.invoke(app, ["crawl", "--species", "mola", "--source", "baike"])
    assert result.exit_code == 1
    assert "1 crawls" in result.output  # the summary table, then the error
    assert "no page could be fetched" in result.output
    assert "1 of 1 crawls failed" in result.output


def test_crawl_user_errors(crawl_env):
    cases = [
        (["crawl", "--source", "baike"], "give --species SLUG or --all"),
        (["crawl", "--species", "mola", "--source", "flickr"], "unknown source 'flickr'"),
        (["crawl", "--species", "mola", "--source", "shop"], "shop:PROFILE"),
        (["crawl", "--species", "not-a-fish"], "unknown species 'not-a-fish'"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
