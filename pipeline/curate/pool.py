"""What curation looks at: the images a dataset version could take (unique, in review,
approved), each with its given label (the approved species, else the crawl keyword's) and its
split key (catalog.splits: the duplicate group's, else its own sha256)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from catalog.models import Image, ImageStatus, Species
from catalog.settings import get_settings
from catalog.splits import split_key_for
from catalog.store import ImageStore
from trainer.data import Record

POOL_STATES = (ImageStatus.UNIQUE, ImageStatus.IN_REVIEW, ImageStatus.APPROVED)


@dataclass
class Pool:
    image_ids: list[int] = field(default_factory=list)
    sha256: list[str] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # given species slug per image
    keys: list[str] = field(default_factory=list)  # split key per image
    statuses: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.image_ids)

    def records(self) -> list[Record]:
        return [Record(p, s, -1, i) for i, s, p in
                zip(self.image_ids, self.sha256, self.paths, strict=True)]

    def subset(self, keep: list[int]) -> Pool:
        """The images at positions ``keep``, in that order."""
        return Pool(*([column[i] for i in keep] for column in (
            self.image_ids, self.sha256, self.paths, self.labels, self.keys, self.statuses)))

    def classes(self) -> list[str]:
        return sorted(set(self.labels))


def load_pool(session: Session, species: list[str] | None = None) -> Pool:
    """The pool in image id order; images without a stored file or a label are left out."""
    store = ImageStore(get_settings().image_dir)
    expected, approved = aliased(Species), aliased(Species)
    query = (
        select(Image.id, Image.sha256, Image.path, Image.status, expected.slug, approved.slug)
        .outerjoin(expected, expected.id == Image.expected_species_id)
        .outerjoin(approved, approved.id == Image.label_species_id)
        .where(Image.status.in_(POOL_STATES), Image.path.is_not(None))
        .order_by(Image.id)
    )
    pool = Pool()
    rows = []
    for image_id, sha, path, status, keyword, label in session.execute(query):
        given = label if status == ImageStatus.APPROVED and label else keyword
        if given is None or (species and given not in species):
            continue
        rows.append((image_id, sha, store.path(path), status, given))
    keys = split_key_for(session, [r[0] for r in rows])
    for image_id, sha, path, status, given in rows:
        pool.image_ids.append(image_id)
        pool.sha256.append(sha)
        pool.paths.append(path)
        pool.statuses.append(status)
        pool.labels.append(given)
        pool.keys.append(keys[image_id])
    return pool
