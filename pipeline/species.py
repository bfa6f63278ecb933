"""Species names checked against GBIF's backbone before they enter the registry: what
`shoal species add|import` and `PUT /v1/species/{slug}` both do."""

from __future__ import annotations

from catalog.species import SpeciesSpec
from pipeline.errors import ShoalError


def resolve_specs(specs: list[SpeciesSpec], *, no_resolve: bool, force: bool
                  ) -> tuple[list[SpeciesSpec], list[str], list[str]]:
    """Each spec with its taxonomy filled from GBIF; returns (kept, refused, warnings)."""
    from crawler.taxonomy import ResolutionFailed, resolve_name, taxon_fields

    if no_resolve:
        return [s.model_copy(update={"taxon_status": "unresolved"}) for s in specs], [], []
    kept, refused, warnings = [], [], []
    for spec in specs:
        try:
            taxon = resolve_name(spec.latin_name)
        except ResolutionFailed as exc:
            raise ShoalError(f"cannot resolve {spec.latin_name!r}: {exc}; to register species "
                             "without resolution (marked unresolved) pass --no-resolve",
                             exit_code=3) from exc
        problems = taxon.refusals()
        warnings += [f"{spec.slug}: {w}" for w in taxon.warnings()]
        if problems and not force:
            refused.append(f"{spec.slug}: " + "; ".join(problems))
            continue
        if problems:
            warnings += [f"{spec.slug}: {p} (registered anyway: --force)" for p in problems]
        fields = taxon_fields(taxon)
        if problems:
            fields["taxon_status"] = "not_fish"
        kept.append(spec.model_copy(update=fields))
    return kept, refused, warnings
