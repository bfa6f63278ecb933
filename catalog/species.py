"""The species registry: the shipped default list, YAML import and upsert by slug."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from catalog.models import Image, Species

DEFAULT_SPECIES_FILE = Path(__file__).parent / "data" / "default_species.yaml"
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
TAXON_FIELDS = ("taxon_status", "taxon_match", "gbif_key", "accepted_name", "synonyms",
                "taxon_class", "taxon_order")


class SpeciesFileError(ValueError):
    """A species YAML file that cannot be read; the message names the file and the problem."""


class SpeciesSpec(BaseModel):
    slug: str
    latin_name: str
    name_zh: str | None = None
    name_en: str | None = None
    keywords: dict[str, list[str]] = Field(default_factory=dict)
    active: bool = True
    # the backbone's answer (crawler.taxonomy); an update that does not give them keeps them
    taxon_status: str | None = None  # resolved | unresolved | not_fish (added with --force)
    taxon_match: str | None = None
    gbif_key: int | None = None
    accepted_name: str | None = None
    synonyms: list[str] = Field(default_factory=list)
    taxon_class: str | None = None
    taxon_order: str | None = None

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG.match(value):
            raise ValueError("slug must be lower-case letters, digits and dashes (max 63)")
        return value


def parse_species_yaml(text: str, origin: str = "<text>") -> list[SpeciesSpec]:
    try:
        doc: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpeciesFileError(f"{origin}: not valid YAML: {exc}") from exc
    items = doc.get("species") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise SpeciesFileError(f"{origin}: expected a list under 'species:'")
    specs: list[SpeciesSpec] = []
    for i, item in enumerate(items):
        try:
            specs.append(SpeciesSpec.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "entry"
            raise SpeciesFileError(f"{origin}: species #{i + 1}: {where}: {first['msg']}") from exc
    slugs = [s.slug for s in specs]
    dupes = sorted({s for s in slugs if slugs.count(s) > 1})
    if dupes:
        raise SpeciesFileError(f"{origin}: duplicate slugs: {', '.join(dupes)}")
    return specs


def load_species_file(path: Path) -> list[SpeciesSpec]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpeciesFileError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_species_yaml(text, str(path))


def upsert_species(session: Session, specs: list[SpeciesSpec]) -> tuple[int, int]:
    """Insert new species and update existing ones by slug. Returns (added, updated)."""
    existing = {s.slug: s for s in session.scalars(select(Species))}
    added = updated = 0
    for spec in specs:
        row = existing.get(spec.slug)
        values = spec.model_dump()
        for key in TAXON_FIELDS:  # a file without taxonomy keeps what was resolved before
            if key not in spec.model_fields_set:
                values.pop(key)
        if row is None:
            session.add(Species(**values))
            added += 1
            continue
        changed = False
        for key, value in values.items():
            if getattr(row, key) != value:
                setattr(row, key, value)
                changed = True
        updated += changed
    session.flush()
    return added, updated


def ensure_default_species(session: Session) -> int:
    """Load the shipped list into an empty registry. Returns how many were added."""
    if session.scalar(select(Species.id).limit(1)) is not None:
        return 0
    added, _ = upsert_species(session, load_species_file(DEFAULT_SPECIES_FILE))
    return added


def species_names(row: Species) -> list[str]:
    """Every scientific name the species goes by: the registered, accepted and synonyms."""
    names: dict[str, None] = {row.latin_name: None}
    if row.accepted_name:
        names.setdefault(row.accepted_name, None)
    for name in row.synonyms or []:
        names.setdefault(name, None)
    return list(names)


class UnknownSpecies(LookupError):
    pass


def get_species(session: Session, slug: str) -> Species:
    row = session.scalar(select(Species).where(Species.slug == slug))
    if row is None:
        known = session.scalars(select(Species.slug).order_by(Species.slug)).all()
        hint = ", ".join(known[:8]) + (" …" if len(known) > 8 else "")
        raise UnknownSpecies(
            f"unknown species '{slug}'" + (f" (known: {hint}; see `shoal species list`)"
                                            if known else "; the registry is empty")
        )
    return row


def spec_from_names(slug: str, latin: str, zh: str | None = None, en: str | None = None,
                    extra: list[str] | None = None, active: bool = True) -> SpeciesSpec:
    """A species from its names: each name is also a search keyword in its language.
    Raises ValueError when a field is invalid."""
    keywords: dict[str, list[str]] = {"la": [latin]}
    if en:
        keywords["en"] = [en]
    if zh:
        keywords["zh"] = [zh]
    if extra:
        keywords["extra"] = list(extra)
    return SpeciesSpec(slug=slug, latin_name=latin, name_zh=zh, name_en=en, keywords=keywords,
                       active=active)


def list_species(session: Session, include_inactive: bool = False) -> list[dict[str, Any]]:
    """The registry with names, keywords and how many images were crawled for each."""
    counts = dict(session.execute(
        select(Image.expected_species_id, func.count()).group_by(Image.expected_species_id)
    ).all())
    query = select(Species).order_by(Species.id)
    if not include_inactive:
        query = query.where(Species.active.is_(True))
    return [
        {"slug": s.slug, "latin_name": s.latin_name, "name_zh": s.name_zh,
         "name_en": s.name_en, "keywords": s.keywords, "active": s.active,
         "taxon_status": s.taxon_status, "accepted_name": s.accepted_name,
         "synonyms": s.synonyms or [], "taxon_class": s.taxon_class, "gbif_key": s.gbif_key,
         "images": counts.get(s.id, 0)}
        for s in session.scalars(query)
    ]
