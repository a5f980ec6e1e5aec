"""Background jobs (teach, route, train, evaluate) run one at a time in a worker thread.

A job is a row of ``jobs``: queued -> running -> done | failed, with ``done``/``total``/``message`` written
as it goes (the web page polls them) and a JSON ``result`` at the end. The work itself is any callable
that takes a progress function ``progress(done, total, message="")``; :func:`action_for` makes one from a
project and a job kind, through the typed call that :data:`JOB_KINDS` names.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select, update

from terakoya.errors import DataError, TerakoyaError
from terakoya.people.accounts import NotFound
from terakoya.project import ProjectLike
from terakoya.storage.db import Database
from terakoya.storage.models import Job, utcnow

__all__ = [
    "JOB_KINDS",
    "JobAction",
    "JobArgs",
    "JobFn",
    "JobRunner",
    "JobView",
    "ProgressFn",
    "action_for",
    "create_job",
    "fail_interrupted",
    "get_job",
    "jsonable",
    "list_jobs",
    "run_job",
]


def _rowcount(result: Any) -> int:
    """Rows changed by an UPDATE (``Session.execute`` types its result as a plain Result)."""
    return int(result.rowcount or 0)


log = logging.getLogger(__name__)

_WRITE_EVERY_S = 0.5  # progress is written at most this often (and always at the end)


class ProgressFn(Protocol):
    def __call__(self, done: int, total: int, message: str = "") -> None: ...


JobFn = Callable[[ProgressFn], object]


@dataclass(frozen=True)
class JobArgs:
    """What the owner chose when starting a job; only routing takes something (its budget)."""

    budget_items: int | None = None


#: the typed call that runs one kind of job on a project
JobAction = Callable[[ProjectLike, ProgressFn, JobArgs], object]


def _teach(project: ProjectLike, progress: ProgressFn, args: JobArgs) -> object:
    return project.teach(progress=progress)


def _route(project: ProjectLike, progress: ProgressFn, args: JobArgs) -> object:
    return project.route(budget_items=args.budget_items)  # routing is quick and reports no progress


def _train(project: ProjectLike, progress: ProgressFn, args: JobArgs) -> object:
    return project.train(progress=progress)


def _evaluate(project: ProjectLike, progress: ProgressFn, args: JobArgs) -> object:
    return project.evaluate(progress=progress)


_ACTIONS: Mapping[str, JobAction] = {"teach": _teach, "route": _route, "train": _train, "evaluate": _evaluate}

#: what the owner can run from the dashboard
JOB_KINDS: tuple[str, ...] = tuple(_ACTIONS)


@dataclass(frozen=True)
class JobView:
    id: int
    kind: str
    status: str  # queued | running | done | failed
    done: int
    total: int
    message: str
    result: dict[str, Any]
    created_at: datetime
    finished_at: datetime | None

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.done / self.total) if self.total > 0 else None


def _view(job: Job) -> JobView:
    return JobView(
        job.id,
        job.kind,
        job.status,
        job.done,
        job.total,
        job.message,
        dict(job.result or {}),
        job.created_at,
        job.finished_at,
    )


def jsonable(value: Any) -> Any:
    """Turn a report (dataclasses, paths, dates, numpy scalars) into plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return jsonable(value.value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return jsonable(value.item())
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays
        return jsonable(value.tolist())
    return str(value)


def create_job(db: Database, project_id: int, kind: str) -> int:
    with db.session() as s:
        job = Job(project_id=project_id, kind=kind, status="queued", done=0, total=0, message="waiting", result={})
        s.add(job)
        s.flush()
        return job.id


def get_job(db: Database, project_id: int, job_id: int) -> JobView:
    with db.session() as s:
        job = s.get(Job, job_id)
        if job is None or job.project_id != project_id:
            raise NotFound(f"job {job_id} does not exist in this project")
        return _view(job)


def list_jobs(db: Database, project_id: int, *, limit: int = 20) -> list[JobView]:
    with db.session() as s:
        rows = s.scalars(select(Job).where(Job.project_id == project_id).order_by(Job.id.desc()).limit(limit)).all()
        return [_view(j) for j in rows]


def fail_interrupted(db: Database, project_id: int) -> int:
    """Mark jobs left queued or running by a server that stopped as failed; returns how many."""
    with db.session() as s:
        done = s.execute(
            update(Job)
            .where(Job.project_id == project_id, Job.status.in_(("queued", "running")))
            .values(
                status="failed",
                message="the server stopped while this job was waiting or running; start it again",
                finished_at=utcnow(),
            )
        )
        return _rowcount(done)


def run_job(db: Database, project_id: int, job_id: int, fn: JobFn) -> JobView:
    """Run ``fn`` here and now as job ``job_id``, recording progress, result or failure."""
    with db.session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(status="running", message="started"))
    last_write = 0.0

    def progress(done: int, total: int, message: str = "") -> None:
        nonlocal last_write
        now = time.monotonic()
        if now - last_write < _WRITE_EVERY_S and done < total:
            return
        last_write = now
        with db.session() as s:
            s.execute(
                update(Job).where(Job.id == job_id).values(done=int(done), total=int(total), message=message[:1000])
            )

    try:
        result = fn(progress)
    except TerakoyaError as exc:
        status, message, payload = "failed", exc.message, {"error": {"code": exc.code, "message": exc.message}}
    except Exception as exc:  # a job must never take the server down; the owner sees what went wrong
        log.exception("job %s failed", job_id)
        status, message = "failed", f"{type(exc).__name__}: {exc}"
        payload = {"error": {"code": "internal", "message": message}}
    else:
        converted = jsonable(result)
        payload = converted if isinstance(converted, dict) else {"value": converted}
        status, message = "done", "finished"
    with db.session() as s:
        values: dict[str, Any] = {"status": status, "message": message[:1000], "result": payload}
        values["finished_at"] = utcnow()
        s.execute(update(Job).where(Job.id == job_id).values(**values))
        if status == "done":
            job = s.get(Job, job_id)
            if job is not None and job.total == 0:
                job.done = job.total = 1
    return get_job(db, project_id, job_id)


def action_for(project: ProjectLike, kind: str, *, budget_items: int | None = None) -> JobFn:
    """The job that runs ``project.<kind>(...)`` (teach, route, train, evaluate), with progress where it has any."""
    action = _ACTIONS.get(kind)
    if action is None:
        raise DataError(f"job kind {kind!r} is unknown; choose one of: {', '.join(JOB_KINDS)}")
    if kind == "route" and (budget_items is None or budget_items < 1):
        raise DataError("routing needs a budget: how many items to send to experts (1 or more)")
    args = JobArgs(budget_items=budget_items)

    def job(progress: ProgressFn) -> object:
        return action(project, progress, args)

    return job


class JobRunner:
    """Runs the jobs of one project one after the other in a single worker thread.

    The thread is a daemon: stopping the server does not wait for a long training run; such a job is
    marked failed by :func:`fail_interrupted` when the server starts again.
    """

    def __init__(self, db: Database, project_id: int, *, after_each: Callable[[], None] | None = None) -> None:
        self.db = db
        self.project_id = project_id
        self.after_each = after_each
        self._queue: queue.Queue[tuple[int, JobFn] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._finished: dict[int, threading.Event] = {}

    def start(self, kind: str, fn: JobFn) -> JobView:
        job_id = create_job(self.db, self.project_id, kind)
        with self._lock:
            self._finished[job_id] = threading.Event()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="terakoya-jobs", daemon=True)
                self._thread.start()
        self._queue.put((job_id, fn))
        return get_job(self.db, self.project_id, job_id)

    def _work(self) -> None:
        while (entry := self._queue.get()) is not None:
            job_id, fn = entry
            try:
                run_job(self.db, self.project_id, job_id, fn)
                if self.after_each is not None:
                    self.after_each()
            except Exception:  # the database itself failed; keep serving the other jobs
                log.exception("could not record job %s", job_id)
            finally:
                self._finished[job_id].set()

    def wait(self, job_id: int, timeout: float | None = None) -> JobView:
        """Block until a job started here ends (for tests and scripts)."""
        event = self._finished.get(job_id)
        if event is not None and not event.wait(timeout):
            raise TimeoutError(f"job {job_id} did not finish within {timeout} seconds")
        return get_job(self.db, self.project_id, job_id)

    def shutdown(self, *, wait: bool = False, timeout: float | None = None) -> None:
        """Stop the worker after the job in hand (waiting for it only when ``wait``)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            if wait:
                thread.join(timeout)
