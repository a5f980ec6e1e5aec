"""What the owner watches and what each trainer sees of their own work.

- :func:`dashboard_data`: the counters (each explained in :data:`COUNTER_HELP`), the funnel (imported ->
  teacher-labeled -> auto-accepted / routed -> answered -> used in the student, :data:`FUNNEL_STEPS`), the
  teacher-vs-expert confusion matrix, recent disagreements and flags, a table of trainers (answers, flags,
  active time, cost, accuracy on gold items), and two charts: the student's and the teacher's accuracy on the
  gold items per training run, and expert hours and cost per day.
- :func:`trainer_stats`: one person's paid items, active time and earnings today, this week and in total.

Gold items are test-split items with a ``gold_label``; a trainer's gold accuracy is over those they answered.
What counts as an answer, a flag, active time and earnings is the one pay rule of :mod:`terakoya.people.payouts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import aliased

from terakoya.people.accounts import current_pay
from terakoya.people.payouts import Work, earnings, rule_text, work_by_day, work_by_person
from terakoya.quality.aggregate import live_expert_answer
from terakoya.routing.trust import TeacherTrust, measure_trust
from terakoya.settings import PaySettings, Settings
from terakoya.storage.db import Database
from terakoya.storage.models import (
    Answer,
    Assignment,
    AutoAccept,
    Item,
    Person,
    StudentRun,
    Suggestion,
    Task,
    utcnow,
)
from terakoya.storage.queries import current_suggestion_ids, items_by_split, labelled_items
from terakoya.storage.web_models import Membership
from terakoya.workqueue import QueueCounts, queue_counts, remaining_for
from terakoya.workqueue.assignments import LEASED, OPEN_TASK_STATUSES

__all__ = [
    "COUNTER_HELP",
    "FUNNEL_STEPS",
    "Confusion",
    "Dashboard",
    "DayWork",
    "Disagreement",
    "Feedback",
    "FlagRow",
    "Funnel",
    "PeriodStats",
    "RunAccuracy",
    "TrainerRow",
    "TrainerStats",
    "Working",
    "dashboard_data",
    "trainer_feedback",
    "trainer_stats",
]

#: keys of StudentRun.metrics that may hold the number of items the student was trained on
TRAIN_ITEM_KEYS = ("train_items", "n_train", "train_size")
#: days shown in the chart of expert hours and cost
CHART_DAYS = 30
#: training runs shown in the chart of student and teacher accuracy
CHART_RUNS = 20

#: what each counter at the top of the dashboard counts, shown beside it (and listed in docs/web.md)
COUNTER_HELP: dict[str, str] = {
    "queued": "Tasks waiting for an expert. A task whose lease ran out counts here again.",
    "being_worked": "Tasks an expert holds right now: only leases that have not run out count.",
    "answered": "Tasks with every answer they ask for. Flagged tasks are counted apart.",
    "flagged": "Tasks an expert flagged as broken or unclear; not counted as answered.",
    "expert_answers": "Label and verify answers that stand (undone ones do not count; flags are not answers). "
    "The total of the Answers column.",
    "expert_time": "Active time on every answer and flag, undone ones included. The total of the Active time column.",
    "expert_cost": "What the pay rule gives for all work so far, simulated experts included. "
    "The total of the Cost column.",
    "terms": "Glossary terms experts proposed, waiting for a reviewer.",
}

#: the funnel's steps: (field of :class:`Funnel`, label, what it counts)
FUNNEL_STEPS: tuple[tuple[str, str, str], ...] = (
    ("imported", "imported", "Items in the project, pool and test split."),
    ("teacher_labeled", "teacher-labeled", "Items whose current teacher suggestion carries a label."),
    ("auto_accepted", "auto-accepted", "Pool items whose teacher label was taken without an expert."),
    ("routed", "routed to experts", "Items with at least one task for experts."),
    ("answered", "answered by experts", "Items with at least one expert answer that stands (flags are not answers)."),
    ("used_in_student", "used in the student", "Items the latest student was trained on."),
)


@dataclass(frozen=True)
class PeriodStats:
    #: paid items: answers that stand, and flags (see :mod:`terakoya.people.payouts`)
    items: int
    active_seconds: float
    earnings: float
    #: of ``items``, the flags
    flags: int = 0


@dataclass(frozen=True)
class TrainerStats:
    person_id: int
    today: PeriodStats
    week: PeriodStats
    total: PeriodStats
    remaining: int
    pay: PaySettings


@dataclass(frozen=True)
class Funnel:
    imported: int
    test_items: int
    teacher_labeled: int
    auto_accepted: int
    routed: int
    answered: int
    used_in_student: int | None  # None until a student reports how many items it learned from


@dataclass(frozen=True)
class Confusion:
    labels: list[str]
    matrix: list[list[int]]  # rows: teacher label, columns: expert label
    total: int
    agreement: float | None


@dataclass(frozen=True)
class Disagreement:
    item_id: int
    external_id: str
    text: str
    teacher_label: str | None
    teacher_confidence: float | None
    expert_label: str | None
    person_name: str
    rationale: str | None
    at: datetime


@dataclass(frozen=True)
class Feedback:
    """One of a trainer's answers that differs from the known answer (gold) or from the other experts."""

    item_id: int
    text: str
    your_label: str
    expected_label: str
    against: str  # "gold": the item's known answer | "experts": the majority of the item's answers
    at: datetime


@dataclass(frozen=True)
class FlagRow:
    item_id: int
    external_id: str
    text: str
    reason: str
    comment: str
    person_name: str
    at: datetime


@dataclass(frozen=True)
class TrainerRow:
    person_id: int
    name: str
    role: str | None
    #: expert answers that stand
    answers: int
    #: flags that stand
    flags: int
    active_seconds: float
    #: answers and flags per active hour
    items_per_hour: float | None
    cost: float
    gold_answered: int
    gold_correct: int
    gold_accuracy: float | None
    simulated: bool


@dataclass(frozen=True)
class Working:
    """Tasks being worked now: held under a lease that has not run out."""

    tasks: int
    people: int
    #: per task held, seconds from now until its last running lease runs out (the page counts down with them)
    ends_in_s: list[float]


@dataclass(frozen=True)
class RunAccuracy:
    """One training run: the student's and the teacher's accuracy on the same gold test items."""

    run_id: str
    kind: str
    at: datetime
    #: gold test items both the student of this run and the teacher (as it stood then) labelled
    items: int
    student_accuracy: float | None
    teacher_accuracy: float | None


@dataclass(frozen=True)
class DayWork:
    """Everyone's work on one UTC day, and what the pay rule gives for it."""

    day: date
    answers: int
    flags: int
    active_hours: float
    cost: float


@dataclass(frozen=True)
class Dashboard:
    funnel: Funnel
    confusion: Confusion
    disagreements: list[Disagreement]
    flags: list[FlagRow]
    trainers: list[TrainerRow]
    queue: QueueCounts
    working: Working
    pay: PaySettings
    #: the pay rule in one sentence
    rule: str
    total_cost: float
    #: totals of the trainers table: answers, flags and active seconds
    expert_answers: int
    expert_flags: int
    expert_seconds: float
    proposed_terms: int
    runs: list[RunAccuracy]
    days: list[DayWork]
    lease_minutes: float
    #: the teacher against the experts' blind (audit and gold) answers
    trust: TeacherTrust | None = None


def _period_starts(now: datetime, utc_offset_minutes: int) -> tuple[datetime, datetime]:
    """The start of today and of this week (Monday), in the person's time zone, as naive UTC."""
    offset = timedelta(minutes=max(-14 * 60, min(14 * 60, utc_offset_minutes)))
    local = now + offset
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    week = day - timedelta(days=day.weekday())
    return day - offset, week - offset


def trainer_stats(
    db: Database,
    project_id: int,
    settings: Settings,
    person_id: int,
    *,
    now: datetime | None = None,
    utc_offset_minutes: int = 0,
) -> TrainerStats:
    """This person's paid items, active time and earnings today, this week and in total.

    Items count answers and flags that stand (not undone); active time counts every answer, undone ones
    included, since the time was spent (:mod:`terakoya.people.payouts`). Days and weeks start at midnight in
    the person's time zone.
    """
    now = now or utcnow()
    day, week = _period_starts(now, utc_offset_minutes)
    pay = current_pay(db, project_id, settings)

    def stats(since: datetime | None) -> PeriodStats:
        work = work_by_person(db, project_id, since=since, person_id=person_id).get(person_id, Work())
        return PeriodStats(work.paid_items, work.active_seconds, earnings(pay, work), work.flags)

    return TrainerStats(person_id, stats(day), stats(week), stats(None), remaining_for(db, project_id, person_id), pay)


def _current_teacher(project_id: int) -> Any:
    """The ids (``sid``) of the project's current teacher suggestions (:func:`current_suggestion_ids`)."""
    return current_suggestion_ids(project_id, "teacher").subquery()


def _funnel(s: Any, project_id: int) -> Funnel:
    in_project = Item.project_id == project_id
    splits = items_by_split(s, project_id)
    imported, test_items = sum(splits.values()), splits.get("test", 0)
    teacher_labeled = labelled_items(s, project_id, "teacher")
    auto = s.scalar(
        select(func.count()).select_from(AutoAccept).join(Item, Item.id == AutoAccept.item_id).where(in_project)
    )
    routed = s.scalar(select(func.count(func.distinct(Task.item_id))).where(Task.project_id == project_id))
    answered = s.scalar(
        select(func.count(func.distinct(Answer.item_id)))
        .join(Item, Item.id == Answer.item_id)
        .where(in_project, live_expert_answer())
    )
    run = s.scalar(
        select(StudentRun).where(StudentRun.project_id == project_id).order_by(StudentRun.id.desc()).limit(1)
    )
    used = None
    if run is not None:
        for key in TRAIN_ITEM_KEYS:
            if isinstance(run.metrics.get(key), int | float):
                used = int(run.metrics[key])
                break
    return Funnel(
        int(imported), int(test_items), int(teacher_labeled), int(auto or 0), int(routed or 0), int(answered or 0), used
    )


def _confusion(s: Any, project_id: int, settings: Settings) -> Confusion:
    current = _current_teacher(project_id)
    rows = s.execute(
        select(Suggestion.label, Answer.label, func.count())
        .select_from(Answer)
        .join(Item, Item.id == Answer.item_id)
        .join(Suggestion, Suggestion.item_id == Answer.item_id)
        .join(current, current.c.sid == Suggestion.id)
        .where(Item.project_id == project_id, live_expert_answer())
        .group_by(Suggestion.label, Answer.label)
    ).all()
    labels = list(settings.label_names)
    for t, e, _ in rows:
        for name in (t, e):
            if name is not None and name not in labels:
                labels.append(name)
    index = {name: i for i, name in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    total = agree = 0
    for t, e, n in rows:
        if t is None or e is None:
            continue
        matrix[index[t]][index[e]] += int(n)
        total += int(n)
        agree += int(n) if t == e else 0
    return Confusion(labels, matrix, total, (agree / total) if total else None)


def _disagreements(s: Any, project_id: int, limit: int) -> list[Disagreement]:
    current = _current_teacher(project_id)
    rows = s.execute(
        select(Answer, Item, Suggestion, Person.name)
        .join(Item, Item.id == Answer.item_id)
        .join(Person, Person.id == Answer.person_id)
        .join(Suggestion, Suggestion.item_id == Answer.item_id)
        .join(current, current.c.sid == Suggestion.id)
        .where(Item.project_id == project_id, live_expert_answer(), Answer.label != Suggestion.label)
        .order_by(Answer.id.desc())
        .limit(limit)
    ).all()
    return [
        Disagreement(
            item.id,
            item.external_id,
            item.text,
            sug.label,
            sug.confidence,
            ans.label,
            name,
            ans.rationale,
            ans.created_at,
        )
        for ans, item, sug, name in rows
    ]


def trainer_feedback(db: Database, project_id: int, person_id: int, *, limit: int = 10) -> list[Feedback]:
    """The person's latest live answers that differ from the item's gold label, or — on items without gold that
    several people answered — from the majority of their answers (:func:`terakoya.quality.aggregate.majority`,
    the rule training uses). Newest first."""
    from terakoya.quality.aggregate import by_item, expert_answer_rows, majority

    with db.session() as s:
        mine = s.execute(
            select(Answer.id, Answer.label, Answer.created_at, Item.id, Item.text, Item.gold_label)
            .join(Item, Item.id == Answer.item_id)
            .where(Item.project_id == project_id, Answer.person_id == person_id, live_expert_answer())
            .order_by(Answer.id.desc())
            .limit(500)
        ).all()
        others = by_item(
            s.execute(expert_answer_rows().where(Answer.item_id.in_([row[3] for row in mine if row[5] is None])))
        )
    out: list[Feedback] = []
    for _answer_id, label, at, item_id, text, gold in mine:
        if label is None:
            continue
        if gold is not None:
            expected, against = gold, "gold"
        elif len(others.get(item_id, [])) >= 2:
            expected, against = majority(others[item_id]), "experts"
        else:
            continue
        if label != expected:
            out.append(Feedback(item_id, text, label, expected, against, at))
            if len(out) >= limit:
                break
    return out


def _flags(s: Any, project_id: int, limit: int) -> list[FlagRow]:
    rows = s.execute(
        select(Answer, Item, Person.name)
        .join(Item, Item.id == Answer.item_id)
        .join(Person, Person.id == Answer.person_id)
        .where(Item.project_id == project_id, Answer.kind == "flag", Answer.superseded.is_(False))
        .order_by(Answer.id.desc())
        .limit(limit)
    ).all()
    return [
        FlagRow(
            item.id,
            item.external_id,
            item.text,
            str(ans.value.get("reason", "")),
            str(ans.value.get("comment", "")),
            name,
            ans.created_at,
        )
        for ans, item, name in rows
    ]


def _trainers(db: Database, s: Any, project_id: int, pay: PaySettings) -> list[TrainerRow]:
    work = work_by_person(db, project_id)
    members = s.execute(
        select(Person.id, Person.name, Person.simulated, Membership.role)
        .outerjoin(Membership, (Membership.person_id == Person.id) & (Membership.project_id == project_id))
        .where(Person.id.in_(list(work)) | Membership.id.isnot(None))
    ).all()
    out = []
    for pid, name, simulated, role in members:
        w = work.get(pid, Work())
        done, hours = w.answers + w.flags, w.active_seconds / 3600.0
        out.append(
            TrainerRow(
                person_id=pid,
                name=name,
                role=role,
                answers=w.answers,
                flags=w.flags,
                active_seconds=w.active_seconds,
                items_per_hour=round(done / hours, 1) if hours > 0 else None,
                cost=earnings(pay, w),
                gold_answered=w.gold_answered,
                gold_correct=w.gold_correct,
                gold_accuracy=w.gold_accuracy,
                simulated=bool(simulated),
            )
        )
    return sorted(out, key=lambda r: (-(r.answers + r.flags), r.name))


def _working(s: Any, project_id: int, now: datetime) -> Working:
    """Open tasks held under a lease that has not run out: a lease that ran out stays ``leased`` on its
    assignment until someone takes the slot (:mod:`terakoya.workqueue.assignments`), but nobody is working it."""
    running = and_(
        Assignment.status == LEASED,
        or_(Assignment.lease_expires_at.is_(None), Assignment.lease_expires_at >= now),
    )
    rows = s.execute(
        select(Assignment.task_id, Assignment.person_id, Assignment.lease_expires_at)
        .join(Task, Task.id == Assignment.task_id)
        .where(Task.project_id == project_id, Task.status.in_(OPEN_TASK_STATUSES), running)
    ).all()
    ends: dict[int, float] = {}
    for task_id, _, until in rows:
        left = (until - now).total_seconds() if until is not None else float("inf")
        ends[task_id] = max(ends.get(task_id, 0.0), left)
    finite = sorted(round(v, 1) for v in ends.values() if v != float("inf"))
    return Working(len(ends), len({r[1] for r in rows}), finite)


def _runs(s: Any, project_id: int, limit: int) -> list[RunAccuracy]:
    """The newest ``limit`` training runs, oldest first, each with the student's and the teacher's accuracy on
    the gold test items both labelled; the teacher as it stood when the run was trained (its newest suggestion
    from before the run, by the current-suggestion rule)."""
    runs = s.scalars(
        select(StudentRun).where(StudentRun.project_id == project_id).order_by(StudentRun.id.desc()).limit(limit)
    ).all()
    out = []
    for run in reversed(runs):
        student_ids = current_suggestion_ids(project_id, "student", split="test", agent=run.run_id).subquery()
        teacher_ids = (
            current_suggestion_ids(project_id, "teacher", split="test")
            .where(Suggestion.created_at <= run.created_at)
            .subquery()
        )
        student, teacher = aliased(Suggestion), aliased(Suggestion)
        n, student_ok, teacher_ok = s.execute(
            select(
                func.count(),
                func.sum(case((student.label == Item.gold_label, 1), else_=0)),
                func.sum(case((teacher.label == Item.gold_label, 1), else_=0)),
            )
            .select_from(Item)
            .join(student, student.item_id == Item.id)
            .join(student_ids, student_ids.c.sid == student.id)
            .join(teacher, teacher.item_id == Item.id)
            .join(teacher_ids, teacher_ids.c.sid == teacher.id)
            .where(
                Item.project_id == project_id,
                Item.split == "test",
                Item.gold_label.is_not(None),
                student.label.is_not(None),
                teacher.label.is_not(None),
            )
        ).one()
        n = int(n or 0)
        out.append(
            RunAccuracy(
                run.run_id,
                run.kind,
                run.created_at,
                n,
                int(student_ok or 0) / n if n else None,
                int(teacher_ok or 0) / n if n else None,
            )
        )
    return out


def _days(db: Database, project_id: int, pay: PaySettings, today: date, days: int) -> list[DayWork]:
    return [
        DayWork(day, w.answers, w.flags, round(w.active_seconds / 3600.0, 2), earnings(pay, w))
        for day, w in work_by_day(db, project_id, start=today - timedelta(days=days - 1), end=today)
    ]


def dashboard_data(
    db: Database, project_id: int, settings: Settings, *, now: datetime | None = None, recent: int = 20
) -> Dashboard:
    """Everything the owner's dashboard shows, in one call."""
    from terakoya.storage.models import GlossaryTerm

    now = now or utcnow()
    pay = current_pay(db, project_id, settings)
    with db.session() as s:
        funnel = _funnel(s, project_id)
        confusion = _confusion(s, project_id, settings)
        disagreements = _disagreements(s, project_id, recent)
        flags = _flags(s, project_id, recent)
        trainers = _trainers(db, s, project_id, pay)
        working = _working(s, project_id, now)
        runs = _runs(s, project_id, CHART_RUNS)
        proposed = s.scalar(
            select(func.count())
            .select_from(GlossaryTerm)
            .where(GlossaryTerm.project_id == project_id, GlossaryTerm.status == "proposed")
        )
    return Dashboard(
        funnel=funnel,
        confusion=confusion,
        disagreements=disagreements,
        flags=flags,
        trainers=trainers,
        queue=queue_counts(db, project_id, now=now),
        working=working,
        pay=pay,
        rule=rule_text(pay),
        total_cost=round(sum(t.cost for t in trainers), 2),
        expert_answers=sum(t.answers for t in trainers),
        expert_flags=sum(t.flags for t in trainers),
        expert_seconds=round(sum(t.active_seconds for t in trainers), 1),
        proposed_terms=int(proposed or 0),
        runs=runs,
        days=_days(db, project_id, pay, now.date(), CHART_DAYS),
        lease_minutes=settings.routing.lease_minutes,
        trust=measure_trust(db, project_id, settings) if len(settings.label_names) >= 2 else None,
    )
