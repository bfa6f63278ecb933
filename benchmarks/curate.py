"""Curation benchmark: does the model's first pass find what a person must look at?

python benchmarks/curate.py [--work DIR] [--seed 0] [--auto-accept 0.5] [--folds 5]

From ../shared/fishdata/web-20 a catalog is built with crawl-like noise made here (fixed seed):
10% of the photos filed under a wrong species, real non-fish photographs from scikit-image's
``data`` module filed under random species, and flipped or 10%-cropped copies of 5% of the
photos. The catalog is deduped (pHash), then curated (``pipeline.curate.passes.curate``).

Reported, per noise type: precision and recall of the flagged set (for copy links: right when
the two images are one photograph, injected or one of web-20's own copies judged by eye in
``web20_copies.txt``; the share that are injected copies is reported beside); the share of
injected noise met in the top 2N of the review order (N = injected wrong-species + non-fish
images) for the curation order and three baselines on the same features: today's order (oldest
first), plain max-probability uncertainty (a logistic head fit on the whole pool, as a model
trained on the crawl would be), and a plain out-of-fold logistic probe (ascending out-of-fold
probability of the given label, same folds). Then accuracy on clean labels of a head trained on
cached features (the fast path's FeatureLoop: the image and its mirror as views, 30 epochs, Adam
1e-3) on (a) clean labels, (b) the noisy keyword labels, (c) what the embedded default's review
without people approves, suspects held back (flow "auto": the model's approvals at
--auto-accept, then every image curation judged and did not suspect under its keyword); beside
them the model's approvals alone (at --auto-accept and at AUTO_ACCEPT_CURVE's thresholds), and
every unique image but the first K of the review order (HOLD_BACK_CURVE). Each arm is
cross-fitted over EVAL_FOLDS folds of photo classes (a photo, its injected copies and web-20's
copies of it judged by eye): trained on the other folds' images, scored on the fold's clean
photos under their true species, so every photo is scored once, with a bootstrap interval and
paired differences from (a) and from (b) on the same photos.
A training set never holds a scored photo or a copy of one.

The stored images and the feature cache stay in --work between runs (content-addressed), so a
second run skips the backbone; the catalog is new every run. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# scikit-image's real photographs that ship in its wheel (the rest need a download)
NON_FISH = ("astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass",
            "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina",
            "rocket", "stereo_motorcycle", "text", "cell")
WRONG_SHARE, COPY_SHARE, CROP = 0.10, 0.05, 0.10
EVAL_FOLDS = 5  # the training arms are cross-fitted: every clean photo is scored once
HOLD_BACK_CURVE = (40, 60, 80, 100, 120, 150)  # arm (c) holding back the first K reviewed
# web-20 holds copies of its own that pHash misses (one stock photo on three sites); pairs judged
# by eye, so a link between two of them is not counted as a mistake
WEB20_COPIES = Path(__file__).with_name("web20_copies.txt")
AUTO_ACCEPT_CURVE = (0.1, 0.2, 0.3, 0.5, 0.7)  # arm (c) at these thresholds too


def photo_classes(photos: list[tuple[str, Path]]) -> list[int]:
    """For each web-20 photo, the smallest index of a photo judged the same photograph."""
    index = {f"{path.parent.name}/{path.name}": i for i, (_, path) in enumerate(photos)}
    parent = list(range(len(photos)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for line in WEB20_COPIES.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        a, b, verdict = line.split()
        if verdict == "same" and a in index and b in index:
            ra, rb = find(index[a]), find(index[b])
            parent[max(ra, rb)] = min(ra, rb)
    return [find(i) for i in range(len(photos))]


def non_fish_photos(out: Path) -> list[Path]:
    import skimage.data
    from PIL import Image as PILImage

    files = []
    for name in NON_FISH:
        pixels = getattr(skimage.data, name)()
        if isinstance(pixels, tuple):
            pixels = pixels[0]
        img = PILImage.fromarray(np.asarray(pixels)).convert("RGB")
        path = out / f"nonfish-{name}.jpg"
        img.save(path, quality=92)
        files.append(path)
    return files


def make_copy(src: Path, out: Path, kind: str, rng: random.Random) -> Path:
    from PIL import Image as PILImage
    from PIL import ImageOps

    img = PILImage.open(src).convert("RGB")
    if kind == "flip":
        img = ImageOps.mirror(img)
    else:  # keep 90% of each side, at a random offset
        w, h = img.size
        cw, ch = round(w * (1 - CROP)), round(h * (1 - CROP))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        img = img.crop((x, y, x + cw, y + ch))
    path = out / f"{kind}-{src.parent.name}-{src.stem}.jpg"
    img.save(path, quality=92)
    return path


def build(work: Path, seed: int) -> dict:
    """The noisy catalog; returns what was injected, by file."""
    from catalog import db as catalog_db
    from catalog.limits import limits_from_settings
    from catalog.models import Image
    from catalog.settings import get_settings
    from catalog.species import SpeciesSpec, get_species, upsert_species
    from catalog.store import ImageStore, file_sha256
    from pipeline.dedupe.grouping import run_dedupe
    from pipeline.importer import import_files

    rng = random.Random(seed)
    root = REPO.parent / "shared" / "fishdata" / "web-20"
    species = sorted(p.name for p in root.iterdir() if p.is_dir())
    photos = [(s, f) for s in species for f in sorted((root / s).iterdir())]
    made = work / "made"
    made.mkdir(parents=True, exist_ok=True)
    order = list(range(len(photos)))
    rng.shuffle(order)
    n_wrong, n_copy = round(WRONG_SHARE * len(photos)), round(COPY_SHARE * len(photos))
    wrong = set(order[:n_wrong])
    copied = order[n_wrong:n_wrong + n_copy]
    files: list[tuple[str, Path, dict]] = []  # (keyword species, file, truth)
    same = photo_classes(photos)
    for i, (true, path) in enumerate(photos):
        keyword = rng.choice([s for s in species if s != true]) if i in wrong else true
        files.append((keyword, path, {"kind": "wrong" if i in wrong else "clean",
                                      "true": true, "photo": i, "same_as": same[i],
                                      "file": f"{path.parent.name}/{path.name}"}))
    for n, i in enumerate(copied):
        kind = "flip" if n % 2 == 0 else "crop"
        true, path = photos[i]
        files.append((true, make_copy(path, made, kind, rng),
                      {"kind": kind, "true": true, "photo": i, "same_as": same[i],
                       "file": f"{path.parent.name}/{path.name}"}))
    for path in non_fish_photos(made):
        files.append((rng.choice(species), path, {"kind": "non_fish", "true": None,
                                                   "name": path.stem}))
    rng.shuffle(files)  # crawl order: noise anywhere

    catalog_db.upgrade()
    settings = get_settings()
    store = ImageStore(settings.image_dir)
    truth: dict[int, dict] = {}
    with catalog_db.session_scope() as session:
        upsert_species(session, [SpeciesSpec(slug=s.lower(), latin_name=s) for s in species])
        ids = {s: get_species(session, s.lower()).id for s in species}
        by_sha: dict[str, dict] = {}
        for keyword, path, info in files:
            import_files(session, store, [path], ids[keyword], limits_from_settings(settings),
                         commit_every=200)
            by_sha.setdefault(file_sha256(path), {**info, "keyword": keyword})
        session.flush()
        raw = dict(session.query(Image.raw_sha256, Image.id).all())
        for sha, info in by_sha.items():
            if sha in raw:
                truth[raw[sha]] = info
        dedupe = run_dedupe(session)
    return {"truth": truth, "dedupe": dedupe.as_dict(), "photos": len(photos),
            "files": len(files)}


def pool_view(session, truth: dict[int, dict]):
    """The review pool as today's push sees it (unique images), with features and truth."""
    from pipeline.curate.pool import load_pool
    from trainer.embed import embed

    pool = load_pool(session)
    emb = embed(pool.records())
    keep = {r.image_id for r in emb.records}
    pool = pool.subset([i for i, image_id in enumerate(pool.image_ids) if image_id in keep])
    return pool, emb


def shares(order: list[int], truth: dict[int, dict], n: int) -> dict:
    top = set(order[:2 * n])
    out = {}
    for kind in ("wrong", "non_fish"):
        members = [i for i, t in truth.items() if t["kind"] == kind and i in set(order)]
        out[kind] = round(sum(i in top for i in members) / max(len(members), 1), 4)
    noisy = [i for i in order if truth.get(i, {}).get("kind") in ("wrong", "non_fish")]
    out["all"] = round(sum(i in top for i in noisy) / max(len(noisy), 1), 4)
    return out


def pr(flagged: set[int], positive: set[int]) -> dict:
    hit = len(flagged & positive)
    return {"flagged": len(flagged), "true": len(positive),
            "precision": round(hit / len(flagged), 4) if flagged else None,
            "recall": round(hit / len(positive), 4) if positive else None}


def eval_fold(info: dict) -> int:
    """The fold a photo class is scored in: a hash of its first photo's index in web-20, so
    the copies of a photo share it, whatever the seed made of them."""
    first = info["same_as"]
    return int(hashlib.sha256(f"photo:{first}".encode()).hexdigest(), 16) % EVAL_FOLDS


def scored_arm(arm: dict, clean: list[bool], noisy: list[bool]) -> dict:
    """An arm's pooled accuracy with its 95% bootstrap interval, and its paired differences
    from the clean-label arm (a) and the noisy-keyword arm (b) on the same photos."""
    from trainer.metrics import accuracy_interval, paired_difference

    hits = arm["hits"]
    low, high = accuracy_interval(sum(hits), len(hits))
    return {"accuracy": round(sum(hits) / len(hits), 4), "interval": [round(low, 4),
            round(high, 4)],
            "minus_a_paired": [round(x, 4) for x in paired_difference(hits, clean)],
            "minus_b_paired": [round(x, 4) for x in paired_difference(hits, noisy)],
            "n_train": arm["n_train"]}


def train_eval(x_train, y_train, x_val, y_val, n_classes: int, seed: int = 0) -> list[bool]:
    import torch

    from trainer.loops import FeatureLoop

    torch.manual_seed(seed)
    head = torch.nn.Linear(x_train.shape[-1], n_classes)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    loop = FeatureLoop(head, opt, torch.from_numpy(x_train), torch.from_numpy(y_train),
                       torch.from_numpy(x_val), torch.from_numpy(y_val), 16, seed)
    for epoch in range(1, 31):
        loop.train_epoch(epoch)
    stats = loop.evaluate()
    return (stats.preds == stats.targets).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/shoal-bench-curate"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--auto-accept", type=float, default=0.5)
    parser.add_argument("--max-long-side", type=int, default=512)
    args = parser.parse_args()

    work = args.work
    (work / "data").mkdir(parents=True, exist_ok=True)
    for stale in (work / "data" / "catalog.db", work / "made"):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    os.environ.update({"SHOAL_DATA_DIR": str(work / "data"),
                       "SHOAL_MAX_LONG_SIDE": str(args.max_long_side)})
    os.environ.pop("SHOAL_DATABASE_URL", None)

    from sqlalchemy import select
    from train import cpu_model  # benchmarks/train.py's: the model name and its bf16 flags

    from catalog.db import session_scope
    from catalog.models import DuplicateLink, Image, ImageStatus, ImageSuspicion
    from labeling.autoaccept import auto_accept, eligible
    from pipeline.curate.label_issues import fit_head, out_of_fold
    from pipeline.curate.passes import CurateOptions, curate
    from pipeline.datasets.approve import approve_by_keyword

    clock = {}
    t0 = time.perf_counter()
    built = build(work, args.seed)
    truth = built["truth"]
    clock["build_and_dedupe"] = round(time.perf_counter() - t0, 1)

    with session_scope() as session:
        t0 = time.perf_counter()
        pool, emb = pool_view(session, truth)  # today's pool, before curation
        clock["features"] = round(time.perf_counter() - t0, 1)
        x = emb.mirror_invariant()
        labels = pool.labels
        classes = sorted(set(labels))
        # baselines on the same features
        oldest = list(pool.image_ids)
        y = np.array([classes.index(label) for label in labels])
        whole = fit_head(x, y)
        max_prob = whole.predict_proba(x * 16.0).max(1)
        uncertainty = [pool.image_ids[i] for i in np.argsort(max_prob, kind="stable")]
        oof = out_of_fold(x, labels, pool.keys, args.folds, args.seed)
        given = oof.probs[np.arange(len(labels)), oof.given(labels)]
        probe = [pool.image_ids[i] for i in np.argsort(given, kind="stable")]
        grouped_before = {i: g for i, g in session.execute(
            select(Image.id, Image.duplicate_group_id)).all()}

        t0 = time.perf_counter()
        report = curate(session, CurateOptions(folds=args.folds, seed=args.seed))
        clock["curate"] = round(time.perf_counter() - t0, 1)
        rows = {s.image_id: s for s in session.scalars(
            select(ImageSuspicion).where(ImageSuspicion.run_id == report.run_id))}
        status = dict(session.execute(select(Image.id, Image.status)).all())
        review = sorted((i for i, s in rows.items() if status[i] == ImageStatus.UNIQUE),
                        key=lambda i: (not rows[i].suspect, -rows[i].score, i))
        n_noise = sum(t["kind"] in ("wrong", "non_fish") for t in truth.values())

        flagged_label = {i for i, s in rows.items() if "label" in s.reasons}
        flagged_fish = {i for i, s in rows.items() if "not_a_fish" in s.reasons}
        flagged_any = {i for i, s in rows.items() if s.suspect and "copy" not in s.reasons}
        of_kind = {k: {i for i, t in truth.items() if t["kind"] == k}
                   for k in ("wrong", "non_fish", "flip", "crop", "clean")}
        real_fish = of_kind["clean"] | of_kind["wrong"]
        quality = {i for i, s in rows.items()
                   if set(s.reasons) - {"label", "not_a_fish", "copy"}}

        # copies: grouped with the photo they copy, before (pHash) and after curation
        groups = dict(session.execute(select(Image.id, Image.duplicate_group_id)).all())
        photo_id = {t["photo"]: i for i, t in truth.items() if t["kind"] in ("clean", "wrong")}
        copies = {}
        for kind in ("flip", "crop"):
            members = [(i, photo_id.get(truth[i]["photo"])) for i in of_kind[kind]]
            before = sum(1 for i, o in members if o and grouped_before.get(i)
                         and grouped_before.get(i) == grouped_before.get(o))
            after = sum(1 for i, o in members if o and groups.get(i) and groups[i] == groups[o])
            copies[kind] = {"injected": len(members),
                            "recall_phash": round(before / len(members), 4),
                            "recall_after_curate": round(after / len(members), 4),
                            "missed": sorted(truth[i]["file"] for i, o in members
                                             if not (o and groups.get(i)
                                                     and groups[i] == groups[o]))}
        feature_links = session.execute(
            select(DuplicateLink.image_id, DuplicateLink.canonical_id)
            .where(DuplicateLink.method == "features")).all()
        def same_photo(a: int, b: int) -> bool:
            ta, tb = truth.get(a, {}), truth.get(b, {})
            return ta.get("photo") is not None and ta.get("photo") == tb.get("photo")
        def one_picture(a: int, b: int) -> bool:  # same photo, or web-20 copies judged by eye
            ta, tb = truth.get(a, {}), truth.get(b, {})
            return ta.get("same_as") is not None and ta.get("same_as") == tb.get("same_as")
        true_links = sum(same_photo(a, b) for a, b in feature_links)
        right_links = sum(one_picture(a, b) for a, b in feature_links)
        copies["feature_links"] = len(feature_links)
        copies["feature_links_precision_vs_injected"] = (
            round(true_links / len(feature_links), 4) if feature_links else None)
        copies["feature_links_between_original_photos"] = len(feature_links) - true_links
        copies["feature_links_precision"] = (
            round(right_links / len(feature_links), 4) if feature_links else None)
        copies["feature_links_wrong"] = sorted(
            " ~ ".join(sorted(str(truth.get(i, {}).get("file", truth.get(i, {}).get("name")))
                              for i in (a, b)))
            for a, b in feature_links if not one_picture(a, b))
        vec = dict(zip((r.image_id for r in emb.records), x, strict=True))
        copies["similarity_to_original"] = {
            kind: [round(float(vec[i] @ vec[photo_id[truth[i]["photo"]]]), 3)
                   for i in sorted(of_kind[kind])
                   if i in vec and photo_id.get(truth[i]["photo"]) in vec]
            for kind in ("flip", "crop")}
        copies["similarity_between_originals_linked"] = sorted(
            round(float(vec[a] @ vec[b]), 3) for a, b in feature_links
            if not same_photo(a, b) and a in vec and b in vec)

        # training on cached features: the image and its mirror as views, each arm trained
        # EVAL_FOLDS times and scored on the held-out fold's clean photos (true labels), so
        # every photo is scored once; a fold holds whole photo classes (a photo, its injected
        # copies and web-20's copies of it judged by eye), and no training set holds a copy
        # of a photo it is scored on
        views = {r.image_id: v for r, v in zip(emb.records, emb.views, strict=True)}
        species = sorted({t["true"] for t in truth.values() if t["true"]})
        index = {s: n for n, s in enumerate(species)}
        fold_of = {i: eval_fold(t) for i, t in truth.items() if t.get("same_as") is not None}
        scored = sorted(i for i, t in truth.items()
                        if t["kind"] in ("clean", "wrong") and i in views)

        def arm(ids: list[int], label_of) -> dict:
            hits: dict[int, bool] = {}
            for fold in range(EVAL_FOLDS):
                train = [i for i in ids if i in views and fold_of.get(i) != fold]
                held = [i for i in scored if fold_of[i] == fold]
                xt = np.stack([views[i] for i in train]).astype(np.float32)
                yt = np.array([index[label_of(i)] for i in train])
                xv = np.stack([views[i].mean(0) for i in held]).astype(np.float32)
                yv = np.array([index[truth[i]["true"]] for i in held])
                hits.update(zip(held, train_eval(xt, yt, xv, yv, len(species), args.seed),
                                strict=True))
            return {"hits": [hits[i] for i in scored], "n_train": len(
                [i for i in ids if i in views])}

        keyword = {i: t["keyword"] for i, t in truth.items()}
        clean_ids = [i for i in truth if truth[i]["kind"] in ("clean", "wrong")]
        noisy_ids = list(pool.image_ids)
        # what other thresholds would approve (nothing written), for the trade-off
        at = {p: [i for i, *_ in eligible(session, report.run_id, p)] for p in AUTO_ACCEPT_CURVE}
        def approved_now() -> list[int]:
            return [i for i, s in session.execute(select(Image.id, Image.status)).all()
                    if s == ImageStatus.APPROVED]

        # the embedded default's review without people (flow "auto"): the model's approvals,
        # then what curation judged and did not suspect under its keyword; suspects wait
        accepted = auto_accept(session, args.auto_accept, report.run_id)
        by_model = approved_now()
        by_keyword = approve_by_keyword(session, screened_by=report.run_id)
        approved = approved_now()
        held_back = [i for i in rows if rows[i].suspect]
        t0 = time.perf_counter()
        unique = [i for i in rows if status[i] != ImageStatus.DUPLICATE]
        arms = {
            "a_clean": arm(clean_ids, lambda i: truth[i]["true"]),
            "b_noisy": arm(noisy_ids, lambda i: keyword[i]),
            "c_auto_flow": arm(approved, lambda i: keyword[i]),
            "c_auto_accepted_only": arm(by_model, lambda i: keyword[i]),
        }
        for p, ids in at.items():
            arms[f"c_at_{p}"] = arm(ids, lambda i: keyword[i])
        # holding back only the first K of the review order instead of every suspect
        for k in HOLD_BACK_CURVE:
            first = set(review[:k])
            arms[f"c_all_but_first_{k}"] = arm([i for i in unique if i not in first],
                                               lambda i: keyword[i])
        accuracy = {name: scored_arm(a, arms["a_clean"]["hits"], arms["b_noisy"]["hits"])
                    for name, a in arms.items()}
        clock["training"] = round(time.perf_counter() - t0, 1)
        session.rollback()  # the benchmark's catalog is thrown away

    result = {
        "benchmark": "curate",
        "seed": args.seed,
        "photos": built["photos"], "images": len(truth),
        "injected": {k: len(v) for k, v in of_kind.items()},
        "pool_today": len(pool), "pool_curated": report.pool,
        "suspects": report.suspects, "reasons": report.reasons,
        "label_noise": pr(flagged_label, of_kind["wrong"]),
        "label_noise_any_reason": pr(flagged_any, of_kind["wrong"]),
        "not_a_fish": {**pr(flagged_fish, of_kind["non_fish"]),
                       "missed": sorted(truth[i]["name"]
                                        for i in of_kind["non_fish"] - flagged_fish),
                       "fish_flagged_share": round(len(flagged_fish & real_fish)
                                                   / len(real_fish), 4)},
        "quality_flags": {"flagged": len(quality),
                          "real_fish_share": round(len(quality & real_fish) / len(real_fish), 4)},
        "copies": copies,
        "top_2n": {"n": n_noise,
                   "curation": shares(review, truth, n_noise),
                   "oldest": shares(oldest, truth, n_noise),
                   "max_prob_uncertainty": shares(uncertainty, truth, n_noise),
                   "oof_logistic_probe": shares(probe, truth, n_noise)},
        "val_accuracy": {**accuracy, "n_scored": len(scored), "eval_folds": EVAL_FOLDS,
                         "auto_accept_p": args.auto_accept,
                         "auto_accepted": accepted.approved, "approved_by_keyword": by_keyword,
                         "held_back": len(held_back)},
        "seconds": clock,
        "cpu": cpu_model(),
        "load_average_at_end": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
