"""What the owner watches and what each trainer sees of their own work.

- :func:`dashboard_data`: the funnel (imported -> teacher-labeled -> auto-accepted / routed -> answered ->
  used in the student), the teacher-vs-expert confusion matrix, recent disagreements and flags, and a table
  of trainers (items, active time, items per hour, cost, accuracy on gold items).
- :func:`trainer_stats`: one person's items, active time and earnings today, this week and in total.

Gold items are test-split items with a ``gold_label``; a trainer's gold accuracy is over those they answered.
Earnings follow the pay in force (:func:`terakoya.people.accounts.current_pay`): per answered item, or per active hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select

from terakoya.people.accounts import current_pay
from terakoya.quality.aggregate import live_expert_answer
from terakoya.routing.trust import TeacherTrust, measure_trust
from terakoya.settings import PaySettings, Settings
from terakoya.storage.db import Database
from terakoya.storage.models import Answer, AutoAccept, Item, Person, StudentRun, Suggestion, Task, utcnow
from terakoya.storage.queries import current_suggestion_ids, items_by_split, labelled_items
from terakoya.storage.web_models import Membership
from terakoya.workqueue import QueueCounts, queue_counts, remaining_for

__all__ = [
    "Confusion",
    "Dashboard",
    "Disagreement",
    "FlagRow",
    "Funnel",
    "PeriodStats",
    "TrainerRow",
    "TrainerStats",
    "dashboard_data",
    "earnings",
    "trainer_stats",
]

_WORK_KINDS = ("label", "verify", "flag")
#: keys of StudentRun.metrics that may hold the number of items the student was trained on
TRAIN_ITEM_KEYS = ("train_items", "n_train", "train_size")


@dataclass(frozen=True)
class PeriodStats:
    items: int
    active_seconds: float
    earnings: float


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
    items: int
    active_seconds: float
    items_per_hour: float | None
    cost: float
    gold_answered: int
    gold_correct: int
    gold_accuracy: float | None
    simulated: bool


@dataclass(frozen=True)
class Dashboard:
    funnel: Funnel
    confusion: Confusion
    disagreements: list[Disagreement]
    flags: list[FlagRow]
    trainers: list[TrainerRow]
    queue: QueueCounts
    pay: PaySettings
    total_cost: float
    proposed_terms: int
    #: the teacher against the experts' blind (audit and gold) answers
    trust: TeacherTrust | None = None


def earnings(pay: PaySettings, items: int, active_seconds: float) -> float:
    if pay.mode == "per_hour":
        return round(active_seconds / 3600.0 * pay.per_hour, 2)
    return round(items * pay.per_item, 2)


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
    """This person's answered items, active time and earnings today, this week and in total.

    Items count answers that stand (not undone); active time counts every answer, undone ones included,
    since the time was spent. Days and weeks start at midnight in the person's time zone.
    """
    now = now or utcnow()
    day, week = _period_starts(now, utc_offset_minutes)
    pay = current_pay(db, project_id, settings)
    standing = Answer.superseded.is_(False)
    seconds = func.coalesce(Answer.active_seconds, 0.0)

    def period(since: datetime | None) -> tuple[Any, Any]:
        inside = standing if since is None else and_(standing, Answer.created_at >= since)
        spent = seconds if since is None else case((Answer.created_at >= since, seconds), else_=0.0)
        return func.sum(case((inside, 1), else_=0)), func.sum(spent)

    columns = [*period(day), *period(week), *period(None)]
    with db.session() as s:
        row = s.execute(
            select(*columns)
            .join(Item, Item.id == Answer.item_id)
            .where(Answer.person_id == person_id, Item.project_id == project_id, Answer.kind.in_(_WORK_KINDS))
        ).one()
    values = [float(v or 0) for v in row]

    def stats(i: int) -> PeriodStats:
        items, secs = int(values[i]), round(values[i + 1], 1)
        return PeriodStats(items, secs, earnings(pay, items, secs))

    return TrainerStats(person_id, stats(0), stats(2), stats(4), remaining_for(db, project_id, person_id), pay)


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


def _trainers(s: Any, project_id: int, pay: PaySettings) -> list[TrainerRow]:
    standing = Answer.superseded.is_(False)
    work = s.execute(
        select(
            Answer.person_id,
            func.sum(case((standing, 1), else_=0)),
            func.sum(func.coalesce(Answer.active_seconds, 0.0)),
        )
        .join(Item, Item.id == Answer.item_id)
        .where(Item.project_id == project_id, Answer.kind.in_(_WORK_KINDS))
        .group_by(Answer.person_id)
    ).all()
    gold = s.execute(
        select(Answer.person_id, func.count(), func.sum(case((Answer.label == Item.gold_label, 1), else_=0)))
        .join(Item, Item.id == Answer.item_id)
        .where(
            Item.project_id == project_id,
            Item.split == "test",
            Item.gold_label.isnot(None),
            live_expert_answer(),
        )
        .group_by(Answer.person_id)
    ).all()
    members = s.execute(
        select(Person.id, Person.name, Person.simulated, Membership.role)
        .outerjoin(Membership, (Membership.person_id == Person.id) & (Membership.project_id == project_id))
        .where(Person.id.in_([r[0] for r in work]) | Membership.id.isnot(None))
    ).all()
    by_work = {pid: (int(n or 0), float(sec or 0.0)) for pid, n, sec in work}
    by_gold = {pid: (int(n or 0), int(ok or 0)) for pid, n, ok in gold}
    out = []
    for pid, name, simulated, role in members:
        items, secs = by_work.get(pid, (0, 0.0))
        g_n, g_ok = by_gold.get(pid, (0, 0))
        out.append(
            TrainerRow(
                pid,
                name,
                role,
                items,
                round(secs, 1),
                round(items / (secs / 3600.0), 1) if secs > 0 else None,
                earnings(pay, items, secs),
                g_n,
                g_ok,
                (g_ok / g_n) if g_n else None,
                bool(simulated),
            )
        )
    return sorted(out, key=lambda r: (-r.items, r.name))


def dashboard_data(
    db: Database, project_id: int, settings: Settings, *, now: datetime | None = None, recent: int = 20
) -> Dashboard:
    """Everything the owner's dashboard shows, in one call."""
    from terakoya.storage.models import GlossaryTerm

    pay = current_pay(db, project_id, settings)
    with db.session() as s:
        funnel = _funnel(s, project_id)
        confusion = _confusion(s, project_id, settings)
        disagreements = _disagreements(s, project_id, recent)
        flags = _flags(s, project_id, recent)
        trainers = _trainers(s, project_id, pay)
        proposed = s.scalar(
            select(func.count())
            .select_from(GlossaryTerm)
            .where(GlossaryTerm.project_id == project_id, GlossaryTerm.status == "proposed")
        )
    return Dashboard(
        funnel,
        confusion,
        disagreements,
        flags,
        trainers,
        queue_counts(db, project_id, now=now),
        pay,
        round(sum(t.cost for t in trainers), 2),
        int(proposed or 0),
        measure_trust(db, project_id, settings) if len(settings.label_names) >= 2 else None,
    )
