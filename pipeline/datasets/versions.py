"""Immutable dataset versions: freeze the approved images and write the manifest.

A version is a frozen list of ``(image, sha256, label, split)`` rows plus a JSON Lines
manifest whose sha256 is stored on the version. The split of each image follows
``catalog.splits`` (a pure function of the image's duplicate-group key).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.attributes import set_committed_value

from catalog.dataset_versions import (
    LATEST,
    PROVENANCE,
    ItemFilter,
    class_counts,
    find_version,
    items_query,
    list_versions,
    manifest_query,
    source_counts,
    with_provenance,
)
from catalog.models import (
    DatasetItem,
    DatasetVersion,
    Image,
    ImageStatus,
    Species,
)
from catalog.settings import get_settings
from catalog.species import get_species
from catalog.splits import RULE, SPLITS, VAL, plan_splits, split_key_for
from catalog.store import file_sha256
from pipeline.errors import ShoalError, UsageError

MANIFEST = "manifest.jsonl"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
AUTO_NAME = re.compile(r"^v(\d+)$")
CHUNK = 5000
ITEM_COLUMNS = ("version_id", "image_id", "sha256", "label", "split")


class VersionExists(UsageError):
    """A version with this name exists already (versions are never overwritten)."""


def _chunks(values: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# --- looking versions up --------------------------------------------------------------------
def get_version(session: Session, ref: str | int) -> DatasetVersion:
    """A version by name, id or ``latest``; a clear UsageError when there is none."""
    found = find_version(session, ref)
    if found is None:
        names = [v.name for v in list_versions(session)]
        known = f"known: {', '.join(names[-10:])}" if names else "none created yet"
        raise UsageError(f"no dataset version {ref!r} ({known}; see `shoal dataset list`)")
    return found


def manifest_path(name: str) -> Path:
    return get_settings().data_dir / "datasets" / name / MANIFEST


# --- creating one ---------------------------------------------------------------------------
def version_summary(version: DatasetVersion) -> dict[str, Any]:
    return {
        "id": version.id,
        "name": version.name,
        "created_at": version.created_at,
        "n_items": version.n_items,
        "n_train": version.n_train,
        "n_val": version.n_val,
        "classes": version.classes,
        "params": version.params,
        "manifest_sha256": version.manifest_sha256,
        "manifest": str(manifest_path(version.name)),
    }


def version_detail(
    session: Session, ref: str | int, flt: ItemFilter = ItemFilter(), *,
    items: bool = False, limit: int = 50, offset: int = 0,
) -> dict[str, Any]:
    """A version's summary with its counts by species and split, site and license over the
    items matching ``flt``, and with ``items`` a page of them (``limit`` 0: all)."""
    if flt.split is not None and flt.split not in SPLITS:
        raise UsageError(f"split must be one of {', '.join(SPLITS)} (got {flt.split!r})")
    row = get_version(session, ref)
    data = version_summary(row)
    data["filter"] = {"species": list(flt.species), "split": flt.split, "site": flt.site,
                      "license": flt.license}
    data["counts"] = class_counts(session, row.id, flt)
    data["matching"] = sum(sum(c.values()) for c in data["counts"].values())
    by_source = source_counts(session, row.id, flt)
    data["by_site"], data["by_license"] = by_source["site"], by_source["license"]
    if items:
        query = items_query(row.id, flt).offset(max(offset, 0))
        if limit > 0:
            query = query.limit(limit)
        data["items"] = [dict(r._mapping) for r in session.execute(query)]
    return data


def approved_images(session: Session, species_ids: Sequence[int] | None) -> list[Any]:
    """Rows ``(id, sha256, label, url, site, license, annotators)`` of every approved image.
    The label is the reviewed one, else the species whose keyword found the image; an image
    with neither is left out."""
    label = aliased(Species)
    label_id = func.coalesce(Image.label_species_id, Image.expected_species_id)
    query = (
        select(Image.id, Image.sha256, label.slug.label("label"))
        .select_from(Image)
        .join(label, label.id == label_id)
        .where(Image.status == ImageStatus.APPROVED)
    )
    if species_ids is not None:
        query = query.where(label_id.in_(species_ids))
    return list(session.connection().execute(with_provenance(query, Image.id)))


def create_version(
    session: Session,
    *,
    name: str | None = None,
    species: Sequence[str] | None = None,
    min_per_class: int = 1,
    val_ratio: float = 0.1,
) -> DatasetVersion:
    """Freeze the approved images into a new version and commit it: all items or nothing.

    The session is committed on success and rolled back on failure (commit pending work first).
    """
    _check_params(name, min_per_class, val_ratio)
    slugs = sorted(set(species)) if species else None
    species_ids = [get_species(session, s).id for s in slugs] if slugs else None
    images = approved_images(session, species_ids)
    counts = Counter(image.label for image in images)
    classes = slugs or sorted(counts)
    _check_class_sizes(classes, counts, min_per_class)

    keys = split_key_for(session, [image.id for image in images])
    plan = plan_splits(
        ((image.label, keys[image.id]) for image in images),
        val_ratio,
        pinned_val=_pinned_val(session, val_ratio),
        already_used=lambda candidates: _used_keys(session, keys, candidates),
    )
    splits = [plan.split_of(keys[image.id]) for image in images]
    n_val = splits.count(VAL)
    values = {
        "classes": classes,
        "params": {
            "species": slugs,
            "min_per_class": min_per_class,
            "val_ratio": val_ratio,
            "split_rule": RULE,
            "promoted_keys": sorted(plan.promoted),
        },
        "n_items": len(images),
        "n_train": len(images) - n_val,
        "n_val": n_val,
    }
    version = _insert_version(session, name, values)
    try:
        _insert_items(session, version.id, images, splits)
        lines = sorted(
            (manifest_line(image.sha256, image.label, split, *image[-len(PROVENANCE):])
             for image, split in zip(images, splits, strict=True)),
        )
        digest = _write_manifest(lines, manifest_path(version.name))
        session.execute(
            update(DatasetVersion.__table__)  # type: ignore[arg-type]
            .where(DatasetVersion.id == version.id)
            .values(manifest_sha256=digest)
        )
        set_committed_value(version, "manifest_sha256", digest)
        session.commit()
    except BaseException:
        session.rollback()
        manifest_path(version.name).unlink(missing_ok=True)
        raise
    return version


def _check_params(name: str | None, min_per_class: int, val_ratio: float) -> None:
    if name is not None and (not NAME.match(name) or name == LATEST or name.isdigit()):
        raise UsageError(
            f"invalid version name {name!r}: letters, digits, '.', '_' and '-', not all digits, "
            f"not '{LATEST}'"
        )
    if min_per_class < 1:
        raise UsageError(f"--min-per-class must be at least 1 (got {min_per_class})")
    if not 0 <= val_ratio < 1:
        raise UsageError(f"--val-ratio must be in [0, 1) (got {val_ratio})")


def _check_class_sizes(classes: list[str], counts: Counter[str], min_per_class: int) -> None:
    if not classes:
        raise UsageError("no approved images to build a dataset version from")
    small = [(c, counts.get(c, 0)) for c in classes if counts.get(c, 0) < min_per_class]
    if small:
        listed = ", ".join(f"{c} ({n})" for c, n in small)
        raise UsageError(
            f"{len(small)} class(es) have fewer than --min-per-class {min_per_class} approved "
            f"images: {listed}; approve more images or leave these species out with --species"
        )


def _pinned_val(session: Session, val_ratio: float) -> set[str]:
    pinned: set[str] = set()
    for params in session.scalars(select(DatasetVersion.params)):
        if params.get("val_ratio") == val_ratio:
            pinned.update(params.get("promoted_keys") or ())
    return pinned


def _used_keys(session: Session, keys: dict[int, str], candidates: set[str]) -> set[str]:
    """Which of ``candidates`` has an image that an earlier version contains."""
    ids = [image_id for image_id, key in keys.items() if key in candidates]
    used: set[str] = set()
    for chunk in _chunks(ids):
        seen = session.scalars(
            select(DatasetItem.image_id).where(DatasetItem.image_id.in_(chunk)).distinct()
        )
        used.update(keys[image_id] for image_id in seen)
    return used


def _next_auto_name(session: Session) -> str:
    numbers = [
        int(m.group(1))
        for n in session.scalars(select(DatasetVersion.name))
        if (m := AUTO_NAME.match(n))
    ]
    return f"v{max(numbers, default=0) + 1}"


def _insert_version(session: Session, name: str | None, values: dict[str, Any]) -> DatasetVersion:
    """Insert and flush the version row. Nothing but reads precedes it in this transaction, so
    a name taken by a concurrent create rolls back cleanly; an automatic name then retries."""
    for _attempt in range(5):
        chosen = name or _next_auto_name(session)
        if name is None or find_version(session, chosen) is None:
            version = DatasetVersion(name=chosen, **values)
            session.add(version)
            try:
                session.flush()
                return version
            except IntegrityError:
                session.rollback()
        if name is not None:
            raise VersionExists(
                f"dataset version {name!r} exists already; versions are immutable, "
                "pick another --name"
            )
    raise ShoalError("could not pick a free version name: too many concurrent creates")


def _insert_items(
    session: Session, version_id: int, images: Sequence[Any], splits: Sequence[str]
) -> None:
    """Bulk insert one item per image: COPY on PostgreSQL, the driver's executemany on
    SQLite; both inside the session's transaction."""
    rows = (
        (version_id, image.id, image.sha256, image.label, split)
        for image, split in zip(images, splits, strict=True)
    )
    connection = session.connection()
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with closing(cursor):
        if connection.dialect.name == "postgresql":
            with cursor.copy(f"COPY dataset_items ({', '.join(ITEM_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            # fresh statistics, so the diffs and queries that follow plan for the real size
            cursor.execute("ANALYZE dataset_items")
        else:  # no per-row parameter processing: the driver takes the tuples as they are
            cursor.executemany(
                f"INSERT INTO dataset_items ({', '.join(ITEM_COLUMNS)}) VALUES (?, ?, ?, ?, ?)",
                rows,
            )


# --- the manifest ---------------------------------------------------------------------------
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def manifest_line(
    sha256: str,
    species: str,
    split: str,
    url: str | None,
    site: str | None,
    license_: str | None,
    annotators: list[str] | None,
) -> bytes:
    """One manifest entry. Lines sort by sha256 because every line starts with it."""
    entry = {
        "sha256": sha256,
        "species": species,
        "split": split,
        "source_url": url,
        "site": site,
        "license": license_,
        "annotator": ",".join(annotators) if annotators else None,
    }
    return (_encode(entry) + "\n").encode()


def manifest_lines(session: Session, version_id: int) -> Iterable[bytes]:
    """The manifest of a stored version, rebuilt from its items and the catalog."""
    rows = session.connection().execute(manifest_query(version_id))
    return (manifest_line(*row) for row in rows)


def _write_manifest(lines: Iterable[bytes], path: Path) -> str:
    """Write the manifest to ``path`` atomically; returns its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    digest = hashlib.sha256()
    with part.open("wb") as fh:
        for line in lines:
            digest.update(line)
            fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(part, path)
    return digest.hexdigest()


def ensure_manifest(session: Session, version: DatasetVersion) -> Path:
    """The stored manifest, verified against its hash; rebuilt from the catalog if lost."""
    path = manifest_path(version.name)
    if path.is_file() and file_sha256(path) == version.manifest_sha256:
        return path
    rebuilt = path.with_name(path.name + ".rebuilt")
    if _write_manifest(manifest_lines(session, version.id), rebuilt) != version.manifest_sha256:
        rebuilt.unlink()
        raise ShoalError(
            f"the manifest of {version.name!r} is missing or altered, and the catalog's "
            "provenance of its images has changed since, so it cannot be rebuilt byte for byte"
        )
    os.replace(rebuilt, path)
    return path
