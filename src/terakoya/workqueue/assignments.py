"""Assignments: a task takes ``answers_wanted`` answers (k), each from a different person.

An assignment is one person's part in one task, one row per task and person (never two):

- ``leased``: the person holds a slot until ``lease_expires_at``. A lease that ran out stays theirs until
  someone else takes a slot of that task (it then becomes ``expired``), so a late answer still counts when
  nobody took over;
- ``answered`` / ``flagged``: the person answered (``answer_id``; a flag is an answer too); the slot is filled;
- ``skipped``: the person gave the task back and is not offered it again;
- ``expired``: the person's lease ran out and someone else took a slot; the same row may be leased to the
  person again later.

Slots: answered, flagged and leased assignments together never outnumber ``answers_wanted``. A person may take
a slot while the answered, flagged and still running leases of others are fewer; leases of others that ran out
are expired, oldest first, as far as the new one needs their slot.

``Task.status`` is the task-level summary that routing, the dashboard and exports read, set by :func:`settle`
in the same transaction as each assignment change: ``answered`` (``flagged`` when one of the answers is a flag)
once k assignments are answered; ``leased`` while answers and leases fill every slot, with ``leased_to`` and
``lease_expires_at`` naming the lease that runs out first (when the task is free again); ``queued`` otherwise.

Each change runs in one transaction that starts with :func:`lock_task`, a conditional ``UPDATE`` of the task
row: on PostgreSQL it locks the row, so that requests for one task take turns and each reads what the one
before wrote; on SQLite it takes the file's write lock before anything is read, so what a change reads is
still true when it writes, even with several processes on one file. The functions below that change
assignments expect that lock to be held.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Row, Select, insert, select, update
from sqlalchemy.orm import Session

from terakoya.storage.models import Answer, Assignment, Task

__all__ = [
    "ANSWERED",
    "DONE",
    "EXPIRED",
    "FLAGGED",
    "LEASED",
    "OPEN_TASK_STATUSES",
    "SKIPPED",
    "STATES",
    "TASK_STATUSES",
    "finish",
    "give_back",
    "held_tasks",
    "holds",
    "lock_task",
    "not_offered",
    "record_outside_queue",
    "reopen",
    "settle",
    "state_of",
    "summary",
    "take",
]

LEASED = "leased"
ANSWERED = "answered"
FLAGGED = "flagged"
SKIPPED = "skipped"
EXPIRED = "expired"
#: the states of an assignment
STATES = (LEASED, ANSWERED, FLAGGED, SKIPPED, EXPIRED)
#: assignments whose answer fills a slot
DONE = (ANSWERED, FLAGGED)
#: task states in which the task still takes answers
OPEN_TASK_STATUSES = ("queued", "leased")
#: the task states :func:`settle` derives (a task in any other state is left as it is)
TASK_STATUSES = ("queued", "leased", "answered", "flagged")


def _core(s: Session) -> Connection:
    """The session's connection: the rules below are plain reads and conditional writes, run as Core
    statements (through the ORM each cost more in bookkeeping than the statement itself on SQLite)."""
    return s.connection()


def _rowcount(result: Any) -> int:
    return int(result.rowcount or 0)


def lock_task(
    s: Session, task_id: int, *, project_id: int | None = None, statuses: Collection[str] = OPEN_TASK_STATUSES
) -> bool:
    """Lock the task row for this transaction; False when it does not exist (in this project) or is not open."""
    where = [Task.id == task_id, Task.status.in_(tuple(statuses))]
    if project_id is not None:
        where.append(Task.project_id == project_id)
    locked = (
        _core(s).execute(update(Task).where(*where).values(status=Task.status).returning(Task.answers_wanted)).first()
    )
    if locked is None:
        return False
    if set(statuses) <= set(TASK_STATUSES):  # what the lock read stays true in this transaction
        s.info.setdefault(_LOCKED, {})[task_id] = int(locked[0])
    return True


_LOCKED = "terakoya.locked_tasks"


def _wanted(s: Session, task_id: int) -> int | None:
    """The task's ``answers_wanted``: known from its lock in this transaction, else read."""
    known: dict[int, int] = s.info.get(_LOCKED, {})
    if task_id in known:
        return known[task_id]
    value = _core(s).scalar(select(Task.answers_wanted).where(Task.id == task_id))
    return None if value is None else int(value)


#: an assignment as the rules read it: id, person_id, status, lease_expires_at
_Row = Row[int, int, str, datetime | None]


class _Slot(NamedTuple):
    """An assignment as a change leaves it, so that the task's summary needs no second read."""

    id: int
    person_id: int
    status: str
    lease_expires_at: datetime | None


def _rows(s: Session, task_id: int) -> Sequence[_Row]:
    return (
        _core(s)
        .execute(
            select(Assignment.id, Assignment.person_id, Assignment.status, Assignment.lease_expires_at)
            .where(Assignment.task_id == task_id)
            .order_by(Assignment.id)
        )
        .all()
    )


def _set(s: Session, assignment_id: int, **values: Any) -> None:
    _core(s).execute(update(Assignment).where(Assignment.id == assignment_id).values(**values))


def _runs_out(row: _Row | _Slot) -> datetime:
    return row.lease_expires_at if row.lease_expires_at is not None else datetime.max


def summary(wanted: int, rows: Sequence[_Row | _Slot]) -> tuple[str, int | None, datetime | None]:
    """(status, leased_to, lease_expires_at) of a task that takes ``wanted`` answers, from its assignments."""
    done = [r for r in rows if r.status in DONE]
    leases = sorted((r for r in rows if r.status == LEASED), key=_runs_out)
    if len(done) >= wanted:
        return (FLAGGED if any(r.status == FLAGGED for r in done) else ANSWERED), None, None
    if leases and len(done) + len(leases) >= wanted:
        return LEASED, leases[0].person_id, leases[0].lease_expires_at
    return "queued", None, None


def settle(s: Session, task_id: int) -> str:
    """Set the task's summary from its assignments (see the module docstring); the task's status."""
    known: dict[int, int] = s.info.get(_LOCKED, {})
    if task_id in known:  # locked in one of the states settle derives
        return _write_summary(s, task_id, known[task_id], _rows(s, task_id))
    task = _core(s).execute(select(Task.status, Task.answers_wanted).where(Task.id == task_id)).one()
    if task.status not in TASK_STATUSES:
        return str(task.status)
    return _write_summary(s, task_id, task.answers_wanted, _rows(s, task_id))


def _write_summary(s: Session, task_id: int, wanted: int, rows: Sequence[_Row | _Slot]) -> str:
    status, leased_to, until = summary(wanted, rows)
    _core(s).execute(
        update(Task).where(Task.id == task_id).values(status=status, leased_to=leased_to, lease_expires_at=until)
    )
    return status


def _running(row: _Row | _Slot, now: datetime) -> bool:
    return row.lease_expires_at is None or row.lease_expires_at >= now


def _make_room(
    s: Session, others: Sequence[_Row], wanted: int, now: datetime, *, evictable: Callable[[_Row], bool]
) -> set[int] | None:
    """Free one slot for a newcomer: the ids of the leases of ``others`` expired for it (soonest-ending first,
    only ``evictable`` ones, only as many as needed); None when their answers and the leases that may not be
    expired already fill every slot."""
    done = sum(1 for r in others if r.status in DONE)
    leases = sorted((r for r in others if r.status == LEASED), key=_runs_out)
    candidates = [r for r in leases if evictable(r)]
    if done + len(leases) - len(candidates) >= wanted:
        return None
    expired = {row.id for row in candidates[: max(0, done + len(leases) + 1 - wanted)]}
    for row_id in expired:
        _set(s, row_id, status=EXPIRED, updated_at=now)
    return expired


def _put(s: Session, task_id: int, person_id: int, mine: _Row | None, now: datetime, **values: Any) -> None:
    """The person's assignment on the task, created or updated with ``values``."""
    if mine is None:
        _core(s).execute(
            insert(Assignment).values(task_id=task_id, person_id=person_id, created_at=now, updated_at=now, **values)
        )
    else:
        _set(s, mine.id, updated_at=now, **values)


def take(s: Session, task_id: int, person_id: int, now: datetime, until: datetime) -> bool:
    """Lease a slot of the (locked) task to this person until ``until``, or renew the lease they hold.

    False when the person answered or skipped the task, or when no slot is free.
    """
    wanted = _wanted(s, task_id)
    if wanted is None:
        return False
    rows = _rows(s, task_id)
    mine = next((r for r in rows if r.person_id == person_id), None)
    if mine is not None and mine.status not in (LEASED, EXPIRED):
        return False
    expired: set[int] = set()
    if mine is None or mine.status == EXPIRED:
        others = [r for r in rows if r.person_id != person_id]
        ran_out = _make_room(s, others, wanted, now, evictable=lambda r: not _running(r, now))
        if ran_out is None:
            settle(s, task_id)  # the summary said there was room: bring it up to date
            return False
        expired = ran_out
    _put(s, task_id, person_id, mine, now, status=LEASED, lease_expires_at=until, answer_id=None)
    # the task was locked open: its summary follows from the rows as changed here, without reading them again
    after = [
        _Slot(r.id, r.person_id, EXPIRED if r.id in expired else r.status, r.lease_expires_at)
        for r in rows
        if mine is None or r.id != mine.id
    ]
    after.append(_Slot(0 if mine is None else mine.id, person_id, LEASED, until))
    _write_summary(s, task_id, wanted, after)
    return True


def holds(s: Session, task_id: int, person_id: int) -> bool:
    """Whether the person holds a lease on the task (one that ran out counts while nobody took its slot)."""
    return state_of(s, task_id, person_id) == LEASED


def state_of(s: Session, task_id: int, person_id: int) -> str | None:
    """The state of the person's assignment on the task; None when they have none."""
    return _core(s).scalar(
        select(Assignment.status).where(Assignment.task_id == task_id, Assignment.person_id == person_id)
    )


def finish(s: Session, task_id: int, person_id: int, answer_id: int, *, flag: bool, now: datetime) -> bool:
    """The person's lease on the (locked) task becomes their answer; False when they hold no lease on it."""
    done = _core(s).execute(
        update(Assignment)
        .where(Assignment.task_id == task_id, Assignment.person_id == person_id, Assignment.status == LEASED)
        .values(status=FLAGGED if flag else ANSWERED, answer_id=answer_id, lease_expires_at=None, updated_at=now)
    )
    if _rowcount(done) != 1:
        return False
    if s.info.get(_LOCKED, {}).get(task_id) == 1:  # one answer wanted, and this is it: no need to read the rows
        _write_summary(s, task_id, 1, [_Slot(0, person_id, FLAGGED if flag else ANSWERED, None)])
        return True
    settle(s, task_id)
    return True


def ask_one_more(s: Session, task_id: int, cap: int, teacher_label: str | None = None) -> bool:
    """Adaptive overlap: when every answer the (locked) task wanted is in and they disagree with each other, or
    all disagree with ``teacher_label``, it takes one more, from another person, up to ``cap`` answers in all;
    True when it was reopened. A flag stops it (the item goes to the owner instead)."""
    wanted = _wanted(s, task_id)
    if wanted is None or wanted >= cap:
        return False
    rows = [r for r in _rows(s, task_id) if r.status in DONE]
    if len(rows) < wanted or any(r.status == FLAGGED for r in rows):
        return False
    ids = select(Assignment.answer_id).where(Assignment.task_id == task_id, Assignment.status == ANSWERED)
    labels = set(_core(s).scalars(select(Answer.label).where(Answer.id.in_(ids))).all())
    if len(labels) < 2 and (teacher_label is None or teacher_label in labels):
        return False
    _core(s).execute(update(Task).where(Task.id == task_id).values(answers_wanted=wanted + 1))
    s.info.setdefault(_LOCKED, {})[task_id] = wanted + 1
    settle(s, task_id)
    return True


def record_outside_queue(s: Session, task_id: int, person_id: int, answer_id: int, now: datetime) -> bool:
    """An answer given outside the queue (an answer file, a simulation) fills the person's slot of the task.

    The person's own lease becomes the answer; otherwise they take a free slot, and where leases of others
    fill every slot, the one that runs out first expires: the answer is in, that lease's work is not. False
    (the answer is kept, the task unchanged) when the person already answered or skipped the task, or when
    the answers of others fill every slot. The caller holds the task's lock (:func:`lock_task`).
    """
    if finish(s, task_id, person_id, answer_id, flag=False, now=now):
        return True
    wanted = _wanted(s, task_id) or 1
    rows = _rows(s, task_id)
    mine = next((r for r in rows if r.person_id == person_id), None)
    if mine is not None and mine.status != EXPIRED:
        return False
    others = [r for r in rows if r.person_id != person_id]
    if _make_room(s, others, wanted, now, evictable=lambda r: True) is None:
        return False
    _put(s, task_id, person_id, mine, now, status=ANSWERED, lease_expires_at=None, answer_id=answer_id)
    settle(s, task_id)
    return True


def _end_lease(s: Session, task_id: int, person_id: int, now: datetime, status: str) -> bool:
    """End the person's lease on the (locked) task with ``status`` and settle the task; False: they hold none."""
    ended = _core(s).execute(
        update(Assignment)
        .where(Assignment.task_id == task_id, Assignment.person_id == person_id, Assignment.status == LEASED)
        .values(status=status, lease_expires_at=None, updated_at=now)
    )
    if _rowcount(ended) != 1:
        return False
    settle(s, task_id)
    return True


def give_back(s: Session, task_id: int, person_id: int, now: datetime) -> bool:
    """The person skips the (locked) task: their lease frees its slot; False when they hold no lease on it."""
    return _end_lease(s, task_id, person_id, now, SKIPPED)


def release(s: Session, task_id: int, person_id: int, now: datetime) -> bool:
    """The person leaves the (locked) task unanswered (they left the page): their lease ends now, as if it had
    run out, and they may be offered the task again. False when they hold no lease on it."""
    return _end_lease(s, task_id, person_id, now, EXPIRED)


def reopen(s: Session, task_id: int, person_id: int, answer_id: int, now: datetime, until: datetime) -> bool:
    """An undone answer: the (locked) task is leased back to its author, in the slot the answer filled.

    An answer that filled no slot (recorded from a file, or before assignments existed) is given back only
    where a slot is free; one whose slot the other answers fill anyway (a task answered more often than it
    takes, from before assignments) is not given back and its assignment expires. False when the task is not
    given back.
    """
    row = _core(s).scalar(
        select(Assignment.id).where(
            Assignment.task_id == task_id, Assignment.answer_id == answer_id, Assignment.status.in_(DONE)
        )
    )
    if row is None:
        return take(s, task_id, person_id, now, until)
    _set(s, row, status=LEASED, answer_id=None, lease_expires_at=until, updated_at=now)
    if settle(s, task_id) in OPEN_TASK_STATUSES:
        return True
    _set(s, row, status=EXPIRED, lease_expires_at=None)
    settle(s, task_id)
    return False


def held_tasks(project_id: int, person_id: int) -> Select[int, int, int]:
    """The open tasks of the project on which the person holds a lease (id, item_id, priority), in queue order."""
    return (
        select(Task.id, Task.item_id, Task.priority)
        .join(Assignment, Assignment.task_id == Task.id)
        .where(
            Assignment.person_id == person_id,
            Assignment.status == LEASED,
            Task.project_id == project_id,
            Task.status.in_(OPEN_TASK_STATUSES),
        )
        .order_by(Task.priority, Task.id)
    )


def not_offered(person_id: int, states: Collection[str] = (LEASED, *DONE, SKIPPED)) -> Select[int]:
    """Ids of the tasks a person is not to be offered afresh: they hold, answered or skipped them."""
    return select(Assignment.task_id).where(Assignment.person_id == person_id, Assignment.status.in_(tuple(states)))
