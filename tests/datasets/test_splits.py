import random

from sqlalchemy import select, update

from catalog.db import session_scope
from catalog.models import DatasetItem, DuplicateGroup, Image
from catalog.splits import TRAIN, VAL, fraction, hash_split, plan_splits
from pipeline.datasets.versions import create_version


def keys_with(predicate, prefix="k", n=1):
    found = [k for k in (f"{prefix}{i}" for i in range(10_000)) if predicate(fraction(k))]
    return found[:n]


def test_hash_split_is_a_threshold_on_the_key():
    key = keys_with(lambda f: 0.3 < f < 0.4)[0]
    assert hash_split(key, 0.1) == TRAIN and hash_split(key, 0.5) == VAL
    assert all(0 <= fraction(f"x{i}") < 1 for i in range(1000))
    share = sum(hash_split(f"x{i}", 0.1) == VAL for i in range(20_000)) / 20_000
    assert 0.09 < share < 0.11


def test_a_class_without_val_gets_its_smallest_eligible_key_promoted():
    a = keys_with(lambda f: f > 0.1, "a", 4)
    lone = keys_with(lambda f: f > 0.1, "lone")[0]
    shared = keys_with(lambda f: f > 0.1, "shared")[0]
    members = [("a", k) for k in a] + [("b", lone), ("b", lone)] + [("c", shared), ("d", shared)]
    used = {min(a, key=fraction)}
    plan = plan_splits(members, 0.1, already_used=lambda keys: used & keys)
    expected = min((k for k in a if k not in used), key=fraction)
    assert plan.promoted[0] == expected and plan.splits[expected] == VAL
    assert sum(plan.splits[k] == VAL for k in a) == 1
    assert plan.splits[lone] == TRAIN  # promoting it would leave class b without train
    assert plan.splits[shared] == TRAIN  # a key of two classes is never promoted
    assert plan_splits([("a", a[0]), ("a", a[1])], 0.0).splits == {a[0]: TRAIN, a[1]: TRAIN}


def test_no_key_in_an_earlier_version_ever_changes_split():
    """Many random histories: versions grow, shrink and relabel; no key moves."""
    rng = random.Random(7)
    for trial in range(60):
        pool = [(rng.choice("abcdef"), f"t{trial}-{i}") for i in range(rng.randint(5, 60))]
        seen: dict[str, str] = {}
        pinned: set[str] = set()
        members = pool[: len(pool) // 3]
        for _version in range(4):
            earlier = set(seen)
            plan = plan_splits(members, 0.1, pinned_val=pinned,
                               already_used=earlier.intersection)
            for _label, key in members:
                assert seen.setdefault(key, plan.splits[key]) == plan.splits[key]
            pinned |= set(plan.promoted)
            kept = [m for m in members if rng.random() > 0.1]
            relabelled = [(rng.choice("abcdef"), k) if rng.random() < 0.1 else (lab, k)
                          for lab, k in kept]
            members = relabelled + rng.sample(pool, k=min(len(pool), 8))


def test_split_is_stable_across_versions(three_species):
    cat = three_species
    with session_scope(cat.url) as session:
        v1 = create_version(session)
    cat.set_status(cat.ingest("loitta", 0, 6) + cat.ingest("mola", 8, 12))
    with session_scope(cat.url) as session:
        v2 = create_version(session)
        a = dict(session.execute(select(DatasetItem.image_id, DatasetItem.split)
                                 .where(DatasetItem.version_id == v1.id)).tuples().all())
        b = dict(session.execute(select(DatasetItem.image_id, DatasetItem.split)
                                 .where(DatasetItem.version_id == v2.id)).tuples().all())
    assert v2.n_items == v1.n_items + 10
    assert {i: b[i] for i in a} == a
    for image_id, sha in _shas(cat.url, b):
        promoted = sha in v1.params["promoted_keys"] + v2.params["promoted_keys"]
        assert b[image_id] == (VAL if promoted else hash_split(sha, 0.1))


def test_duplicate_groups_never_span_splits(three_species):
    cat = three_species
    val_key = keys_with(lambda f: f < 0.1, "group-")[0]
    train_key = keys_with(lambda f: f > 0.9, "group-")[0]
    groups = {val_key: cat.ids["mola"][:3] + cat.ids["shing"][:1],
              train_key: cat.ids["gajar"][:4]}
    with session_scope(cat.url) as session:
        for key, members in groups.items():
            group = DuplicateGroup(split_key=key, size=len(members))
            session.add(group)
            session.flush()
            session.execute(update(Image).where(Image.id.in_(members))
                            .values(duplicate_group_id=group.id))
        version = create_version(session)
        splits = dict(session.execute(select(DatasetItem.image_id, DatasetItem.split)
                                      .where(DatasetItem.version_id == version.id))
                      .tuples().all())
    assert {splits[i] for i in groups[val_key]} == {VAL}
    assert {splits[i] for i in groups[train_key]} == {TRAIN}


def _shas(url, image_ids):
    with session_scope(url) as session:
        return session.execute(select(Image.id, Image.sha256)
                               .where(Image.id.in_(list(image_ids)))).tuples().all()
