"""Queries over dataset versions: look one up, its items with their provenance, a diff of two.

Everything here reads the catalog only, set-based (one statement per answer, joins on the
``(version_id, image_id)`` unique index), so it stays fast at hundreds of thousands of items
and can be used by the trainer as well as the pipeline.

An item's provenance is its image's *primary source*: the first place the image was found
(the ``image_sources`` row with the lowest id). The manifest, the queries by site and license
and the CLI all use that one source, so they always agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, and_, event, func, inspect, or_, select
from sqlalchemy.orm import Session, aliased

from catalog.models import DatasetItem, DatasetVersion, Image, ImageSource, ReviewDecision

LATEST = "latest"

# columns a version is made of; once the row exists none of them may change
FROZEN_VERSION_FIELDS = (
    "name", "classes", "params", "manifest_sha256", "n_items", "n_train", "n_val",
)


class VersionFrozen(RuntimeError):
    """Something tried to change a dataset version or one of its items."""


@event.listens_for(DatasetItem, "before_update")
def _items_are_frozen(_mapper: Any, _conn: Any, item: DatasetItem) -> None:
    raise VersionFrozen(f"dataset item {item.id} belongs to an immutable dataset version")


@event.listens_for(DatasetVersion, "before_update")
def _versions_are_frozen(_mapper: Any, _conn: Any, version: DatasetVersion) -> None:
    state = inspect(version)
    changed = [f for f in FROZEN_VERSION_FIELDS if state.attrs[f].history.has_changes()]
    if changed:
        raise VersionFrozen(
            f"dataset version {version.name!r} is immutable (tried to change {', '.join(changed)})"
        )


def find_version(session: Session, ref: str | int) -> DatasetVersion | None:
    """A version by id, by name, or ``"latest"``; a digit string is a name first, then an id."""
    if isinstance(ref, int):
        return session.get(DatasetVersion, ref)
    if ref == LATEST:
        return session.scalars(
            select(DatasetVersion).order_by(DatasetVersion.id.desc()).limit(1)
        ).first()
    found = session.scalars(select(DatasetVersion).where(DatasetVersion.name == ref)).first()
    if found is None and ref.isdigit():
        found = session.get(DatasetVersion, int(ref))
    return found


def list_versions(session: Session) -> list[DatasetVersion]:
    return list(session.scalars(select(DatasetVersion).order_by(DatasetVersion.id)))


def primary_sources() -> Any:
    """Subquery ``(image_id, source_id)``: each image's first source.

    A GROUP BY (hash aggregate, then hash join) rather than a correlated ``min()`` per image:
    PostgreSQL may plan the correlated form as a backward primary-key scan per row."""
    return (
        select(ImageSource.image_id, func.min(ImageSource.id).label("source_id"))
        .where(ImageSource.image_id.is_not(None))
        .group_by(ImageSource.image_id)
        .subquery("primary_source")
    )


def latest_decisions() -> Any:
    """Subquery ``(image_id, decision_id)``: the review decision in force for each image."""
    return (
        select(ReviewDecision.image_id, func.max(ReviewDecision.id).label("decision_id"))
        .group_by(ReviewDecision.image_id)
        .subquery("latest_decision")
    )


def join_primary_source(query: Select[Any], image_id: Any, src: Any, *, outer: bool) -> Select[Any]:
    """Join ``src`` (an aliased ImageSource) as the primary source of ``image_id``."""
    first = primary_sources()
    return query.join(first, first.c.image_id == image_id, isouter=outer).join(
        src, src.id == first.c.source_id, isouter=outer
    )


PROVENANCE = ("url", "site", "license", "annotators")


def with_provenance(query: Select[Any], image_id: Any) -> Select[Any]:
    """Add ``url, site, license`` of the primary source and the ``annotators`` of the decision
    in force to a query over images (``image_id`` is its image id column)."""
    src = aliased(ImageSource)
    decision = aliased(ReviewDecision)
    decided = latest_decisions()
    query = join_primary_source(
        query.add_columns(src.url, src.site, src.license, decision.annotators),
        image_id, src, outer=True,
    )
    return query.outerjoin(decided, decided.c.image_id == image_id).outerjoin(
        decision, decision.id == decided.c.decision_id
    )


@dataclass(frozen=True)
class ItemFilter:
    species: tuple[str, ...] = ()
    split: str | None = None
    site: str | None = None
    license: str | None = None

    @property
    def needs_source(self) -> bool:
        return self.site is not None or self.license is not None


def items_query(version_id: int, flt: ItemFilter = ItemFilter()) -> Select[Any]:
    """The items of a version with their primary source, filtered; ordered by sha256."""
    src = aliased(ImageSource)
    query = select(
        DatasetItem.image_id,
        DatasetItem.sha256,
        DatasetItem.label,
        DatasetItem.split,
        src.url,
        src.site,
        src.license,
    ).select_from(DatasetItem)
    query = join_primary_source(query, DatasetItem.image_id, src, outer=True)
    query = query.where(DatasetItem.version_id == version_id).order_by(DatasetItem.sha256)
    return _filtered(query, flt, src)


def class_counts(
    session: Session, version_id: int, flt: ItemFilter = ItemFilter()
) -> dict[str, dict[str, int]]:
    """``{label: {"train": n, "val": n}}`` over the items that match ``flt``."""
    src = aliased(ImageSource)
    query = (
        select(DatasetItem.label, DatasetItem.split, func.count())
        .select_from(DatasetItem)
        .where(DatasetItem.version_id == version_id)
        .group_by(DatasetItem.label, DatasetItem.split)
    )
    if flt.needs_source:
        query = join_primary_source(query, DatasetItem.image_id, src, outer=False)
    counts: dict[str, dict[str, int]] = {}
    for label, split, n in session.execute(_filtered(query, flt, src)):
        counts.setdefault(label, {"train": 0, "val": 0})[split] = n
    return dict(sorted(counts.items()))


def source_counts(
    session: Session, version_id: int, flt: ItemFilter = ItemFilter()
) -> dict[str, dict[str, int]]:
    """``{"site": {site: n}, "license": {license: n}}`` over the items that match ``flt``, by
    each item's primary source (``"unknown"`` where it has none or the field is empty)."""
    out: dict[str, dict[str, int]] = {}
    for name in ("site", "license"):
        src = aliased(ImageSource)
        column = getattr(src, name)
        query = join_primary_source(
            select(column, func.count()).select_from(DatasetItem)
            .where(DatasetItem.version_id == version_id).group_by(column),
            DatasetItem.image_id, src, outer=True)
        counts: dict[str, int] = {}
        for value, n in session.execute(_filtered(query, flt, src)):
            counts[value or "unknown"] = counts.get(value or "unknown", 0) + n
        out[name] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return out


def image_sources(session: Session, image_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Every place each image was found (first found first): url, page, site, license,
    author."""
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in image_ids}
    if not image_ids:
        return out
    rows = session.scalars(select(ImageSource).where(ImageSource.image_id.in_(image_ids))
                           .order_by(ImageSource.id))
    for s in rows:
        out[s.image_id].append({"url": s.url, "page_url": s.page_url, "site": s.site,
                                "license": s.license, "license_url": s.license_url,
                                "artist": s.artist, "title": s.title})
    return out


def manifest_query(version_id: int) -> Select[Any]:
    """What a version's manifest is written from: items with provenance, by sha256."""
    query = (
        select(DatasetItem.sha256, DatasetItem.label, DatasetItem.split)
        .select_from(DatasetItem)
        .where(DatasetItem.version_id == version_id)
        .order_by(DatasetItem.sha256)
    )
    return with_provenance(query, DatasetItem.image_id)


def _filtered(query: Select[Any], flt: ItemFilter, src: Any) -> Select[Any]:
    if flt.species:
        query = query.where(DatasetItem.label.in_(flt.species))
    if flt.split is not None:
        query = query.where(DatasetItem.split == flt.split)
    if flt.site is not None:
        query = query.where(src.site == flt.site)
    if flt.license is not None:
        query = query.where(src.license == flt.license)
    return query


@dataclass
class VersionDiff:
    old: str
    new: str
    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    relabelled: list[dict[str, Any]] = field(default_factory=list)
    moved: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "added": len(self.added),
            "removed": len(self.removed),
            "relabelled": len(self.relabelled),
            "moved": len(self.moved),
        }

    def as_dict(self, limit: int | None = None) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "counts": self.counts(),
            "added": self.added[:limit],
            "removed": self.removed[:limit],
            "relabelled": self.relabelled[:limit],
            "moved": self.moved[:limit],
        }


def diff_versions(session: Session, old: DatasetVersion, new: DatasetVersion) -> VersionDiff:
    """What changed from ``old`` to ``new``, in three joins over the items' unique index."""
    a, b = aliased(DatasetItem), aliased(DatasetItem)
    diff = VersionDiff(old.name, new.name)
    diff.added = _one_sided(session, b, a, new.id, old.id)
    diff.removed = _one_sided(session, a, b, old.id, new.id)
    both = session.execute(
        select(a.sha256, a.label, b.label, a.split, b.split)
        .join(b, and_(b.image_id == a.image_id, b.version_id == new.id))
        .where(a.version_id == old.id, or_(a.label != b.label, a.split != b.split))
        .order_by(a.sha256)
    )
    for sha, old_label, new_label, old_split, new_split in both:
        if old_label != new_label:
            diff.relabelled.append(
                {"sha256": sha, "old": old_label, "new": new_label, "split": new_split}
            )
        if old_split != new_split:
            diff.moved.append(
                {"sha256": sha, "label": new_label, "old": old_split, "new": new_split}
            )
    return diff


def _one_sided(session: Session, here: Any, there: Any, here_id: int, there_id: int) -> list[dict]:
    """Items of version ``here_id`` whose image is not in version ``there_id``."""
    rows = session.execute(
        select(here.sha256, here.label, here.split)
        .outerjoin(there, and_(there.image_id == here.image_id, there.version_id == there_id))
        .where(here.version_id == here_id, there.id.is_(None))
        .order_by(here.sha256)
    )
    return [{"sha256": s, "label": lab, "split": sp} for s, lab, sp in rows]


def item_image_paths(session: Session, version_id: int) -> list[tuple[str, str, str, str | None]]:
    """``(sha256, label, split, store path)`` of every item, for export."""
    rows = session.execute(
        select(DatasetItem.sha256, DatasetItem.label, DatasetItem.split, Image.path)
        .join(Image, Image.id == DatasetItem.image_id)
        .where(DatasetItem.version_id == version_id)
        .order_by(DatasetItem.sha256)
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]
