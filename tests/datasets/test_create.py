import hashlib
import json

import pytest
from sqlalchemy import func, select

from catalog.dataset_versions import VersionFrozen
from catalog.db import session_scope
from catalog.models import DatasetItem, DatasetVersion, Image, ImageStatus, Job
from pipeline.datasets import versions as datasets
from pipeline.datasets.versions import VersionExists, create_version, manifest_path
from pipeline.errors import UsageError


def test_create_freezes_the_approved_images(three_species):
    cat = three_species
    pending = cat.ingest("loitta", 0, 4)  # downloaded, never approved: left out
    cat.set_status(cat.ids["mola"][:1], ImageStatus.REJECTED)
    relabelled = cat.ids["shing"][0]
    cat.relabel(relabelled, "gajar")
    cat.review(cat.ids["gajar"][0], ["alice", "bob"])

    with session_scope(cat.url) as session:
        version = create_version(session)
        items = {i.image_id: i for i in session.scalars(
            select(DatasetItem).where(DatasetItem.version_id == version.id))}
        approved = session.scalars(
            select(Image.id).where(Image.status == ImageStatus.APPROVED)).all()

    assert version.name == "v1"
    assert set(items) == set(approved) and not set(pending) & set(items)
    assert version.n_items == len(items) == 23
    assert version.classes == ["gajar", "mola", "shing"]
    assert items[relabelled].label == "gajar"
    counts = {c: sum(i.label == c for i in items.values()) for c in version.classes}
    assert counts == {"gajar": 9, "mola": 7, "shing": 7}
    assert version.n_train + version.n_val == version.n_items
    for label in version.classes:  # at least one val image per class with >= 2 images
        assert any(i.split == "val" and i.label == label for i in items.values())

    path = manifest_path("v1")
    body = path.read_bytes()
    assert hashlib.sha256(body).hexdigest() == version.manifest_sha256
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert [e["sha256"] for e in lines] == sorted(i.sha256 for i in items.values())
    by_sha = {e["sha256"]: e for e in lines}
    for item in items.values():
        entry = by_sha[item.sha256]
        assert (entry["species"], entry["split"]) == (item.label, item.split)
        assert entry["source_url"].startswith("https://wikimedia.test/")
        assert entry["license"] == "CC BY-SA 4.0"
    gajar_sha = items[cat.ids["gajar"][0]].sha256
    assert by_sha[gajar_sha]["annotator"] == "alice,bob"
    assert set(lines[0]) == {"sha256", "species", "split", "source_url", "site", "license",
                             "annotator"}


def test_versions_are_immutable(three_species):
    cat = three_species
    with session_scope(cat.url) as session:
        v1 = create_version(session)
        before = session.execute(select(DatasetItem.image_id, DatasetItem.label,
                                        DatasetItem.split)
                                 .where(DatasetItem.version_id == v1.id)).all()
    # the catalog moves on: an image rejected, one relabelled, new ones approved
    cat.set_status(cat.ids["mola"][:1], ImageStatus.REJECTED)
    cat.relabel(cat.ids["shing"][1], "mola")
    cat.set_status(cat.ingest("loitta", 0, 5))
    with session_scope(cat.url) as session:
        v2 = create_version(session)
        assert v2.name == "v2"
        after = session.execute(select(DatasetItem.image_id, DatasetItem.label,
                                       DatasetItem.split)
                                .where(DatasetItem.version_id == v1.id)).all()
        assert sorted(after) == sorted(before)
        assert session.get(DatasetVersion, v1.id).manifest_sha256 == v1.manifest_sha256
        assert datasets.file_sha256(manifest_path("v1")) == v1.manifest_sha256

        with pytest.raises(VersionExists, match="exists already"):
            create_version(session, name="v1")

        item = session.scalars(select(DatasetItem).where(DatasetItem.version_id == v1.id)).first()
        item.label = "shing"
        with pytest.raises(VersionFrozen):
            session.flush()
        session.rollback()
        row = session.get(DatasetVersion, v1.id)
        row.n_items = 1
        with pytest.raises(VersionFrozen, match="immutable"):
            session.flush()
        session.rollback()
        job = Job(kind="dataset_create")  # the queue may record which job made a version
        session.add(job)
        session.flush()
        session.get(DatasetVersion, v1.id).job_id = job.id
        session.flush()


def test_refuses_classes_below_min_per_class(three_species):
    cat = three_species
    cat.set_status(cat.ingest("loitta", 0, 2))
    with session_scope(cat.url) as session:
        with pytest.raises(UsageError, match=r"loitta \(2\)") as err:
            create_version(session, min_per_class=5)
        assert "--min-per-class 5" in str(err.value)
        with pytest.raises(UsageError, match=r"mola \(8\)"):
            create_version(session, species=["mola", "gajar"], min_per_class=9)
        version = create_version(session, species=["mola", "gajar"], min_per_class=8)
        assert version.classes == ["gajar", "mola"] and version.n_items == 16
        assert session.scalar(select(func.count()).select_from(DatasetVersion)) == 1


def test_a_species_without_approved_images_is_refused(three_species):
    refused = pytest.raises(UsageError, match=r"loitta \(0\)")
    with session_scope(three_species.url) as session, refused:
        create_version(session, species=["loitta", "mola"])


def test_creation_is_all_or_nothing(three_species, monkeypatch):
    def broken(lines, path):
        raise OSError("disk full")

    monkeypatch.setattr(datasets, "_write_manifest", broken)
    with session_scope(three_species.url) as session:
        with pytest.raises(OSError, match="disk full"):
            create_version(session, name="doomed")
        assert session.scalar(select(func.count()).select_from(DatasetVersion)) == 0
        assert session.scalar(select(func.count()).select_from(DatasetItem)) == 0
    assert not manifest_path("doomed").exists()
    monkeypatch.undo()
    with session_scope(three_species.url) as session:
        assert create_version(session, name="doomed").n_items == 24
