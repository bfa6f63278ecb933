"""Dataset versions at scale: create, diff and manifest export over 100,000 approved images.

Runs on SQLite and PostgreSQL (127.0.0.1, or SHOAL_BENCH_PG_URL). The catalog rows are
synthesised with bulk inserts (no image files). Baselines, measured in the same run on a
sample and extrapolated: an ORM row-by-row create, and a diff that asks per item.

    python benchmarks/versions.py [--images 100000] [--sample 2000] [--only sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, insert, select, text, update  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from catalog import db as catalog_db  # noqa: E402
from catalog.dataset_versions import diff_versions  # noqa: E402
from catalog.models import (  # noqa: E402
    DatasetItem,
    DatasetVersion,
    DuplicateGroup,
    Image,
    ImageSource,
    ImageStatus,
    ReviewDecision,
    ReviewTask,
    Species,
)
from catalog.settings import get_settings  # noqa: E402
from catalog.species import ensure_default_species  # noqa: E402
from catalog.splits import hash_split  # noqa: E402
from pipeline.datasets.export import export_version  # noqa: E402
from pipeline.datasets.versions import create_version, manifest_path  # noqa: E402

PG_ADMIN = os.environ.get("SHOAL_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
SITES = ("wikimedia", "inaturalist", "baike", "shop:seafood")
LICENSES = ("CC BY-SA 4.0", "CC BY 4.0", "CC0", None)
CHUNK = 10_000
REJECTED, RELABELLED, ADDED = 1_000, 1_000, 5_000


def sha(i: int) -> str:
    return hashlib.sha256(f"bench-image-{i}".encode()).hexdigest()


def bulk(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        session.execute(insert(table), rows[start : start + CHUNK])


def synthesise(session: Session, first: int, count: int, species_ids: list[int]) -> None:
    """``count`` approved images with a source and a review decision each; about 8% sit in
    duplicate groups of three."""
    now = catalog_db_now()
    ids = range(first, first + count)
    group_of: dict[int, int] = {}
    groups = []
    for n, i in enumerate(i for i in ids if i % 37 == 0):
        gid = first + n + 1
        groups.append({"id": gid, "split_key": sha(i), "size": 3, "species_slugs": [],
                       "conflict": False, "created_at": now, "updated_at": now})
        for member in (i, i + 1, i + 2):
            group_of[member] = gid
    bulk(session, DuplicateGroup.__table__, groups)
    bulk(session, Image.__table__, [
        {"id": i, "sha256": sha(i), "raw_sha256": sha(i), "status": ImageStatus.APPROVED,
         "expected_species_id": species_ids[(i * 7 + i // 13) % len(species_ids)],
         "duplicate_group_id": group_of.get(i), "path": f"{sha(i)[:2]}/{sha(i)[2:4]}/{sha(i)}.jpg",
         "width": 640, "height": 480, "format": "jpeg", "created_at": now, "updated_at": now}
        for i in ids
    ])
    bulk(session, ImageSource.__table__, [
        {"id": i, "url": f"https://{SITES[i % 4]}.example/{i}.jpg", "image_id": i,
         "site": SITES[i % 4], "license": LICENSES[i % 4], "first_seen": now, "last_seen": now}
        for i in ids
    ])
    bulk(session, ReviewTask.__table__, [
        {"id": i, "image_id": i, "state": "done", "pushed_at": now, "updated_at": now}
        for i in ids
    ])
    bulk(session, ReviewDecision.__table__, [
        {"id": i, "image_id": i, "review_task_id": i, "outcome": "approved",
         "relabelled": False, "n_annotations": 1, "annotators": [f"annotator{i % 5}"],
         "source": "pull", "decided_at": now}
        for i in ids
    ])
    session.commit()


def catalog_db_now():  # type: ignore[no-untyped-def]
    from catalog.models import utcnow

    return utcnow()


def after_bulk_load(session: Session) -> None:
    """PostgreSQL: explicit ids leave the sequences behind, move them past the rows; and
    analyse, as autovacuum soon would on a real catalog after that many inserts."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(text("ANALYZE"))
    for table in ("images", "image_sources", "review_tasks", "review_decisions",
                  "duplicate_groups"):
        session.execute(text(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"(SELECT coalesce(max(id), 1) FROM {table}))"
        ))
    session.commit()


CPU: dict[str, float] = {}


def timed(fn: Callable[[], Any], label: str | None = None) -> tuple[float, Any]:
    """Wall seconds of ``fn``; its CPU seconds in this process go to ``CPU[label]``."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    if label:
        CPU[label] = time.process_time() - cpu
    return time.perf_counter() - start, result


def naive_create(session: Session, sample: int) -> float:
    """The obvious ORM way: one object at a time, lazy loads, one flush per item."""
    version = DatasetVersion(name=f"naive-{uuid.uuid4().hex[:6]}")
    session.add(version)
    session.flush()
    start = time.perf_counter()
    images = session.scalars(
        select(Image).where(Image.status == ImageStatus.APPROVED).order_by(Image.id).limit(sample)
    ).all()
    lines = []
    for image in images:
        species = image.label_species or image.expected_species
        group = session.get(DuplicateGroup, image.duplicate_group_id) \
            if image.duplicate_group_id else None
        split = hash_split(group.split_key if group else image.sha256, 0.1)
        session.add(DatasetItem(version_id=version.id, image_id=image.id, sha256=image.sha256,
                                label=species.slug, split=split))
        session.flush()
        source = image.sources[0] if image.sources else None
        lines.append(json.dumps({"sha256": image.sha256, "species": species.slug, "split": split,
                                 "source_url": source and source.url}))
    elapsed = time.perf_counter() - start
    session.rollback()
    return elapsed


def naive_diff(session: Session, old: DatasetVersion, new: DatasetVersion, sample: int) -> float:
    """Per item of the old version, ask for its twin in the new one."""
    start = time.perf_counter()
    items = session.scalars(
        select(DatasetItem).where(DatasetItem.version_id == old.id).limit(sample)
    ).all()
    for item in items:
        twin = session.scalars(select(DatasetItem).where(
            DatasetItem.version_id == new.id, DatasetItem.image_id == item.image_id)).first()
        _ = twin is None or twin.label != item.label or twin.split != item.split
    return time.perf_counter() - start


@contextmanager
def backend(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    name = f"shoal_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        catalog_db.get_engine.cache_clear()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run(kind: str, n_images: int, sample: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"shoal-bench-{kind}-") as tmpdir:
        tmp = Path(tmpdir)
        with backend(kind, tmp) as url:
            os.environ["SHOAL_DATABASE_URL"] = url
            os.environ["SHOAL_DATA_DIR"] = str(tmp / "data")
            get_settings.cache_clear()
            catalog_db.get_engine.cache_clear()
            catalog_db.upgrade(url)
            with catalog_db.session_scope(url) as session:
                ensure_default_species(session)
            session = catalog_db.session_factory(url)()
            try:
                return measure(session, kind, n_images, sample, tmp)
            finally:
                session.close()
                catalog_db.get_engine(url).dispose()


def measure(session: Session, kind: str, n: int, sample: int, tmp: Path) -> dict[str, Any]:
    species_ids = list(session.scalars(select(Species.id).order_by(Species.id)))
    setup_s, _ = timed(lambda: synthesise(session, 1, n, species_ids))
    after_bulk_load(session)
    print(f"[{kind}] synthesised {n:,} approved images in {setup_s:.1f} s", file=sys.stderr)

    create_s, v1 = timed(lambda: create_version(session, name="v1"), "create")
    # the catalog moves on: some images rejected, some relabelled, new ones approved
    session.execute(update(Image).where(Image.id <= REJECTED)
                    .values(status=ImageStatus.REJECTED))
    session.execute(update(Image).where(Image.id > n - RELABELLED)
                    .values(label_species_id=species_ids[0]))
    session.commit()
    synthesise(session, n + 1, ADDED, species_ids)
    after_bulk_load(session)
    create2_s, v2 = timed(lambda: create_version(session, name="v2"))
    diff_s, diff = timed(lambda: diff_versions(session, v1, v2), "diff")
    counts = diff.counts()
    relabelled_expected = sum(1 for lab in session.scalars(
        select(DatasetItem.label).where(DatasetItem.version_id == v1.id,
                                        DatasetItem.image_id > n - RELABELLED))
        if lab != session.get(Species, species_ids[0]).slug)
    assert counts == {"added": ADDED, "removed": REJECTED, "relabelled": relabelled_expected,
                      "moved": 0}, counts

    export_s, _ = timed(lambda: export_version(session, "v2", "manifest", tmp / "out1"))
    manifest_path("v2").unlink()
    rebuild_s, _ = timed(lambda: export_version(session, "v2", "manifest", tmp / "out2"))

    naive_create_s = naive_create(session, sample) * v1.n_items / sample
    naive_diff_s = naive_diff(session, v1, v2, sample) * (v1.n_items + v2.n_items) / sample
    return {
        "images": v1.n_items,
        "create_s": round(create_s, 2),
        "create_cpu_s": round(CPU["create"], 2),
        "create_v2_s": round(create2_s, 2),
        "diff_s": round(diff_s, 2),
        "diff_cpu_s": round(CPU["diff"], 2),
        "diff_counts": counts,
        "manifest_export_s": round(export_s, 2),
        "manifest_rebuild_export_s": round(rebuild_s, 2),
        "naive_create_s_extrapolated": round(naive_create_s, 1),
        "naive_diff_s_extrapolated": round(naive_diff_s, 1),
        "create_speedup": round(naive_create_s / create_s, 1),
        "diff_speedup": round(naive_diff_s / diff_s, 1),
        "goal_met": create_s <= 30 and create2_s <= 30 and diff_s <= 5,
        "load_average": round(os.getloadavg()[0], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=2_000, help="baseline sample size")
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    args = parser.parse_args()
    kinds = [args.only] if args.only else ["sqlite", "postgresql"]
    results = {kind: run(kind, args.images, args.sample) for kind in kinds}
    for kind, r in results.items():
        print(f"\n{kind}: {r['images']:,} images")
        print(f"  create v1            {r['create_s']:8.2f} s   (goal <= 30 s; "
              f"{r['create_cpu_s']:.2f} s CPU in this process)")
        print(f"  create v2            {r['create_v2_s']:8.2f} s")
        print(f"  diff v1 v2           {r['diff_s']:8.2f} s   (goal <= 5 s) {r['diff_counts']}")
        print(f"  load average at the end: {r['load_average']} on {os.cpu_count()} CPUs")
        print(f"  manifest export      {r['manifest_export_s']:8.2f} s   "
              f"(rebuilt from the catalog: {r['manifest_rebuild_export_s']:.2f} s)")
        print(f"  naive ORM create     {r['naive_create_s_extrapolated']:8.1f} s   "
              f"extrapolated from {args.sample:,}: x{r['create_speedup']} slower")
        print(f"  naive per-item diff  {r['naive_diff_s_extrapolated']:8.1f} s   "
              f"extrapolated from {args.sample:,}: x{r['diff_speedup']} slower")
    print(json.dumps({"benchmark": "versions", "cpus": os.cpu_count(), **results}))


if __name__ == "__main__":
    main()
