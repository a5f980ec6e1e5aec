"""What several answers to one item say together: one rule, used by every stage that needs it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from terakoya.storage.db import Database

__all__ = ["EXPERT_KINDS", "expert_answers", "majority"]

#: answer kinds that carry an expert's label
EXPERT_KINDS = ("label", "verify")


def majority(answers: Sequence[tuple[int, str]]) -> str:
    """The most frequent label among ``(answer id, label)`` pairs; a tie goes to the label answered most recently."""
    if not answers:
        raise ValueError("majority() needs at least one answer")
    counts = Counter(label for _, label in answers)
    top = max(counts.values())
    latest: dict[str, int] = {}
    for answer_id, label in answers:
        latest[label] = max(answer_id, latest.get(label, answer_id))
    return max((label for label, c in counts.items() if c == top), key=lambda label: latest[label])


def expert_answers(
    db: Database,
    project_id: int,
    classes: Sequence[str],
    *,
    split: str | None = "pool",
    task_reasons: Sequence[str] | None = None,
) -> dict[int, list[tuple[int, str]]]:
    """Item -> its live expert answers ``(answer id, label)`` with a declared label, items in the order they
    were first answered. Live: not superseded (undone) by its author. ``split`` None: both splits;
    ``task_reasons``: only answers given on tasks routed for one of these reasons."""
    from sqlalchemy import select

    from terakoya.storage.models import Answer, Item, Task

    query = (
        select(Answer.id, Answer.item_id, Answer.label)
        .join(Item, Answer.item_id == Item.id)
        .where(
            Item.project_id == project_id,
            Answer.kind.in_(EXPERT_KINDS),
            Answer.superseded.is_(False),
            Answer.label.is_not(None),
        )
        .order_by(Answer.id)
    )
    if split is not None:
        query = query.where(Item.split == split)
    if task_reasons is not None:
        query = query.join(Task, Task.id == Answer.task_id).where(Task.reason.in_(task_reasons))
    with db.session() as s:
        rows = s.execute(query).all()
    wanted = set(classes)
    out: dict[int, list[tuple[int, str]]] = {}
    for answer_id, item_id, label in rows:
        if label in wanted:
            out.setdefault(int(item_id), []).append((int(answer_id), str(label)))
    return out
