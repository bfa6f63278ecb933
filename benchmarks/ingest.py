"""Crawl-to-catalog throughput: Shoal's pipeline beside Scrapy's stock ImagesPipeline.

Both crawl the same shop search on the local test site with the same spider and the same
Scrapy settings (AutoThrottle off: on loopback it only adds delay), alternating for
``--rounds`` rounds in this run (a shared host's speed drifts by 10% from minute to minute;
the medians and every round's ratio are printed). The site serves the real web-20 photos under
``--variants`` distinct URLs each, and every URL has distinct bytes *and* distinct pixels (the
original, then re-encodings at 640 and 400 px and so on, made before timing starts), so no
image is skipped as already known: every one is fetched, validated, normalised, hashed and
catalogued (Shoal) or fetched, converted and saved (stock). Rates are images finished per
second of crawl time (Scrapy's ``elapsed_time_seconds``, spider open to close); wall time with
process start is printed too.

    python benchmarks/ingest.py [--variants 3] [--rounds 3] [--photos DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROFILE = """name: bench
kind: shop
site: bench.example
base_url: http://127.0.0.1:9
search_url: "{base}/search?q={keyword}"
languages: [la]
max_pages: 100000
shop: {item: "ul.results li.product", image: img, title: "a.title::text",
       link: "a.title::attr(href)", next_page: "a.next::attr(href)"}
"""
KEYWORD = "bench fish"
SPECIES = {"slug": "bench-fish", "latin_name": KEYWORD, "keywords": {"la": [KEYWORD]}}
CRAWL_ENV = {"SHOAL_CRAWL_AUTOTHROTTLE": "0", "SHOAL_CRAWL_DOWNLOAD_TIMEOUT": "60",
             "SHOAL_CRAWL_RETRY_TIMES": "2", "SHOAL_CRAWL_CONCURRENCY": "16",
             "SHOAL_CRAWL_CONCURRENCY_PER_DOMAIN": "16", "SHOAL_CRAWL_LOG_LEVEL": "WARNING"}


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def run_stock_child(config: dict[str, Any]) -> None:
    """In a child process: the same spider and settings, with Scrapy's ImagesPipeline."""
    from scrapy.crawler import CrawlerProcess

    from catalog.imaging import Limits
    from catalog.settings import get_settings
    from crawler.scrapy_settings import scrapy_settings
    from crawler.spiders.shop import ShopSpider

    store = Path(config["store"])
    options = scrapy_settings(crawl=get_settings().crawl, data_dir=store,
                              database_url="sqlite://", limits=Limits())
    options.update(ITEM_PIPELINES={"scrapy.pipelines.images.ImagesPipeline": 1},
                   IMAGES_STORE=str(store / "stock"), LOG_FILE=str(store / "stock.log"))
    process = CrawlerProcess(options)
    crawler = process.create_crawler(ShopSpider)
    process.crawl(crawler, species=SPECIES, profile="bench")
    process.start()
    stats = crawler.stats.get_stats()
    files = sum(1 for p in (store / "stock").rglob("*") if p.is_file())
    print(json.dumps({
        "images_found": stats.get("shoal/images_found", 0),
        "downloaded": stats.get("file_status_count/downloaded", 0),
        "stored_files": files,
        "elapsed_seconds": float(stats.get("elapsed_time_seconds", 0.0)),
        "requests": stats.get("downloader/request_count", 0),
    }))


def run_shoal(work: Path, env: dict[str, str]) -> dict[str, Any]:
    os.environ.update(env)
    from catalog import db
    from catalog.models import CrawlJob
    from catalog.settings import get_settings
    from catalog.species import SpeciesSpec, upsert_species
    from crawler.runner import run_crawl

    get_settings.cache_clear()
    db.upgrade()
    with db.session_scope() as session:
        upsert_species(session, [SpeciesSpec(slug=SPECIES["slug"], latin_name=KEYWORD,
                                             keywords={"la": [KEYWORD]})])
    start = time.perf_counter()
    crawl_job_id = run_crawl(SPECIES["slug"], "shop:bench")
    wall = time.perf_counter() - start
    with db.session_scope() as session:
        job = session.get(CrawlJob, crawl_job_id)
        assert job is not None
        stats = dict(job.stats)
    stats["wall_seconds"] = round(wall, 2)
    return stats


def normalise_ceiling(site: Any, sample: int = 120) -> float:
    """ms per image of ``catalog.imaging.normalise`` alone, one thread, on served bytes."""
    from catalog.imaging import ImageRejected, normalise

    entries = site.photos.entries[:: max(1, len(site.photos.entries) // sample)]
    raws = [site.site.photo_bytes(e) for e in entries]
    start = time.perf_counter()
    for raw in raws:
        with contextlib.suppress(ImageRejected):
            normalise(raw)
    return (time.perf_counter() - start) / len(raws) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=Path(os.environ.get(
        "SHOAL_FISHDATA", REPO.parent / "shared" / "fishdata")) / "web-20")
    parser.add_argument("--variants", type=int, default=3, help="URLs (distinct bytes) a photo")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of each arm, alternating; the medians are reported")
    parser.add_argument("--stock-child", help=argparse.SUPPRESS)
    parser.add_argument("--shoal-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stock_child:
        run_stock_child(json.loads(args.stock_child))
        return
    if args.shoal_child:
        print(json.dumps(run_shoal(args.shoal_child, {})))
        return


    if not args.photos.is_dir():
        sys.exit(f"no photos at {args.photos}: pass --photos DIR or set SHOAL_FISHDATA")

    work = Path(tempfile.mkdtemp(prefix="shoal-bench-"))
    try:
        measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_stock(work: Path, env: dict[str, str]) -> dict[str, Any]:
    work.mkdir(parents=True)
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--stock-child", json.dumps({"store": str(work)})],
        env=_child_env(env), capture_output=True, text=True, check=True)
    stock = json.loads(out.stdout.strip().splitlines()[-1])
    stock["wall_seconds"] = round(time.perf_counter() - t, 2)
    stock["images_per_s"] = stock["downloaded"] / stock["elapsed_seconds"]
    return stock


def run_shoal_child(work: Path, env: dict[str, str]) -> dict[str, Any]:
    """``run_shoal`` in a fresh process per round, as a user's ``shoal crawl`` would be."""
    work.mkdir(parents=True)
    shoal_env = {**env, "SHOAL_DATA_DIR": str(work / "shoal"),
                 "SHOAL_DATABASE_URL": f"sqlite:///{work / 'shoal.db'}"}
    out = subprocess.run(
        [sys.executable, __file__, "--shoal-child", str(work)],
        env=_child_env(shoal_env), capture_output=True, text=True, check=True)
    shoal = json.loads(out.stdout.strip().splitlines()[-1])
    done = shoal["stored"] + shoal["duplicates"] + shoal["rejected_total"]
    shoal["images_per_s"] = done / shoal["elapsed_seconds"]
    return shoal


def measure(args: argparse.Namespace, work: Path) -> None:
    from pipeline.demo.site.server import serve

    (work / "profiles").mkdir()
    (work / "profiles" / "bench.yaml").write_text(PROFILE)
    load = os.getloadavg()
    print(f"cpus: {os.cpu_count()}, load average at start: {load[0]:.2f}")
    t0 = time.perf_counter()
    stock_runs: list[dict[str, Any]] = []
    shoal_runs: list[dict[str, Any]] = []
    with serve(args.photos, {KEYWORD: args.photos}, variants=args.variants, hostile=False,
               prepare=True) as site:
        urls = len(site.photos.entries)
        print(f"site: {urls} image URLs ({args.variants} variants of "
              f"{urls // args.variants} photos) ready in {time.perf_counter() - t0:.1f}s")
        ceiling_ms = normalise_ceiling(site)
        print(f"catalog.imaging.normalise alone: {ceiling_ms:.1f} ms per image on one thread "
              f"({1000 / ceiling_ms:.1f} images/s per core)")
        env = {**site.env(), **CRAWL_ENV, "SHOAL_CRAWL_PROFILE_DIRS": str(work / "profiles"),
               "SHOAL_CRAWL_SITE_SHOP_BENCH": f"{site.base_url}/shop"}
        # the arms alternate, so a drift in the machine's speed (a shared host) hits both
        for n in range(args.rounds):
            stock = run_stock(work / f"stock-{n}", env)
            shoal = run_shoal_child(work / f"shoal-{n}", env)
            stock_runs.append(stock)
            shoal_runs.append(shoal)
            print(f"round {n + 1}: stock ImagesPipeline {stock['downloaded']} images in "
                  f"{stock['elapsed_seconds']:.1f}s = {stock['images_per_s']:.1f}/s; Shoal "
                  f"{shoal['stored']} stored, {shoal['duplicates']} same bytes/pixels, "
                  f"{shoal['rejected_total']} rejected in {shoal['elapsed_seconds']:.1f}s = "
                  f"{shoal['images_per_s']:.1f}/s; ratio "
                  f"{shoal['images_per_s'] / stock['images_per_s']:.2f}", flush=True)

    stock_rate = statistics.median(r["images_per_s"] for r in stock_runs)
    shoal_rate = statistics.median(r["images_per_s"] for r in shoal_runs)
    ratios = [a["images_per_s"] / b["images_per_s"] for a, b in zip(shoal_runs, stock_runs,
                                                                      strict=True)]
    # each round's two runs are next to each other in time, so their ratio is the paired
    # comparison; its median is the figure (the ratio of the two medians is printed too)
    ratio = statistics.median(ratios)
    print(f"median of {args.rounds} rounds: stock {stock_rate:.1f} images/s, Shoal "
          f"{shoal_rate:.1f} images/s; ratio Shoal / stock {ratio:.2f} (per round "
          f"{', '.join(f'{r:.2f}' for r in ratios)}; of the medians {shoal_rate / stock_rate:.2f})")
    keep = ("images_found", "stored", "duplicates", "rejected_total", "ingest_batches",
            "elapsed_seconds", "wall_seconds")
    print(json.dumps({
        "benchmark": "ingest", "urls": urls, "variants": args.variants, "rounds": args.rounds,
        "cpus": os.cpu_count(), "loadavg_start": round(load[0], 2),
        "shoal_images_per_s": round(shoal_rate, 2), "stock_images_per_s": round(stock_rate, 2),
        "ratio": round(ratio, 3), "ratio_of_medians": round(shoal_rate / stock_rate, 3),
        "ratio_per_round": [round(r, 3) for r in ratios],
        "normalise_ms_per_image_one_thread": round(ceiling_ms, 1),
        "shoal": [{k: r[k] for k in keep} for r in shoal_runs],
        "stock": [{k: r[k] for k in ("downloaded", "elapsed_seconds", "wall_seconds")}
                  for r in stock_runs],
    }))


if __name__ == "__main__":
    main()
