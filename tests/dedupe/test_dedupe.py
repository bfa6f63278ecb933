"""run_dedupe and split_key_for against a real catalog (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

from sqlalchemy import select

from catalog.db import session_scope
from catalog.models import DuplicateGroup, DuplicateLink, Image, ImageStatus
from catalog.splits import split_key_for
from pipeline.dedupe.grouping import run_dedupe
from tests.dedupe.conftest import flip, state

BASE = 0x9F3A_55C1_0E7D_B264
OTHER = 0x1234_5678_9ABC_DEF0  # far from BASE


def _group_of(session, image_id):
    img = session.get(Image, image_id)
    return session.get(DuplicateGroup, img.duplicate_group_id) if img.duplicate_group_id else None


def test_empty_catalog(shoal_env):
    with session_scope() as s:
        report = run_dedupe(s)
    assert report.images == 0 and report.groups == 0 and report.near_pairs == 0
    assert report.as_dict()["sizes"] == {}


def test_single_image_becomes_unique(shoal_env, add_image):
    with session_scope() as s:
        img_id = add_image(s, BASE).id
    with session_scope() as s:
        report = run_dedupe(s)
        assert report.marked_unique == 1 and report.groups == 0
        assert s.get(Image, img_id).status == ImageStatus.UNIQUE
        assert split_key_for(s, [img_id]) == {img_id: s.get(Image, img_id).sha256}


def test_group_canonical_links_and_idempotent_rerun(shoal_env, add_image):
    with session_scope() as s:
        small = add_image(s, BASE, size=(400, 300)).id
        large = add_image(s, flip(BASE, 3), size=(1024, 768)).id
        mid = add_image(s, flip(BASE, 5, start=30), size=(640, 480)).id
        far = add_image(s, OTHER).id
    with session_scope() as s:
        report = run_dedupe(s, radius=8)
        assert (report.groups, report.groups_created, report.duplicates) == (1, 1, 2)
        assert report.sizes == {3: 1}
        assert report.top_groups[0].canonical_id == large
        group = _group_of(s, small)
        assert group.size == 3 and group.canonical_image_id == large and not group.conflict
        assert group.split_key == s.get(Image, small).sha256  # the eldest member's
        statuses = {i: s.get(Image, i).status for i in (small, large, mid, far)}
        assert statuses == {small: "duplicate", large: "unique", mid: "duplicate", far: "unique"}
        links = {li.image_id: li for li in s.scalars(select(DuplicateLink))}
        assert set(links) == {small, mid}
        assert links[small].canonical_id == large and links[small].distance == 3
        assert links[small].method == "phash" and links[small].group_id == group.id
        keys = split_key_for(s, [small, large, mid, far])
        assert keys[small] == keys[large] == keys[mid] == group.split_key
        assert keys[far] == s.get(Image, far).sha256
    with session_scope() as s:
        before = state(s)
    for kwargs in ({}, {"rescan": True}):
        with session_scope() as s:
            again = run_dedupe(s, radius=8, **kwargs)
            assert (again.groups_created, again.groups_changed, again.links_written) == (0, 0, 0)
            assert again.marked_unique == again.marked_duplicate == 0
        with session_scope() as s:
            assert state(s) == before


def test_radius_edges_exactly_at_and_one_past(shoal_env, add_image):
    with session_scope() as s:
        a = add_image(s, BASE).id
        at = add_image(s, flip(BASE, 6)).id
        past = add_image(s, flip(BASE, 7, start=1)).id
    with session_scope() as s:
        report = run_dedupe(s, radius=6, dhash_radius=64)
        assert report.near_pairs == 1
        assert _group_of(s, a).id == _group_of(s, at).id
        assert _group_of(s, past) is None and s.get(Image, past).status == "unique"


def test_dhash_must_confirm(shoal_env, add_image):
    with session_scope() as s:
        a = add_image(s, BASE, dhash=OTHER).id
        b = add_image(s, flip(BASE, 2), dhash=flip(OTHER, 5)).id
        c = add_image(s, flip(BASE, 2, start=9), dhash=~OTHER & (2**64 - 1)).id
    with session_scope() as s:
        report = run_dedupe(s, radius=4, dhash_radius=5)
        assert report.near_pairs == 1 and report.rejected_by_dhash == 2
        assert _group_of(s, a).id == _group_of(s, b).id and _group_of(s, c) is None


def test_identical_hashes_from_different_bytes(shoal_env, add_image):
    with session_scope() as s:
        a = add_image(s, BASE, size=(500, 500)).id
        b = add_image(s, BASE, size=(500, 500)).id
    with session_scope() as s:
        run_dedupe(s, radius=0)
        link = s.scalars(select(DuplicateLink)).one()
        assert (link.image_id, link.canonical_id, link.distance, link.method) == (b, a, 0, "phash")


def test_identical_pixels_link_even_without_hashes(shoal_env, add_image):
    with session_scope() as s:
        a = add_image(s, None, pixels="p" * 64).id
        b = add_image(s, None, pixels="p" * 64).id
    with session_scope() as s:
        report = run_dedupe(s)
        assert report.pixel_pairs == 1
        link = s.scalars(select(DuplicateLink)).one()
        assert (link.image_id, link.canonical_id, link.method) == (b, a, "pixels")


def test_canonical_prefers_resolution_then_license_then_earliest(shoal_env, add_image):
    with session_scope() as s:
        reserved = add_image(s, BASE, license="All rights reserved").id
        by_sa = add_image(s, flip(BASE, 1), license="CC BY-SA 4.0").id
        cc0 = add_image(s, flip(BASE, 1, start=5), license="CC0 1.0").id
        cc0_later = add_image(s, flip(BASE, 1, start=11), license="cc0").id
        unknown = add_image(s, flip(BASE, 1, start=17)).id
    with session_scope() as s:
        run_dedupe(s, radius=4)
        assert _group_of(s, reserved).canonical_image_id == cc0
        assert {s.get(Image, i).status for i in (reserved, by_sa, cc0_later, unknown)} == {
            "duplicate"}
    with session_scope() as s:  # a bigger copy arrives later: it wins, the group key stays
        key = _group_of(s, cc0).split_key
        big = add_image(s, flip(BASE, 2, start=40), size=(2000, 1500)).id
    with session_scope() as s:
        run_dedupe(s, radius=4)
        group = _group_of(s, big)
        assert group.canonical_image_id == big and group.split_key == key and group.size == 6
        assert s.get(Image, cc0).status == "duplicate"
        assert s.get(DuplicateLink, s.scalars(select(DuplicateLink.id).where(
            DuplicateLink.image_id == cc0)).one()).canonical_id == big


def test_conflict_flagged_with_both_species(shoal_env, add_image):
    with session_scope() as s:
        a = add_image(s, BASE, species="hairtail").id
        b = add_image(s, flip(BASE, 1), species="silver-pomfret").id
        one_file = add_image(s, OTHER, species="hairtail", source_species=["chub-mackerel"]).id
    with session_scope() as s:
        report = run_dedupe(s, radius=4)
        group = _group_of(s, a)
        assert group.id == _group_of(s, b).id
        assert group.conflict and group.species_slugs == ["hairtail", "silver-pomfret"]
        single = _group_of(s, one_file)
        assert single.conflict and single.size == 1
        assert single.species_slugs == ["chub-mackerel", "hairtail"]
        assert s.get(Image, one_file).status == "unique"
        assert {tuple(c.species_slugs) for c in report.conflicts} == {
            ("hairtail", "silver-pomfret"), ("chub-mackerel", "hairtail")}


def test_incremental_insert_joins_and_merges_keeping_older_key(shoal_env, add_image):
    with session_scope() as s:
        a1 = add_image(s, BASE).id
        a2 = add_image(s, flip(BASE, 1)).id
        b1 = add_image(s, flip(BASE, 8, start=3)).id
        b2 = add_image(s, flip(flip(BASE, 8, start=3), 1, start=50)).id
    with session_scope() as s:
        run_dedupe(s, radius=3)
        ga, gb = _group_of(s, a1), _group_of(s, b1)
        assert ga.id != gb.id and ga.size == gb.size == 2
        older_key, younger_id = ga.split_key, gb.id
    with session_scope() as s:  # reviewed meanwhile: dedupe may link it, never re-status it
        s.get(Image, a2).status = ImageStatus.APPROVED
    with session_scope() as s:  # an image between the two groups bridges them
        bridge = add_image(s, flip(BASE, 4, start=3)).id
    with session_scope() as s:
        report = run_dedupe(s, radius=4)
        assert report.new_images == 1 and report.groups_merged == 1
        group = _group_of(s, bridge)
        assert group.split_key == older_key and group.size == 5
        assert s.get(DuplicateGroup, younger_id) is None
        assert {_group_of(s, i).id for i in (a1, a2, b1, b2, bridge)} == {group.id}
        assert s.get(Image, a2).status == ImageStatus.APPROVED
        assert len(s.scalars(select(DuplicateLink)).all()) == 4


def test_dry_run_writes_nothing(shoal_env, add_image):
    with session_scope() as s:
        add_image(s, BASE)
        add_image(s, flip(BASE, 2))
    with session_scope() as s:
        before = state(s)
    with session_scope() as s:
        report = run_dedupe(s, dry_run=True)
        assert report.groups_created == 1 and report.groups == 1 and report.marked_duplicate == 1
        assert report.top_groups[0].group_id is None
    with session_scope() as s:
        assert state(s) == before


def test_concurrent_runs_queue_behind_each_other(shoal_env, add_image):
    with session_scope() as s:
        for i in range(6):
            add_image(s, flip(BASE, i % 3, start=i))
    reports, errors = [], []

    def run() -> None:
        try:
            with session_scope() as s:
                reports.append(run_dedupe(s))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r.groups_created for r in reports) == [0, 1]
    with session_scope() as s:
        assert len(s.scalars(select(DuplicateGroup)).all()) == 1
        assert len(s.scalars(select(DuplicateLink)).all()) == 5
