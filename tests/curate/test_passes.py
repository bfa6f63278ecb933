"""The first pass on real photos: out-of-fold honesty, copies, small pools, re-runs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from sqlalchemy import func, select

from catalog.db import session_scope
from catalog.models import (
    CurationRun,
    DuplicateGroup,
    DuplicateLink,
    Image,
    ImageStatus,
    ImageSuspicion,
)
from catalog.splits import split_key_for
from pipeline.curate.label_issues import PoolTooSmall, assign_folds, fit_head, out_of_fold
from pipeline.curate.passes import CurateOptions, curate
from pipeline.curate.pool import load_pool
from tests.curate.conftest import FAST, import_under
from trainer.embed import ENSEMBLE, FRAMINGS, embed, ensemble_features


def pool_features(session):
    pool = load_pool(session)
    emb = embed(pool.records(), hyper=FAST.hyper)
    return pool, emb.mirror_invariant()


def test_out_of_fold_never_sees_the_images_own_fold(catalog):
    with session_scope() as session:
        pool, x = pool_features(session)
    oof = out_of_fold(x, pool.labels, pool.keys, k=3)
    labels = np.array(pool.labels)
    for fold in range(3):
        held = oof.folds == fold
        # the labels of the held-out fold, scrambled, change nothing of its probabilities
        scrambled = labels.copy()
        scrambled[held] = np.roll(labels[held], 1)
        again = out_of_fold(x, list(scrambled), pool.keys, k=3)
        np.testing.assert_allclose(again.probs[held], oof.probs[held], atol=1e-9)
        # and they are what a head fit on the other folds alone predicts
        y = oof.given(pool.labels)
        head = fit_head(x[~held], y[~held])
        expect = np.zeros((held.sum(), len(oof.classes)))
        expect[:, head.classes_] = head.predict_proba(x[held] * 16.0)
        np.testing.assert_allclose(oof.probs[held], expect, atol=1e-9)
    # every fold is a function of the split key: an image and its copy share one
    assert len({(k, f) for k, f in zip(pool.keys, oof.folds, strict=True)}) == len(set(pool.keys))


def test_a_pool_too_small_for_the_folds_is_a_clear_error(catalog):
    keys = ["a", "b", "c"]
    with pytest.raises(PoolTooSmall, match="too few for 5-fold"):
        assign_folds(keys, 5)
    with session_scope() as session, pytest.raises(PoolTooSmall, match="too few"):
        curate(session, CurateOptions(folds=40, hyper=FAST.hyper, quality=False))


def test_a_flipped_copy_joins_its_original_in_one_group(catalog):
    with session_scope() as session:
        assert session.get(Image, catalog.flipped).duplicate_group_id is None  # pHash missed it
        report = curate(session, FAST)
        assert report.copies_linked >= 1
        original, flipped = session.get(Image, catalog.original), session.get(Image,
                                                                              catalog.flipped)
        assert original.duplicate_group_id == flipped.duplicate_group_id is not None
        keys = split_key_for(session, [original.id, flipped.id])
        assert keys[original.id] == keys[flipped.id]  # never on both sides of the split
        link = session.scalar(select(DuplicateLink).where(
            DuplicateLink.image_id.in_([original.id, flipped.id])))
        assert link.method == "features"
        assert {original.status, flipped.status} == {ImageStatus.UNIQUE, ImageStatus.DUPLICATE}
        copy_row = session.scalar(select(ImageSuspicion).where(
            ImageSuspicion.run_id == report.run_id, ImageSuspicion.image_id == link.image_id))
        assert copy_row.reasons == ["copy"] and copy_row.details["copy_of"] == link.canonical_id


@pytest.mark.parametrize("ensemble", [False, True])
def test_every_pool_image_gets_a_row_and_the_misfiled_photo_is_suspect(catalog, ensemble):
    with session_scope() as session:
        report = curate(session, replace(FAST, ensemble=ensemble))
        rows = {s.image_id: s for s in session.scalars(
            select(ImageSuspicion).where(ImageSuspicion.run_id == report.run_id))}
        pool = load_pool(session)
        assert set(pool.image_ids) <= set(rows)
        wrong = rows[catalog.wrong]
        assert wrong.given_label == "baim"
        assert wrong.given_probability is not None and 0 <= wrong.given_probability <= 1
        assert wrong.suggested_label in {"baim", "hilsa", "koi", "tilapia"}
        assert wrong.details["fold"] in range(3)
        # suspects are exactly the rows with reasons; a score orders them all
        assert all(r.suspect == bool(r.reasons) for r in rows.values())
        assert all(0 <= r.score <= 1 for r in rows.values())


def test_a_species_with_one_image_is_not_judged_but_kept(catalog):
    with session_scope() as session:
        from catalog.species import SpeciesSpec, upsert_species

        upsert_species(session, [SpeciesSpec(slug="rui", latin_name="Labeo rohita")])
        from tests.conftest import fishdata_dir

        lone = import_under(session, "rui", [sorted((fishdata_dir() / "web-20" / "Rui")
                                                    .iterdir())[0]])[0]
        session.get(Image, lone).status = ImageStatus.UNIQUE
        report = curate(session, FAST)
        row = session.scalar(select(ImageSuspicion).where(
            ImageSuspicion.run_id == report.run_id, ImageSuspicion.image_id == lone))
        assert row.given_label == "rui" and row.given_probability is None
        assert "not judged" in row.details["label"]
        assert "label" not in row.reasons


def test_running_curate_again_changes_nothing(catalog):
    def state(session):
        return (
            session.scalar(select(func.count()).select_from(CurationRun)),
            sorted(session.execute(select(ImageSuspicion.image_id, ImageSuspicion.score,
                                          ImageSuspicion.reasons)).all(), key=str),
            sorted(session.execute(select(DuplicateLink.image_id, DuplicateLink.canonical_id,
                                          DuplicateLink.method)).all()),
            sorted(session.execute(select(Image.id, Image.status,
                                          Image.duplicate_group_id)).all()),
            sorted(session.execute(select(DuplicateGroup.id, DuplicateGroup.split_key,
                                          DuplicateGroup.canonical_image_id)).all()),
        )

    with session_scope() as session:
        first = curate(session, FAST)
    with session_scope() as session:
        before = state(session)
        second = curate(session, FAST)
        assert second.reused and second.run_id == first.run_id
        assert second.suspects == first.suspects
        assert state(session) == before


def test_scores_of_an_earlier_run_survive_a_new_one(catalog, fishdata):
    with session_scope() as session:
        first = curate(session, FAST)
        n_first = session.scalar(select(func.count()).select_from(ImageSuspicion)
                                 .where(ImageSuspicion.run_id == first.run_id))
        import_under(session, "koi", sorted((fishdata / "web-20" / "Koi").iterdir())[9:12])
        from pipeline.dedupe.grouping import run_dedupe

        run_dedupe(session)
        second = curate(session, FAST)
        assert second.run_id != first.run_id and not second.reused
        assert session.scalar(select(func.count()).select_from(ImageSuspicion)
                              .where(ImageSuspicion.run_id == first.run_id)) == n_first
        assert second.pool == first.pool + 3


def test_the_cli_refuses_a_pool_too_small_in_one_line(catalog):
    from typer.testing import CliRunner

    from pipeline.cli import app

    result = CliRunner().invoke(app, ["curate", "--folds", "40", "--json"])
    assert result.exit_code == 2
    assert "too few for 40-fold" in result.output and "--folds" in result.output
    assert "Traceback" not in result.output
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(CurationRun)) == 0


def test_the_label_ensemble_joins_every_backbone_and_framing_at_unit_length(catalog):
    with session_scope() as session:
        pool = load_pool(session)
    records = pool.records()[:6]
    joined = ensemble_features(records, FAST.hyper)
    parts = [embed(records, arch, hyper={**FAST.hyper, "eval_fit": fit}).mirror_invariant()
             for arch, _ in ENSEMBLE for fit in FRAMINGS]
    assert joined.shape == (6, sum(p.shape[1] for p in parts))
    np.testing.assert_allclose(np.linalg.norm(joined, axis=1), 1.0, atol=1e-5)
    # each part is one unit-length block of the joined vector, scaled alike
    np.testing.assert_allclose(joined[:, :parts[0].shape[1]] * np.sqrt(len(parts)), parts[0],
                               atol=1e-5)
    whole = parts[1] - parts[0]  # the two framings of one backbone are different views
    assert np.abs(whole).max() > 1e-3
