"""Species names resolved against GBIF's backbone, on the recorded ``species/match`` answers."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from catalog.db import session_scope
from catalog.species import get_species, species_names
from crawler.taxonomy import ResolutionFailed, parse_match, resolve_name
from pipeline.cli import app
from pipeline.demo.site.recorded import cassette_body, replay

runner = CliRunner()
CASSETTES = ["gbif/rgbif__name_backbone_checklist.yml", "gbif/rgbif__occ_search_depth.2025.yml",
             "gbif/rgbif__name_backbone.yml",
             "gbif/pygbif__test_name_backbone_multiple_matches.yaml"]
PUMA_FUZZY = "Puma concuolor (Linnaeus, 1771)"


def _match(cassette: str, **params: str) -> dict:
    return json.loads(cassette_body(cassette, "species/match", **params))


def test_fish_with_class_2022_and_without_class_2025(recordings):
    old = parse_match("Salmo salar", _match("gbif/rgbif__occ_search_depth.2022.yml"))
    new = parse_match("Salmo salar", _match("gbif/rgbif__occ_search_depth.2025.yml"))
    assert (old.taxon_class, old.class_from) == ("Actinopterygii", "class")
    # the 2025 recording has neither class nor classKey: the order names the class
    assert (new.taxon_class, new.class_from) == ("Actinopterygii", "order")
    for t in (old, new):
        assert t.fish is True and t.refusals() == [] and t.accepted_key == 7595433
        assert t.accepted_name == "Salmo salar" and t.is_species


def test_no_fish_higher_rank_fuzzy_and_none(recordings):
    c = "gbif/rgbif__name_backbone_checklist.yml"
    puma = parse_match("Puma concolor", _match(c, name="Puma concolor (Linnaeus, 1771)"))
    assert puma.taxon_class == "Mammalia" and puma.fish is False
    assert "is no fish" in puma.refusals()[0]
    genus = parse_match("Ceylonosticta alwisi", _match(
        c, name="Ceylonosticta alwisi (Priyadarshana & Wijewardhane, 2016)"))
    assert genus.match_type == "HIGHERRANK" and not genus.is_species
    assert any("only the genus" in r for r in genus.refusals())
    fuzzy = parse_match(PUMA_FUZZY, _match(c, name=PUMA_FUZZY))
    assert fuzzy.match_type == "FUZZY" and fuzzy.accepted_name == "Puma concolor"
    assert any("fuzzily" in w for w in fuzzy.warnings())
    none = parse_match("Fake species", _match(c, name="Fake species (John Waller 2021)"))
    assert not none.matched and "knows no taxon" in none.refusals()[0]
    aso = parse_match("Aso", _match("gbif/pygbif__test_name_backbone_multiple_matches.yaml"))
    assert not aso.matched and "too little confidence" in aso.refusals()[0]


def test_synonyms_from_verbose_alternatives(recordings):
    c = "gbif/rgbif__name_backbone.yml"
    plain = parse_match("Helianthus annuus", _match(c, verbose="FALSE"))
    verbose = parse_match("Helianthus annuus", _match(c, verbose="TRUE"))
    assert plain.synonyms == []
    # the recorded alternative is a synonym of ANOTHER accepted name (4250528): not ours
    assert verbose.synonyms == []
    made_ours = _match(c, verbose="TRUE")
    made_ours["alternatives"][0]["acceptedUsageKey"] = made_ours["usageKey"]
    assert parse_match("Helianthus annuus", made_ours).synonyms == ["Helianthus canus"]


def test_resolve_over_loopback_and_offline(recordings, monkeypatch):
    with replay(CASSETTES) as base:
        monkeypatch.setenv("SHOAL_CRAWL_SITE_GBIF_API", base)
        assert resolve_name("Salmo salar").taxon_class == "Actinopterygii"
        with pytest.raises(ResolutionFailed, match="HTTP 404"):
            resolve_name("not recorded")
    monkeypatch.setenv("SHOAL_CRAWL_SITE_GBIF_API", "http://127.0.0.1:9/v1")
    with pytest.raises(ResolutionFailed, match="could not be reached"):
        resolve_name("Salmo salar")


def test_species_add_and_import_resolve_and_refuse(sqlite_env, recordings, monkeypatch, tmp_path):
    with replay(CASSETTES) as base:
        monkeypatch.setenv("SHOAL_CRAWL_SITE_GBIF_API", base)
        ok = runner.invoke(app, ["species", "add", "salmon", "--latin", "Salmo salar", "--json"])
        assert ok.exit_code == 0, ok.output
        assert json.loads(ok.stdout)["species"][0]["taxon_class"] == "Actinopterygii"
        cat = runner.invoke(app, ["species", "add", "puma", "--latin",
                                  "Puma concolor (Linnaeus, 1771)"])
        assert cat.exit_code == 2 and "is no fish" in cat.output and "--force" in cat.output
        forced = runner.invoke(app, ["species", "add", "puma", "--latin",
                                     "Puma concolor (Linnaeus, 1771)", "--force"])
        assert forced.exit_code == 0 and "registered anyway" in forced.output
        f = tmp_path / "mixed.yaml"
        f.write_text("species:\n- slug: sunflower\n  latin_name: Helianthus annuus\n"
                     f"- slug: fuzzy-puma\n  latin_name: {PUMA_FUZZY}\n"
                     "- slug: salmon\n  latin_name: Salmo salar\n  name_en: Atlantic salmon\n")
        mixed = runner.invoke(app, ["species", "import", str(f)])
        assert mixed.exit_code == 2, mixed.output
        assert "3 species" in mixed.output and "0 added, 1 updated, 2 refused" in mixed.output
    monkeypatch.setenv("SHOAL_CRAWL_SITE_GBIF_API", "http://127.0.0.1:9/v1")
    offline = runner.invoke(app, ["species", "add", "trout", "--latin", "Salmo trutta"])
    assert offline.exit_code == 3 and "--no-resolve" in offline.output
    assert runner.invoke(app, ["species", "add", "trout", "--latin", "Salmo trutta",
                               "--no-resolve"]).exit_code == 0
    with session_scope() as s:
        salmon, puma, trout = (get_species(s, x) for x in ("salmon", "puma", "trout"))
        assert (salmon.taxon_status, salmon.gbif_key, salmon.accepted_name, salmon.name_en) == (
            "resolved", 7595433, "Salmo salar", "Atlantic salmon")
        assert (puma.taxon_status, puma.taxon_class) == ("not_fish", "Mammalia")
        assert trout.taxon_status == "unresolved" and trout.gbif_key is None
        assert species_names(puma) == ["Puma concolor (Linnaeus, 1771)", "Puma concolor"]
