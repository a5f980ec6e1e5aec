"""Where a training label came from: for one item, every student run that trained on it, with the answers, the
people, the teacher suggestion, the aggregation rule and the guideline version behind each target.

Read from ``training_labels`` (written by every ``train``), ``answers``, ``people`` and ``suggestions``; the
CLI (``terakoya quality provenance``), the web app and the API show the same :class:`Provenance`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from terakoya.errors import NotFound
from terakoya.storage.models import Answer, Item, Person, StudentRun, Suggestion, TrainingLabel

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from terakoya.storage.db import Database

__all__ = ["AnswerSource", "Provenance", "RunTarget", "SuggestionSource", "provenance"]


@dataclass(frozen=True)
class AnswerSource:
    """One answer behind a target: who, what, under which guidelines, and whether it still counts."""

    answer_id: int
    person: str
    kind: str
    label: str | None
    rationale: str | None
    guideline_version: str | None
    created_at: datetime
    superseded: bool
    simulated: bool


@dataclass(frozen=True)
class SuggestionSource:
    """The teacher suggestion behind a target."""

    suggestion_id: int
    agent: str
    prompt_version: str
    label: str | None
    confidence: float | None
    calibration: str | None


@dataclass(frozen=True)
class RunTarget:
    """What one student run learned for the item, and from what."""

    run_id: str
    run_created_at: datetime
    label: str
    target: dict[str, float]
    source: str
    weight: float
    aggregator: str | None
    answers: list[AnswerSource] = field(default_factory=list)
    suggestion: SuggestionSource | None = None


@dataclass(frozen=True)
class Provenance:
    item_id: int
    external_id: str
    text: str
    split: str
    gold_label: str | None
    #: newest run first; empty when no run trained on the item
    runs: list[RunTarget] = field(default_factory=list)


def _answers(s: Session, ids: list[int]) -> dict[int, AnswerSource]:
    rows = s.execute(
        select(Answer, Person.name).join(Person, Answer.person_id == Person.id).where(Answer.id.in_(ids))
    ).all()
    return {
        a.id: AnswerSource(a.id, name, a.kind, a.label, a.rationale, a.guideline_version, a.created_at,
                           a.superseded, a.simulated)
        for a, name in rows
    }  # fmt: skip


def provenance(db: Database, project_id: int, item: str | int) -> Provenance:
    """The provenance of the item with external id ``item`` (or, given an int, that item id)."""
    with db.session() as s:
        query = select(Item).where(Item.project_id == project_id)
        found = s.scalar(
            query.where(Item.id == item) if isinstance(item, int) else query.where(Item.external_id == item)
        )
        if found is None:
            raise NotFound(f"no item {item!r} in this project; give the id as in the imported file (column id)")
        rows = s.execute(
            select(TrainingLabel, StudentRun.run_id, StudentRun.created_at)
            .join(StudentRun, TrainingLabel.student_run_id == StudentRun.id)
            .where(TrainingLabel.item_id == found.id)
            .order_by(StudentRun.id.desc())
        ).all()
        answers = _answers(s, sorted({a for tl, _, _ in rows for a in (tl.answer_ids or [])}))
        suggestion_ids = sorted({tl.suggestion_id for tl, _, _ in rows if tl.suggestion_id is not None})
        suggestions = {
            sg.id: SuggestionSource(sg.id, sg.agent, sg.prompt_version, sg.label, sg.confidence, sg.calibration)
            for sg in s.scalars(select(Suggestion).where(Suggestion.id.in_(suggestion_ids)))
        }
        runs = [
            RunTarget(
                run_id, created, tl.label, dict(tl.target), tl.source, tl.weight, tl.aggregator,
                [answers[a] for a in (tl.answer_ids or []) if a in answers],
                suggestions.get(tl.suggestion_id) if tl.suggestion_id is not None else None,
            )
            for tl, run_id, created in rows
        ]  # fmt: skip
        return Provenance(found.id, found.external_id, found.text, found.split, found.gold_label, runs)
