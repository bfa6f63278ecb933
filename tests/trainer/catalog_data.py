"""Real photos into a catalog and a frozen dataset version, for trainer tests and benchmarks.

Without a split rule of the caller's, the version is made by the dataset module itself
(``pipeline.datasets.versions.create_version`` over the imported images, approved as
imported), so the split is the dataset rule's; tests fix their own split to keep every class
in both.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session

from catalog.limits import limits_from_settings
from catalog.models import DatasetItem, DatasetVersion, Image, ImageStatus
from catalog.species import SpeciesSpec, get_species, upsert_species
from catalog.store import ImageStore
from pipeline.datasets import versions as datasets
from pipeline.importer import import_files
from trainer.data import manifest_hash

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
    if split is None:
        for imgs in images.values():
            for img in imgs:
                img.status = ImageStatus.APPROVED
        session.commit()
        return datasets.create_version(session, name=name, species=sorted(images),
                                       val_ratio=val_ratio)
    rows = [(img, slug, split(img.sha256, pos))
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
