"""What several answers to one item say together: one rule, used by every stage that needs it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Select

    from terakoya.kinds.base import Evidence
    from terakoya.storage.db import Database

__all__ = [
    "AGGREGATOR",
    "BLIND_REASONS",
    "EXPERT_KINDS",
    "blind_answers",
    "by_item",
    "evidence",
    "expert_answer_rows",
    "expert_answers",
    "live_expert_answer",
    "majority",
    "top_labels",
]

#: answer kinds that carry an expert's label (rate, compare, correct: a written-answer task's verdict)
EXPERT_KINDS = ("label", "verify", "rate", "compare", "correct")
#: the name and version of the rule that turns an item's answers into one target (recorded with every
#: training label); change the version whenever ``majority`` changes
AGGREGATOR = "majority.v1"


def top_labels(answers: Sequence[tuple[int, str]]) -> list[str]:
    """The labels given most often among ``(answer id, label)`` pairs, the most recently answered first.

    More than one label means a tie; :func:`majority` takes the first. Empty when there are no answers.
    """
    counts = Counter(label for _, label in answers)
    if not counts:
        return []
    top = max(counts.values())
    latest: dict[str, int] = {}
    for answer_id, label in answers:
        latest[label] = max(answer_id, latest.get(label, answer_id))
    return sorted((label for label, c in counts.items() if c == top), key=lambda label: latest[label], reverse=True)


def majority(answers: Sequence[tuple[int, str]]) -> str:
    """The one label an item's answers give together: the one the training target, the export's
    ``expert_label``, the trust measurement and the evaluation report all use.

    The most frequent label among ``(answer id, label)`` pairs. A tie goes to the tied label whose newest
    answer is the most recent (the highest answer id): with answers a=1, b=2 the label is b; with
    a=1, b=2, a=3 it is a (two against one). Never None: every item with an answer has a label.
    """
    if not answers:
        raise ValueError("majority() needs at least one answer")
    return top_labels(answers)[0]


def live_expert_answer() -> ColumnElement[bool]:
    """The condition on ``answers`` rows for a live expert answer: a ``label`` or ``verify`` answer that carries
    a label and was not superseded (undone) by its author."""
    from sqlalchemy import and_

    from terakoya.storage.models import Answer

    return and_(Answer.kind.in_(EXPERT_KINDS), Answer.superseded.is_(False), Answer.label.is_not(None))


def expert_answer_rows(classes: Sequence[str] | None = None) -> Select[int, int, str | None]:
    """``(answer id, item id, label)`` of the live expert answers, oldest first; with ``classes``, only those
    whose label is one of them (an answer with an undeclared label counts for nothing)."""
    from sqlalchemy import select

    from terakoya.storage.models import Answer

    query = select(Answer.id, Answer.item_id, Answer.label).where(live_expert_answer()).order_by(Answer.id)
    if classes is not None:
        query = query.where(Answer.label.in_(list(classes)))
    return query


def by_item(rows: Iterable[Any]) -> dict[int, list[tuple[int, str]]]:
    """Rows of :func:`expert_answer_rows` -> item id -> its ``(answer id, label)`` pairs, in row order."""
    out: dict[int, list[tuple[int, str]]] = {}
    for answer_id, item_id, label in rows:
        out.setdefault(int(item_id), []).append((int(answer_id), str(label)))
    return out


def expert_answers(
    db: Database,
    project_id: int,
    classes: Sequence[str],
    *,
    split: str | None = "pool",
    task_reasons: Sequence[str] | None = None,
    untasked: bool = False,
) -> dict[int, list[tuple[int, str]]]:
    """Item -> its live expert answers ``(answer id, label)`` with a declared label, items in the order they
    were first answered. Live: not superseded (undone) by its author. ``split`` None: both splits;
    ``task_reasons``: only answers given on tasks routed for one of these reasons (and, with ``untasked``,
    answers given on no task: imported from a file)."""
    from sqlalchemy import or_, select

    from terakoya.storage.models import Answer, Item, Task

    query = expert_answer_rows(classes).join(Item, Answer.item_id == Item.id).where(Item.project_id == project_id)
    if split is not None:
        query = query.where(Item.split == split)
    if task_reasons is not None:
        routed = select(Task.id).where(Task.reason.in_(task_reasons))
        wanted_task = Answer.task_id.in_(routed)
        query = query.where(or_(wanted_task, Answer.task_id.is_(None)) if untasked else wanted_task)
    with db.session() as s:
        return by_item(s.execute(query).all())


#: task reasons whose items were drawn uniformly at random and shown without the teacher's answer: gold checks,
#: blind audits, random picks (answers imported from a file, on no task, count with them)
BLIND_REASONS = ("audit", "gold", "random")


def blind_answers(
    db: Database, project_id: int, classes: Sequence[str], *, split: str | None
) -> dict[int, list[tuple[int, str]]]:
    """The expert answers that measure the teacher without its influence: given on blind tasks drawn at random
    (:data:`BLIND_REASONS`) or imported. Teacher trust reads both splits (``split=None``); re-calibration, which
    trains on them, the pool only."""
    return expert_answers(db, project_id, classes, split=split, task_reasons=BLIND_REASONS, untasked=True)


def evidence(db: Database, project_id: int, answers: dict[int, list[tuple[int, str]]]) -> Evidence:
    """The answers, who gave each, and what the teacher and the newest student said of the answered items (for
    aggregators that weigh people and models by their reliability): what ``kind.expert_targets`` reads."""
    from sqlalchemy import select

    from terakoya.kinds.base import Evidence
    from terakoya.storage.models import Answer, Person, Suggestion
    from terakoya.storage.queries import current_suggestion_ids

    answer_ids = [answer_id for pairs in answers.values() for answer_id, _ in pairs]
    people: dict[int, str] = {}
    models: dict[str, dict[int, str]] = {}
    with db.session() as s:
        for start in range(0, len(answer_ids), 1000):
            chunk = answer_ids[start : start + 1000]
            rows = s.execute(
                select(Answer.id, Person.name).join(Person, Answer.person_id == Person.id).where(Answer.id.in_(chunk))
            )
            people.update((int(answer_id), str(name)) for answer_id, name in rows)
        for worker in ("teacher", "student"):
            newest = current_suggestion_ids(project_id, worker, split="pool")
            rows = s.execute(
                select(Suggestion.item_id, Suggestion.label).where(
                    Suggestion.id.in_(newest), Suggestion.label.is_not(None)
                )
            )
            given = {int(item_id): str(label) for item_id, label in rows if int(item_id) in answers}
            if given:
                models[worker] = given
    return Evidence(answers, people, models)
