"""Paying people: the one pay rule, what each person's work adds up to, and payout statements.

The pay rule, used alike by the owner's dashboard, each trainer's own pages and the payout statements:

- ``per_item`` pay: ``pay.per_item`` for each *paid item*: an expert answer (``label`` or ``verify``) that stands
  (:func:`terakoya.quality.aggregate.live_expert_answer`: not undone by its author), and a standing flag while
  :data:`FLAGS_PAID_AS_ITEMS` says so (a flag is work: the item was read and found unanswerable);
- ``per_hour`` pay: ``pay.per_hour`` for each hour of active time on every answer and flag, undone ones included
  (the time was spent), as measured per answer (``answers.active_seconds``, see :mod:`terakoya.workqueue`).

Amounts use the pay in force (:func:`terakoya.people.accounts.current_pay`). Periods are whole days in UTC,
both ends included. Simulated experts are not people to pay: statements leave them out.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Date, and_, case, func, select

from terakoya.errors import DataError
from terakoya.people.accounts import current_pay
from terakoya.quality.aggregate import EXPERT_KINDS, live_expert_answer
from terakoya.settings import PaySettings, Settings
from terakoya.storage.db import Database
from terakoya.storage.models import Answer, Item, Person, utcnow
from terakoya.storage.web_models import PayRate

__all__ = [
    "CSV_COLUMNS",
    "FLAGS_PAID_AS_ITEMS",
    "WORK_KINDS",
    "PayoutLine",
    "PayoutStatement",
    "Work",
    "csv_cell",
    "earnings",
    "parse_day",
    "payout_statement",
    "period",
    "rule_text",
    "statement_csv",
    "work_by_day",
    "work_by_person",
]

FLAG = "flag"
#: answer kinds that are paid work: their time counts under per-hour pay
WORK_KINDS = (*EXPERT_KINDS, FLAG)
#: whether a standing flag counts as a paid item under per-item pay (it always counts its time per hour)
FLAGS_PAID_AS_ITEMS = True


@dataclass(frozen=True)
class Work:
    """What one person (or one day) adds up to, under the pay rule."""

    #: expert answers that stand (not undone)
    answers: int = 0
    #: flags that stand
    flags: int = 0
    #: active time on every answer and flag, undone ones included
    active_seconds: float = 0.0
    #: standing expert answers on gold items (test split, with a gold label), and how many match the gold label
    gold_answered: int = 0
    gold_correct: int = 0

    @property
    def paid_items(self) -> int:
        """What per-item pay counts: the answers, and the flags while :data:`FLAGS_PAID_AS_ITEMS`."""
        return self.answers + (self.flags if FLAGS_PAID_AS_ITEMS else 0)

    @property
    def gold_accuracy(self) -> float | None:
        return self.gold_correct / self.gold_answered if self.gold_answered else None


def earnings(pay: PaySettings, work: Work) -> float:
    """The pay rule: what ``work`` earns under ``pay``, rounded to cents."""
    if pay.mode == "per_hour":
        return round(work.active_seconds / 3600.0 * pay.per_hour, 2)
    return round(work.paid_items * pay.per_item, 2)


def rule_text(pay: PaySettings) -> str:
    """The pay rule in one sentence, as statements, the dashboard and the pay form show it."""
    if pay.mode == "per_hour":
        return (
            f"{pay.per_hour:,.2f} {pay.currency} per active hour: the time spent on every answer and flag, "
            "undone ones included"
        )
    flags = "and each flag" if FLAGS_PAID_AS_ITEMS else "(flags are not paid as items)"
    return (
        f"{pay.per_item:,.2f} {pay.currency} per paid item: each expert answer that stands {flags}; "
        "undone answers are not paid"
    )


# ----------------------------------------------------------------------------- adding work up


def _standing_flag() -> ColumnElement[bool]:
    return and_(Answer.kind == FLAG, Answer.superseded.is_(False))


def _tally_columns() -> list[Any]:
    """answers, flags, active seconds, gold answered, gold correct: the columns of :class:`Work`."""
    live = live_expert_answer()
    gold = and_(live, Item.split == "test", Item.gold_label.is_not(None))
    return [
        func.sum(case((live, 1), else_=0)),
        func.sum(case((_standing_flag(), 1), else_=0)),
        func.sum(func.coalesce(Answer.active_seconds, 0.0)),
        func.sum(case((gold, 1), else_=0)),
        func.sum(case((and_(gold, Answer.label == Item.gold_label), 1), else_=0)),
    ]


def _work(row: Any) -> Work:
    answers, flags, seconds, gold_n, gold_ok = row
    return Work(
        int(answers or 0), int(flags or 0), round(float(seconds or 0.0), 1), int(gold_n or 0), int(gold_ok or 0)
    )


def _since_until(start: date | None, end: date | None) -> list[ColumnElement[bool]]:
    """Conditions on ``answers.created_at`` for whole UTC days from ``start`` to ``end``, both included.

    An ``end`` of 9999-12-31 (:data:`datetime.date.max`) has no day after it: it bounds nothing (its next day
    used to overflow, a 500 for ``GET /api/v1/payouts?end=9999-12-31``)."""
    where = []
    if start is not None:
        where.append(Answer.created_at >= datetime.combine(start, time.min))
    if end is not None and end < date.max:
        where.append(Answer.created_at < datetime.combine(end + timedelta(days=1), time.min))
    return where


def _in_project(project_id: int) -> list[ColumnElement[bool]]:
    return [Item.project_id == project_id, Answer.kind.in_(WORK_KINDS)]


def work_by_person(
    db: Database,
    project_id: int,
    *,
    start: date | None = None,
    end: date | None = None,
    since: datetime | None = None,
    person_id: int | None = None,
) -> dict[int, Work]:
    """person id -> their work in the project: in whole UTC days ``start``..``end`` (both included), from the
    moment ``since`` on, or in all (None); only ``person_id``'s when given."""
    where = [*_in_project(project_id), *_since_until(start, end)]
    if since is not None:
        where.append(Answer.created_at >= since)
    if person_id is not None:
        where.append(Answer.person_id == person_id)
    with db.session() as s:
        rows = s.execute(
            select(Answer.person_id, *_tally_columns())
            .join(Item, Item.id == Answer.item_id)
            .where(*where)
            .group_by(Answer.person_id)
        ).all()
    return {int(row[0]): _work(row[1:]) for row in rows}


def work_by_day(db: Database, project_id: int, *, start: date, end: date) -> list[tuple[date, Work]]:
    """Every UTC day from ``start`` to ``end`` (both included) and the work of everyone on it (zero on days
    without any), oldest first."""
    day = func.date(Answer.created_at, type_=Date)
    with db.session() as s:
        rows = s.execute(
            select(day, *_tally_columns())
            .join(Item, Item.id == Answer.item_id)
            .where(*_in_project(project_id), *_since_until(start, end))
            .group_by(day)
        ).all()
    found = {_as_date(row[0]): _work(row[1:]) for row in rows}
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    return [(d, found.get(d, Work())) for d in days]


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


# ----------------------------------------------------------------------------- statements


@dataclass(frozen=True)
class PayoutLine:
    person_id: int
    name: str
    email: str | None
    answers: int
    flags: int
    paid_items: int
    active_seconds: float
    active_hours: float
    gold_answered: int
    gold_correct: int
    gold_accuracy: float | None
    amount: float
    currency: str


@dataclass(frozen=True)
class PayoutStatement:
    """What each person earned in a period (UTC days ``start``..``end``, both included), by one rule."""

    start: date
    end: date
    pay: PaySettings
    rule: str
    lines: list[PayoutLine]
    total: float
    currency: str
    #: simulated experts with work in the period: not people, not paid, not listed
    simulated_left_out: int
    #: when the pay was changed since the period began: the amounts use the pay in force now
    pay_changed_at: list[datetime]


def parse_day(text: str | None, what: str) -> date | None:
    """A day written YYYY-MM-DD (as a date field sends it); None when blank."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise DataError(
            f"the {what} date {text[:40]!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-11-30"
        ) from None


def period(start: date | None, end: date | None, *, today: date | None = None) -> tuple[date, date]:
    """The period asked for; by default from the first of this month to today (UTC)."""
    today = today or utcnow().date()
    end = end or today
    start = start or end.replace(day=1)
    if start > end:
        raise DataError(
            f"the period starts on {start.isoformat()}, after it ends on {end.isoformat()}; "
            "pick an end on or after the start"
        )
    return start, end


def payout_statement(
    db: Database,
    project_id: int,
    settings: Settings,
    *,
    start: date | None = None,
    end: date | None = None,
    today: date | None = None,
) -> PayoutStatement:
    """Each person's answers, flags, active hours, gold accuracy and amount in the period, by the pay in force."""
    start, end = period(start, end, today=today)
    pay = current_pay(db, project_id, settings)
    work = work_by_person(db, project_id, start=start, end=end)
    with db.session() as s:
        who = select(Person.id, Person.name, Person.email, Person.simulated).where(Person.id.in_(list(work)))
        people = s.execute(who).all() if work else []
        changed = s.scalars(
            select(PayRate.created_at)
            .where(PayRate.project_id == project_id, PayRate.created_at >= datetime.combine(start, time.min))
            .order_by(PayRate.id)
        ).all()
    lines = []
    for pid, name, email, simulated in people:
        if simulated:
            continue
        w = work[pid]
        lines.append(
            PayoutLine(
                person_id=pid,
                name=name,
                email=email,
                answers=w.answers,
                flags=w.flags,
                paid_items=w.paid_items,
                active_seconds=w.active_seconds,
                active_hours=round(w.active_seconds / 3600.0, 2),
                gold_answered=w.gold_answered,
                gold_correct=w.gold_correct,
                gold_accuracy=w.gold_accuracy,
                amount=earnings(pay, w),
                currency=pay.currency,
            )
        )
    lines.sort(key=lambda line: (line.name.lower(), line.person_id))
    return PayoutStatement(
        start=start,
        end=end,
        pay=pay,
        rule=rule_text(pay),
        lines=lines,
        total=round(sum(line.amount for line in lines), 2),
        currency=pay.currency,
        simulated_left_out=sum(1 for *_, simulated in people if simulated),
        pay_changed_at=list(changed),
    )


# ----------------------------------------------------------------------------- CSV

#: the columns of :func:`statement_csv`, in order
CSV_COLUMNS = (
    "person_id", "name", "email", "start", "end", "answers", "flags", "paid_items", "active_hours",
    "gold_answered", "gold_correct", "gold_accuracy", "amount", "currency", "rule",
)  # fmt: skip
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """One cell as text; text that a spreadsheet would run as a formula (it starts with = + - @, a tab or a
    carriage return) is kept as text by a leading apostrophe: names and emails are typed by the people paid."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def statement_csv(statement: PayoutStatement) -> str:
    """The statement as CSV: a header row (:data:`CSV_COLUMNS`), then one row per person."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for line in statement.lines:
        accuracy = "" if line.gold_accuracy is None else f"{line.gold_accuracy:.4f}"
        row: list[object] = [
            line.person_id, line.name, line.email, statement.start.isoformat(), statement.end.isoformat(),
            line.answers, line.flags, line.paid_items, f"{line.active_hours:.2f}", line.gold_answered,
            line.gold_correct, accuracy, f"{line.amount:.2f}", line.currency, statement.rule,
        ]  # fmt: skip
        writer.writerow([csv_cell(v) for v in row])
    return out.getvalue()
