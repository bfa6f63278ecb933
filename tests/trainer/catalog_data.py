"""Real photos into a catalog and a frozen dataset version, for trainer tests and benchmarks.

The split follows the dataset rule: a deterministic function of the image's split key (its
own sha256 when it has no duplicate group), unless the caller fixes it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session

from catalog.limits import limits_from_settings
from catalog.models import DatasetItem, DatasetVersion, Image, ImageStatus
from catalog.species import SpeciesSpec, get_species, upsert_species
from catalog.store import ImageStore
from pipeline.importer import import_files
from trainer.data import hashed_split, manifest_hash

SplitRule = Callable[[str, int], str]  # (sha256, position in its class) -> "train" | "val"


def import_species(
    session: Session, store: ImageStore, folders: dict[str, list[Path]]
) -> dict[str, list[Image]]:
    """Import each slug's files; returns the stored (valid) images per slug, in file order."""
    upsert_species(session, [SpeciesSpec(slug=s, latin_name=s.title()) for s in folders])
    out: dict[str, list[Image]] = {}
    for slug, files in folders.items():
        species = get_species(session, slug)
        import_files(session, store, files, species.id, limits_from_settings())
        images = session.query(Image).filter(Image.expected_species_id == species.id,
                                             Image.status != ImageStatus.INVALID)
        out[slug] = sorted(images, key=lambda i: i.id)
    return out


def create_version(
    session: Session, images: dict[str, list[Image]], name: str, val_ratio: float = 0.1,
    split: SplitRule | None = None,
) -> DatasetVersion:
    rule = split or (lambda sha, _pos: hashed_split(sha, val_ratio))
    rows = [(img, slug, rule(img.sha256, pos))
            for slug, imgs in images.items() for pos, img in enumerate(imgs)]
    version = DatasetVersion(
        name=name, classes=sorted(images), params={"val_ratio": val_ratio},
        manifest_sha256=manifest_hash([(i.sha256, label, s) for i, label, s in rows]),
        n_items=len(rows), n_train=sum(s == "train" for *_, s in rows),
        n_val=sum(s == "val" for *_, s in rows),
    )
    session.add(version)
    session.flush()
    session.add_all(DatasetItem(version_id=version.id, image_id=i.id, sha256=i.sha256,
                                label=label, split=s) for i, label, s in rows)
    session.commit()
    return version
