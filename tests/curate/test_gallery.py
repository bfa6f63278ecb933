"""The gallery in a real headless Chromium: sections per reason, thumbnails that load, and
the sort buttons reorder every section."""

from __future__ import annotations

import json

from playwright.sync_api import sync_playwright
from sqlalchemy import select

from catalog.db import session_scope
from catalog.models import ImageSuspicion
from pipeline.curate.gallery import write_gallery
from pipeline.curate.passes import curate
from tests.curate.conftest import FAST

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def test_the_gallery_opens_and_sorts_in_headless_chromium(catalog, tmp_path):
    with session_scope() as session:
        run = curate(session, FAST).run_id
        out = write_gallery(session, run, tmp_path / "gallery.html")
        suspects = session.scalars(select(ImageSuspicion).where(
            ImageSuspicion.run_id == run, ImageSuspicion.suspect.is_(True))).all()
    reasons = {r for s in suspects for r in s.reasons}
    assert "copy" in reasons  # the flipped hilsa
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page()
        page.goto(out.as_uri())
        assert page.title() == f"Shoal curation run {run}"
        shown = {el.get_attribute("data-reason") for el in page.query_selector_all("section")}
        assert shown == reasons
        for reason in reasons:
            n = sum(reason in s.reasons for s in suspects)
            assert len(page.query_selector_all(f"#reason-{reason} figure")) == n
        widths = page.eval_on_selector_all("figure img", "els => els.map(e => e.naturalWidth)")
        assert widths and all(w > 0 for w in widths)  # every thumbnail decodes

        def order(key: str) -> list[list[str]]:
            return json.loads(page.evaluate(
                "k => JSON.stringify(Array.from(document.querySelectorAll('section .grid'))"
                ".map(g => Array.from(g.children).map(f => f.dataset[k])))", key))

        page.click("button[data-key=given]")
        assert page.evaluate("document.body.dataset.sortedBy") == "given"
        assert all(section == sorted(section) for section in order("given"))
        page.click("button[data-key=score]")
        for section in order("score"):
            assert [float(v) for v in section] == sorted((float(v) for v in section),
                                                         reverse=True)
        browser.close()
