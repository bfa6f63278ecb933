"""Curation suspects over HTTP, on a catalog of real web-20 photos curated by the real pass
(tests/curate's catalog: a koi filed under baim, a flipped hilsa pHash misses): the listing the
CLI prints, its filters and pages, one image's suspicion, a curate job submitted with the
token, and the suspects page grouped by reason, in the test client and in headless Chromium."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Page, expect
from sqlalchemy import select
from typer.testing import CliRunner

from catalog.db import session_scope
from catalog.models import Image, ImageSuspicion
from pipeline.cli import app as cli_app
from pipeline.curate.passes import curate
from pipeline.serve.process import ServeProcess
from tests.curate.conftest import FAST, CurateCatalog, build_catalog
from tests.serve.conftest import TOKEN
from tests.serve.test_api import api, cli_json, dates, wait_finished
from tests.serve.test_browser import browser, page  # noqa: F401

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass(frozen=True)
class Curated:
    catalog: CurateCatalog
    run_id: int  # the pass made by the curate code itself, as tests/curate make it


def curated_catalog(fishdata: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Curated:
    monkeypatch.setenv("SHOAL_API_TOKEN", TOKEN)  # read with the rest by build_catalog
    catalog = build_catalog(fishdata, tmp, monkeypatch)
    with session_scope() as session:
        return Curated(catalog, curate(session, FAST).run_id)


@pytest.fixture
def curated(shoal_env, fishdata: Path, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Curated]:
    """On SQLite and on PostgreSQL (the ``shoal_env`` fixture's two databases)."""
    yield curated_catalog(fishdata, tmp_path, monkeypatch)


@pytest.fixture
def client(curated: Curated) -> Iterator[TestClient]:
    from pipeline.serve.app import create_app

    with TestClient(create_app(), client=("127.0.0.1", 50000)) as c:
        yield c


def stored(run_id: int) -> dict[int, ImageSuspicion]:
    """The run's suspects as the catalog holds them, read without the listing's query."""
    with session_scope() as session:
        rows = session.scalars(select(ImageSuspicion).where(ImageSuspicion.run_id == run_id))
        return {s.image_id: s for s in rows if s.suspect}


def sha_of(image_id: int) -> str:
    with session_scope() as session:
        return session.get_one(Image, image_id).sha256


def listing(client: TestClient, query: str = "") -> dict:
    return api(client.get(f"/v1/suspects?{query}"))


def test_the_listing_is_the_clis_and_holds_what_the_pass_wrote(client: TestClient,
                                                                curated: Curated) -> None:
    rows = stored(curated.run_id)
    data = listing(client, "limit=0")
    assert data == cli_json("curate", "suspects", "--limit", "0")
    run = data["run"]
    assert run["id"] == curated.run_id and run["suspects"] == data["total"] == len(rows) > 0
    assert run["pool"] > 30 and run["folds"] == FAST.folds
    assert sum(run["reasons"].values()) >= len(rows)
    assert {s["image_id"] for s in data["suspects"]} == set(rows)
    keys = [(-s["score"], s["image_id"]) for s in data["suspects"]]
    assert keys == sorted(keys)  # most doubtful first, ties by image id
    for s in data["suspects"]:
        row = rows[s["image_id"]]
        assert (s["score"], s["reasons"], s["given"], s["suggested"]) == (
            row.score, row.reasons, row.given_label, row.suggested_label)
        assert s["sha256"] == sha_of(s["image_id"])
    # the flipped hilsa: a copy pHash missed, linked to its original by the features
    [copy] = [s for s in data["suspects"] if s["reasons"] == ["copy"]]
    pair = {curated.catalog.original, curated.catalog.flipped}
    assert {copy["image_id"], copy["details"]["copy_of"]} == pair


def test_filters_by_reason_species_and_suggestion(client: TestClient, curated: Curated) -> None:
    rows = stored(curated.run_id)
    reasons = {r for s in rows.values() for r in s.reasons}
    for reason in reasons:
        data = listing(client, f"reason={reason}&limit=0")
        assert data == cli_json("curate", "suspects", "--reason", reason, "--limit", "0")
        expected = {i for i, s in rows.items() if reason in s.reasons}
        assert {s["image_id"] for s in data["suspects"]} == expected
        assert data["total"] == len(expected) == data["run"]["reasons"][reason]
    both = listing(client, "reason=copy&reason=label&limit=0")
    assert {s["image_id"] for s in both["suspects"]} == {
        i for i, s in rows.items() if {"copy", "label"} & set(s.reasons)}
    for slug in ("baim", "hilsa"):
        data = listing(client, f"species={slug}&limit=0")
        assert {s["image_id"] for s in data["suspects"]} == {
            i for i, s in rows.items() if s.given_label == slug}
        assert all(s["given"] == slug for s in data["suspects"])
    suggested = next(s.suggested_label for s in rows.values() if s.suggested_label)
    data = listing(client, f"suggested={suggested}&limit=0")
    assert data["total"] == sum(s.suggested_label == suggested for s in rows.values())
    assert listing(client, "species=no-such-fish")["total"] == 0

    bad = client.get("/v1/suspects?reason=labl")
    assert bad.status_code == 400 and "unknown reason labl" in bad.json()["error"]["message"]
    assert "not_a_fish" in bad.json()["error"]["message"]
    cli = CliRunner().invoke(cli_app, ["curate", "suspects", "--reason", "labl"])
    assert cli.exit_code == 2 and "unknown reason labl" in cli.output
    assert "Traceback" not in cli.output
    missing = client.get("/v1/suspects?run=999999")
    assert missing.status_code == 404 and missing.json()["error"]["message"] == \
        "no curation run 999999"
    assert client.get("/v1/suspects?order=sideways").status_code == 422
    assert client.get("/v1/suspects?limit=-1").status_code == 422


def test_pages_of_the_listing_tile_it_in_both_orders(client: TestClient,
                                                     curated: Curated) -> None:
    full = listing(client, "limit=0")["suspects"]
    assert len(full) >= 3
    pages = [listing(client, f"limit=2&offset={o}") for o in range(0, len(full) + 2, 2)]
    assert all(p["total"] == len(full) and p["limit"] == 2 for p in pages)
    assert [s for p in pages for s in p["suspects"]] == full
    assert pages[-1]["suspects"] == []
    ascending = listing(client, "order=asc&limit=0")["suspects"]
    keys = [(s["score"], s["image_id"]) for s in ascending]
    assert keys == sorted(keys) and len(ascending) == len(full)
    assert listing(client, "order=asc&limit=1&offset=1")["suspects"] == ascending[1:2]


def test_an_images_suspicion_and_a_second_pass_submitted_as_a_job(client: TestClient,
                                                                  curated: Curated) -> None:
    first = curated.run_id
    wrong = sha_of(curated.catalog.wrong)  # a koi photo filed under baim
    shown = api(client.get(f"/v1/images/{wrong}/suspicion"))
    with session_scope() as session:
        row = session.scalar(select(ImageSuspicion).where(
            ImageSuspicion.run_id == first, ImageSuspicion.image_id == curated.catalog.wrong))
    assert (shown["run"], shown["runs"], shown["image_id"]) == (first, [first],
                                                                curated.catalog.wrong)
    assert (shown["given"], shown["suspect"], shown["score"]) == ("baim", row.suspect, row.score)
    assert shown["details"]["fold"] in range(FAST.folds)
    assert client.get(f"/v1/images/{'0' * 64}/suspicion").status_code == 404
    assert client.get("/v1/images/not-a-hash/suspicion").status_code == 422

    # a pass over HTTP: only with the token, checked before it is queued, then the real job
    body = {"folds": 4, "quality": False}
    assert client.post("/v1/jobs/curate", json=body).status_code == 401
    wrong_token = client.post("/v1/jobs/curate", json=body,
                              headers={"Authorization": "Bearer nope"})
    assert wrong_token.status_code == 403
    assert client.post("/v1/jobs/curate", json={"run": 999999}, headers=AUTH).status_code == 404
    unknown = client.post("/v1/jobs/curate", json={"species": ["nope"]}, headers=AUTH)
    assert unknown.status_code == 404
    assert client.post("/v1/jobs/curate", json={"folds": 1}, headers=AUTH).status_code == 422
    assert listing(client)["run"]["id"] == first  # the refusals queued nothing

    r = client.post("/v1/jobs/curate", json=body, headers={**AUTH, "Idempotency-Key": "c-1"})
    assert r.status_code == 202, r.text
    [queued] = r.json()
    assert queued["kind"] == "curate"
    job = wait_finished(client, queued["id"], timeout=300)  # in-process: a thread runs it
    assert job["state"] == "succeeded", job["error"]
    second = job["result"]["run_id"]
    assert second != first and job["result"]["suspects"] == listing(client)["total"]
    again = client.post("/v1/jobs/curate", json=body, headers={**AUTH, "Idempotency-Key": "c-1"})
    assert [j["id"] for j in again.json()] == [job["id"]]
    assert listing(client)["run"]["id"] == second  # the latest by default
    assert listing(client, f"run={first}&limit=0")["total"] == len(stored(first))  # kept
    shown = api(client.get(f"/v1/images/{wrong}/suspicion"))
    assert (shown["run"], shown["runs"]) == (second, [first, second])
    assert api(client.get(f"/v1/images/{wrong}/suspicion?run={first}"))["run"] == first
    # `shoal curate` with the job's options finds the job's run, and lists its suspects as
    # the API does (the same function)
    result = CliRunner().invoke(cli_app, ["curate", "--folds", "4", "--no-quality", "--json"])
    assert result.exit_code == 0, result.output
    printed = dates(json.loads(result.stdout))  # the progress bars are on stderr
    assert printed["run_id"] == second and printed["reused"] is True
    assert printed["suspects_listed"] == listing(client, f"run={second}")["suspects"]


def test_the_page_groups_the_suspects_by_reason(client: TestClient, curated: Curated) -> None:
    html = {"Accept": "text/html"}
    counts = listing(client)["run"]["reasons"]
    text = client.get("/suspects", headers=html).text
    for reason in counts:
        assert f'data-reason="{reason}"' in text
    assert text.count('<section class="reason"') == len(counts)
    assert "/images/" in text and "/thumb?size=128" in text
    one = client.get("/suspects?reason=copy", headers=html).text
    assert one.count('<section class="reason"') == 1 and "page 1 of 1" in one
    dashboard = client.get("/", headers=html).text
    assert 'href="/suspects"' in dashboard and f"curation run {curated.run_id}" in dashboard
    bad = client.get("/suspects?reason=labl", headers=html)
    assert bad.status_code == 400 and "unknown reason" in bad.text


def test_the_suspects_page_in_headless_chromium(sqlite_env, fishdata: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                page: Page) -> None:  # noqa: F811
    curated = curated_catalog(fishdata, tmp_path, monkeypatch)
    rows = stored(curated.run_id)
    reasons = {r for s in rows.values() for r in s.reasons}
    with ServeProcess(tmp_path / "serve.log") as server:
        page.goto(server.url + "/")
        page.click("nav >> text=Suspects")
        expect(page.locator("h1")).to_have_text("Suspects")
        expect(page.locator("#run")).to_contain_text(f"Curation run {curated.run_id}")
        sections = page.locator("section.reason")
        expect(sections).to_have_count(len(reasons))
        assert {sections.nth(i).get_attribute("data-reason")
                for i in range(len(reasons))} == reasons
        for reason in reasons:
            n = sum(reason in s.reasons for s in rows.values())
            expect(page.locator(f"#reason-{reason} figure")).to_have_count(min(n, 24))
        page.wait_for_function("() => [...document.querySelectorAll('section.reason img')]"
                               ".every(i => i.complete && i.naturalWidth > 0)")
        copy = page.locator("#reason-copy figure").first
        expect(copy).to_contain_text("copy of #")
        expect(copy.locator(".given")).to_have_text("—")

        def scores() -> list[list[float]]:
            return page.evaluate("() => [...document.querySelectorAll('section.reason')]"
                                 ".map(s => [...s.querySelectorAll('figure')]"
                                 ".map(f => parseFloat(f.dataset.score)))")

        assert all(s == sorted(s, reverse=True) for s in scores())
        page.click(".sort a[data-order=asc]")
        expect(page.locator(".sort b")).to_have_text("least doubtful first")
        assert all(s == sorted(s) for s in scores())
        page.select_option("select[name=reason]", "copy")
        page.click("form.filter button")
        expect(sections).to_have_count(1)
        expect(page.locator("section.reason h2")).to_contain_text("copy")
