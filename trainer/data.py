"""What a run trains on: a catalog dataset version or an exported ImageFolder directory,
checked up front (empty class, missing file) and read as RGB images."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.dataset_versions import find_version
from catalog.imaging import ImageRejected, Reject, decode_rgb
from catalog.limits import limits_from_settings
from catalog.models import DatasetItem, DatasetVersion
from catalog.models import Image as ImageRow
from catalog.splits import hash_split, split_key_for
from catalog.store import ImageStore, file_sha256
from trainer.errors import TrainingError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass(frozen=True)
class Record:
    path: Path
    sha256: str
    label: int
    image_id: int | None = None
    group: str = ""  # the split key of the image's duplicate group ("": the image alone)

    @property
    def key(self) -> str:
        """What folds and splits are cut by: copies of a photo share it."""
        return self.group or self.sha256


@dataclass
class DatasetSource:
    classes: list[str]
    train: list[Record]
    val: list[Record]
    manifest_sha256: str
    version_id: int | None = None
    name: str = ""
    path: str | None = None
    problems: list[str] = field(default_factory=list)


def manifest_hash(rows: list[tuple[str, str, str]]) -> str:
    """sha256 over sorted ``sha256 label split`` lines: the identity of a frozen dataset."""
    text = "\n".join(" ".join(r) for r in sorted(rows))
    return hashlib.sha256(text.encode()).hexdigest()


def get_dataset_version(session: Session, ref: str | int) -> DatasetVersion:
    version = find_version(session, ref)
    if version is None:
        raise TrainingError(f"no dataset version {ref!r} in the catalog")
    return version


def from_catalog(session: Session, ref: str | int, store: ImageStore) -> DatasetSource:
    version = get_dataset_version(session, ref)
    rows = session.execute(
        select(DatasetItem, ImageRow.path)
        .join(ImageRow, ImageRow.id == DatasetItem.image_id)
        .where(DatasetItem.version_id == version.id)
        .order_by(DatasetItem.id)
    ).all()
    classes = list(version.classes) or sorted({item.label for item, _ in rows})
    index = {c: i for i, c in enumerate(classes)}
    source = DatasetSource(
        classes=classes, train=[], val=[], version_id=version.id, name=version.name,
        manifest_sha256=version.manifest_sha256
        or manifest_hash([(i.sha256, i.label, i.split) for i, _ in rows]),
    )
    keys = split_key_for(session, [item.image_id for item, _ in rows])
    for item, rel in rows:
        if item.label not in index:
            source.problems.append(f"image {item.sha256[:12]} has label {item.label!r} "
                                   "which is not among the version's classes")
            continue
        path = store.path(rel) if rel else store.path(store.relative_path(item.sha256))
        record = Record(path, item.sha256, index[item.label], item.image_id,
                        keys.get(item.image_id, ""))
        (source.val if item.split == "val" else source.train).append(record)
    return source


def _class_files(root: Path) -> list[tuple[str, Path]]:
    return [
        (d.name, f)
        for d in sorted(p for p in root.iterdir() if p.is_dir())
        for f in sorted(d.iterdir())
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
    ]


def from_folder(root: Path, val_ratio: float = 0.1) -> DatasetSource:
    """``root/train/<class>/*`` and ``root/val/<class>/*``, or ``root/<class>/*`` split by hash."""
    if not root.is_dir():
        raise TrainingError(f"dataset folder {root} does not exist")
    if (root / "train").is_dir():
        splits = {"train": root / "train", "val": root / "val"}
        classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
        found = [
            (split, label, f)
            for split, folder in splits.items() if folder.is_dir()
            for label, f in _class_files(folder)
        ]
    else:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        found = [("", label, f) for label, f in _class_files(root)]
    index = {c: i for i, c in enumerate(classes)}
    source = DatasetSource(classes, [], [], "", name=root.name, path=str(root.resolve()))
    manifest = []
    for split, label, path in found:
        digest = file_sha256(path)
        # folders exported without a split: the dataset rule's threshold on the content key
        split = split or hash_split(digest, val_ratio)
        if label not in index:
            source.problems.append(f"{path}: class {label!r} has no training folder")
            continue
        manifest.append((digest, label, split))
        (source.val if split == "val" else source.train).append(
            Record(path, digest, index[label])
        )
    source.manifest_sha256 = manifest_hash(manifest)
    return source


def load_source(
    session: Session | None, dataset: str | int | Path, store: ImageStore
) -> DatasetSource:
    if isinstance(dataset, Path) or (isinstance(dataset, str) and Path(dataset).is_dir()):
        return from_folder(Path(dataset))
    if session is None:
        raise TrainingError(f"dataset {dataset!r} is not a folder and no catalog is open")
    return from_catalog(session, dataset, store)


def check_source(source: DatasetSource) -> None:
    """Refuse data that would train silently wrong: empty classes, no val, missing files."""
    problems = list(source.problems)
    if not source.classes:
        problems.append("the dataset has no classes")
    counts = [0] * len(source.classes)
    for r in source.train:
        counts[r.label] += 1
    empty = [c for c, n in zip(source.classes, counts, strict=True) if n == 0]
    if empty:
        problems.append(f"empty class (no training images): {', '.join(empty)}")
    if not source.val:
        problems.append("the dataset has no validation images")
    missing = [r for r in source.train + source.val if not r.path.is_file()]
    if missing:
        problems.append(
            f"{len(missing)} image file(s) missing, e.g. {missing[0].path} "
            f"(sha256 {missing[0].sha256[:12]})"
        )
    if problems:
        raise TrainingError("bad dataset " + (source.name or "") + ": " + "; ".join(problems))


def open_rgb(record: Record) -> Image.Image:
    """The record's image as RGB, decoded only within the configured pixel limit."""
    try:
        return decode_rgb(record.path, limits_from_settings().max_pixels)
    except ImageRejected as rej:
        what = ("image refused" if rej.reason == Reject.TOO_MANY_PIXELS
                else "corrupt or unreadable image")
        raise TrainingError(
            f"{what} {record.path} (sha256 {record.sha256[:12]}): {rej.reason}: {rej.detail}"
        ) from rej
    except OSError as exc:
        raise TrainingError(
            f"corrupt or unreadable image {record.path} (sha256 {record.sha256[:12]}): {exc}"
        ) from exc
