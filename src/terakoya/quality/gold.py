"""Check items: each trainer's accuracy on items with a known answer, and the pause that follows a low one.

Items with a known answer (the test split's gold labels) are mixed into the queue at ``routing.gold_share``,
shown like any other task, and paid like any other. A person's *gold score* counts their live answers on
such items: overall and per known label, with 95 % Wilson intervals.

The pause rule: once a trainer has answered ``quality.min_gold`` check items since their last pause was
lifted, they are paused on the project when even the top of the 95 % interval of their *balanced* accuracy
(the mean of their accuracies per known label, each drawn a little towards their overall accuracy) is below
``quality.min_gold_accuracy`` — a careful trainer who is unlucky on a few items is not paused; one who
answers at random, or always gives one label, is, after a dozen or two. Balanced, because check items follow
the data's label shares: on a set that is 59 % neutral, someone who always says neutral is 59 % accurate
but far less balanced. ``bench/crowd.py`` (FPB, 600 simulated trainers per profile): the plain accuracy rule
paused 13 % of such trainers within 60 check items, this one all of them (median 19), no careful trainer,
2.3 % of average ones, spammers after a median of 13.
A paused trainer is offered no task; they see why and what to review, and the owner sees why and can lift
the pause. Only answers after a lift count towards a new one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Select, select

from terakoya.errors import StateError
from terakoya.evaluation.metrics import wilson_interval
from terakoya.quality.aggregate import live_expert_answer
from terakoya.storage.models import Answer, Assignment, Item, Pause, Person, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from terakoya.settings import QualitySettings
    from terakoya.storage.db import Database

__all__ = [
    "QUALIFICATION",
    "GoldScore",
    "LabelScore",
    "PausedError",
    "Qualification",
    "active_pause",
    "active_pause_reason",
    "check_pause",
    "check_qualification",
    "gold_scores",
    "lift_pause",
    "next_qualification_item",
    "pause_reason",
    "pauses",
    "qualification_in",
]


#: pseudo-answers at the overall accuracy added to each label's accuracy in the balanced accuracy
SHRINK = 0.5


class PausedError(StateError):
    """The person is paused on this project: no task is offered until the owner lifts the pause."""

    code = "paused"


@dataclass(frozen=True)
class LabelScore:
    """A person's answers on check items whose known answer is one label."""

    answers: int
    correct: int
    accuracy: float
    ci95: list[float] | None


@dataclass(frozen=True)
class GoldScore:
    """A person's live answers on check items: how many, how many right, the accuracy and its 95 % interval,
    per known label, and the items they got wrong (item id, their label, the known label), newest first."""

    person_id: int
    answers: int
    correct: int
    accuracy: float
    ci95: list[float] | None
    per_label: dict[str, LabelScore] = field(default_factory=dict)
    wrong: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def balanced_accuracy(self) -> float:
        """The mean of the per-label accuracies, each drawn towards the overall accuracy as if it had
        :data:`SHRINK` more answers at that accuracy (a label seen once does not decide alone): what the pause
        rule judges. Someone who always gives the most common label scores far below their plain accuracy."""
        if not self.per_label:
            return 0.0
        shrunk = [(x.correct + SHRINK * self.accuracy) / (x.answers + SHRINK) for x in self.per_label.values()]
        return sum(shrunk) / len(shrunk)

    @property
    def balanced_ci95(self) -> list[float] | None:
        """A 95 % interval of the balanced accuracy: Wilson's for that share of the answers (an approximation)."""
        return wilson_interval(round(self.balanced_accuracy * self.answers), self.answers)


def _score(person_id: int, rows: list[tuple[int, str, str]]) -> GoldScore:
    """``rows``: (item id, the person's label, the known label), oldest first."""
    correct = sum(given == known for _, given, known in rows)
    per_label: dict[str, LabelScore] = {}
    for label in sorted({known for _, _, known in rows}):
        mine = [given == known for _, given, known in rows if known == label]
        per_label[label] = LabelScore(
            len(mine), sum(mine), sum(mine) / len(mine), wilson_interval(sum(mine), len(mine))
        )
    wrong = [row for row in reversed(rows) if row[1] != row[2]]
    n = len(rows)
    return GoldScore(person_id, n, correct, correct / n if n else 0.0, wilson_interval(correct, n), per_label, wrong)


def _since(s: Session, project_id: int) -> dict[int, datetime]:
    """Person -> when their last lifted pause was lifted: their gold answers before it no longer count."""
    rows = s.execute(
        select(Pause.person_id, Pause.lifted_at).where(Pause.project_id == project_id, Pause.lifted_at.is_not(None))
    ).all()
    out: dict[int, datetime] = {}
    for person_id, lifted_at in rows:
        if lifted_at is not None and (person_id not in out or lifted_at > out[person_id]):
            out[int(person_id)] = lifted_at
    return out


def gold_scores_in(
    s: Session, project_id: int, *, person_id: int | None = None, all_time: bool = False
) -> dict[int, GoldScore]:
    """Person -> their gold score on the project (answers after their last lifted pause, unless ``all_time``);
    each person's newest live answer per check item counts once."""
    query = _check_answers(project_id)
    if person_id is not None:
        query = query.where(Answer.person_id == person_id)
    since = {} if all_time else _since(s, project_id)
    newest: dict[int, dict[int, tuple[int, str, str]]] = {}
    for pid, item_id, label, gold, created_at in s.execute(query).all():
        lifted = since.get(int(pid))
        if lifted is not None and created_at <= lifted:
            continue
        newest.setdefault(int(pid), {})[int(item_id)] = (int(item_id), str(label), str(gold))
    return {pid: _score(pid, list(rows.values())) for pid, rows in newest.items()}


def _check_answers(project_id: int) -> Select[int, int, str | None, str | None, datetime]:
    """(person id, item id, label, known label, when) of the live expert answers on the project's check items
    (test items with a known label), oldest first: what a gold score and a qualification read."""
    return (
        select(Answer.person_id, Answer.item_id, Answer.label, Item.gold_label, Answer.created_at)
        .join(Item, Answer.item_id == Item.id)
        .where(Item.project_id == project_id, Item.split == "test", Item.gold_label.is_not(None), live_expert_answer())
        .where(Answer.kind != "compare")  # a blind comparison of two answers has no known answer
        .order_by(Answer.id)
    )


def _new_pause(
    s: Session, project_id: int, person_id: int, reason: str, score: GoldScore, now: datetime | None
) -> Pause:
    pause = Pause(
        project_id=project_id,
        person_id=person_id,
        reason=reason,
        gold_answers=score.answers,
        gold_correct=score.correct,
        created_at=now or utcnow(),
    )
    s.add(pause)
    s.flush()
    return pause


def gold_scores(
    db: Database, project_id: int, *, person_id: int | None = None, all_time: bool = False
) -> dict[int, GoldScore]:
    """:func:`gold_scores_in` in its own session."""
    with db.session() as s:
        return gold_scores_in(s, project_id, person_id=person_id, all_time=all_time)


def pause_reason(score: GoldScore, quality: QualitySettings) -> str | None:
    """Why the rule pauses this score, in words the trainer and the owner both read; None when it does not."""
    ci = score.balanced_ci95
    if quality.min_gold_accuracy <= 0 or score.answers < quality.min_gold or ci is None:
        return None
    if ci[1] >= quality.min_gold_accuracy:
        return None
    return (
        f"{score.correct} of {score.answers} answers on check items matched the known answer "
        f"({score.balanced_accuracy:.0%} averaged over the labels; this project asks for "
        f"{quality.min_gold_accuracy:.0%})"
    )


def active_pause(s: Session, project_id: int, person_id: int) -> Pause | None:
    """The person's pause on the project that has not been lifted, if any."""
    return s.scalars(
        select(Pause)
        .where(Pause.project_id == project_id, Pause.person_id == person_id, Pause.lifted_at.is_(None))
        .order_by(Pause.id.desc())
        .limit(1)
    ).first()


def active_pause_reason(s: Session, project_id: int, person_id: int) -> str | None:
    """Why the person is paused on the project, or None (the work queue asks before every lease: one row)."""
    reason = s.execute(
        select(Pause.reason)
        .where(Pause.project_id == project_id, Pause.person_id == person_id, Pause.lifted_at.is_(None))
        .order_by(Pause.id.desc())
        .limit(1)
    ).scalar()
    return None if reason is None else str(reason)


def check_pause(
    s: Session, project_id: int, person_id: int, quality: QualitySettings, *, now: datetime | None = None
) -> Pause | None:
    """Pause the person when the rule says so and they are not paused already; returns the new pause."""
    if active_pause(s, project_id, person_id) is not None:
        return None
    score = gold_scores_in(s, project_id, person_id=person_id).get(person_id)
    reason = pause_reason(score, quality) if score is not None else None
    if score is None or reason is None:
        return None
    return _new_pause(s, project_id, person_id, reason, score, now)


def lift_pause(db: Database, project_id: int, person_id: int, *, by: int | None, now: datetime | None = None) -> bool:
    """Lift the person's pause (``by``: the owner who lifted it); False when they were not paused."""
    with db.session() as s:
        pause = active_pause(s, project_id, person_id)
        if pause is None:
            return False
        pause.lifted_at = now or utcnow()
        pause.lifted_by = by
    return True


@dataclass(frozen=True)
class PauseView:
    """A pause as the owner's screens show it."""

    person_id: int
    person: str
    reason: str
    gold_answers: int
    gold_correct: int
    created_at: datetime
    lifted_at: datetime | None


def pauses(db: Database, project_id: int, *, active_only: bool = True) -> list[PauseView]:
    """The project's pauses, newest first (only those not lifted, unless ``active_only`` is False)."""
    query = (
        select(Pause, Person.name)
        .join(Person, Pause.person_id == Person.id)
        .where(Pause.project_id == project_id)
        .order_by(Pause.id.desc())
    )
    if active_only:
        query = query.where(Pause.lifted_at.is_(None))
    with db.session() as s:
        return [
            PauseView(p.person_id, name, p.reason, p.gold_answers, p.gold_correct, p.created_at, p.lifted_at)
            for p, name in s.execute(query).all()
        ]


# ----------------------------------------------------------------------------- qualification

#: the task reason of a qualification item: one person's own task, on a check item, before any other task
QUALIFICATION = "qualification"
_QUALIFICATION_PAUSE = "did not pass the qualification: "


@dataclass(frozen=True)
class Qualification:
    """Where a person stands with the project's qualification: ``state`` is ``off`` (none asked), ``passed``,
    ``open`` (``answered`` of ``needed`` done) or ``failed`` (paused until the owner lets them in)."""

    state: str
    answered: int
    needed: int
    score: GoldScore | None = None


def _qualification_rows(s: Session, project_id: int, person_id: int) -> list[tuple[int, str, str]]:
    """(item, label, known label) of the person's newest live answer on each of their qualification items."""
    from terakoya.storage.models import Task

    query = (
        _check_answers(project_id)
        .join(Task, Answer.task_id == Task.id)
        .where(Task.reason == QUALIFICATION, Answer.person_id == person_id)
    )
    newest = {int(item): (int(item), str(label), str(gold)) for _, item, label, gold, _ in s.execute(query).all()}
    return list(newest.values())


def qualification_in(s: Session, project_id: int, person_id: int, quality: QualitySettings) -> Qualification:
    """The person's qualification (see :class:`Qualification`): passed once they reach
    ``quality.min_gold_accuracy`` (balanced) on ``quality.qualification_items`` items, or once the owner lifted
    the pause a failed qualification brought."""
    needed = quality.qualification_items
    if needed <= 0:
        return Qualification("off", 0, 0)
    lifted = s.scalar(
        select(Pause.id).where(
            Pause.project_id == project_id, Pause.person_id == person_id, Pause.lifted_at.is_not(None),
            Pause.reason.startswith(_QUALIFICATION_PAUSE),
        ).limit(1)
    )  # fmt: skip
    rows = _qualification_rows(s, project_id, person_id)
    if lifted is not None:
        return Qualification("passed", len(rows), needed)
    if len(rows) < needed:
        return Qualification("open", len(rows), needed)
    score = _score(person_id, rows[:needed])
    passed = score.balanced_accuracy >= quality.min_gold_accuracy
    return Qualification("passed" if passed else "failed", needed, needed, score)


def next_qualification_item(s: Session, project_id: int, person_id: int) -> int | None:
    """A check item the person has not answered or been given as a qualification item, at random; None: none."""
    from sqlalchemy import func

    from terakoya.storage.models import Task

    seen = select(Answer.item_id).where(Answer.person_id == person_id)
    given = (
        select(Task.item_id)
        .join(Assignment, Assignment.task_id == Task.id)
        .where(Task.reason == QUALIFICATION, Assignment.person_id == person_id)
    )
    item = s.scalar(
        select(Item.id)
        .where(Item.project_id == project_id, Item.split == "test", Item.gold_label.is_not(None),
               Item.id.not_in(seen), Item.id.not_in(given))
        .order_by(func.random())
        .limit(1)
    )  # fmt: skip
    return None if item is None else int(item)


def check_qualification(
    s: Session, project_id: int, person_id: int, quality: QualitySettings, *, now: datetime | None = None
) -> Pause | None:
    """After a qualification answer: pause the person when they failed it (and are not paused already)."""
    state = qualification_in(s, project_id, person_id, quality)
    if state.state != "failed" or state.score is None or active_pause(s, project_id, person_id) is not None:
        return None
    score = state.score
    reason = (
        f"{_QUALIFICATION_PAUSE}{score.correct} of {score.answers} qualification items matched the known "
        f"answer ({score.balanced_accuracy:.0%} averaged over the labels; this project asks for "
        f"{quality.min_gold_accuracy:.0%})"
    )
    return _new_pause(s, project_id, person_id, reason, score, now)
