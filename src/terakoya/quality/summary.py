"""How good the people are, in one place: agreement among them, each person's reliability, overlap spent, pauses.

The dashboard, the report and ``terakoya status`` all read this one summary (so their figures agree):

- **agreement**: Fleiss' kappa and Krippendorff's alpha over every item two or more people answered (each
  person's newest live answer), per label too, with bootstrap intervals; Cohen's kappa for each pair;
- **people**: per person, their answers, their accuracy on check items (gold, with a 95 % interval), and the
  accuracy a Dawid–Skene model of everyone's answers estimates for them (the teacher answering as a worker);
- **overlap**: answers per answered item;
- **pauses**: who is paused now, and why.

Per-person figures are for the owner: never shown to other trainers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import select

from terakoya.quality.aggregate import expert_answer_rows
from terakoya.quality.agreement import Agreement, annotator_agreement
from terakoya.quality.gold import PauseView, gold_scores_in, pauses
from terakoya.storage.models import Answer, Item, Person, Suggestion
from terakoya.storage.queries import current_suggestion_ids

if TYPE_CHECKING:
    from terakoya.settings import Settings
    from terakoya.storage.db import Database

__all__ = ["PersonQuality", "QualitySummary", "quality_summary"]

#: bootstrap resamples for the summary's intervals (fewer than the library default: the dashboard reads it)
SUMMARY_BOOT = 400


@dataclass(frozen=True)
class PersonQuality:
    """One person's answers and reliability (for the owner)."""

    person_id: int
    person: str
    answers: int
    items: int
    gold_answers: int
    gold_correct: int
    gold_accuracy: float | None
    gold_ci95: list[float] | None
    #: Dawid–Skene's estimate of their accuracy (None: too little overlap to estimate, or crowd-kit missing)
    estimated_accuracy: float | None
    paused: bool


@dataclass(frozen=True)
class QualitySummary:
    agreement: Agreement
    people: list[PersonQuality]
    answered_items: int
    answers: int
    #: items with 2, 3, ... answers
    items_by_answers: dict[int, int] = field(default_factory=dict)
    pauses: list[PauseView] = field(default_factory=list)
    #: the aggregation rule training uses (``quality.aggregator``)
    aggregator: str = "majority"
    #: why the estimated accuracies are missing, when they are
    estimate_note: str | None = None
    #: answers spent per answered item (None: no answer yet)
    answers_per_item: float | None = None


def _answers(db: Database, project_id: int, labels: list[str]) -> list[tuple[int, int, int, str, str]]:
    """(answer id, item id, person id, person name, label) of the live expert answers with a declared label."""
    query = (
        expert_answer_rows(labels)
        .add_columns(Answer.person_id, Person.name)
        .join(Item, Answer.item_id == Item.id)
        .join(Person, Answer.person_id == Person.id)
        .where(Item.project_id == project_id)
    )
    with db.session() as s:
        return [(int(a), int(i), int(p), str(n), str(lb)) for a, i, lb, p, n in s.execute(query).all()]


def _estimates(
    db: Database, project_id: int, newest: dict[int, dict[str, str]], labels: list[str]
) -> tuple[dict[str, float], str | None]:
    """Dawid–Skene's per-person accuracy over the items two or more people answered, the teacher a worker."""
    shared = {item: given for item, given in newest.items() if len(given) >= 2}
    if len(shared) < 10:
        return {}, "fewer than 10 items answered by two or more people: reliability cannot be estimated yet"
    with db.session() as s:
        ids = current_suggestion_ids(project_id, "teacher")
        rows = s.execute(select(Suggestion.item_id, Suggestion.label).where(Suggestion.id.in_(ids))).all()
    teacher = {int(i): str(lb) for i, lb in rows if lb in labels and int(i) in shared}
    triples = [(item, person, label) for item, given in shared.items() for person, label in given.items()]
    from terakoya.errors import MissingDependency
    from terakoya.quality.crowd import aggregate

    try:
        result = aggregate(triples, labels, "dawid_skene", models={"teacher": teacher} if teacher else None)
    except MissingDependency as exc:
        return {}, str(exc)
    return {w: r.accuracy for w, r in result.reliability.items() if not r.model}, None


def quality_summary(db: Database, project_id: int, settings: Settings, *, n_boot: int = SUMMARY_BOOT) -> QualitySummary:
    """Agreement, per-person reliability, overlap and pauses of the project (see the module docstring)."""
    from terakoya.kinds import get_kind
    from terakoya.kinds.generate import VERDICTS

    # a generation project's answers agree or not on their verdicts (accept, reject, corrected, a comparison's winner)
    labels = list(VERDICTS) if get_kind(settings.task.kind).generative else list(settings.label_names)
    rows = _answers(db, project_id, labels)
    newest: dict[int, dict[str, str]] = {}
    per_item: dict[int, int] = {}
    names: dict[int, str] = {}
    counts: dict[int, tuple[int, set[int]]] = {}
    for _, item, person, name, label in rows:
        newest.setdefault(item, {})[name] = label
        per_item[item] = per_item.get(item, 0) + 1
        names[person] = name
        n, items = counts.get(person, (0, set()))
        items.add(item)
        counts[person] = (n + 1, items)
    agreement = annotator_agreement(newest, labels, n_boot=n_boot, seed=settings.seed) if labels else None
    estimates, note = _estimates(db, project_id, newest, labels) if labels else ({}, None)
    with db.session() as s:
        gold = gold_scores_in(s, project_id, all_time=True)
    paused = pauses(db, project_id)
    paused_ids = {p.person_id for p in paused}
    people = []
    for person, (n, items) in sorted(counts.items(), key=lambda kv: (-kv[1][0], names[kv[0]])):
        score = gold.get(person)
        people.append(
            PersonQuality(
                person, names[person], n, len(items),
                score.answers if score else 0, score.correct if score else 0,
                score.accuracy if score else None, score.ci95 if score else None,
                estimates.get(names[person]), person in paused_ids,
            )
        )  # fmt: skip
    by_answers: dict[int, int] = {}
    for n in per_item.values():
        by_answers[n] = by_answers.get(n, 0) + 1
    return QualitySummary(
        agreement=agreement or annotator_agreement({}, ["a", "b"]),
        people=people,
        answered_items=len(per_item),
        answers=len(rows),
        items_by_answers=dict(sorted(by_answers.items())),
        pauses=paused,
        aggregator=settings.quality.aggregator,
        estimate_note=note,
        answers_per_item=len(rows) / len(per_item) if per_item else None,
    )
