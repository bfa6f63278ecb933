"""The main pages in headless Chromium (Debian's, driven by Playwright) against a real
`shoal serve`: live job progress, the version browser's thumbnails, run charts, the diff, and
the upload form predicting a photo."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from pipeline.serve.process import ServeProcess
from tests.serve.conftest import TOKEN, photo

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).is_file(), "apt-get install -y chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert errors == [], errors  # no JavaScript errors on any page


def test_upload_form_predicts_a_photo(server: ServeProcess, page: Page, fishdata: Path) -> None:
    page.goto(f"{server.url}/predict")
    page.set_input_files("input[name=files]", str(photo(fishdata, "Koi", 15)))
    page.fill("input[name=top_k]", "3")
    page.click("button[type=submit]")
    expect(page.locator("#model")).to_contain_text("trained on small-v1")
    rows = page.locator("section.prediction tbody tr")
    expect(rows).to_have_count(3)
    species = sorted(rows.nth(i).locator("td").first.inner_text() for i in range(3))
    assert species == ["baim", "hilsa", "koi"]
    page.set_input_files("input[name=files]", files=[
        {"name": "page.jpg", "mimeType": "image/jpeg", "buffer": b"<!doctype html><p>"}])
    page.click("button[type=submit]")
    expect(page.locator("#error")).to_contain_text("page.jpg: not_an_image")


def test_dashboard_shows_a_new_job_live(server: ServeProcess, page: Page) -> None:
    page.goto(server.url + "/")
    expect(page.locator(".stages")).to_contain_text("unique")
    r = httpx.post(f"{server.url}/v1/jobs/dataset-create", json={"name": "browser-v1"},
                   headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 202, r.text
    job_id = r.json()[0]["id"]
    row = page.locator(f'#jobs tr[data-job="{job_id}"]')
    expect(row).to_be_visible(timeout=15_000)  # added by the page's polling, no reload
    expect(row.locator(".state")).to_have_text("failed", timeout=30_000)  # nothing approved
    expect(row.locator(".msg")).to_contain_text("approved")


def test_version_browser_thumbnails_sources_and_pages(server: ServeProcess, page: Page) -> None:
    page.goto(f"{server.url}/datasets")
    page.click("text=small-v1")
    expect(page.locator("h1")).to_have_text("small-v1")
    thumbs = page.locator(".grid figure img")
    expect(thumbs).to_have_count(18)
    page.wait_for_function("() => [...document.querySelectorAll('.grid img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    expect(page.locator(".grid figcaption").first).to_contain_text("no license given")
    page.select_option("select[name=species]", "koi")
    page.select_option("select[name=split]", "val")
    page.click("form.filter button")
    expect(page.locator(".grid figure")).to_have_count(2)
    expect(page.locator("p.muted")).to_contain_text("2 matching images")


def test_runs_charts_confusion_and_compare(server: ServeProcess, served, page: Page) -> None:
    page.goto(f"{server.url}/runs")
    page.locator("input[name=ids]").first.check()
    page.click("text=Compare the chosen runs")
    expect(page.locator("h1")).to_have_text("Runs compared")
    expect(page.locator("svg.chart")).to_have_count(2)
    page.goto(f"{server.url}/runs/{served.run_id}")
    expect(page.locator("svg.chart polyline")).to_have_count(4)
    cells = page.locator("table.confusion tbody td")
    expect(cells).to_have_count(9)
    total = sum(int(cells.nth(i).inner_text()) for i in range(9))
    assert total == 6


def test_species_and_diff_pages(server: ServeProcess, page: Page) -> None:
    page.goto(f"{server.url}/species")
    expect(page.locator("table").first).to_contain_text("koi")
    page.goto(f"{server.url}/datasets/small-v1/diff/small-v1")
    expect(page.locator("p.summary")).to_contain_text("0 added")
