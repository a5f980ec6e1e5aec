"""Background jobs (teach, route, train, evaluate), queued in the jobs table and run one at a time per project.

A job is a row of ``jobs``: queued -> running -> done | failed, with ``done``/``total``/``message`` written
as it goes (the web page polls them) and a JSON ``result`` at the end. The work itself is any callable
that takes a progress function ``progress(done, total, message="")``; :func:`action_for` makes one from a
project and a job kind, through the typed call that :data:`JOB_KINDS` names.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import ColumnElement, and_, func, or_, select, update

from terakoya.errors import DataError, StateError, TerakoyaError
from terakoya.people.accounts import NotFound
from terakoya.project import ProjectLike
from terakoya.storage.db import Database
from terakoya.storage.models import Job, Project, utcnow

__all__ = [
    "HEARTBEAT_S",
    "JOB_KINDS",
    "STALE_AFTER_S",
    "ClaimedJob",
    "JobAction",
    "JobArgs",
    "JobFn",
    "JobRunner",
    "JobView",
    "ProgressFn",
    "action_for",
    "claim_next",
    "create_job",
    "default_worker_name",
    "fail_interrupted",
    "get_job",
    "heartbeat",
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


def create_job(db: Database, project_id: int, kind: str, args: JobArgs | None = None) -> int:
    """Queue a job; any runner of the project (a server's thread or a `terakoya worker`) may claim it."""
    with db.session() as s:
        job = Job(
            project_id=project_id,
            kind=kind,
            status="queued",
            done=0,
            total=0,
            message="waiting",
            result={},
            args=dataclasses.asdict(args or JobArgs()),
        )
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


#: a running job whose runner has not said it is alive for this long is taken for dead
STALE_AFTER_S = 60.0
HEARTBEAT_S = 10.0
INTERRUPTED = "the process running this job stopped before it finished; start it again"


def fail_interrupted(db: Database, project_id: int, *, stale_after_s: float = STALE_AFTER_S) -> int:
    """Mark running jobs whose runner stopped (no heartbeat for ``stale_after_s``) as failed; returns how many.

    Queued jobs stay queued: the next runner claims them, so a job asked for just before a restart still runs.
    """
    with db.session() as s:
        done = s.execute(
            update(Job)
            .where(Job.project_id == project_id, _runner_gone(stale_after_s))
            .values(status="failed", message=INTERRUPTED, finished_at=utcnow())
        )
        return _rowcount(done)


def _runner_gone(stale_after_s: float = STALE_AFTER_S) -> ColumnElement[bool]:
    """A running job whose runner has said nothing for ``stale_after_s`` seconds."""
    cutoff = utcnow() - timedelta(seconds=stale_after_s)
    return and_(Job.status == "running", or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff))


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    args: JobArgs


def claim_next(db: Database, project_id: int, worker: str) -> ClaimedJob | None:
    """Take the project's oldest queued job for ``worker``, or None; one job of a project runs at a time.

    The claim is one UPDATE that takes the oldest queued job only while none of the project's jobs runs — atomic
    on SQLite (one writer); on PostgreSQL claims of one project first lock its row (``FOR UPDATE``), so two
    workers never both see "nothing running". Nothing is claimed twice, and jobs run in the order asked for.
    Jobs whose runner died are failed first (:func:`fail_interrupted`). A runner polls this every few seconds:
    when there is nothing to claim or fail, it only reads (SQLite's one writer is left to the work queue).
    """
    with db.session() as s:
        pending = s.scalar(
            select(Job.id).where(Job.project_id == project_id, or_(Job.status == "queued", _runner_gone())).limit(1)
        )
    if pending is None:
        return None
    fail_interrupted(db, project_id)
    oldest = select(func.min(Job.id)).where(Job.project_id == project_id, Job.status == "queued").scalar_subquery()
    running = select(Job.id).where(Job.project_id == project_id, Job.status == "running").exists()
    claim = (
        update(Job)
        .where(Job.id == oldest, Job.status == "queued", ~running)
        .values(status="running", message="started", claimed_by=worker[:200], heartbeat_at=utcnow())
        .returning(Job.id, Job.kind, Job.args)
    )
    with db.writing(), db.session() as s:
        if db.dialect == "postgresql":
            s.execute(select(Project.id).where(Project.id == project_id).with_for_update())
        row = s.execute(claim).first()
    if row is None:
        return None
    budget = dict(row.args or {}).get("budget_items")
    return ClaimedJob(row.id, row.kind, JobArgs(budget_items=int(budget) if budget is not None else None))


def heartbeat(db: Database, job_id: int) -> None:
    """Say that the runner of a running job is alive."""
    with db.session() as s:
        s.execute(update(Job).where(Job.id == job_id, Job.status == "running").values(heartbeat_at=utcnow()))


def run_job(db: Database, project_id: int, job_id: int, fn: JobFn) -> JobView:
    """Run ``fn`` here and now as job ``job_id``, recording progress, result or failure."""
    with db.session() as s:
        s.execute(
            update(Job).where(Job.id == job_id).values(status="running", message="started", heartbeat_at=utcnow())
        )
    last_write = 0.0

    def progress(done: int, total: int, message: str = "") -> None:
        nonlocal last_write
        now = time.monotonic()
        if now - last_write < _WRITE_EVERY_S and done < total:
            return
        last_write = now
        with db.session() as s:
            s.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(done=int(done), total=int(total), message=message[:1000], heartbeat_at=utcnow())
            )

    beating = threading.Event()
    beat = threading.Thread(target=_beat, args=(db, job_id, beating), name=f"terakoya-job-{job_id}", daemon=True)
    beat.start()
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
    finally:
        beating.set()
        beat.join()
    with db.session() as s:
        values: dict[str, Any] = {"status": status, "message": message[:1000], "result": payload}
        values["finished_at"] = utcnow()
        s.execute(update(Job).where(Job.id == job_id).values(**values))
        if status == "done":
            job = s.get(Job, job_id)
            if job is not None and job.total == 0:
                job.done = job.total = 1
    return get_job(db, project_id, job_id)


def _beat(db: Database, job_id: int, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        try:
            heartbeat(db, job_id)
        except Exception:  # a missed beat is retried; the job itself goes on
            log.warning("could not record the heartbeat of job %s", job_id, exc_info=True)


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


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class JobRunner:
    """Claims and runs the jobs of one project, one after the other, in a worker thread.

    Any number of runners may serve one project (threads of several web processes, `terakoya worker`
    processes): they take jobs from the table with :func:`claim_next`, so each job runs once, in the order
    it was asked for. ``start`` queues a job (with ``fn`` it runs that callable instead of the project's
    stage, here — for tests and scripts); ``run_jobs=False`` makes a runner that only queues, for a server
    whose jobs run in `terakoya worker` processes. The thread is a daemon: stopping a server does not wait
    for a long training run; the next runner fails such a job once its heartbeat is stale.
    """

    def __init__(
        self,
        db: Database,
        project_id: int,
        *,
        project: ProjectLike | None = None,
        after_each: Callable[[], None] | None = None,
        run_jobs: bool = True,
        name: str | None = None,
        poll_s: float = 2.0,
    ) -> None:
        self.db = db
        self.project_id = project_id
        self.project = project
        self.after_each = after_each
        self.run_jobs = run_jobs
        self.name = name or default_worker_name()
        self.poll_s = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._local: dict[int, JobFn] = {}

    def start(self, kind: str, fn: JobFn | None = None, *, budget_items: int | None = None) -> JobView:
        """Queue a job of ``kind`` (checked as :func:`action_for` checks it) and wake this runner."""
        if fn is None and self.project is not None:
            action_for(self.project, kind, budget_items=budget_items)  # refuses a bad kind or budget now
        job_id = create_job(self.db, self.project_id, kind, JobArgs(budget_items=budget_items))
        if fn is not None:
            self._local[job_id] = fn
        if self.run_jobs:
            self.begin()
        return get_job(self.db, self.project_id, job_id)

    def begin(self) -> None:
        """Start the worker thread (if it is not running) and have it look for queued jobs now."""
        self._ensure_thread()
        self._wake.set()

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self.serve, name="terakoya-jobs", daemon=True)
                self._thread.start()

    def run_available(self) -> int:
        """Run queued jobs until none is left (or another runner holds the project's running one)."""
        ran = 0
        while not self._stop.is_set() and (claimed := claim_next(self.db, self.project_id, self.name)):
            self._run(claimed)
            ran += 1
        return ran

    def serve(self) -> None:
        """Run jobs as they come until :meth:`shutdown` (what the thread and `terakoya worker` do)."""
        while not self._stop.is_set():
            try:
                self.run_available()
            except Exception:  # the database itself failed; try again at the next poll
                log.exception("could not claim a job")
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def _run(self, claimed: ClaimedJob) -> None:
        fn = self._local.pop(claimed.id, None)
        if fn is None:
            fn = self._action(claimed)
        try:
            run_job(self.db, self.project_id, claimed.id, fn)
            if self.after_each is not None:
                self.after_each()
        except Exception:  # the database itself failed; keep serving the other jobs
            log.exception("could not record job %s", claimed.id)

    def _action(self, claimed: ClaimedJob) -> JobFn:
        try:
            if self.project is None:
                raise StateError(f"job {claimed.id} was queued with no project to run it; start it again")
            return action_for(self.project, claimed.kind, budget_items=claimed.args.budget_items)
        except TerakoyaError as exc:
            refused = exc

            def fail(progress: ProgressFn) -> object:
                raise refused

            return fail

    def wait(self, job_id: int, timeout: float | None = None) -> JobView:
        """Block until a job ends, whoever runs it (for tests and scripts)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            view = get_job(self.db, self.project_id, job_id)
            if view.status in {"done", "failed"}:
                return view
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} did not finish within {timeout} seconds")
            time.sleep(0.05)

    def shutdown(self, *, wait: bool = False, timeout: float | None = None) -> None:
        """Stop claiming after the job in hand (waiting for it only when ``wait``)."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and wait:
            thread.join(timeout)
