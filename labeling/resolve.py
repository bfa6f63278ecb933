"""The one resolver: annotations in, a decision per review task out (pull and webhooks both).

`decide` is the rule, pure: one annotation approves its species (relabelled when it is not the
crawl keyword's), `not a fish`/`bad image` reject, `unsure` leaves the image pending; with
several annotators the majority wins with an agreement score and a tie stays pending.
`resolve_tasks` applies it: every change of decision is a new ReviewDecision row, and the
image's status and label follow the latest one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from catalog.models import (
    Annotation,
    Image,
    ImageStatus,
    ReviewDecision,
    ReviewTask,
    Species,
    utcnow,
)
from labeling.config import NOT_A_FISH, REJECT_CHOICES, UNSURE

APPROVED, REJECTED, PENDING = "approved", "rejected", "pending"
REJECT = "reject"  # not a fish and bad image are one vote: "keep it out"
REVIEW_STATES = (ImageStatus.IN_REVIEW, ImageStatus.APPROVED, ImageStatus.REJECTED)


@dataclass(frozen=True)
class Vote:
    annotator: str
    choice: str


@dataclass(frozen=True)
class Decision:
    outcome: str
    label: str | None = None
    relabelled: bool = False
    agreement: float | None = None
    annotators: tuple[str, ...] = ()

    @property
    def n_annotations(self) -> int:
        return len(self.annotators)


def vote_key(choice: str) -> str:
    return REJECT if choice in REJECT_CHOICES else choice


def decide(votes: Sequence[Vote], expected: str | None, known: Collection[str]) -> Decision:
    """The decision for one task from its live votes (``known``: the species slugs)."""
    annotators = tuple(sorted(v.annotator for v in votes))
    if not votes:
        return Decision(PENDING)
    tally = Counter(vote_key(v.choice) for v in votes).most_common()
    top, count = tally[0]
    agreement = round(count / len(votes), 4)
    if len(tally) > 1 and tally[1][1] == count:
        return Decision(PENDING, agreement=agreement, annotators=annotators)
    if top == REJECT:
        reasons = Counter(v.choice for v in votes if v.choice in REJECT_CHOICES)
        label = max(REJECT_CHOICES, key=lambda c: (reasons[c], c == NOT_A_FISH))
        return Decision(REJECTED, label, agreement=agreement, annotators=annotators)
    if top == UNSURE or top not in known:
        return Decision(PENDING, agreement=agreement, annotators=annotators)
    return Decision(APPROVED, top, relabelled=top != expected, agreement=agreement,
                    annotators=annotators)


@dataclass
class ResolveReport:
    tasks: int = 0
    changed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {"tasks": self.tasks, "changed": self.changed, **dict(self.outcomes)}


def resolve_tasks(session: Session, review_task_ids: Iterable[int], source: str) -> ResolveReport:
    """Re-decide these tasks from their live annotations; write what changed."""
    ids = sorted(set(review_task_ids))
    report = ResolveReport(tasks=len(ids))
    species = dict(session.execute(select(Species.slug, Species.id)).all())
    for chunk in chunks(ids, 500):
        apply_decisions(session, chunk, source, species, report)
    return report


def apply_decisions(session: Session, ids: Sequence[int], source: str, species: dict[str, int],
                    report: ResolveReport) -> None:
    tasks = session.execute(
        select(ReviewTask.id, ReviewTask.image_id, Species.slug)
        .join(Image, Image.id == ReviewTask.image_id)
        .outerjoin(Species, Species.id == Image.expected_species_id)
        .where(ReviewTask.id.in_(ids))
    ).all()
    votes: dict[int, list[Vote]] = {i: [] for i in ids}
    for task_id, annotator, choice in session.execute(
        select(Annotation.review_task_id, Annotation.annotator, Annotation.choice).where(
            Annotation.review_task_id.in_(ids), Annotation.deleted.is_(False),
            Annotation.choice.is_not(None))
    ):
        votes[task_id].append(Vote(annotator, choice))
    latest = latest_decisions(session, ids)
    now = utcnow()
    rows, task_updates, image_updates = [], [], []
    for task_id, image_id, expected in tasks:
        decision = decide(votes[task_id], expected, species)
        previous = latest.get(task_id)
        if previous == decision or (previous is None and decision == Decision(PENDING)):
            continue
        report.changed += 1
        report.outcomes[decision.outcome] += 1
        rows.append({"image_id": image_id, "review_task_id": task_id,
                     "outcome": decision.outcome, "label": decision.label,
                     "relabelled": decision.relabelled, "agreement": decision.agreement,
                     "n_annotations": decision.n_annotations,
                     "annotators": list(decision.annotators), "source": source,
                     "decided_at": now})
        task_updates.append({"id": task_id, "state": decision.outcome,
                             "decided_label": decision.label, "agreement": decision.agreement,
                             "updated_at": now})
        image_updates.append(image_values(image_id, decision, species, now))
    if not rows:
        return
    session.execute(insert(ReviewDecision), rows)
    session.execute(update(ReviewTask), task_updates)
    live = set(session.scalars(select(Image.id).where(
        Image.id.in_([u["id"] for u in image_updates]), Image.status.in_(REVIEW_STATES))))
    live_updates = [u for u in image_updates if u["id"] in live]
    if live_updates:
        session.execute(update(Image), live_updates)


def image_values(image_id: int, decision: Decision, species: dict[str, int],
                 now: object) -> dict[str, object]:
    values: dict[str, object] = {"id": image_id, "updated_at": now, "label_species_id": None,
                                 "reject_reason": None, "reject_detail": None}
    if decision.outcome == APPROVED:
        values.update(status=ImageStatus.APPROVED, label_species_id=species[decision.label])
    elif decision.outcome == REJECTED:
        values.update(status=ImageStatus.REJECTED,
                      reject_reason=f"review_{decision.label.replace('-', '_')}",
                      reject_detail=f"agreement {decision.agreement}")
    else:
        values.update(status=ImageStatus.IN_REVIEW)
    return values


def latest_decisions(session: Session, ids: Sequence[int]) -> dict[int, Decision]:
    newest = (select(func.max(ReviewDecision.id))
              .where(ReviewDecision.review_task_id.in_(ids))
              .group_by(ReviewDecision.review_task_id))
    rows = session.execute(
        select(ReviewDecision.review_task_id, ReviewDecision.outcome, ReviewDecision.label,
               ReviewDecision.relabelled, ReviewDecision.agreement, ReviewDecision.annotators)
        .where(ReviewDecision.id.in_(newest))
    ).all()
    return {r[0]: Decision(r[1], r[2], r[3], r[4], tuple(r[5] or ())) for r in rows}


def chunks(items: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
