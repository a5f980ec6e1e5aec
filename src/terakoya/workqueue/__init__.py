"""The expert queue: lease a task, answer it (label, verify, flag), skip it, undo the last answer.

Rules:

- a task takes ``answers_wanted`` answers (k, ``routing.answers_per_item``), each from a different person: a
  person leases an *assignment* (a slot) of a task while fewer than k others hold or answered it
  (:mod:`terakoya.workqueue.assignments`); an expired lease is free for anyone again;
- nobody is shown an item twice: not one they answered (unless they undid it) nor one they skipped;
- an answer sent twice with the same idempotency key is stored once;
- every state change is one transaction that starts by locking the task row with a conditional ``UPDATE``
  (:func:`terakoya.workqueue.assignments.lock_task`), so leasing is safe with many servers on one SQLite file or
  PostgreSQL database;
- active time: each answer carries the seconds since the person's previous action, measured by the client,
  capped by what the server saw and by :data:`IDLE_CAP_S` (idle stretches do not count).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from terakoya.errors import DataError, StateError
from terakoya.kinds.base import AnswerValue
from terakoya.kinds.generate import EXPERT_TASKS
from terakoya.people.accounts import NotFound
from terakoya.people.glossary import guideline_version_in
from terakoya.settings import QualitySettings, Settings
from terakoya.storage.db import Database
from terakoya.storage.models import Answer, Assignment, Item, Task, utcnow
from terakoya.storage.queries import current_suggestion
from terakoya.storage.web_models import Membership, TaskSkip
from terakoya.workqueue import assignments

__all__ = [
    "FLAG_REASONS",
    "IDLE_CAP_S",
    "LabelOption",
    "QueueCounts",
    "SubmitResult",
    "TaskView",
    "UndoResult",
    "flag_task",
    "label_options",
    "lease_next",
    "queue_counts",
    "release_tasks",
    "remaining_for",
    "skip_task",
    "submit_answer",
    "undo_last",
]


def _rowcount(result: Any) -> int:
    """Rows changed by an UPDATE (``Session.execute`` types its result as a plain Result)."""
    return int(result.rowcount or 0)


#: a gap between two actions longer than this counts as this much active time, no more
IDLE_CAP_S = 120.0
#: reasons a trainer may flag an item for
FLAG_REASONS: dict[str, str] = {
    "broken": "broken (unreadable, empty, wrong language)",
    "ambiguous": "ambiguous (more than one label fits)",
    "guideline_unclear": "the guidelines do not say",
}
MAX_HELD = 3  # tasks one person may hold at once: the current one, the preloaded one, one spare
_LEASE_TRIES = 25
_CANDIDATES = 32
_SLACK_S = 2.0  # clock and network slack allowed between the client's timing and the server's
_ANSWER_KINDS = ("label", "verify", "flag", *EXPERT_TASKS)


@dataclass(frozen=True)
class LabelOption:
    name: str
    description: str
    key: str  # the keyboard key that chooses it


@dataclass(frozen=True)
class TaskView:
    """What a trainer sees of a task: never its routing reason (gold items look like any other)."""

    task_id: int
    item_id: int
    kind: str  # label | verify
    text: str
    labels: list[LabelOption]
    teacher_label: str | None  # only for verify tasks
    teacher_confidence: float | None
    lease_expires_at: datetime
    #: what a written-answer task shows (generate.v1): the prompt's messages, the answer(s) to judge, the rubric
    content: dict[str, Any] | None = None


@dataclass(frozen=True)
class SubmitResult:
    answer_id: int
    task_id: int
    duplicate: bool  # True when this idempotency key had already been stored
    active_seconds: float
    #: set when this answer (on a check item) paused its author: why, in their words; no more tasks are offered
    paused: str | None = None


@dataclass(frozen=True)
class UndoResult:
    answer_id: int
    task: TaskView | None  # the task given back to its author, when it came from the queue


@dataclass(frozen=True)
class QueueCounts:
    queued: int
    leased: int
    answered: int
    flagged: int

    @property
    def total(self) -> int:
        return self.queued + self.leased + self.answered + self.flagged


def label_options(settings: Settings) -> list[LabelOption]:
    keys = [str(i) for i in range(1, 10)] + ["0"]
    return [
        LabelOption(spec.name, spec.description, keys[i] if i < len(keys) else "")
        for i, spec in enumerate(settings.labels)
    ]


def _view(db: Database, settings: Settings, task_id: int, person_id: int, until: datetime | None = None) -> TaskView:
    """What the person sees of a task they hold; ``until``: their lease's end, when the caller just set it."""
    with db.session() as s:
        task, item = s.execute(select(Task, Item).join(Item, Item.id == Task.item_id).where(Task.id == task_id)).one()
        if until is None:
            until = s.scalar(
                select(Assignment.lease_expires_at).where(
                    Assignment.task_id == task_id, Assignment.person_id == person_id
                )
            )
        teacher_label = teacher_conf = None
        content = None
        if task.kind == "verify":
            sug = current_suggestion(s, item.id, "teacher")
            if sug is not None:
                teacher_label, teacher_conf = sug.label, sug.confidence if sug.confidence_known else None
        elif task.kind in EXPERT_TASKS:
            from terakoya.generation.tasks import task_content

            content = task_content(s, task, item, settings)
    assert until is not None
    return TaskView(
        task.id,
        item.id,
        task.kind,
        item.text,
        label_options(settings),
        teacher_label,
        teacher_conf,
        until,
        content,
    )


def _free(now: datetime) -> Any:
    """Tasks with a slot anyone may lease: queued, or every slot taken and a lease ran out."""
    return or_(Task.status == "queued", and_(Task.status == "leased", Task.lease_expires_at < now))


def _seen_items(project_id: int, person_id: int) -> tuple[Any, Any]:
    answered = select(Answer.item_id).where(Answer.person_id == person_id, Answer.superseded.is_(False))
    skipped = select(TaskSkip.item_id).where(TaskSkip.person_id == person_id, TaskSkip.project_id == project_id)
    return answered, skipped


def _candidates(s: Session, project_id: int, person_id: int, held_items: list[int], now: datetime) -> list[int]:
    """The best free tasks for this person, in queue order (priority, then age).

    Queued tasks and expired leases are read apart, each in index order with a limit, so the cost does not
    grow with the length of the queue.
    """
    answered, skipped = _seen_items(project_id, person_id)
    base = select(Task.id, Task.priority).where(
        Task.project_id == project_id,
        Task.reason != "qualification",  # one person's own tasks, leased to them when made
        Task.item_id.not_in(answered),
        Task.item_id.not_in(skipped),
        Task.item_id.not_in(held_items),
        Task.id.not_in(assignments.not_offered(person_id)),
    )
    queued = s.execute(base.where(Task.status == "queued").order_by(Task.priority, Task.id).limit(_CANDIDATES)).all()
    expired = s.execute(
        base.where(Task.status == "leased", Task.lease_expires_at < now)
        .order_by(Task.priority, Task.id)
        .limit(_CANDIDATES)
    ).all()
    return [row.id for row in sorted([*queued, *expired], key=lambda r: (r.priority, r.id))[:_CANDIDATES]]


def _touch(s: Session, project_id: int, person_id: int, now: datetime) -> None:
    s.execute(
        update(Membership)
        .where(Membership.project_id == project_id, Membership.person_id == person_id)
        .values(last_action_at=now)
    )


def _qualify(db: Database, project_id: int, person_id: int, quality: QualitySettings, now: datetime,
             until: datetime, *, generative: bool = False) -> int | None:  # fmt: skip
    """While the person's qualification is open: a new qualification task on a check item, leased to them (its
    id); None when they need none (no qualification asked, passed, or no check item left to give)."""
    from terakoya.quality.gold import QUALIFICATION, check_qualification, next_qualification_item, qualification_in

    with db.session() as s:
        state = qualification_in(s, project_id, person_id, quality)
        item_id = next_qualification_item(s, project_id, person_id) if state.state == "open" else None
    if state.state == "failed":
        with db.session() as s:
            check_qualification(s, project_id, person_id, quality, now=now)
            _refuse_paused(s, project_id, person_id)
    if item_id is None:
        return None
    with db.session() as s:
        kind, comps = "label", {}
        if generative:  # a written-answer check: rate the reference, or a decoy
            from terakoya.generation.tasks import check_components

            item = s.get(Item, item_id)
            assert item is not None
            kind, comps = "rate", check_components(s, item)
        task = Task(project_id=project_id, item_id=item_id, kind=kind, reason=QUALIFICATION, priority=-1_000_000,
                    status="queued", answers_wanted=1, components=comps)  # fmt: skip
        s.add(task)
        s.flush()
        assignments.take(s, task.id, person_id, now, until)
        return int(task.id)


def _try_lease(
    db: Database,
    project_id: int,
    person_id: int,
    skip_ids: set[int],
    now: datetime,
    until: datetime,
    attempt: int,
    quality: QualitySettings | None = None,
    generative: bool = False,
) -> int | None:
    """One try: the leased task's id, 0 when another request won the task (try again), None when none is left."""
    candidates: list[int] = []
    qualifying = quality is not None and quality.qualification_items > 0
    if qualifying and quality is not None:
        with db.session() as s:
            if attempt == 0:
                _refuse_paused(s, project_id, person_id)
            held = s.execute(assignments.held_tasks(project_id, person_id)).all()
        if not [row for row in held if row.id not in skip_ids] and len(held) < MAX_HELD:
            made = _qualify(db, project_id, person_id, quality, now, until, generative=generative)
            if made is not None:
                return made
    with db.session() as s:
        held = s.execute(assignments.held_tasks(project_id, person_id)).all()
        mine = [row.id for row in held if row.id not in skip_ids]
        if attempt == 0 and not qualifying and not mine:  # a task already held is theirs to finish
            _refuse_paused(s, project_id, person_id)
        last = s.scalar(
            select(Membership.last_action_at).where(
                Membership.project_id == project_id, Membership.person_id == person_id
            )
        )
        if not mine and len(held) < MAX_HELD:
            candidates = _candidates(s, project_id, person_id, [row.item_id for row in held], now)
    # a fetch after a long pause starts a new working session: active time counts from here
    new_session = last is None or (now - last).total_seconds() > IDLE_CAP_S
    if mine:
        pick = mine[0]
    elif len(held) >= MAX_HELD:
        raise StateError(f"you already hold {len(held)} tasks; answer or skip one of them before asking for another")
    elif not candidates:
        return None
    else:
        # the first try takes the best task; after losing a race, spread out over the next best ones
        pick = candidates[0] if attempt == 0 else random.choice(candidates[: 2 + 4 * attempt])
    with db.session() as s:
        won = assignments.lock_task(s, pick) and assignments.take(s, pick, person_id, now, until)
        if won and new_session:
            _touch(s, project_id, person_id, now)
    return pick if won else 0


def lease_next(
    db: Database,
    project_id: int,
    settings: Settings,
    person_id: int,
    *,
    exclude: Iterable[int] = (),
    now: datetime | None = None,
) -> TaskView | None:
    """The next task for this person, leased to them; None when nothing is left for them.

    A task they already hold comes first (its lease renewed), unless its id is in ``exclude`` (the client
    passes the task it is showing, to preload the one after it).
    """
    from terakoya.kinds import get_kind

    now = now or utcnow()
    until = now + timedelta(minutes=settings.routing.lease_minutes)
    skip_ids = set(exclude)
    generative = get_kind(settings.task.kind).generative
    for attempt in range(_LEASE_TRIES):
        # on SQLite the read and the write happen under the write lock, so the task read is still free when
        # written and nobody loses a race; on PostgreSQL the conditional UPDATE decides and the loser retries
        with db.writing():
            view_id = _try_lease(db, project_id, person_id, skip_ids, now, until, attempt, settings.quality, generative)
        if view_id is None:
            return None
        if view_id > 0:
            return _view(db, settings, view_id, person_id, until)
    raise StateError("the queue is very busy right now and no task could be leased; try again in a moment")


def _refuse_paused(s: Session, project_id: int, person_id: int) -> None:
    """A PausedError saying why, when the person is paused on the project (:mod:`terakoya.quality.gold`)."""
    from terakoya.quality.gold import PausedError, active_pause_reason

    reason = active_pause_reason(s, project_id, person_id)
    if reason is not None:
        raise PausedError(
            f"you are paused on this project: {reason}. Look at the check items you answered differently "
            "under My work and read the guidelines again; the project's owner can lift the pause"
        )


def _active_seconds(claimed: float | None, last_action: datetime | None, now: datetime) -> float:
    """The client's measure of active time, trusted only up to the server's gap and the idle cap."""
    allowed = IDLE_CAP_S if last_action is None else min(IDLE_CAP_S, (now - last_action).total_seconds() + _SLACK_S)
    allowed = max(0.0, allowed)
    if claimed is None:
        return round(allowed, 3)
    if claimed != claimed:  # NaN
        raise DataError("active_seconds is not a number; send the seconds since the previous action")
    return round(min(max(0.0, claimed), allowed), 3)


def _check_key(key: str | None) -> str | None:
    if key is None or key == "":
        return None
    if len(key) > 100:
        raise DataError(f"the idempotency key is {len(key)} characters long; send at most 100 (a UUID is fine)")
    return key


def _existing(db: Database, key: str | None, person_id: int, task_id: int) -> SubmitResult | None:
    if key is None:
        return None
    with db.session() as s:
        return _existing_in(s, key, person_id, task_id)


def _existing_in(s: Session, key: str, person_id: int, task_id: int) -> SubmitResult | None:
    found = s.scalar(select(Answer).where(Answer.idempotency_key == key))
    if found is None:
        return None
    if found.person_id != person_id or found.task_id != task_id:
        raise DataError("this idempotency key was already used for another answer; send a new key for each answer")
    return SubmitResult(found.id, found.task_id or 0, True, found.active_seconds or 0.0)


def _lost_task_message(db: Database, project_id: int, person_id: int, task_id: int, now: datetime) -> str:
    with db.session() as s:
        task = s.get(Task, task_id)
        mine = assignments.state_of(s, task_id, person_id)
    if task is None or task.project_id != project_id:
        raise NotFound(f"task {task_id} does not exist in this project; fetch the next task")
    if task.status in {"answered", "flagged"} or mine in assignments.DONE:
        return f"task {task_id} is already answered; fetch the next task"
    if mine == assignments.EXPIRED or (mine is None and task.status == "leased"):
        return f"task {task_id} was given to someone else after your lease ran out; fetch the next task"
    return f"task {task_id} is not leased to you (its lease ran out or it was skipped); fetch the next task"


def teacher_verdict(s: Session, item_id: int, label: str | None) -> dict[str, Any]:
    """What a verify answer records beside its label: the teacher's current label and whether it stood."""
    current = current_suggestion(s, item_id, "teacher")
    teacher = current.label if current is not None else None
    return {"teacher_label": teacher, "accepted": teacher == label}


def _record(
    db: Database,
    project_id: int,
    settings: Settings,
    person_id: int,
    task_id: int,
    *,
    kind: str | None,
    label: str | None,
    value: dict[str, Any],
    rationale: str | None,
    active_seconds: float | None,
    idempotency_key: str | None,
    source: str,
    now: datetime | None,
) -> SubmitResult:
    key = _check_key(idempotency_key)
    if rationale is not None:
        rationale = rationale.strip() or None
        if rationale and len(rationale) > 5000:
            raise DataError(f"the explanation is {len(rationale)} characters long; keep it under 5000")
    now = now or utcnow()
    with db.session() as s:  # what the write needs, read before taking the write lock
        done = _existing_in(s, key, person_id, task_id) if key else None
        if done is not None:
            return done
        version = guideline_version_in(s, project_id, settings)
        last = s.scalar(
            select(Membership.last_action_at).where(
                Membership.project_id == project_id, Membership.person_id == person_id
            )
        )
        found = s.execute(select(Task.item_id, Task.kind, Task.reason).where(Task.id == task_id)).first()
        if found is not None and (kind or found.kind) == "verify":
            value = {**value, **teacher_verdict(s, found.item_id, label)}
    seconds = _active_seconds(active_seconds, last, now)
    try:
        if found is not None:
            answer_kind = kind or found.kind
            with db.writing(), db.session() as s:
                locked = assignments.lock_task(s, task_id, project_id=project_id)
                if locked and assignments.holds(s, task_id, person_id):
                    answer = Answer(
                        item_id=found.item_id,
                        person_id=person_id,
                        task_id=task_id,
                        kind=answer_kind,
                        label=label,
                        value=value,
                        rationale=rationale,
                        active_seconds=seconds,
                        simulated=False,
                        source=source,
                        guideline_version=version,
                        idempotency_key=key,
                        superseded=False,
                        created_at=now,
                    )
                    s.add(answer)
                    s.flush()
                    assignments.finish(s, task_id, person_id, answer.id, flag=kind == "flag", now=now)
                    _touch(s, project_id, person_id, now)
                    checks = ("gold", "qualification")  # known answers: one more person would learn nothing
                    if found.reason not in checks and kind != "flag" and settings.quality.max_answers_per_item > 1:
                        teacher = current_suggestion(s, found.item_id)
                        said = teacher.label if teacher is not None else None
                        assignments.ask_one_more(s, task_id, settings.quality.max_answers_per_item, said)
                    pause = None
                    if found.reason in ("gold", "qualification") and kind != "flag":
                        from terakoya.quality.gold import check_pause, check_qualification

                        pause = check_pause(s, project_id, person_id, settings.quality, now=now)
                        if found.reason == "qualification" and pause is None:
                            pause = check_qualification(s, project_id, person_id, settings.quality, now=now)
                    return SubmitResult(answer.id, task_id, False, seconds, pause.reason if pause else None)
    except IntegrityError:
        pass  # the same key arrived twice at once and the other request stored it; answer with that one
    done = _existing(db, key, person_id, task_id)
    if done is not None:
        return done
    raise StateError(_lost_task_message(db, project_id, person_id, task_id, now))


def submit_answer(
    db: Database,
    project_id: int,
    settings: Settings,
    person_id: int,
    task_id: int,
    *,
    label: str | None = None,
    value: Mapping[str, Any] | None = None,
    rationale: str | None = None,
    active_seconds: float | None = None,
    idempotency_key: str | None = None,
    source: str = "web",
    now: datetime | None = None,
) -> SubmitResult:
    """Record a label (or a verification) for a task leased to this person; a resent key returns the first.

    A written-answer task (generate.v1: rate, compare, correct) takes ``value``, the answer in its task's schema
    (:mod:`terakoya.kinds.generate`), instead of a label."""
    from terakoya.kinds import kind_for

    kind = kind_for(settings)
    if kind.generative:
        if value is None:
            raise DataError("this project's tasks take a written answer: send 'value' (ratings, a choice or a text)")
        answer = _read_written(db, project_id, settings, person_id, task_id, value, rationale, now)
    else:
        if label is None:
            raise DataError("the answer has no label; send one of the project's labels")
        if not settings.label_names:
            raise StateError("this project has no labels yet; add [[labels]] to terakoya.toml or import labeled data")
        names = settings.label_names
        if label not in names:
            raise DataError(
                f"label {label!r} is not one of this project's labels: {', '.join(names)}; choose one of them"
            )
        answer = kind.read_answer({"label": label, "rationale": rationale}, settings)
    return _record(
        db,
        project_id,
        settings,
        person_id,
        task_id,
        kind=None,
        label=answer.label or label,
        value=answer.value,
        rationale=answer.rationale,
        active_seconds=active_seconds,
        idempotency_key=idempotency_key,
        source=source,
        now=now,
    )


def _read_written(
    db: Database,
    project_id: int,
    settings: Settings,
    person_id: int,
    task_id: int,
    value: Mapping[str, Any],
    rationale: str | None,
    now: datetime | None,
) -> AnswerValue:
    """A written-answer task's answer, read by the kind against the task it answers (what it showed)."""
    from terakoya.generation.tasks import resolve_answer
    from terakoya.kinds import kind_for

    with db.session() as s:
        task = s.get(Task, task_id)
        if task is None or task.project_id != project_id:
            raise StateError(_lost_task_message(db, project_id, person_id, task_id, now or utcnow()))
        sent = dict(value)
        if sent.get("task", task.kind) != task.kind:
            raise DataError(f"the answer is for a {sent['task']} task, but task {task_id} is a {task.kind} task")
        raw = {**sent, "task": task.kind, "rationale": rationale if rationale is not None else sent.get("rationale")}
        return resolve_answer(s, task, kind_for(settings).read_answer(raw, settings), settings)


def flag_task(
    db: Database,
    project_id: int,
    settings: Settings,
    person_id: int,
    task_id: int,
    *,
    reason: str,
    comment: str = "",
    active_seconds: float | None = None,
    idempotency_key: str | None = None,
    source: str = "web",
    now: datetime | None = None,
) -> SubmitResult:
    """Flag a task as broken, ambiguous or not covered by the guidelines; the flag is this person's answer."""
    if reason not in FLAG_REASONS:
        raise DataError(f"flag reason {reason!r} is unknown; choose one of: {', '.join(FLAG_REASONS)}")
    comment = comment.strip()
    if len(comment) > 2000:
        raise DataError(f"the comment is {len(comment)} characters long; keep it under 2000")
    return _record(
        db,
        project_id,
        settings,
        person_id,
        task_id,
        kind="flag",
        label=None,
        value={"reason": reason, "comment": comment},
        rationale=None,
        active_seconds=active_seconds,
        idempotency_key=idempotency_key,
        source=source,
        now=now,
    )


def skip_task(
    db: Database, project_id: int, settings: Settings, person_id: int, task_id: int, *, now: datetime | None = None
) -> None:
    """Give a leased task back to the pool; this person will not be shown its item again."""
    now = now or utcnow()
    with db.writing(), db.session() as s:
        task = s.get(Task, task_id)
        if task is None or task.project_id != project_id:
            raise NotFound(f"task {task_id} does not exist in this project; fetch the next task")
        already = s.scalar(select(TaskSkip.id).where(TaskSkip.item_id == task.item_id, TaskSkip.person_id == person_id))
        released = assignments.lock_task(s, task_id) and assignments.give_back(s, task_id, person_id, now)
        if not released and already is None:
            raise StateError(f"task {task_id} is not leased to you, so it cannot be skipped; fetch the next task")
        if already is None:
            s.add(TaskSkip(project_id=project_id, item_id=task.item_id, person_id=person_id, task_id=task_id))
        _touch(s, project_id, person_id, now)


def release_tasks(
    db: Database, project_id: int, person_id: int, task_ids: Sequence[int], *, now: datetime | None = None
) -> int:
    """End the person's leases on these tasks (they left the queue page without answering them), so that others
    get them now rather than when the lease runs out; returns how many were released. Tasks the person does not
    hold, or that belong to another project, are left alone."""
    now = now or utcnow()
    released = 0
    with db.writing(), db.session() as s:
        for task_id in sorted(set(task_ids)):
            task = s.get(Task, task_id)
            if task is None or task.project_id != project_id:
                continue
            if assignments.lock_task(s, task_id) and assignments.release(s, task_id, person_id, now):
                released += 1
    return released


def undo_last(
    db: Database, project_id: int, settings: Settings, person_id: int, *, now: datetime | None = None
) -> UndoResult:
    """Undo this person's last answer in the project: it is marked superseded and its task leased back to them."""
    now = now or utcnow()
    until = now + timedelta(minutes=settings.routing.lease_minutes)
    for _ in range(5):
        with db.writing(), db.session() as s:
            last = s.execute(
                select(Answer.id, Answer.task_id)
                .join(Item, Item.id == Answer.item_id)
                .where(
                    Answer.person_id == person_id,
                    Item.project_id == project_id,
                    Answer.superseded.is_(False),
                    Answer.kind.in_(_ANSWER_KINDS),
                )
                .order_by(Answer.id.desc())
                .limit(1)
            ).first()
            if last is None:
                raise StateError("there is no answer of yours to undo in this project")
            undone = s.execute(
                update(Answer).where(Answer.id == last.id, Answer.superseded.is_(False)).values(superseded=True)
            )
            if _rowcount(undone) != 1:
                continue  # undone by a parallel request of the same person; look again
            given_back = (
                last.task_id is not None
                and assignments.lock_task(s, last.task_id, statuses=assignments.TASK_STATUSES)
                and assignments.reopen(s, last.task_id, person_id, last.id, now, until)
            )
            _touch(s, project_id, person_id, now)
        view = _view(db, settings, last.task_id, person_id) if given_back else None
        return UndoResult(last.id, view)
    raise StateError("your last answer changed while undoing it; press undo again")


def queue_counts(db: Database, project_id: int, *, now: datetime | None = None) -> QueueCounts:
    """Tasks by state; an expired lease counts as queued."""
    now = now or utcnow()
    with db.session() as s:
        rows = s.execute(
            select(Task.status, func.count()).where(Task.project_id == project_id).group_by(Task.status)
        ).all()
        expired = s.scalar(
            select(func.count()).where(
                Task.project_id == project_id, Task.status == "leased", Task.lease_expires_at < now
            )
        )
    counts = {"queued": 0, "leased": 0, "answered": 0, "flagged": 0}
    for status, n in rows:
        if status in counts:
            counts[status] += int(n)
    counts["queued"] += int(expired or 0)
    counts["leased"] -= int(expired or 0)
    return QueueCounts(**counts)


def remaining_for(db: Database, project_id: int, person_id: int, *, now: datetime | None = None) -> int:
    """Tasks this person could still be given (including the ones they hold)."""
    now = now or utcnow()
    answered, skipped = _seen_items(project_id, person_id)
    held = select(assignments.held_tasks(project_id, person_id).subquery().c.id)
    with db.session() as s:
        n = s.scalar(
            select(func.count(func.distinct(Task.item_id))).where(
                Task.project_id == project_id,
                or_(_free(now), Task.id.in_(held)),
                Task.item_id.not_in(answered),
                Task.item_id.not_in(skipped),
                Task.id.not_in(assignments.not_offered(person_id, (*assignments.DONE, assignments.SKIPPED))),
            )
        )
    return int(n or 0)
