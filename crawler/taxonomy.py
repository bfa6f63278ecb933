"""A species name resolved once against GBIF's backbone taxonomy (``GET /v1/species/match``).

The answer gives the accepted name, its rank and status, the match type (EXACT, FUZZY,
HIGHERRANK, NONE) and the classification. Recordings made since 2023 carry no ``class`` /
``classKey`` for fish (``rgbif__occ_search_depth.2025.yml``), so the class is taken, in this
order, from ``class``, from ``classKey`` (204 is Actinopterygii in the 2022 recording of the
same request), from the ``order`` (a table of fish orders), and is otherwise unknown: an
animal of phylum Chordata whose class is unknown is "maybe a fish" (a warning), anything else
is no fish. Synonyms come from ``verbose=true``: the ``alternatives`` whose
``acceptedUsageKey`` is the accepted key, plus the asked name itself when it matched a synonym.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlencode

from crawler.sites import site_url

# classes of fishes as GBIF's backbone names them (and the older or wider names in use)
FISH_CLASSES = frozenset({
    "Actinopterygii", "Chondrichthyes", "Elasmobranchii", "Holocephali", "Myxini",
    "Petromyzonti", "Petromyzontida", "Cephalaspidomorphi", "Sarcopterygii", "Actinistia",
    "Dipneusti", "Coelacanthi", "Teleostei",
})
CLASS_KEYS = {204: "Actinopterygii"}  # rgbif__occ_search_depth.2022.yml (Salmo salar)
FISH_ORDERS: dict[str, str] = {
    **dict.fromkeys((
        "Acanthuriformes", "Acipenseriformes", "Albuliformes", "Amiiformes", "Anabantiformes",
        "Anguilliformes", "Atheriniformes", "Aulopiformes", "Batrachoidiformes", "Beloniformes",
        "Beryciformes", "Blenniiformes", "Carangiformes", "Centrarchiformes", "Chaetodontiformes",
        "Characiformes", "Cichliformes", "Clupeiformes", "Cypriniformes", "Cyprinodontiformes",
        "Elopiformes", "Esociformes", "Gadiformes", "Gobiiformes", "Gonorynchiformes",
        "Gymnotiformes", "Holocentriformes", "Istiophoriformes", "Kurtiformes", "Labriformes",
        "Lampriformes", "Lepisosteiformes", "Lophiiformes", "Lutjaniformes", "Mugiliformes",
        "Myctophiformes", "Ophidiiformes", "Osmeriformes", "Osteoglossiformes",
        "Pempheriformes", "Perciformes", "Pleuronectiformes", "Polypteriformes",
        "Priacanthiformes", "Salmoniformes", "Scombriformes", "Scorpaeniformes",
        "Siluriformes", "Spariformes", "Stomiiformes", "Synbranchiformes", "Syngnathiformes",
        "Tetraodontiformes", "Trachiniformes", "Uranoscopiformes", "Zeiformes",
    ), "Actinopterygii"),
    **dict.fromkeys((
        "Carcharhiniformes", "Heterodontiformes", "Hexanchiformes", "Lamniformes",
        "Myliobatiformes", "Orectolobiformes", "Pristiophoriformes", "Rajiformes",
        "Rhinopristiformes", "Squaliformes", "Squatiniformes", "Torpediniformes",
    ), "Elasmobranchii"),
    "Chimaeriformes": "Holocephali",
    "Myxiniformes": "Myxini",
    "Petromyzontiformes": "Petromyzonti",
    "Coelacanthiformes": "Sarcopterygii",
    "Ceratodontiformes": "Sarcopterygii",
    "Lepidosireniformes": "Sarcopterygii",
}
SPECIES_RANKS = ("SPECIES", "SUBSPECIES", "VARIETY", "FORM")


class ResolutionFailed(RuntimeError):
    """The backbone could not be asked (offline, an HTTP error, not JSON)."""


@dataclass
class Taxon:
    query: str
    match_type: str  # EXACT | FUZZY | HIGHERRANK | NONE
    confidence: int | None = None
    note: str | None = None
    usage_key: int | None = None  # the matched name's key
    accepted_key: int | None = None  # the accepted name's key (== usage_key unless a synonym)
    accepted_name: str | None = None  # canonical, no author
    scientific_name: str | None = None
    rank: str | None = None
    status: str | None = None  # ACCEPTED | SYNONYM | DOUBTFUL
    kingdom: str | None = None
    phylum: str | None = None
    taxon_class: str | None = None
    class_from: str | None = None  # class | classKey | order: where taxon_class was read
    order: str | None = None
    family: str | None = None
    synonyms: list[str] = field(default_factory=list)

    @property
    def matched(self) -> bool:
        return self.match_type != "NONE" and self.accepted_key is not None

    @property
    def is_species(self) -> bool:
        return (self.rank or "") in SPECIES_RANKS

    @property
    def fish(self) -> bool | None:
        """True: a fish class; None: a chordate of unknown class; False: no fish."""
        if self.taxon_class:
            return self.taxon_class in FISH_CLASSES
        if self.kingdom == "Animalia" and self.phylum == "Chordata":
            return None
        return False

    def refusals(self) -> list[str]:
        """Why this name must not be registered as a fish species (empty: it may)."""
        if not self.matched:
            return [f"GBIF knows no taxon named {self.query!r}"
                    + (f" ({self.note})" if self.note else "")]
        out = []
        if self.fish is False:
            out.append(f"{self.query!r} is no fish: {self.accepted_name} is "
                       f"{self.taxon_class or self.phylum or self.kingdom or 'unclassified'}")
        if not self.is_species:
            out.append(f"{self.query!r} matched only the {(self.rank or '?').lower()} "
                       f"{self.accepted_name}, not a species")
        return out

    def warnings(self) -> list[str]:
        """What a person should know but that does not stop the registration."""
        out = []
        if self.matched and self.fish is None:
            out.append(f"{self.accepted_name}: a chordate of unknown class (GBIF gave no "
                       f"class and the order {self.order!r} is not in the table of fish orders)")
        if self.match_type == "FUZZY":
            out.append(f"{self.query!r} matched fuzzily: {self.accepted_name} "
                       f"(confidence {self.confidence})")
        if self.matched and self.accepted_name and self.accepted_name != self.query:
            out.append(f"{self.query!r} is recorded under its accepted name {self.accepted_name}")
        return out

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _class_of(m: dict[str, Any]) -> tuple[str | None, str | None]:
    if m.get("class"):
        return m["class"], "class"
    if m.get("classKey") in CLASS_KEYS:
        return CLASS_KEYS[m["classKey"]], "classKey"
    if m.get("order") in FISH_ORDERS:
        return FISH_ORDERS[m["order"]], "order"
    return None, None


def parse_match(query: str, m: dict[str, Any]) -> Taxon:
    """A ``species/match`` answer (``verbose`` or not) as a ``Taxon``."""
    match_type = str(m.get("matchType") or "NONE").upper()
    taxon = Taxon(query=query, match_type=match_type, confidence=m.get("confidence"),
                  note=m.get("note"))
    if match_type == "NONE" or m.get("usageKey") is None:
        return taxon
    synonym = bool(m.get("synonym")) or m.get("status") == "SYNONYM"
    rank = str(m.get("rank") or "").upper()
    # a synonym's accepted species is named by the classification's `species` field
    # (no recording has a top-level synonym: this follows the API's documented fields)
    accepted = (m.get("species") if synonym and rank == "SPECIES" else None) or m.get(
        "canonicalName")
    taxon.usage_key = m["usageKey"]
    taxon.accepted_key = (m.get("acceptedUsageKey") if synonym else None) or m["usageKey"]
    taxon.accepted_name, taxon.scientific_name = accepted, m.get("scientificName")
    taxon.rank, taxon.status = rank, m.get("status")
    taxon.kingdom, taxon.phylum, taxon.order = m.get("kingdom"), m.get("phylum"), m.get("order")
    taxon.family = m.get("family")
    taxon.taxon_class, taxon.class_from = _class_of(m)
    names: dict[str, None] = {}
    if synonym and m.get("canonicalName") and m["canonicalName"] != accepted:
        names[m["canonicalName"]] = None
    for alt in m.get("alternatives") or []:
        if (alt.get("status") == "SYNONYM" and alt.get("acceptedUsageKey") == taxon.accepted_key
                and alt.get("canonicalName") and alt["canonicalName"] != accepted):
            names[alt["canonicalName"]] = None
    taxon.synonyms = list(names)
    return taxon


def match_url(name: str) -> str:
    params = {"name": name, "strict": "false", "verbose": "true"}
    return f"{site_url('gbif_api')}/species/match?{urlencode(params)}"


def resolve_name(name: str, timeout: float = 20.0) -> Taxon:
    """Ask GBIF (``SHOAL_CRAWL_SITE_GBIF_API``) once; raises ``ResolutionFailed``."""
    import httpx

    from catalog.settings import get_settings

    url = match_url(name)
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=True,
                             headers={"User-Agent": get_settings().crawl.user_agent})
        response.raise_for_status()
        data = response.json()
    except httpx.HTTPStatusError as exc:
        raise ResolutionFailed(
            f"GBIF answered HTTP {exc.response.status_code} for {url}") from exc
    except httpx.HTTPError as exc:
        raise ResolutionFailed(f"GBIF could not be reached at {url} "
                               f"({type(exc).__name__}: {exc})") from exc
    except ValueError as exc:
        raise ResolutionFailed(f"GBIF's answer for {url} is not JSON") from exc
    if not isinstance(data, dict):
        raise ResolutionFailed(f"GBIF's answer for {url} is not a JSON object")
    return parse_match(name, data)


def taxon_fields(taxon: Taxon) -> dict[str, Any]:
    """The species columns this answer fills (``catalog.species.TAXON_FIELDS``)."""
    status = "resolved" if not taxon.refusals() else "not_fish"
    return {"taxon_status": status, "taxon_match": taxon.match_type,
            "gbif_key": taxon.accepted_key, "accepted_name": taxon.accepted_name,
            "synonyms": taxon.synonyms, "taxon_class": taxon.taxon_class,
            "taxon_order": taxon.order}
