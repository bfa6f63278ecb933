"""`shoal review status`: progress per species and the work of each annotator."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.models import Annotation, Image, ReviewTask, Species
from labeling.autoaccept import model_decisions
from labeling.push import PUSHING
from labeling.resolve import APPROVED, REJECT, REJECTED, vote_key

SPECIES_COLUMNS = ("pushed", "annotated", "approved", "auto_accepted", "rejected", "relabelled",
                   "pending")


def review_status(session: Session) -> dict[str, Any]:
    tasks = session.execute(
        select(ReviewTask.id, ReviewTask.state, ReviewTask.decided_label, Species.slug,
               ReviewTask.ls_task_id.is_(None))
        .join(Image, Image.id == ReviewTask.image_id)
        .outerjoin(Species, Species.id == Image.expected_species_id)
        .where(ReviewTask.state != PUSHING)
    ).all()
    votes: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for task_id, annotator, choice in session.execute(
        select(Annotation.review_task_id, Annotation.annotator, Annotation.choice)
        .where(Annotation.deleted.is_(False))
    ):
        votes[task_id].append((annotator, choice))
    decided = model_decisions(session)
    return {"species": species_rows(tasks, votes), "annotators": annotator_rows(tasks, votes),
            "auto_accepted": len(decided), "model_decisions": decided}


def species_rows(tasks: list[Any], votes: dict[int, list[tuple[str, str]]]) -> list[dict]:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for task_id, state, label, expected, by_model in tasks:
        row = counts[expected or "(none)"]
        if by_model:  # approved by the model (auto-accept): never in Label Studio
            row["auto_accepted"] += 1
            continue
        row["pushed"] += 1
        row["annotated"] += bool(votes.get(task_id))
        if state == APPROVED:
            row["approved"] += 1
            row["relabelled"] += label != expected
        elif state == REJECTED:
            row["rejected"] += 1
        else:
            row["pending"] += 1
    return [{"species": slug, **{c: counts[slug][c] for c in SPECIES_COLUMNS}}
            for slug in sorted(counts)]


def annotator_rows(tasks: list[Any], votes: dict[int, list[tuple[str, str]]]) -> list[dict]:
    """Agreement: on decided tasks with several votes, the share of this person's votes that
    match the decision (a skipped or empty annotation is not a vote)."""
    decided = {t[0]: (REJECT if t[1] == REJECTED else t[2]) for t in tasks
               if t[1] in (APPROVED, REJECTED)}
    stats: dict[str, Counter[str]] = defaultdict(Counter)
    for task_id, task_votes in votes.items():
        counted = [v for v in task_votes if v[1] is not None]
        for annotator, choice in task_votes:
            row = stats[annotator]
            row["annotations"] += 1
            if choice is None:
                row["skipped"] += 1
                continue
            if task_id in decided and len(counted) > 1:
                row["compared"] += 1
                row["agreed"] += vote_key(choice) == decided[task_id]
    return [{"annotator": name, "annotations": s["annotations"], "skipped": s["skipped"],
             "compared": s["compared"], "agreed": s["agreed"],
             "agreement": round(s["agreed"] / s["compared"], 4) if s["compared"] else None}
            for name, s in sorted(stats.items())]
