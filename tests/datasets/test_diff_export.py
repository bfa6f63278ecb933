import hashlib
import os

import pytest
from torchvision.datasets import ImageFolder

from catalog.dataset_versions import diff_versions
from catalog.db import session_scope
from catalog.models import Image, ImageStatus
from catalog.store import file_sha256
from pipeline.datasets.export import export_version
from pipeline.datasets.versions import create_version, manifest_path
from pipeline.errors import ShoalError, UsageError


def sha_of(session, image_id):
    return session.get(Image, image_id).sha256


def test_diff_lists_added_removed_relabelled(three_species):
    cat = three_species
    with session_scope(cat.url) as session:
        v1 = create_version(session)
    removed = cat.ids["mola"][:2]
    cat.set_status(removed, ImageStatus.REJECTED)
    relabelled = cat.ids["shing"][:3]
    for image_id in relabelled:
        cat.relabel(image_id, "gajar")
    added = cat.ingest("loitta", 0, 4)
    cat.set_status(added)
    with session_scope(cat.url) as session:
        v2 = create_version(session)
        diff = diff_versions(session, v1, v2)
        assert diff.counts() == {"added": 4, "removed": 2, "relabelled": 3, "moved": 0}
        assert {d["sha256"] for d in diff.added} == {sha_of(session, i) for i in added}
        assert {d["sha256"] for d in diff.removed} == {sha_of(session, i) for i in removed}
        assert {(d["old"], d["new"]) for d in diff.relabelled} == {("shing", "gajar")}
        assert {d["sha256"] for d in diff.relabelled} == {sha_of(session, i) for i in relabelled}
        assert {d["label"] for d in diff.added} == {"loitta"}
        back = diff_versions(session, v2, v1)
        assert back.counts() == {"added": 2, "removed": 4, "relabelled": 3, "moved": 0}


def test_imagefolder_export_reads_with_torchvision(three_species, tmp_path):
    cat = three_species
    with session_scope(cat.url) as session:
        version = create_version(session)
        out = export_version(session, "v1", "imagefolder", tmp_path / "out")
        train = ImageFolder(str(out / "train"))
        val = ImageFolder(str(out / "val"))
        assert len(train) == version.n_train and len(val) == version.n_val
        assert train.classes == val.classes == version.classes
        image, label = train[0]
        assert image.size[0] > 0 and train.classes[label] in version.classes
        first = next((out / "train" / "mola").iterdir())
        stored = cat.store.path(cat.store.relative_path(first.stem))
        assert os.path.samefile(first, stored)  # hard-linked from the store
        assert hashlib.sha256(first.read_bytes()).hexdigest() == first.stem
        assert file_sha256(out / "manifest.jsonl") == version.manifest_sha256

        export_version(session, "v1", "imagefolder", out)  # a re-export is a no-op
        assert len(ImageFolder(str(out / "train"))) == version.n_train
        copied = export_version(session, version.id, "imagefolder", tmp_path / "copied", copy=True)
        some = next((copied / "val").rglob("*.jpg"))
        assert not os.path.samefile(some, cat.store.path(cat.store.relative_path(some.stem)))

        (tmp_path / "busy").mkdir()
        (tmp_path / "busy" / "other.txt").write_text("mine")
        with pytest.raises(UsageError, match="not empty"):
            export_version(session, "v1", "manifest", tmp_path / "busy")
        with pytest.raises(UsageError, match="unknown export format"):
            export_version(session, "v1", "tfrecord", tmp_path / "x")
        with pytest.raises(UsageError, match="no dataset version 'v9'"):
            export_version(session, "v9", "manifest", tmp_path / "x")


def test_manifest_export_verifies_and_rebuilds(three_species, tmp_path):
    cat = three_species
    cat.review(cat.ids["shing"][2], ["dave"])
    with session_scope(cat.url) as session:
        version = create_version(session)
        manifest_path("v1").unlink()  # lost: rebuilt from the catalog byte for byte
        out = export_version(session, "latest", "manifest", tmp_path / "m")
        assert sorted(p.name for p in out.iterdir()) == ["manifest.jsonl"]
        assert file_sha256(out / "manifest.jsonl") == version.manifest_sha256
        assert file_sha256(manifest_path("v1")) == version.manifest_sha256
        assert '"annotator":"dave"' in manifest_path("v1").read_text()

        manifest_path("v1").write_text("tampered\n")
        cat.review(cat.ids["mola"][0], ["carol"])  # provenance changed since: cannot rebuild
        with pytest.raises(ShoalError, match="cannot be rebuilt"):
            export_version(session, "v1", "manifest", tmp_path / "m2")
        assert manifest_path("v1").read_text() == "tampered\n"  # left as found


def test_export_names_missing_store_files(three_species, tmp_path):
    cat = three_species
    with session_scope(cat.url) as session:
        create_version(session)
        gone = session.get(Image, cat.ids["gajar"][0])
        before = list(tmp_path.iterdir())
        cat.store.path(gone.path).unlink()
        with pytest.raises(ShoalError, match=f"1 image file.*{gone.sha256}"):
            export_version(session, "v1", "imagefolder", tmp_path / "out")
    assert sorted(tmp_path.iterdir()) == sorted(before), "the cut-off export is removed"
