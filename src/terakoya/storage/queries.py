"""Queries that several stages share, so that they agree on what they read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from terakoya.storage.models import Item, Suggestion

__all__ = ["current_suggestion", "current_suggestion_ids", "items_by_split", "labelled_items"]


def _newest_good(agent_kind: str) -> Select[Any]:
    """The rule itself: per item, the id (``sid``) of its newest suggestion of ``agent_kind`` that is not an error."""
    return (
        select(func.max(Suggestion.id).label("sid"))
        .where(Suggestion.agent_kind == agent_kind, Suggestion.error.is_(None))
        .group_by(Suggestion.item_id)
    )


def current_suggestion_ids(
    project_id: int,
    agent_kind: str,
    *,
    split: str | None = None,
    agent: str | None = None,
    item_ids: Sequence[int] | None = None,
) -> Select[Any]:
    """Per item of the project, the id (column ``sid``) of its *current* suggestion of ``agent_kind``.

    Current = the newest one that is not an error: a failed retry does not hide an earlier good answer.
    Routing, training, evaluation, the dashboard, the export and the work queue all read suggestions
    through this rule (:func:`current_suggestion` for one item). A condition on the current suggestion
    (it has a label, say) goes on the rows joined to these ids; a ``where`` added to this query instead picks
    the newest among the rows it keeps, which is another question (calibration asks it of the raw rows).
    """
    query = _newest_good(agent_kind).join(Item, Item.id == Suggestion.item_id).where(Item.project_id == project_id)
    if split is not None:
        query = query.where(Item.split == split)
    if agent is not None:
        query = query.where(Suggestion.agent == agent)
    if item_ids is not None:
        query = query.where(Suggestion.item_id.in_(item_ids))
    return query


def current_suggestion(session: Session, item_id: int, agent_kind: str = "teacher") -> Suggestion | None:
    """The current suggestion of ``agent_kind`` for one item (see :func:`current_suggestion_ids`); None when none."""
    newest = _newest_good(agent_kind).where(Suggestion.item_id == item_id).scalar_subquery()
    return session.scalar(select(Suggestion).where(Suggestion.id == newest))


def labelled_items(session: Session, project_id: int, agent_kind: str = "teacher") -> int:
    """How many items of the project have a current suggestion of ``agent_kind`` that carries a label."""
    ids = current_suggestion_ids(project_id, agent_kind).subquery()
    count = session.scalar(
        select(func.count())
        .select_from(Suggestion)
        .join(ids, Suggestion.id == ids.c.sid)
        .where(Suggestion.label.is_not(None))
    )
    return int(count or 0)


def items_by_split(session: Session, project_id: int) -> dict[str, int]:
    """split (``pool``, ``test``) -> how many items of the project it holds; a split without items is absent."""
    rows = session.execute(
        select(Item.split, func.count()).where(Item.project_id == project_id).group_by(Item.split)
    ).all()
    return {str(split): int(n) for split, n in rows}
