"""Review: a reviewer settles the items whose answers do not settle themselves, and the decision wins.

The review queue holds pool items that have no standing review decision and

- a **flag**: someone flagged the item (broken, ambiguous, not covered by the guidelines), or
- a **conflict**: two or more people answered and gave different labels — a **weak majority** when three or
  more answers give the most common label less than two thirds of them,

flags first, then conflicts, then weak majorities; under a reliability-weighted aggregator
(``quality.aggregator`` = ``dawid_skene`` or ``mace``) also items whose aggregate is less than 70 % sure,
last. For each item the reviewer sees every answer and its reason side by side, with the teacher's and the
student's suggestions, and decides a label. The decision is an answer of kind ``review`` (who and when are
kept); while it stands, training learns the decided label (source ``review``) instead of the aggregate of
the answers. Undoing it (the answer superseded) gives the item back to aggregation and to the queue.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, and_, select

from terakoya.errors import DataError, NotFound, StateError
from terakoya.quality.aggregate import EXPERT_KINDS
from terakoya.storage.models import Answer, Item, Person, utcnow
from terakoya.storage.queries import current_suggestion

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from terakoya.settings import Settings
    from terakoya.storage.db import Database

__all__ = [
    "REVIEW",
    "Decision",
    "ReviewAnswer",
    "ReviewItem",
    "decide",
    "recent_decisions",
    "review_queue",
    "reviewed_labels",
    "undo_decision",
    "waiting_for_review",
    "written_choices",
]

#: the answer kind of a reviewer's decision
REVIEW = "review"
#: below this share for the most common label, several answers are a weak majority
WEAK_MAJORITY = 2 / 3


@dataclass(frozen=True)
class ReviewAnswer:
    answer_id: int
    person: str
    kind: str
    label: str | None
    rationale: str | None
    created_at: datetime


@dataclass(frozen=True)
class ReviewItem:
    """An item waiting for a reviewer: why, every answer, and what the teacher and the student said."""

    item_id: int
    external_id: str
    text: str
    why: str  # conflict | flag | weak majority
    answers: list[ReviewAnswer] = field(default_factory=list)
    teacher_label: str | None = None
    teacher_confidence: float | None = None
    student_label: str | None = None
    student_confidence: float | None = None
    #: what the reviewer may decide here (None: the project's labels); a generation project's item offers the
    #: verdicts its answers were about (accept, reject, corrected; a comparison's two sources, tie, both_bad)
    choices: list[str] | None = None


def _live(project_id: int) -> ColumnElement[bool]:
    return and_(Item.project_id == project_id, Item.split == "pool", Answer.superseded.is_(False))


def reviewed_labels(s: Session, project_id: int) -> dict[int, tuple[int, str]]:
    """Item -> (answer id, label) of its standing review decision (the newest, where there are several)."""
    rows = s.execute(
        select(Answer.item_id, Answer.id, Answer.label)
        .join(Item, Answer.item_id == Item.id)
        .where(Item.project_id == project_id, Answer.kind == REVIEW, Answer.superseded.is_(False))
        .order_by(Answer.id)
    ).all()
    return {int(item): (int(answer), str(label)) for item, answer, label in rows if label is not None}


def _why(answers: list[ReviewAnswer]) -> str | None:
    """Why the item waits for review: a flag, a conflict (a weak majority when the most common label has less
    than two thirds of three or more answers), or None: it does not."""
    if any(a.kind == "flag" for a in answers):
        return "flag"
    labels = [a.label for a in answers if a.kind in EXPERT_KINDS and a.label is not None]
    if len(set(labels)) < 2:
        return None
    top = Counter(labels).most_common(1)[0][1]
    return "weak majority" if len(labels) >= 3 and top / len(labels) < WEAK_MAJORITY else "conflict"


#: under a reliability-weighted aggregator, an aggregate less sure than this waits for review
UNSURE = 0.7


def _unsure(db: Database, project_id: int, settings: Settings | None) -> set[int]:
    """Pool items whose aggregate under ``quality.aggregator`` (Dawid–Skene, MACE) is less than :data:`UNSURE`
    sure; none under majority vote, whose disagreements are conflicts already."""
    if settings is None or settings.quality.aggregator == "majority" or len(settings.label_names) < 2:
        return set()
    from terakoya.kinds import kind_for
    from terakoya.quality.aggregate import evidence, expert_answers

    answers = expert_answers(db, project_id, settings.label_names)
    targets = kind_for(settings).expert_targets(evidence(db, project_id, answers), settings)
    return {item for item, target in targets.items() if target.confidence < UNSURE}


def _waiting(
    s: Session, project_id: int, unsure: set[int]
) -> tuple[list[tuple[int, str]], dict[int, list[ReviewAnswer]]]:
    """(item id, why) of the items waiting for review, in queue order, and every item's answers."""
    rows = s.execute(
        select(Answer.id, Answer.item_id, Person.name, Answer.kind, Answer.label, Answer.rationale,
               Answer.created_at)
        .join(Item, Answer.item_id == Item.id)
        .join(Person, Answer.person_id == Person.id)
        .where(_live(project_id), Answer.kind.in_((*EXPERT_KINDS, "flag")))
        .order_by(Answer.id)
    ).all()  # fmt: skip
    decided = reviewed_labels(s, project_id)
    by_item: dict[int, list[ReviewAnswer]] = {}
    for answer_id, item_id, name, kind, label, rationale, created in rows:
        if int(item_id) not in decided:
            by_item.setdefault(int(item_id), []).append(
                ReviewAnswer(int(answer_id), str(name), str(kind), label, rationale, created)
            )
    waiting = [
        (item_id, why)
        for item_id, answers in by_item.items()
        if (why := _why(answers) or ("unsure aggregate" if item_id in unsure else None)) is not None
    ]
    order = {"flag": 0, "conflict": 1, "weak majority": 2, "unsure aggregate": 3}
    waiting.sort(key=lambda pair: (order[pair[1]], pair[0]))
    return waiting, by_item


def review_queue(
    db: Database, project_id: int, *, limit: int = 50, settings: Settings | None = None
) -> list[ReviewItem]:
    """The items waiting for review (see the module docstring), flags and conflicts first, oldest first; with
    ``settings`` naming a reliability-weighted aggregator, also items whose aggregate is unsure."""
    unsure = _unsure(db, project_id, settings)
    with db.session() as s:
        waiting, by_item = _waiting(s, project_id, unsure)
        return [_item(s, item_id, why, by_item[item_id]) for item_id, why in waiting[:limit]]


def waiting_for_review(db: Database, project_id: int, *, settings: Settings | None = None) -> int:
    """How many items :func:`review_queue` holds, without reading each one's suggestions."""
    unsure = _unsure(db, project_id, settings)
    with db.session() as s:
        return len(_waiting(s, project_id, unsure)[0])


def written_choices(s: Session, item_id: int) -> list[str]:
    """The decisions a reviewer may take on a generation project's item, from the answers it has: the two
    sources a comparison showed, ``tie`` and ``both_bad``; or ``accept``, ``reject`` and, when someone
    corrected the answer, ``corrected`` (the newest correction)."""
    rows = s.execute(
        select(Answer.kind, Answer.label, Answer.value).where(
            Answer.item_id == item_id, Answer.superseded.is_(False), Answer.kind.in_(("rate", "compare", "correct"))
        )
    ).all()
    shown = [src for kind, _, value in rows if kind == "compare" for src in (value or {}).get("shown", [])]
    if shown:
        return [*dict.fromkeys(shown), "tie", "both_bad"]
    corrected = any(label == "corrected" for _, label, _ in rows)
    return ["accept", "reject", *(["corrected"] if corrected else [])]


def _item(s: Session, item_id: int, why: str, answers: list[ReviewAnswer]) -> ReviewItem:
    item = s.get(Item, item_id)
    assert item is not None
    teacher = current_suggestion(s, item_id, "teacher")
    student = current_suggestion(s, item_id, "student")
    written = any(a.kind in ("rate", "compare", "correct") for a in answers)
    text, choices = item.text, None
    if written:
        from terakoya.kinds.generate import messages_of

        text = "\n".join(f"{m['role']}: {m['content']}" for m in messages_of(item.text))
        choices = written_choices(s, item_id)
    return ReviewItem(
        item_id, item.external_id, text, why, answers,
        teacher.label if teacher else None, teacher.confidence if teacher else None,
        student.label if student else None, student.confidence if student else None, choices,
    )  # fmt: skip


def decide(
    db: Database,
    project_id: int,
    settings: Settings,
    item_id: int,
    reviewer_id: int,
    label: str,
    *,
    rationale: str | None = None,
) -> int:
    """Record the reviewer's decision on a pool item (an earlier standing decision is superseded); the answer id.
    A generation project's decision is one of the item's :func:`written_choices`."""
    from terakoya.kinds import get_kind

    generative = get_kind(settings.task.kind).generative
    if not generative and label not in settings.label_names:
        raise DataError(f"label {label!r} is not one of this project's labels: {', '.join(settings.label_names)}")
    if generative:
        with db.session() as s:
            choices = written_choices(s, item_id)
        if label not in choices:
            raise DataError(
                f"{label!r} is not a decision this item's answers allow; choose one of: {', '.join(choices)}"
            )
    with db.writing(), db.session() as s:
        item = s.get(Item, item_id)
        if item is None or item.project_id != project_id:
            raise NotFound(f"item {item_id} does not exist in this project; reload the review queue")
        if item.split != "pool":
            raise StateError("test items are the expert-checked test set: they are not reviewed into training")
        earlier = reviewed_labels(s, project_id).get(item_id)
        if earlier is not None:
            old = s.get(Answer, earlier[0])
            if old is not None:
                old.superseded = True
        answer = Answer(
            item_id=item_id, person_id=reviewer_id, kind=REVIEW, label=label, value={"label": label},
            rationale=(rationale or "").strip() or None, source="web", created_at=utcnow(),
        )  # fmt: skip
        s.add(answer)
        s.flush()
        return int(answer.id)


def undo_decision(db: Database, project_id: int, answer_id: int) -> int:
    """Take a review decision back: the item returns to aggregation (and to the queue); the item id."""
    with db.writing(), db.session() as s:
        answer = s.get(Answer, answer_id)
        item = s.get(Item, answer.item_id) if answer is not None else None
        if answer is None or item is None or item.project_id != project_id or answer.kind != REVIEW:
            raise NotFound(f"review decision {answer_id} does not exist in this project")
        if answer.superseded:
            raise StateError(f"review decision {answer_id} was already taken back")
        answer.superseded = True
        return int(answer.item_id)


@dataclass(frozen=True)
class Decision:
    """A review decision as the reviewer's page lists it."""

    answer_id: int
    item_id: int
    external_id: str
    text: str
    label: str | None
    reviewer: str
    rationale: str | None
    created_at: datetime
    standing: bool


def recent_decisions(db: Database, project_id: int, *, limit: int = 20) -> list[Decision]:
    """The project's review decisions, newest first (taken-back ones too, marked not standing)."""
    with db.session() as s:
        rows = s.execute(
            select(Answer, Item.external_id, Item.text, Person.name)
            .join(Item, Answer.item_id == Item.id)
            .join(Person, Answer.person_id == Person.id)
            .where(Item.project_id == project_id, Answer.kind == REVIEW)
            .order_by(Answer.id.desc())
            .limit(limit)
        ).all()
        return [
            Decision(a.id, a.item_id, ext, text, a.label, name, a.rationale, a.created_at, not a.superseded)
            for a, ext, text, name in rows
        ]
