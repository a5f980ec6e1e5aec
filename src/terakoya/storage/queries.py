"""Queries that several stages share, so that they agree on what they read."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select

from terakoya.storage.models import Item, Suggestion

__all__ = ["current_suggestion_ids"]


def current_suggestion_ids(
    project_id: int, agent_kind: str, *, split: str | None = None, agent: str | None = None
) -> Select[Any]:
    """Per item of the project, the id (column ``sid``) of its *current* suggestion of ``agent_kind``.

    Current = the newest one that is not an error: a failed retry does not hide an earlier good answer.
    Routing, training and evaluation all read suggestions through this rule.
    """
    query = (
        select(func.max(Suggestion.id).label("sid"))
        .join(Item, Item.id == Suggestion.item_id)
        .where(Item.project_id == project_id, Suggestion.agent_kind == agent_kind, Suggestion.error.is_(None))
        .group_by(Suggestion.item_id)
    )
    if split is not None:
        query = query.where(Item.split == split)
    if agent is not None:
        query = query.where(Suggestion.agent == agent)
    return query
