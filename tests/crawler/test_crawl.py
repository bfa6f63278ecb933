"""Every spider against the local site: what is stored, what is refused and why, and stats."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from catalog.db import session_scope
from catalog.imaging import ImageRejected, Reject, normalise
from catalog.models import CrawlJob, Image, ImageSource, ImageStatus, Job, JobState
from catalog.settings import get_settings
from crawler.crawl_process import state_dir
from crawler.runner import CrawlFailed, run_crawl
from pipeline.demo.site.hostile import hostile_files
from tests.crawler.conftest import allow_local

NETWORK_REASONS = {
    "/net/404.jpg": Reject.HTTP_ERROR,
    "/net/loop-a.jpg": Reject.REDIRECT_LOOP,
    "/net/slow.jpg": Reject.TIMEOUT,
    "/net/huge.jpg": Reject.TOO_LARGE,
    "/private/hidden.jpg": Reject.ROBOTS_DISALLOWED,
}


def _good_hashes(raws: list[bytes]) -> set[str]:
    out = set()
    for raw in raws:
        with contextlib.suppress(ImageRejected):
            out.add(normalise(raw).sha256)
    return out


def _counts() -> tuple[int, int]:
    with session_scope() as s:
        return (s.scalar(select(func.count()).select_from(Image)),
                s.scalar(select(func.count()).select_from(ImageSource)))


def _job(crawl_job_id: int) -> CrawlJob:
    with session_scope() as s:
        row = s.get(CrawlJob, crawl_job_id)
        assert row is not None
        return row


def test_all_sources_store_each_photo_once_and_record_every_hostile_reason(crawl_env, fishdata):
    ids = {src: run_crawl("mola", src) for src in
           ("shop:market", "wikimedia", "inaturalist", "baike", "gbif")}
    jobs = {src: _job(i) for src, i in ids.items()}
    assert all(j.state == JobState.SUCCEEDED and j.error is None for j in jobs.values())
    assert all(j.started_at and j.finished_at for j in jobs.values())

    folder = fishdata / "web-20" / "Mola"
    photos = _good_hashes([p.read_bytes() for p in sorted(folder.iterdir())])
    repaired = _good_hashes([raw for raw, reason in hostile_files().values() if reason is None])
    base = crawl_env.base_url
    with session_scope() as s:
        stored = set(s.scalars(select(Image.sha256).where(Image.status != ImageStatus.INVALID)))
        assert stored == photos | repaired  # every good photo once, whoever found it
        for name, (_raw, reason) in hostile_files().items():
            src = s.scalar(select(ImageSource).where(ImageSource.url == f"{base}/hostile/{name}"))
            assert src is not None and src.image is not None, name
            assert src.image.reject_reason == reason, name
        for path, reason in NETWORK_REASONS.items():
            src = s.scalar(select(ImageSource).where(ImageSource.url == base + path))
            assert src is not None and src.image_id is None, path
            assert src.error == reason, path
        by_site = dict(s.execute(select(ImageSource.site, func.count())
                                 .group_by(ImageSource.site)).all())
        inat = s.scalars(select(ImageSource).where(ImageSource.site == "inaturalist.org")).all()
        commons = s.scalars(select(ImageSource).where(
            ImageSource.site == "commons.wikimedia.org")).all()
        shop_urls = set(s.scalars(select(ImageSource.url).where(
            ImageSource.site == "market.example.com")))
        shop_links = dict(s.execute(select(ImageSource.page_url, ImageSource.link_url).where(
            ImageSource.site == "market.example.com", ImageSource.link_url.is_not(None))).all())
        baike_urls = set(s.scalars(select(ImageSource.url).where(
            ImageSource.site == "baike.baidu.com")))
        gbif = s.scalars(select(ImageSource).where(ImageSource.site == "gbif.org")).all()

    # each source found the folder under its own URLs
    assert by_site["market.example.com"] == 19 + len(hostile_files()) + len(NETWORK_REASONS)
    assert by_site["baike.baidu.com"] == 19
    assert by_site["commons.wikimedia.org"] == 19
    # iNaturalist: the large size, licensed photos only (1 in 5 is all-rights-reserved here)
    assert jobs["inaturalist"].stats["skipped"]["all_rights_reserved"] == 19 - len(inat)
    assert all(src.url.endswith("/large.jpg") and src.license.startswith("CC") for src in inat)
    assert all(src.page_url.startswith(f"{base}/inat/observations/") and src.artist
               for src in inat)
    # Commons: license, license URL and artist from extmetadata, description page as page
    assert all(src.license and src.artist and src.artist.startswith("Diver") for src in commons)
    assert all("/commons/wiki/File:" in src.page_url for src in commons)
    # the shop: the largest srcset / lazy data-src, never the small src or the placeholder
    assert set(crawl_env.shop_urls("Amblypharyngodon mola")) <= shop_urls
    assert not any(u.endswith(("w320.jpg", "blank.gif")) for u in shop_urls)

    shop = jobs["shop:market"].stats
    expected = {r: 1 for r in NETWORK_REASONS.values()}
    for _raw, reason in hostile_files().values():
        if reason:
            expected[reason] = expected.get(reason, 0) + 1
    assert shop["rejected"] == expected
    assert shop["stored"] + shop["duplicates"] == 19 + len(repaired)
    assert shop["images_found"] == 19 + len(hostile_files()) + len(NETWORK_REASONS)
    assert shop["requests"] >= shop["images_found"] and shop["pages"] == 2  # 2 keywords
    # every drop counted by reason: the shop's card without a picture, Commons' video, PDF
    # and SVG files; ad links unwrapped to the product page, the link as found kept
    assert shop["skipped"] == {"no_url": 1}
    assert jobs["wikimedia"].stats["skipped"]["not_an_image_type"] == 3
    assert shop_links and all(link.startswith(f"{base}/shop/click?url=") and
                              page.startswith(f"{base}/shop/item/")
                              for page, link in shop_links.items())
    # Baike: the full picture, not the w_268 thumbnail of the present-day markup
    assert not any("x-bce-process" in u for u in baike_urls)
    # GBIF: every occurrence's still image, with license, author and occurrence page
    assert by_site["gbif.org"] == 19 and all(
        src.license.startswith("CC") and src.license_url and src.artist
        and src.page_url.startswith(f"{base}/gbif/occurrence/") for src in gbif)
    assert all(j.warning is None for j in jobs.values())
    later = [jobs[s].stats for s in ("wikimedia", "inaturalist", "baike", "gbif")]
    assert all(st["stored"] == 0 and st["duplicates"] == st["images_found"] for st in later)
    assert not state_dir(get_settings().data_dir, ids["shop:market"]).exists()


@contextlib.contextmanager
def serving(body: bytes, status: int = 200):
    """Every path on a loopback server answers ``body`` (a recorded page)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            self.send_response(404 if self.path == "/robots.txt" else status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_crawl_whose_pages_yield_nothing_ends_with_a_warning(crawl_env, recordings,
                                                               monkeypatch):
    """The recorded Baike home page stands for an article page whose layout changed."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    page = (recordings / "baike" / "zhxieml__httpbaike.baidu.com.html").read_bytes()
    with serving(page) as base:
        monkeypatch.setenv("SHOAL_CRAWL_SITE_BAIKE", base)
        allow_local(monkeypatch, base)
        row = _job(run_crawl("mola", "baike"))
        assert row.state == JobState.SUCCEEDED and row.error is None
        assert "pages yielded no image" in row.warning
        assert "without a picture the selectors find" in row.warning
        assert row.stats["articles_without_picture"] == row.stats["pages"] > 0
        runner = CliRunner()
        shown = runner.invoke(app, ["crawl", "--species", "mola", "--source", "baike"])
        assert shown.exit_code == 0, shown.output
        assert "warning: mola · baike: " in shown.output  # under the table, one line
        assert "pages yielded no image" in shown.output
        queued = runner.invoke(app, ["jobs", "submit", "crawl", "-a", "species=mola",
                                     "-a", "source=baike", "--json"])
        assert queued.exit_code == 0, queued.output
        job_id = json.loads(queued.stdout)[0]["id"]
    from pipeline.cli.jobs import note  # the note column of `shoal jobs list`

    listed = json.loads(runner.invoke(app, ["jobs", "list", "--json"]).stdout)
    assert note(listed[0]).startswith("warning: 1 pages yielded no image")
    shown = json.loads(runner.invoke(app, ["jobs", "show", str(job_id), "--json"]).stdout)
    assert "pages yielded no image" in shown["result"]["warning"]
    assert shown["result"]["dropped"] == shown["result"]["stats"]["skipped"]


def test_sources_check_reports_parse_health(crawl_env, recordings, monkeypatch):
    from typer.testing import CliRunner

    from pipeline.cli import app

    runner = CliRunner()
    sources = ["--source", "wikimedia", "--source", "inaturalist", "--source", "gbif",
               "--source", "shop:market"]
    healthy = runner.invoke(app, ["sources", "check", "--species", "mola", *sources, "--json"])
    assert healthy.exit_code == 0, healthy.output
    reports = {r["source"]: r for r in json.loads(healthy.stdout)["sources"]}
    assert all(r["health"] == "ok" and r["images_found"] >= 1 and r["sample"]
               for r in reports.values()), reports
    with session_scope() as s:  # a check stores nothing
        assert s.scalar(select(func.count()).select_from(ImageSource)) == 0
    page = (recordings / "baike" / "zhxieml__httpbaike.baidu.com.html").read_bytes()
    with serving(page) as base:
        monkeypatch.setenv("SHOAL_CRAWL_SITE_BAIKE", base)
        monkeypatch.setenv("SHOAL_CRAWL_SITE_INATURALIST_API", "http://127.0.0.1:9/v1")
        allow_local(monkeypatch, base, "http://127.0.0.1:9")  # reachable, 9 not served
        sick = runner.invoke(app, ["sources", "check", "--species", "mola", "--source", "baike",
                                   "--source", "inaturalist", "--json"])
    assert sick.exit_code == 1
    reports = {r["source"]: r for r in json.loads(sick.stdout)["sources"]}
    assert reports["baike"]["health"] == "warning"
    assert "without a picture" in reports["baike"]["warnings"][0]
    assert reports["inaturalist"]["health"] == "failed"
    assert "no page could be fetched" in reports["inaturalist"]["error"]


def test_recrawl_adds_no_rows(crawl_env_any_db):
    first = _job(run_crawl("shing", "baike"))
    counts = _counts()
    second = _job(run_crawl("shing", "baike"))
    assert first.id != second.id
    assert _counts() == counts
    assert first.stats["stored"] == counts[0] > 0
    assert 1 <= first.stats["ingest_batches"] <= first.stats["images_found"]
    assert second.stats["stored"] == 0 and second.stats["duplicates"] == 0
    assert second.stats["existing"] == first.stats["images_found"]
    with session_scope() as s:  # the sources now point at the latest sighting's job
        assert s.scalar(select(func.max(ImageSource.last_seen))) >= second.started_at


def test_limit_and_queued_job_is_not_crawled_twice(crawl_env):
    with session_scope() as s:
        job = Job(kind="crawl", args={"species": "shing"})
        s.add(job)
        s.flush()
        job_id = job.id
    crawl_job_id = run_crawl("shing", "wikimedia", limit=4, job_id=job_id)
    assert _job(crawl_job_id).stats["images_found"] == 4
    assert run_crawl("shing", "wikimedia", limit=4, job_id=job_id) == crawl_job_id
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(CrawlJob)) == 1


def test_unreachable_site_fails_with_the_error_recorded(crawl_env, monkeypatch):
    monkeypatch.setenv("SHOAL_CRAWL_SITE_INATURALIST_API", "http://127.0.0.1:9/v1")
    allow_local(monkeypatch, "http://127.0.0.1:9")  # reachable, not served
    with pytest.raises(CrawlFailed) as err:
        run_crawl("mola", "inaturalist")
    row = _job(err.value.crawl_job_id)
    assert row.state == JobState.FAILED and row.finished_at is not None
    assert "no page could be fetched" in row.error and "network_error" in row.error
    assert row.stats["pages"] == 0


def test_crash_in_the_child_is_recorded(crawl_env, monkeypatch, tmp_path: Path):
    monkeypatch.setenv("SHOAL_CRAWL_PROFILE_DIRS", str(tmp_path))
    (tmp_path / "flaky.yaml").write_text(
        "name: flaky\nkind: shop\nsite: flaky.example\nbase_url: http://127.0.0.1:9\n"
        "search_url: '{base}/s?q={keyword}'\nshop: {item: li}\n")
    with session_scope() as s:
        s.add(CrawlJob(species_id=1, source="shop:flaky", state=JobState.QUEUED))
    (tmp_path / "flaky.yaml").unlink()  # the profile vanishes before the child starts
    from crawler.runner import _check, _run_child

    with pytest.raises(CrawlFailed, match="no site profile named 'flaky'"):
        _check(1, _run_child(1, None))
    assert _job(1).state == JobState.FAILED
