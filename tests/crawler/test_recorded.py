"""Every spider's parse on real recorded responses (../shared/recorded/, read in place).

Each test feeds a recorded body to the spider callback that handles that request, as Scrapy
would, and checks what it yields and what it drops (``stats["skipped"]`` by reason). Where no
recording of a shape exists (a v1 fish taxon on iNaturalist, a Baike article, a shop ad
redirect) the test says so and the shape is exercised on the local site instead
(tests/crawler/test_crawl.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from scrapy.http import HtmlResponse, Request, TextResponse
from scrapy.utils.test import get_crawler

from crawler.items import ImageItem
from crawler.profiles import available_profiles, load_profile
from crawler.spiders import SPIDERS
from crawler.stats import Drop
from pipeline.demo.site.recorded import cassette_body, load_cassette, recorded

SALMON = {"slug": "salmon", "latin_name": "Salmo salar", "keywords": {"en": ["Atlantic salmon"]},
          "names": ["Salmo salar"], "taxon_class": "Actinopterygii", "gbif_key": 7595433}


def spider(kind: str, species: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    cls = SPIDERS[kind]
    return cls.from_crawler(get_crawler(cls), species=species or SALMON, **kwargs)


def json_response(url: str, body: str | bytes) -> TextResponse:
    data = body.encode() if isinstance(body, str) else body
    return TextResponse(url, body=data, encoding="utf-8", request=Request(url))


def recorded_json(relative: str, url: str = "https://example.org/api") -> TextResponse:
    return json_response(url, recorded(relative).read_bytes())


def split(out: list[Any]) -> tuple[list[ImageItem], list[Request]]:
    return ([x for x in out if isinstance(x, ImageItem)],
            [x for x in out if isinstance(x, Request)])


def skipped(s: Any) -> dict[str, int]:
    prefix = "shoal/skipped/"
    return {k[len(prefix):]: v for k, v in s.crawler.stats.get_stats().items()
            if k.startswith(prefix)}


# --- MediaWiki -----------------------------------------------------------------------------
def test_lead_image_keeps_its_article_through_the_normalized_block(recordings):
    """reading_list_page_info answers titles asked as Barack_Obama|Joe_Biden under their
    normalised titles; a file asked as File:A_b.jpg is answered the same way."""
    s = spider("wikimedia")
    data = json.loads(recorded("wikimedia/aaw_reading_list_page_info.json").read_text())
    from crawler.spiders.wikimedia import final_titles, pages_of

    assert final_titles(data) == {"Barack_Obama": "Barack Obama", "Joe_Biden": "Joe Biden"}
    assert [p["title"] for p in pages_of(data)] == ["Joe Biden", "Barack Obama"]
    # the same block on an imageinfo answer: the article is found under the normalised title
    answer = dict(data)
    answer["query"] = {"normalized": [{"from": "File:Official_portrait.jpg",
                                       "to": "File:Official portrait.jpg"}],
                       "pages": [{"ns": 6, "title": "File:Official portrait.jpg",
                                  "imageinfo": json.loads(recorded(
                                      "wikimedia/aaw_gallery_collection_with_continuation_1.json"
                                  ).read_text())["query"]["pages"][0]["imageinfo"]}]}
    items, _ = split(list(s.parse_files(
        json_response("https://en.wikipedia.org/w/api.php", json.dumps(answer)), "wikipedia_en",
        "Salmo salar", articles={"File:Official_portrait.jpg": "https://en.wikipedia.org/wiki/X"})))
    assert [i["page_url"] for i in items] == ["https://en.wikipedia.org/wiki/X"]


def test_redirects_block_and_pages_out_of_index_order(recordings):
    from crawler.spiders.wikimedia import final_titles, pages_of

    data = json.loads(recorded("wikimedia/aaw_prefix_search_results.json").read_text())
    redirects = {r["from"]: r["to"] for r in data["query"]["redirects"]}
    assert final_titles(data) == redirects and redirects
    indexes = sorted(p["index"] for p in data["query"]["pages"])
    assert [p["index"] for p in pages_of(data)] == indexes
    empty = json.loads(recorded("wikimedia/aaw_prefix_search_results_empty.json").read_text())
    assert pages_of(empty) == [] and final_titles(empty) == {}


def test_article_answers_missing_pages_and_no_lead_image(recordings):
    s = spider("wikimedia")
    body = recorded("wikimedia/aaw_prefix_search_results.json").read_bytes()
    out = list(s.parse_articles(json_response("https://en.wikipedia.org/w/api.php", body),
                                "wikipedia_en", "Salmo salar"))
    # pages with a `thumbnail` but no `pageimage` (prop=pageimages without piprop=name):
    # nothing to ask for, counted as articles without a picture
    assert out == []
    assert s.crawler.stats.get_value("shoal/articles_without_picture") == 20
    missing = {"batchcomplete": True, "query": {"normalized": [{"from": "Salmo_x", "to":
               "Salmo x"}], "pages": [{"ns": 0, "title": "Salmo x", "missing": True}]}}
    assert list(s.parse_articles(json_response("https://x/api", json.dumps(missing)),
                                 "wikipedia_en", "Salmo_x")) == []
    assert skipped(s) == {Drop.NOT_FOUND: 1}


def test_gallery_continue_paging_and_last_page(recordings):
    s = spider("wikimedia", species={**SALMON, "names": ["Foo"]})
    url = "https://commons.wikimedia.org/w/api.php"
    items, requests = split(list(s.parse_files(
        recorded_json("wikimedia/aaw_gallery_collection_with_continuation_1.json", url),
        "commons", "Foo", search=True)))
    assert [i["image_urls"] for i in items] == [
        ["https://upload.wikimedia.org/wikipedia/commons/e/e9/Foo.jpg"]]
    assert items[0]["page_url"] == "https://commons.wikimedia.org/wiki/File:Foo.jpg"
    assert len(requests) == 1 and "gimcontinue=12345678%7CBar" in requests[0].url
    items, requests = split(list(s.parse_files(
        recorded_json("wikimedia/aaw_gallery_collection_with_continuation_2.json", url),
        "commons", "Foo", search=True)))
    assert requests == []  # batchcomplete, no continue: the last page


def test_files_without_url_and_svg_are_dropped_by_reason(recordings):
    s = spider("wikimedia")
    items, _ = split(list(s.parse_files(
        recorded_json("wikimedia/aaw_gallery_collection_no_thumbs.json"), "commons", "x")))
    assert items == []
    assert skipped(s) == {Drop.NO_URL: 3, Drop.NOT_AN_IMAGE_TYPE: 1}


def test_formatversion_1_without_mime_html_extmetadata_and_prop_continuation(recordings):
    """ov_wmc_pretty1-3: pages keyed by page id, no `mime` (the file name decides), Artist
    HTML, and a batch whose later parts carry no imageinfo (not drops)."""
    s = spider("wikimedia", species={**SALMON, "names": ["Niedercunnersdorf", "Edvard Munch",
                                                          "Minchinmavida", "Heidelberg",
                                                          "sea-urchins"]})
    url = "https://commons.wikimedia.org/w/api.php"
    items, requests = split(list(s.parse_files(
        recorded_json("wikimedia/ov_wmc_pretty1.json", url), "commons", "x", search=True)))
    assert len(items) == 9 and skipped(s) == {}
    by_title = {i["title"]: i for i in items}
    volcano = by_title["Minchinmavida Volcano"]
    assert volcano["artist"] == "The original uploader was Elvezio at Italian Wikipedia."
    assert volcano["license"] == "Public domain" and "license_url" not in volcano
    munch = next(i for i in items if "Munch" in (i.get("artist") or ""))
    assert munch["artist"] == "Edvard Munch"
    assert len(requests) == 1 and "gucontinue=" in requests[0].url  # prop continuation
    for part in ("ov_wmc_pretty2.json", "ov_wmc_pretty3.json"):
        more, _ = split(list(s.parse_files(recorded_json(f"wikimedia/{part}", url), "commons",
                                           "x", search=True)))
        assert more == []
    assert skipped(s) == {}  # their pages were described in part 1
    fresh = spider("wikimedia")
    list(fresh.parse_files(recorded_json("wikimedia/ov_response_small_missing_continue.json"),
                           "commons", "x", search=True))
    assert skipped(fresh) == {Drop.NO_URL: 1}  # a page with no imageinfo at all


def test_commons_files_of_another_taxon_are_dropped(recordings):
    s = spider("wikimedia")  # Salmo salar: none of these files names it
    items, _ = split(list(s.parse_files(recorded_json("wikimedia/ov_wmc_pretty1.json"),
                                        "commons", "Salmo salar", search=True)))
    assert items == [] and skipped(s) == {Drop.WRONG_TAXON: 9}


def test_fragments_red_link_artist_missing_license_url_missing_imageinfo(recordings):
    from crawler.html import clean_text
    from crawler.spiders.wikimedia import _meta

    red = json.loads(recorded("wikimedia/ov_image_info_artist_internal_link.json").read_text())
    assert clean_text(_meta(red["extmetadata"], "Artist")) == "NotaRealUser"
    info = json.loads(recorded("wikimedia/ov_image_info_missing_license_url.json").read_text())
    ext = info["extmetadata"]
    assert _meta(ext, "LicenseUrl") is None and _meta(ext, "LicenseShortName")
    s = spider("wikimedia", species={**SALMON, "names": [info["url"].rsplit("/", 1)[-1][:8]]})
    page = {"ns": 6, "title": "File:" + info["url"].rsplit("/", 1)[-1], "imageinfo": [info]}
    item = s.file_item(page, json_response("https://x/api", "{}"), "commons", "k", {}, False)
    assert item["license"] == _meta(ext, "LicenseShortName") and "license_url" not in item
    bare = json.loads(recorded("wikimedia/ov_image_data_missing_imageinfo.json").read_text())
    assert s.file_item(bare, json_response("https://x/api", "{}"), "commons", "k", {}, True) \
        is None
    assert skipped(s) == {Drop.NO_URL: 1}


def test_api_error_envelope_yields_nothing(recordings):
    s = spider("wikimedia")
    assert list(s.parse_files(recorded_json("wikimedia/aaw_api_error.json"), "commons", "x",
                              search=True)) == []
    assert list(s.parse_articles(recorded_json("wikimedia/aaw_api_error.json"),
                                 "wikipedia_en", "x")) == []


# --- iNaturalist ---------------------------------------------------------------------------
def test_partial_name_never_takes_the_first_result(recordings):
    """A search for a partial or common name answers a plant, then an insect: no taxon."""
    s = spider("inaturalist", species={**SALMON, "latin_name": "Tussilago"})
    out = list(s.parse_taxa(recorded_json("inaturalist/v1_get_taxa_with_preferred_place.json"),
                            "Tussilago"))
    assert out == [] and skipped(s) == {Drop.NO_TAXON: 1}


def test_exact_name_of_no_fish_and_subspecies_are_refused(recordings):
    crow = {**SALMON, "latin_name": "Corvus brachyrhynchos", "names": []}
    s = spider("inaturalist", species=crow)
    assert list(s.parse_taxa(recorded_json("inaturalist/v1_get_taxa_with_all_names.json"),
                             "Corvus brachyrhynchos")) == []
    assert skipped(s) == {Drop.NO_TAXON: 1}
    results = json.loads(recorded("inaturalist/v1_get_taxa_with_all_names.json").read_text())
    assert "no fish" in s.acceptable(results["results"][0])
    genus = json.loads(recorded("inaturalist/v1_get_observation_2.json").read_text())["taxon"]
    assert "above species" in spider(
        "inaturalist", species={**SALMON, "latin_name": genus["name"]}).acceptable(genus)


def test_fish_species_taxon_is_taken_when_the_shape_says_so(recordings):
    """No v1 fish taxon is recorded: the recorded Corvus answer, its iconic taxon set to the
    v2 recording's fish iconic taxon, is accepted (exact name, rank species)."""
    iconic = json.loads(recorded("inaturalist/v2_get_taxa_iconic_full.json").read_text())
    fish = next(t for t in iconic["results"] if t["id"] == 47178)
    data = json.loads(recorded("inaturalist/v1_get_taxa_with_all_names.json").read_text())
    for t in data["results"]:
        t["iconic_taxon_name"] = fish["name"]
    s = spider("inaturalist", species={**SALMON, "latin_name": "Corvus brachyrhynchos"})
    _, requests = split(list(s.parse_taxa(json_response("https://x/v1/taxa", json.dumps(data)),
                                          "Corvus brachyrhynchos")))
    assert len(requests) == 1 and f"taxon_id={data['results'][0]['id']}" in requests[0].url


def test_observations_large_photos_licenses_wrong_taxon_bare_and_empty(recordings):
    obs = json.loads(recorded("inaturalist/v1_get_observation.json").read_text())["results"][0]
    taxon_id = obs["taxon"]["id"]
    s = spider("inaturalist")
    items, requests = split(list(s.parse_observations(
        recorded_json("inaturalist/v1_get_observation.json"), taxon_id, "Lixus bardanae")))
    assert len(items) == 2 and all(i["license"] == "CC-BY" for i in items)
    assert all("/large.jpeg?" in i["image_urls"][0] for i in items)
    assert items[0]["page_url"] == "https://www.inaturalist.org/observations/16227955"
    assert items[0]["artist"] == "Nicolas Noé"
    assert len(requests) == 1 and f"id_above={obs['id']}" in requests[0].url
    # the same observation under a fish taxon id is another taxon
    other = spider("inaturalist")
    assert split(list(other.parse_observations(
        recorded_json("inaturalist/v1_get_observation.json"), 47178, "x")))[0] == []
    assert skipped(other) == {Drop.WRONG_TAXON: 2}
    # a bare record (no envelope), all rights reserved on both photos
    bare = json.loads(recorded("inaturalist/v1_get_observation_with_quality_metrics.json")
                      .read_text())
    arr = spider("inaturalist")
    list(arr.parse_observations(recorded_json(
        "inaturalist/v1_get_observation_with_quality_metrics.json"), bare["taxon"]["id"], "x"))
    assert skipped(arr) == {Drop.ALL_RIGHTS_RESERVED: 2}
    empty = spider("inaturalist")
    assert list(empty.parse_observations(recorded_json(
        "inaturalist/v1_get_nonexistent_observation.json"), 1, "x")) == []


# --- GBIF ----------------------------------------------------------------------------------
def occurrence_response(cassette: str, index: int = 0) -> TextResponse:
    i = [x for x in load_cassette(recorded(cassette)) if "occurrence/search" in x.url][index]
    return json_response(i.url, i.body)


def test_gbif_fish_occurrences_with_still_images_and_licenses(recordings):
    """wkt_large_occ_search: 100 mixed records, 2 of them fish with one StillImage each."""
    s = spider("gbif", species={**SALMON, "latin_name": "Bothus podas", "gbif_key": 5213852})
    items, requests = split(list(s.parse_occurrences(
        occurrence_response("gbif/rgbif__wkt_large_occ_search.yml"), 5213852)))
    assert len(items) == 1
    item = items[0]
    assert item["image_urls"][0].startswith("https://static.inaturalist.org/photos/")
    assert (item["license"], item["license_url"]) == (
        "CC-BY-NC", "https://creativecommons.org/licenses/by-nc/4.0/")
    assert item["artist"] == "whodden" and item["site"] == "gbif.org"
    assert item["page_url"] == "https://www.gbif.org/occurrence/1986608344"
    assert "© whodden" in item["title"] and "published by iNaturalist" in item["title"]
    drops = skipped(s)
    assert drops[Drop.WRONG_TAXON] > 100  # every other record's media
    assert len(requests) == 1 and "offset=100" in requests[0].url  # endOfRecords: false


def test_gbif_media_license_falls_back_to_the_occurrence(recordings):
    body = json.loads(occurrence_response("gbif/pygbif__test_search_identified_by_id.yaml").text)
    first = body["results"][0]
    key = first["taxonKey"]
    s = spider("gbif", species={**SALMON, "gbif_key": key})
    list(s.parse_occurrences(occurrence_response(
        "gbif/pygbif__test_search_identified_by_id.yaml"), key))
    # a lichen (Lecanoromycetes) is no fish, whatever its key; the others are other taxa
    assert skipped(s) == {Drop.WRONG_TAXON: sum(len(r["media"]) for r in body["results"])}
    first["class"] = "Actinopterygii"
    body["results"] = [first]
    fish = spider("gbif", species={**SALMON, "gbif_key": key})
    items, _ = split(list(fish.parse_occurrences(json_response("https://x", json.dumps(body)),
                                                 key)))
    assert items and all(i["license"] == "CC-BY-NC" for i in items)  # the occurrence's
    assert items[0]["artist"] == "Thomas Stjernegaard Jeppesen"


def test_gbif_empty_pages_and_class_less_2025_records(recordings):
    s = spider("gbif")
    empty, requests = split(list(s.parse_occurrences(
        occurrence_response("gbif/rgbif__occ_search_depth.2022.yml"), 7595433)))
    assert empty == [] and requests == []  # count 0, no results
    recent = spider("gbif")
    items, requests = split(list(recent.parse_occurrences(
        occurrence_response("gbif/rgbif__occ_search_depth.2025.yml"), 7595433)))
    assert items == [] and skipped(recent) == {}  # media: [] and no class: not wrong taxon
    assert len(requests) == 1 and "offset=2" in requests[0].url


def test_gbif_matches_an_unresolved_species_first(recordings):
    s = spider("gbif", species={**SALMON, "gbif_key": None})
    body = cassette_body("gbif/rgbif__occ_search_depth.2025.yml", "species/match")
    _, requests = split(list(s.parse_match(json_response("https://x", body))))
    assert len(requests) == 1 and "taxonKey=7595433" in requests[0].url
    cat = spider("gbif", species={**SALMON, "latin_name": "Puma concolor", "gbif_key": None})
    body = cassette_body("gbif/rgbif__name_backbone_checklist.yml", "species/match",
                         name="Puma concolor (Linnaeus, 1771)")
    assert list(cat.parse_match(json_response("https://x", body))) == []
    assert skipped(cat) == {Drop.NO_TAXON: 1}


# --- Baike and the shops: each profile on its recorded page -------------------------------
def profile_response(profile: Any) -> HtmlResponse:
    url = profile.url_for(profile.fixture_keyword or "x")
    return HtmlResponse(url, body=recorded(profile.fixture).read_bytes(), encoding="utf-8",
                        request=Request(url))


def test_baike_home_page_yields_nothing_and_says_so(recordings):
    profile = load_profile("baike")
    s = spider("baike")
    out = list(s.parse_article(profile_response(profile), "大西洋鲑"))
    assert out == []
    assert s.crawler.stats.get_value("shoal/articles_without_picture") == 1
    from crawler.monitors import no_images_reason

    reason = no_images_reason(s.crawler.stats.get_stats() | {"shoal/pages_ok": 1})
    assert reason and "without a picture" in reason


def test_baike_thumbnail_transforms_come_off(recordings):
    profile = load_profile("baike")
    today = ("https://bkimg.cdn.bcebos.com/pic/0b55b319ebc4b745e4b1b0d8c1fc1e178a82156d"
             "?x-bce-process=image/resize,m_lfit,w_268,limit_1/format,f_auto")
    old = ("https://gss2.bdstatic.com/9fo3dSag_xI4khGkpoWK1HF6hhy/baike/w%3D268%3Bg%3D0/"
           "sign=4f7bf38ac3fc1e17fdbf8b3772ab913e/d4628535e5dde7119c3d076aabefce1b9c1661ba.jpg")
    assert profile.full_image_url(today) == (
        "https://bkimg.cdn.bcebos.com/pic/0b55b319ebc4b745e4b1b0d8c1fc1e178a82156d")
    assert profile.full_image_url(old) == ("https://gss2.bdstatic.com/9fo3dSag_xI4khGkpoWK1HF6"
                                           "hhy/baike/pic/item/d4628535e5dde7119c3d076aabefce1b"
                                           "9c1661ba.jpg")


EXPECTED_SHOPS = {
    # profile: (cards with a picture, cards without, first image URL, first page URL)
    "finn": (53, 1, "https://images.finncdn.no/dynamic/960w/2024/3/vertical-0/31/4/696/259/"
                    "94_695b1540-ae98-406c-bb43-231c8859e7f1.jpg",
             "https://www.finn.no/recommerce/forsale/item/69625994"),
    "klarna": (20, 1, "https://www.klarna.com/product/1880664468/Raspberry-Pi-4-Model-B-4GB.jpg",
               "https://www.klarna.com/no/shopping/pl/cl10012/4959277/Ettkortsdatamaskiner/"
               "Raspberry-Pi-4-Model-B-4GB/"),
    "olx": (32, 0, "https://img.olx.com.br/thumbs700x500/32/322664079265501.webp",
            "https://sp.olx.com.br/sao-paulo-e-regiao/informatica/computadores-e-desktops/"
            "dell-sff-optiplex-7010-i5-13500-13th-gen-1523803879"),
}


def test_every_shop_profile_with_a_fixture_parses_its_recorded_page(recordings):
    with_fixture = [n for n in available_profiles("shop") if load_profile(n).fixture]
    assert sorted(with_fixture) == sorted(EXPECTED_SHOPS)
    for name, (found, bare, first_image, first_page) in EXPECTED_SHOPS.items():
        profile = load_profile(name, kind="shop")
        s = spider("shop", profile=name)
        items, requests = split(list(s.parse_results(profile_response(profile),
                                                     profile.fixture_keyword, 1)))
        assert len(items) == found, name
        assert skipped(s).get(Drop.NO_URL, 0) == bare, name
        assert items[0]["image_urls"] == [first_image], name
        assert items[0]["page_url"] == first_page, name
        assert all(i["title"] and i["site"] == profile.site for i in items), name
        assert not any(u.startswith("data:") for i in items for u in i["image_urls"]), name
        hosts = {i["image_urls"][0].split("/")[2] for i in items}
        assert hosts <= set(profile.allowed_hosts), (name, hosts)
        if name == "finn":  # its next page, relative to the search
            assert [r.url for r in requests] == [
                "https://www.finn.no/recommerce/forsale/search?page=2&q=skisko"]
    finn = spider("shop", profile="finn")
    items, _ = split(list(finn.parse_results(profile_response(load_profile("finn")), "s", 1)))
    # title text is read as a person reads it: runs of spaces become one
    assert items[0]["title"] == "SKISKO BODØ FJELLSKO OG NNN BC SKO"


def test_link_param_unwraps_a_click_tracking_link(tmp_path: Path, monkeypatch):
    """No recorded shop page has ad redirects: a profile's link_param on a small page."""
    (tmp_path / "adshop.yaml").write_text(
        "name: adshop\nkind: shop\nsite: adshop.example\nbase_url: https://adshop.example\n"
        "search_url: '{base}/s?q={keyword}'\nlink_param: url\n"
        "shop: {item: li, link: 'a::attr(href)', title: 'a::text'}\n")
    monkeypatch.setenv("SHOAL_CRAWL_PROFILE_DIRS", str(tmp_path))
    page = ("<ul><li><a href='https://ads.example/click?url=https%3A%2F%2Fadshop.example%2Fp%2F1"
            "&amp;cid=9'>Hair<b>tail</b></a><img src='/i/1.jpg'></li>"
            "<li><a href='/p/2'>Pomfret</a><img src='/i/2.jpg'></li></ul>")
    s = spider("shop", profile="adshop")
    url = "https://adshop.example/s?q=x"
    items, _ = split(list(s.parse_results(HtmlResponse(url, body=page.encode(), encoding="utf-8",
                                                       request=Request(url)), "x", 1)))
    assert items[0]["page_url"] == "https://adshop.example/p/1"
    assert items[0]["link_url"].startswith("https://ads.example/click?url=")
    assert items[0]["title"] == "Hairtail"
    assert items[1]["page_url"] == "https://adshop.example/p/2" and "link_url" not in items[1]


@pytest.mark.parametrize(("fragment", "text"), [
    ("<a href='//commons.wikimedia.org/wiki/User:Beao'>Bea</a><span>o</span>", "Beao"),
    ("<a>Jane</a> <b>Doe</b>", "Jane Doe"),
    ("<p>Photo: A. Diver</p><p>Edited by B. Editor</p>", "Photo: A. Diver; Edited by B. Editor"),
    ("Line one<br>line&nbsp;two", "Line one; line two"),
])
def test_artist_text_as_a_person_reads_it(fragment, text):
    """Split inline tags join; blocks and <br> separate (no recording has the split name)."""
    from crawler.html import clean_text

    assert clean_text(fragment) == text
