"""Background jobs shared by several processes: claimed from the table once each, one at a time per project."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update

from terakoya import jobs
from terakoya.project import Progress, Project
from terakoya.settings import Settings
from terakoya.storage import open_database
from terakoya.storage.db import Database
from terakoya.storage.models import Job, utcnow


@dataclass
class Stages:
    """A project whose stages only record who ran them and when (the jobs do not care what a stage does)."""

    db: Database
    project_id: int
    log: list[tuple[str, str, float, float]]
    who: str
    settings: Settings = field(default_factory=lambda: Settings(name="p"))
    dir: Path = Path(".")

    def _stage(self, kind: str) -> dict[str, Any]:
        start = time.monotonic()
        time.sleep(0.05)
        self.log.append((kind, self.who, start, time.monotonic()))
        return {"ran": kind}

    def teach(self, *, progress: Progress | None = None) -> dict[str, Any]:
        return self._stage("teach")

    def route(self, *, budget_items: int | None = None) -> dict[str, Any]:
        return self._stage(f"route {budget_items}")

    def train(self, *, progress: Progress | None = None) -> dict[str, Any]:
        return self._stage("train")

    def evaluate(self, *, progress: Progress | None = None) -> dict[str, Any]:
        return self._stage("evaluate")

    def reload_settings(self) -> None:
        pass

    def close(self) -> None:
        self.db.close()


def test_runners_in_several_processes_run_each_job_once_in_order_one_at_a_time(db_url: str) -> None:
    """Three runners, each with its own database handle (as separate processes have), serve one queue."""
    log: list[tuple[str, str, float, float]] = []
    handles = [open_database(db_url) for _ in range(3)]
    pid = handles[0].project_id("p")
    runners = [
        jobs.JobRunner(db, pid, project=Stages(db, pid, log, f"r{i}"), name=f"r{i}", poll_s=0.02)
        for i, db in enumerate(handles)
    ]
    asked = ["teach", "route", "train", "evaluate"] * 3
    ids = [runners[i % 3].start(kind, budget_items=5 if kind == "route" else None).id for i, kind in enumerate(asked)]
    threads = [threading.Thread(target=r.serve) for r in runners]
    for t in threads:
        t.start()
    views = [runners[0].wait(i, timeout=60) for i in ids]
    for r in runners:
        r.shutdown()
    for t in threads:
        t.join(10)
    assert [v.status for v in views] == ["done"] * len(asked)
    assert [kind for kind, *_ in log] == [k if k != "route" else "route 5" for k in asked]  # once each, in order
    assert all(log[i][3] <= log[i + 1][2] for i in range(len(log) - 1))  # never two at once
    assert len({who for _, who, *_ in log}) > 1  # the work was shared
    for db in handles:
        db.close()


def test_a_job_whose_runner_died_is_failed_and_the_queue_goes_on(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 't.db'}")
    pid = db.project_id("p")
    log: list[tuple[str, str, float, float]] = []
    jobs.create_job(db, pid, "train")
    killed = jobs.claim_next(db, pid, "a worker that is then killed")
    assert killed is not None
    later = jobs.create_job(db, pid, "teach")
    runner = jobs.JobRunner(db, pid, project=Stages(db, pid, log, "w"))
    assert runner.run_available() == 0  # the first job's runner may still be alive: the project waits
    with db.session() as s:  # no heartbeat for longer than STALE_AFTER_S
        s.execute(update(Job).where(Job.id == killed.id).values(heartbeat_at=utcnow() - timedelta(minutes=5)))
    assert runner.run_available() == 1
    assert jobs.get_job(db, pid, killed.id).status == "failed"
    assert jobs.get_job(db, pid, later).status == "done" and [k for k, *_ in log] == ["teach"]
    db.close()


def test_terakoya_worker_runs_jobs_the_web_app_queued(tmp_path: Path) -> None:
    """A real `terakoya worker` process runs a queued job from its row alone (its kind and its budget)."""
    folder = tmp_path / "p"
    with Project.init(folder) as project:
        route = jobs.create_job(project.db, project.project_id, "route", jobs.JobArgs(budget_items=5))
        teach = jobs.create_job(project.db, project.project_id, "teach")
    out = subprocess.run(
        [sys.executable, "-m", "terakoya", "worker", "--once"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stderr
    assert "ran 2 job(s)" in out.stdout
    with Project.open(folder) as project:
        views = [jobs.get_job(project.db, project.project_id, i) for i in (route, teach)]
    # the empty project refuses each stage with its own message: the worker called the real stages
    assert [(v.status, v.message) for v in views] == [
        ("failed", "no teacher labels yet; run `terakoya teach` first"),
        ("failed", views[1].message),
    ]
    assert "declares no labels" in views[1].message
