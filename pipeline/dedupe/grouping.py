"""Find exact and near-duplicate images, group them, keep one canonical image per group.

Exact: the same stored bytes are already one row; the same pixels after normalisation share
``images.pixel_sha256``. Near: pHash within ``radius`` bits, confirmed by dHash within
``dhash_radius`` bits, found with :class:`pipeline.dedupe.hashindex.HashIndex` (no all-pairs scan).

A run compares the images still ``downloaded`` against every hashed image (``rescan`` compares
all pairs instead), joins the matches into groups (groups only grow and merge: a group's
``split_key`` is fixed at birth, the older one survives a merge), picks each group's canonical
image and writes only what changed, so a second run is a no-op.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import case, delete, func, select, text, update
from sqlalchemy.orm import Session

from catalog.models import (
    DuplicateGroup,
    DuplicateLink,
    Image,
    ImageSource,
    ImageStatus,
    Species,
    utcnow,
)
from pipeline.dedupe.hashindex import HashIndex, hex_to_u64, popcount64
from pipeline.dedupe.licenses import license_rank

# chosen with benchmarks/dedupe.py on the real photos (see docs/dedupe.md)
DEFAULT_RADIUS = 8
DEFAULT_DHASH_RADIUS = 16
MAX_RADIUS = 16
# statuses dedupe may set; images already reviewed keep theirs and are only linked
_OPEN = (ImageStatus.DOWNLOADED, ImageStatus.UNIQUE, ImageStatus.DUPLICATE)
_IN_CHUNK = 5000  # ids per IN (...) list
_LOCK_KEY = 0x5D0ED0  # PostgreSQL advisory lock id of dedupe runs
FEATURES = "features"  # link method of copies found in a backbone's feature space

Progress = Callable[[str, int, int], None]


@dataclass
class GroupSummary:
    group_id: int | None  # None: would be created (dry run)
    size: int
    canonical_id: int
    canonical_sha256: str
    conflict: bool
    species_slugs: list[str]


@dataclass
class DedupeReport:
    radius: int
    dhash_radius: int
    mode: str  # "incremental" | "rescan"
    dry_run: bool
    images: int = 0  # hashed images the index held
    new_images: int = 0  # still ``downloaded`` when the run began
    pixel_pairs: int = 0
    near_pairs: int = 0  # pHash within radius and dHash within its radius
    rejected_by_dhash: int = 0  # pHash matches the dHash check refused
    groups_created: int = 0
    groups_merged: int = 0  # groups folded into an older one
    groups_changed: int = 0
    marked_unique: int = 0
    marked_duplicate: int = 0
    links_written: int = 0
    groups: int = 0  # in the catalog after the run
    duplicates: int = 0  # images linked to a canonical after the run
    sizes: dict[int, int] = field(default_factory=dict)  # group size -> number of groups
    conflicts: list[GroupSummary] = field(default_factory=list)
    top_groups: list[GroupSummary] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sizes"] = {str(k): v for k, v in sorted(self.sizes.items())}
        data["seconds"] = round(self.seconds, 3)
        return data


@dataclass
class _Member:
    id: int
    sha256: str
    pixel_sha256: str | None
    phash: int | None
    status: str
    pixels: int
    license_rank: int
    created_at: datetime
    group_id: int | None
    species: set[str]

    def canonical_key(self) -> tuple[int, int, datetime, int]:
        return (-self.pixels, self.license_rank, self.created_at, self.id)


@dataclass
class _GroupPlan:
    """The target state of one group and its members."""

    keep_group_id: int | None
    drop_group_ids: list[int]
    split_key: str
    members: list[_Member]
    canonical: _Member
    conflict: bool
    species_slugs: list[str]


def _lock(session: Session) -> None:
    """Serialise dedupe runs until this transaction ends, so two never group the same images.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: taking the write lock up front
    (a write that changes nothing), so a second run starts reading only after the first commits.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    else:
        session.execute(update(DuplicateGroup).where(DuplicateGroup.id < 0).values(size=0))


# --- reading the catalog --------------------------------------------------------------------
@dataclass
class _HashTable:
    ids: np.ndarray
    phash: np.ndarray
    dhash: np.ndarray
    new: np.ndarray  # bool: status downloaded


def _load_hashes(session: Session) -> _HashTable:
    rows = session.execute(
        select(Image.id, Image.phash, Image.dhash, Image.status)
        .where(Image.status != ImageStatus.INVALID, Image.phash.is_not(None),
               Image.dhash.is_not(None))
        .order_by(Image.id)
    ).all()
    return _HashTable(
        ids=np.asarray([r[0] for r in rows], dtype=np.int64),
        phash=hex_to_u64([r[1] for r in rows]),
        dhash=hex_to_u64([r[2] for r in rows]),
        new=np.asarray([r[3] == ImageStatus.DOWNLOADED for r in rows], dtype=bool),
    )


def _chunks(items: Sequence[int]) -> Iterable[Sequence[int]]:
    for lo in range(0, len(items), _IN_CHUNK):
        yield items[lo : lo + _IN_CHUNK]


def _new_ids(session: Session) -> list[int]:
    return list(session.scalars(
        select(Image.id).where(Image.status == ImageStatus.DOWNLOADED).order_by(Image.id)
    ))


def _pixel_pairs(session: Session, only_new: bool) -> list[tuple[int, int]]:
    """Pairs of images with identical normalised pixels (one chain per pixel hash)."""
    shared = (
        select(Image.pixel_sha256)
        .where(Image.pixel_sha256.is_not(None), Image.status != ImageStatus.INVALID)
        .group_by(Image.pixel_sha256)
        .having(func.count() > 1)
    )
    if only_new:
        shared = shared.having(
            func.max(case((Image.status == ImageStatus.DOWNLOADED, 1), else_=0)) == 1
        )
    rows = session.execute(
        select(Image.pixel_sha256, Image.id)
        .where(Image.pixel_sha256.in_(shared.scalar_subquery()),
               Image.status != ImageStatus.INVALID)
        .order_by(Image.pixel_sha256, Image.id)
    ).all()
    pairs, last = [], None
    for pixel, image_id in rows:
        if last is not None and last[0] == pixel:
            pairs.append((last[1], image_id))
        last = (pixel, image_id)
    return pairs


def _multi_species_images(session: Session) -> list[int]:
    """Images whose sources were crawled for more than one species (one file, two labels)."""
    return list(session.scalars(
        select(ImageSource.image_id)
        .where(ImageSource.image_id.is_not(None), ImageSource.species_id.is_not(None))
        .group_by(ImageSource.image_id)
        .having(func.count(func.distinct(ImageSource.species_id)) > 1)
    ))


def _near_pairs(
    table: _HashTable, radius: int, dhash_radius: int, rescan: bool
) -> tuple[np.ndarray, np.ndarray, int]:
    """Positions (a, b) with a < b whose pHash and dHash are both within their radii."""
    if not rescan and not table.new.any():
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, 0
    index = HashIndex.build(np.arange(len(table.ids)), table.phash, radius)
    if rescan:
        a, b, _ = index.pairs(radius)
    else:
        queries = np.flatnonzero(table.new)
        qi, b, _ = index.query_many(table.phash[queries], radius)
        a = queries[qi]
        a, b = np.minimum(a, b), np.maximum(a, b)
        keep = a != b
        code = np.unique(a[keep] * max(len(table.ids), 1) + b[keep])
        a, b = code // max(len(table.ids), 1), code % max(len(table.ids), 1)
    confirmed = popcount64(table.dhash[a] ^ table.dhash[b]) <= dhash_radius
    return a[confirmed], b[confirmed], int((~confirmed).sum())


def _load_members(session: Session, ids: list[int]) -> dict[int, _Member]:
    slugs = dict(session.execute(select(Species.id, Species.slug)).all())
    species: dict[int, set[str]] = defaultdict(set)
    ranks: dict[int, int] = {}
    members: dict[int, _Member] = {}
    for part in _chunks(ids):
        for image_id, lic, species_id in session.execute(
            select(ImageSource.image_id, ImageSource.license, ImageSource.species_id)
            .where(ImageSource.image_id.in_(part))
        ):
            ranks[image_id] = min(ranks.get(image_id, 99), license_rank(lic))
            if species_id in slugs:
                species[image_id].add(slugs[species_id])
        for img in session.execute(
            select(Image.id, Image.sha256, Image.pixel_sha256, Image.phash, Image.status,
                   Image.width, Image.height, Image.created_at, Image.duplicate_group_id,
                   Image.expected_species_id)
            .where(Image.id.in_(part))
        ):
            found = set(species[img.id])
            if img.expected_species_id in slugs:
                found.add(slugs[img.expected_species_id])
            members[img.id] = _Member(
                id=img.id, sha256=img.sha256, pixel_sha256=img.pixel_sha256,
                phash=int(img.phash, 16) if img.phash else None, status=img.status,
                pixels=(img.width or 0) * (img.height or 0),
                license_rank=ranks.get(img.id, license_rank(None)),
                created_at=_naive(img.created_at), group_id=img.duplicate_group_id,
                species=found,
            )
    return members


def _naive(when: datetime) -> datetime:
    """SQLite hands back naive datetimes, PostgreSQL aware ones: compare them as UTC-naive."""
    return when.replace(tzinfo=None) if when.tzinfo else when


# --- grouping -------------------------------------------------------------------------------
class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        root = self.parent.setdefault(x, x)
        while root != self.parent[root]:
            root = self.parent[root]
        while x != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def components(self) -> list[list[int]]:
        out: dict[int, list[int]] = defaultdict(list)
        for x in self.parent:
            out[self.find(x)].append(x)
        return [sorted(c) for c in out.values()]


def _plan_groups(
    session: Session, edges: list[tuple[int, int]], singles: list[int]
) -> list[_GroupPlan]:
    """Target groups for every component the edges (and cross-species singles) touch."""
    uf = _UnionFind()
    for a, b in edges:
        uf.union(a, b)
    for image_id in singles:
        uf.find(image_id)
    touched = list(uf.parent)
    group_ids = sorted({
        g for part in _chunks(touched) for g in session.scalars(
            select(Image.duplicate_group_id)
            .where(Image.id.in_(part), Image.duplicate_group_id.is_not(None)))
    })
    groups: dict[int, DuplicateGroup] = {}
    for part in _chunks(group_ids):
        groups.update({g.id: g for g in session.scalars(
            select(DuplicateGroup).where(DuplicateGroup.id.in_(part)))})
        for image_id, group_id in session.execute(
            select(Image.id, Image.duplicate_group_id).where(Image.duplicate_group_id.in_(part))
        ):
            uf.union(image_id, _group_anchor(uf, group_id))
    members = _load_members(session, [x for x in uf.parent if x >= 0])
    plans = []
    for component in uf.components():
        ids = [x for x in component if x >= 0]
        group_rows = sorted(
            (groups[-x - 1] for x in component if x < 0),
            key=lambda g: (_naive(g.created_at), g.id),
        )
        mem = [members[i] for i in ids if i in members]
        species = sorted(set().union(*(m.species for m in mem))) if mem else []
        if len(mem) < 2 and len(species) < 2 and not group_rows:
            continue
        canonical = min(mem, key=_Member.canonical_key)
        eldest = min(mem, key=lambda m: (m.created_at, m.id))
        plans.append(_GroupPlan(
            keep_group_id=group_rows[0].id if group_rows else None,
            drop_group_ids=[g.id for g in group_rows[1:]],
            split_key=group_rows[0].split_key if group_rows else eldest.sha256,
            members=mem,
            canonical=canonical,
            conflict=len(species) > 1,
            species_slugs=species,
        ))
    return plans


def _group_anchor(uf: _UnionFind, group_id: int) -> int:
    """A node standing for an existing group (negative, so it never clashes with an image)."""
    anchor = -group_id - 1
    uf.find(anchor)
    return anchor


# --- writing --------------------------------------------------------------------------------
def _target_status(member: _Member, canonical: _Member) -> str:
    if member.status not in _OPEN:
        return member.status
    return ImageStatus.UNIQUE if member.id == canonical.id else ImageStatus.DUPLICATE


def _link_values(member: _Member, canonical: _Member) -> tuple[int, str]:
    if member.pixel_sha256 and member.pixel_sha256 == canonical.pixel_sha256:
        return 0, "pixels"
    if member.phash is None or canonical.phash is None:
        return 0, "pixels"
    return (member.phash ^ canonical.phash).bit_count(), "phash"


def _apply_group(
    session: Session, plan: _GroupPlan, counts: DedupeReport, dry_run: bool,
    feature_ids: frozenset[int] | set[int] = frozenset(),
) -> int | None:
    """Bring one group to its planned state, writing only the differences. A member that
    pHash does not match to its canonical and that curation's features linked (now, in
    ``feature_ids``, or before: its link says so) keeps the link method ``features``."""
    ids = [m.id for m in plan.members]
    group = session.get(DuplicateGroup, plan.keep_group_id) if plan.keep_group_id else None
    if group is None:
        counts.groups_created += 1
        if dry_run:
            group = DuplicateGroup(split_key=plan.split_key)
        else:
            group = DuplicateGroup(split_key=plan.split_key, created_at=utcnow())
            session.add(group)
            session.flush()
    counts.groups_merged += len(plan.drop_group_ids)
    target = {
        "canonical_image_id": plan.canonical.id,
        "size": len(ids),
        "conflict": plan.conflict,
        "species_slugs": plan.species_slugs,
    }
    dirty = any(getattr(group, k) != v for k, v in target.items())
    dirty = dirty or any(m.group_id != group.id for m in plan.members)
    links = {link.image_id: link for part in _chunks(ids) for link in session.scalars(
        select(DuplicateLink).where(DuplicateLink.image_id.in_(part)))}
    for member in plan.members:
        status = _target_status(member, plan.canonical)
        if status != member.status:
            counts.marked_unique += status == ImageStatus.UNIQUE
            counts.marked_duplicate += status == ImageStatus.DUPLICATE
            dirty = True
            if not dry_run:
                session.execute(update(Image).where(Image.id == member.id).values(status=status))
        link = links.get(member.id)
        if member.id == plan.canonical.id:
            if link is not None:
                dirty = True
                if not dry_run:
                    session.delete(link)
            continue
        distance, method = _link_values(member, plan.canonical)
        if method == "phash" and distance > counts.radius and (
                member.id in feature_ids or (link is not None and link.method == FEATURES)):
            method = FEATURES
        want = (plan.canonical.id, group.id, distance, method)
        if link is None or (link.canonical_id, link.group_id, link.distance, link.method) != want:
            counts.links_written += 1
            dirty = True
            if dry_run:
                continue
            if link is None:
                session.add(DuplicateLink(
                    image_id=member.id, canonical_id=want[0], group_id=want[1],
                    distance=distance, method=method, created_at=utcnow()))
            else:
                link.canonical_id, link.group_id, link.distance, link.method = want
    counts.groups_changed += dirty and plan.keep_group_id is not None
    if dry_run:
        return group.id
    for key, value in target.items():
        if getattr(group, key) != value:
            setattr(group, key, value)
    moving = [m.id for m in plan.members if m.group_id != group.id]
    for part in _chunks(moving):
        session.execute(update(Image).where(Image.id.in_(part)).values(duplicate_group_id=group.id))
    if plan.drop_group_ids:
        session.execute(update(DuplicateLink).where(
            DuplicateLink.group_id.in_(plan.drop_group_ids)).values(group_id=group.id))
        session.flush()
        session.execute(delete(DuplicateGroup).where(DuplicateGroup.id.in_(plan.drop_group_ids)))
    return group.id


def _mark_singles_unique(
    session: Session, new_ids: list[int], grouped: set[int], counts: DedupeReport, dry_run: bool
) -> None:
    singles = [i for i in new_ids if i not in grouped]
    counts.marked_unique += len(singles)
    if dry_run:
        return
    for part in _chunks(singles):
        session.execute(update(Image).where(
            Image.id.in_(part), Image.status == ImageStatus.DOWNLOADED
        ).values(status=ImageStatus.UNIQUE, updated_at=utcnow()))


# --- the report -----------------------------------------------------------------------------
def _summaries(
    session: Session, plans: list[_GroupPlan], plan_ids: list[int | None]
) -> list[GroupSummary]:
    """Every group after the run: the planned ones plus those the run did not touch."""
    replaced = set(plan_ids) | {g for p in plans for g in p.drop_group_ids}
    out = [
        GroupSummary(gid, len(p.members), p.canonical.id, p.canonical.sha256, p.conflict,
                     p.species_slugs)
        for p, gid in zip(plans, plan_ids, strict=True)
    ]
    rows = session.execute(
        select(DuplicateGroup.id, DuplicateGroup.size, DuplicateGroup.canonical_image_id,
               Image.sha256, DuplicateGroup.conflict, DuplicateGroup.species_slugs)
        .join(Image, Image.id == DuplicateGroup.canonical_image_id, isouter=True)
    ).all()
    for gid, size, canonical_id, sha, conflict, slugs in rows:
        if gid not in replaced:
            out.append(GroupSummary(gid, size, canonical_id, sha or "", conflict, list(slugs)))
    return out


def _fill_report(report: DedupeReport, groups: list[GroupSummary], top: int) -> None:
    report.groups = len(groups)
    report.duplicates = sum(g.size - 1 for g in groups)
    report.sizes = dict(Counter(g.size for g in groups))
    report.conflicts = sorted(
        (g for g in groups if g.conflict), key=lambda g: (-g.size, g.canonical_id))
    report.top_groups = sorted(groups, key=lambda g: (-g.size, g.canonical_id))[:top]


# --- entry points ---------------------------------------------------------------------------
def run_dedupe(
    session: Session,
    *,
    radius: int | None = None,
    dry_run: bool = False,
    dhash_radius: int | None = None,
    rescan: bool = False,
    top: int = 10,
    progress: Progress | None = None,
) -> DedupeReport:
    """Group the duplicates among the catalog's images and mark each image unique/duplicate.

    Incremental by default: only images still ``downloaded`` are looked up (against all the
    others); ``rescan`` compares every pair, e.g. after widening the radius.
    """
    started = time.perf_counter()
    radius = DEFAULT_RADIUS if radius is None else radius
    dhash_radius = DEFAULT_DHASH_RADIUS if dhash_radius is None else dhash_radius
    if not 0 <= radius <= MAX_RADIUS:
        raise ValueError(f"radius must be within 0..{MAX_RADIUS}, got {radius}")
    if not 0 <= dhash_radius <= 64:
        raise ValueError(f"dHash radius must be within 0..64, got {dhash_radius}")
    step = progress or (lambda _stage, _done, _total: None)
    report = DedupeReport(radius, dhash_radius, "rescan" if rescan else "incremental", dry_run)

    if not dry_run:
        _lock(session)
    step("loading hashes", 0, 1)
    table = _load_hashes(session)
    new_ids = _new_ids(session)
    report.images, report.new_images = len(table.ids), len(new_ids)
    step("loading hashes", 1, 1)

    step("matching", 0, 3)
    pixel = _pixel_pairs(session, only_new=not rescan)
    step("matching", 1, 3)
    a, b, refused = _near_pairs(table, radius, dhash_radius, rescan)
    step("matching", 2, 3)
    near = list(zip(table.ids[a].tolist(), table.ids[b].tolist(), strict=True))
    report.pixel_pairs, report.near_pairs, report.rejected_by_dhash = len(pixel), len(near), refused
    plans = _plan_groups(session, pixel + near, _multi_species_images(session))
    step("matching", 3, 3)

    plan_ids: list[int | None] = []
    for done, plan in enumerate(plans, 1):
        plan_ids.append(_apply_group(session, plan, report, dry_run))
        step("grouping", done, len(plans))
    grouped = {m.id for p in plans for m in p.members}
    _mark_singles_unique(session, new_ids, grouped, report, dry_run)
    if not dry_run:
        session.flush()
    _fill_report(report, _summaries(session, plans, plan_ids), top)
    report.seconds = time.perf_counter() - started
    return report


def link_pairs(
    session: Session,
    pairs: Iterable[tuple[int, int]],
    *,
    radius: int | None = None,
    dry_run: bool = False,
    top: int = 10,
) -> DedupeReport:
    """Join image pairs another matcher found (curation's flipped and cropped copies) into the
    duplicate groups under the rules of every other match: groups grow and merge keeping the
    eldest ``split_key``, one canonical image per group, two species make a conflict. A pair
    already grouped changes nothing, so a second call is a no-op."""
    started = time.perf_counter()
    report = DedupeReport(DEFAULT_RADIUS if radius is None else radius, DEFAULT_DHASH_RADIUS,
                          FEATURES, dry_run)
    edges = sorted({(min(a, b), max(a, b)) for a, b in pairs if a != b})
    report.near_pairs = len(edges)
    if not dry_run:
        _lock(session)
    plans = _plan_groups(session, edges, [])
    ids = {i for edge in edges for i in edge}
    plan_ids = [_apply_group(session, plan, report, dry_run, ids) for plan in plans]
    if not dry_run:
        session.flush()
    _fill_report(report, _summaries(session, plans, plan_ids), top)
    report.seconds = time.perf_counter() - started
    return report
