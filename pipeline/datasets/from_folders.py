"""A dataset version from photos already sorted into folders, ``ROOT/<class>/*``.

For a lab's own labelled photos and the benchmarks: each folder is imported through the
ingest path under its own species (created if missing), deduplicated like a crawl, and the
unique images approved under the folder's label (whoever sorted the folders is the
reviewer), then frozen by the dataset rule, so copies of a photo stay on one side of the split.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.limits import limits_from_settings
from catalog.models import DatasetVersion, Species
from catalog.species import SpeciesSpec, upsert_species
from catalog.store import ImageStore
from pipeline.datasets.approve import approve_by_keyword
from pipeline.datasets.versions import create_version
from pipeline.dedupe.grouping import run_dedupe
from pipeline.errors import UsageError
from pipeline.importer import import_files, list_files


def class_folders(root: Path, prefix: str = "", limit: int | None = None) -> dict[str, list[Path]]:
    """``{slug: files}`` for each sub-folder of ``root``; slugs are ``prefix`` + folder name."""
    if not root.is_dir():
        raise UsageError(f"no such folder: {root}")
    folders = {
        prefix + d.name.lower().replace("_", "-").replace(" ", "-"): list_files(d)[:limit]
        for d in sorted(root.iterdir()) if d.is_dir()
    }
    if not folders:
        raise UsageError(f"{root} holds no class folders (expected {root}/<class>/<photo>)")
    return folders


def version_from_folders(
    session: Session, store: ImageStore, folders: dict[str, list[Path]], name: str,
    *, val_ratio: float = 0.1,
) -> DatasetVersion:
    upsert_species(session, [SpeciesSpec(slug=s, latin_name=s.replace("-", " ").capitalize())
                             for s in folders if not session.scalar(
                                 select(Species.id).where(Species.slug == s))])
    ids = []
    for slug, files in folders.items():
        species_id = session.scalar(select(Species.id).where(Species.slug == slug))
        assert species_id is not None
        import_files(session, store, files, species_id, limits_from_settings())
        ids.append(species_id)
    run_dedupe(session)
    approve_by_keyword(session, ids)
    session.commit()
    return create_version(session, name=name, species=sorted(folders), val_ratio=val_ratio)
