"""Load test of the expert queue: many simulated trainers against `terakoya serve` on 127.0.0.1.

    python -m bench.load                      # 50 trainers, 5,000 queued tasks, SQLite
    python -m bench.load --trainers 10 --think-ms 500 --seconds 20
    python -m bench.load --postgres --workers 4 --kill-one-after 10   # a throwaway PostgreSQL cluster, 4 processes

A temporary project (terakoya.toml + SQLite file) gets queued tasks and trainers with API tokens; the server runs
in its own process (``terakoya.web.serve``, what `terakoya serve` calls). Each trainer is an async httpx client that
fetches the next task, answers it and submits, for a bounded number of iterations or seconds; some submits are sent
twice on purpose, and a submit whose connection broke is sent again with the same idempotency key, as the
workbench does. ``--kill-one-after S`` kills one of the ``--workers`` server processes with SIGKILL after S seconds.
Reported: p50/p99 latency of next-task and submit, answers per second, and a count check
(answers acknowledged == answers stored, no idempotency key stored twice, no task answered twice).
Writes bench/results/load.json and bench/results/load.png. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LABELS = ("positive", "negative", "neutral")
RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Tally:
    next_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    done_at: list[float] = field(default_factory=list)  # seconds since start, per acknowledged answer
    acknowledged: set[int] = field(default_factory=set)
    resent: int = 0
    resent_matched: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def build_project(folder: Path, *, tasks: int, trainers: int, db: str | None = None) -> list[str]:
    """A project folder with ``tasks`` queued tasks and ``trainers`` people; returns their API tokens."""
    from terakoya.people import accounts
    from terakoya.project_file import write_new_project
    from terakoya.settings import load_settings
    from terakoya.storage import open_database
    from terakoya.storage.models import Item, Person, Suggestion, Task
    from terakoya.storage.web_models import Membership

    write_new_project(folder, "load", [(name, f"{name} news") for name in LABELS], db=db)
    settings = load_settings(folder, env={})
    db = open_database(settings.db_url)
    pid = db.project_id(settings.name)
    with db.session() as s:
        for i in range(tasks):
            text = f"Load item {i}: quarterly revenue changed by {i % 97} percent."
            item = Item(
                project_id=pid,
                external_id=str(i),
                text=text,
                text_hash=hashlib.sha256(text.encode()).hexdigest(),
                split="test" if i % 10 == 0 else "pool",
                gold_label=LABELS[i % 3] if i % 10 == 0 else None,
            )
            s.add(item)
            s.flush()
            s.add(
                Suggestion(
                    item_id=item.id,
                    agent_kind="teacher",
                    agent="bench",
                    prompt_version="v1",
                    label=LABELS[i % 3],
                    probabilities={name: 1 / 3 for name in LABELS},
                    confidence=1 / 3,
                )
            )
            s.add(
                Task(
                    project_id=pid,
                    item_id=item.id,
                    kind="verify" if i % 2 else "label",
                    reason="gold" if i % 10 == 0 else "routed",
                    priority=0,
                    status="queued",
                )
            )
        people = [Person(name=f"trainer-{n}", role="trainer") for n in range(trainers)]
        s.add_all(people)
        s.flush()
        s.add_all(Membership(project_id=pid, person_id=p.id, role="trainer") for p in people)
        ids = [p.id for p in people]
    tokens = [accounts.create_api_token(db, person_id, "bench")[1] for person_id in ids]
    db.close()
    return tokens


def serve(folder: Path, port: int, workers: int) -> None:
    """The server process: exactly what `terakoya serve` runs."""
    from terakoya.web import serve as run

    run(folder, host="127.0.0.1", port=port, workers=workers)


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (the server's worker processes), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


async def _kill_one_later(server_pid: int, after_s: float, killed: list[int]) -> None:
    import signal

    await asyncio.sleep(after_s)
    workers = [p for p in _children(server_pid) if "uvicorn" not in Path(f"/proc/{p}/comm").read_text()]
    if workers:
        os.kill(workers[-1], signal.SIGKILL)
        killed.append(workers[-1])


async def trainer(
    client: Any, token: str, tally: Tally, *, iterations: int, deadline: float, think_s: float, resend: float, t0: float
) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    rng = random.Random(token)
    if think_s:  # people do not all click at the same millisecond
        await asyncio.sleep(rng.uniform(0, think_s))
    for _ in range(iterations):
        if time.perf_counter() >= deadline:
            return
        start = time.perf_counter()
        try:
            r = await client.get("/api/v1/tasks/next", headers=headers)
        except httpx.HTTPError as exc:
            tally.error(f"next: {type(exc).__name__}")
            continue
        tally.next_ms.append((time.perf_counter() - start) * 1000)
        if r.status_code != 200:
            tally.error(f"next: HTTP {r.status_code}")
            continue
        task = r.json()["task"]
        if task is None:
            return
        if think_s:
            await asyncio.sleep(rng.uniform(0.5, 1.5) * think_s)
        label = task["teacher_label"] if task["kind"] == "verify" and rng.random() < 0.7 else rng.choice(LABELS)
        body = {"label": label, "idempotency_key": uuid.uuid4().hex, "active_seconds": think_s or 1.0}
        url = f"/api/v1/tasks/{task['task_id']}/answer"
        start = time.perf_counter()
        r = None
        retried = False
        for attempt in range(6):  # a broken connection (a killed worker) is retried with the same key
            try:
                r = await client.post(url, json=body, headers=headers)
                break
            except httpx.HTTPError as exc:
                tally.error(f"submit: {type(exc).__name__} (sent again)")
                retried = True
                await asyncio.sleep(0.2 * (attempt + 1))
        if r is None:
            tally.error("submit: gave up after 6 tries")
            continue
        tally.submit_ms.append((time.perf_counter() - start) * 1000)
        if r.status_code != 200:
            tally.error(f"submit: HTTP {r.status_code}")
            continue
        answer = r.json()
        # a retry after a broken connection may find the answer stored before the break: that reply
        # ("duplicate") is the first acknowledgment this client gets for it
        if not answer["duplicate"] or retried:
            tally.acknowledged.add(answer["answer_id"])
            tally.done_at.append(time.perf_counter() - t0)
        if rng.random() < resend:  # a double click or a retry after a timeout
            tally.resent += 1
            again = await client.post(url, json=body, headers=headers)
            if again.status_code == 200 and again.json() == {**answer, "duplicate": True}:
                tally.resent_matched += 1
            else:
                tally.error(f"resend: HTTP {again.status_code}")


async def drive(
    base: str, tokens: list[str], args: argparse.Namespace, server_pid: int, killed: list[int]
) -> tuple[Tally, float]:
    import httpx

    tally = Tally()
    killer = (
        asyncio.ensure_future(_kill_one_later(server_pid, args.kill_one_after, killed))
        if args.kill_one_after is not None
        else None
    )
    limits = httpx.Limits(max_connections=len(tokens), max_keepalive_connections=len(tokens))
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30.0) as client:
        t0 = time.perf_counter()
        deadline = t0 + args.seconds
        await asyncio.gather(
            *(
                trainer(
                    client,
                    token,
                    tally,
                    iterations=args.iterations,
                    deadline=deadline,
                    think_s=args.think_ms / 1000,
                    resend=args.resend,
                    t0=t0,
                )
                for token in tokens
            )
        )
        elapsed = time.perf_counter() - t0
    if killer is not None:
        killer.cancel()
    return tally, elapsed


def count_check(folder: Path, tally: Tally) -> dict[str, Any]:
    from sqlalchemy import func, select

    from terakoya.settings import load_settings
    from terakoya.storage import open_database
    from terakoya.storage.models import Answer

    db = open_database(load_settings(folder, env={}).db_url)
    with db.session() as s:
        stored_ids = set(s.scalars(select(Answer.id)))
        dup_keys = s.scalar(
            select(func.count()).select_from(
                select(Answer.idempotency_key).group_by(Answer.idempotency_key).having(func.count() > 1).subquery()
            )
        )
        dup_tasks = s.scalar(
            select(func.count()).select_from(
                select(Answer.task_id).group_by(Answer.task_id).having(func.count() > 1).subquery()
            )
        )
    db.close()
    return {
        "acknowledged": len(tally.acknowledged),
        "stored": len(stored_ids),
        "acknowledged_equals_stored": tally.acknowledged == stored_ids,
        "keys_stored_twice": int(dup_keys or 0),
        "tasks_answered_twice": int(dup_tasks or 0),
        "resent": tally.resent,
        "resent_answered_with_the_first": tally.resent_matched,
    }


def plot(tally: Tally, elapsed: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, values in (("next task", tally.next_ms), ("submit", tally.submit_ms)):
        if values:
            ordered = sorted(values)
            left.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=name)
    left.axvline(100, color="grey", linestyle="--", linewidth=1, label="100 ms")
    left.set_xscale("log")
    left.set_xlabel("latency (ms)")
    left.set_ylabel("share of requests")
    left.set_title("latency (CDF)")
    left.legend()
    seconds = max(1, int(elapsed) + 1)
    per_second = [0] * seconds
    for at in tally.done_at:
        per_second[min(seconds - 1, int(at))] += 1
    right.bar(range(seconds), per_second, width=1.0)
    right.set_xlabel("second")
    right.set_ylabel("answers stored")
    right.set_title("answers per second")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trainers", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--iterations", type=int, default=100, help="answers per trainer at most")
    parser.add_argument("--seconds", type=float, default=60.0, help="stop after this many seconds")
    parser.add_argument(
        "--think-ms", type=float, default=2000.0, help="mean pause to read an item before answering (0: flat out)"
    )
    parser.add_argument("--resend", type=float, default=0.05, help="share of submits deliberately sent twice")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the temporary project folder")
    parser.add_argument("--postgres", action="store_true", help="on a throwaway PostgreSQL cluster (default: SQLite)")
    parser.add_argument("--db", help="an empty database to fill instead (a SQLAlchemy URL)")
    parser.add_argument("--workers", type=int, default=1, help="server processes sharing the queue")
    parser.add_argument("--kill-one-after", type=float, help="SIGKILL one server process after this many seconds")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port, args.workers)
        return 0
    if args.kill_one_after is not None and args.workers < 2:
        raise SystemExit("--kill-one-after needs --workers 2 or more (someone has to carry on)")
    if args.db or not args.postgres:
        return run(args, args.db)
    from bench.postgres import temporary_cluster

    with temporary_cluster() as url:
        return run(args, url)


def run(args: argparse.Namespace, db: str | None) -> int:
    """One load run against a fresh project (on ``db``, or a SQLite file)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = Path(tempfile.mkdtemp(prefix="terakoya-load-"))
    print(f"building {args.tasks} tasks and {args.trainers} trainers in {folder} ...", flush=True)
    tokens = build_project(folder, tasks=args.tasks, trainers=args.trainers, db=db)
    port = _free_port()
    killed: list[int] = []
    log_path = folder / "server.log"
    log_file = log_path.open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.load",
            "--serve",
            str(folder),
            "--port",
            str(port),
            "--workers",
            str(args.workers),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log_file,  # a file, not a pipe: the server's worker processes hold it open too
    )
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise SystemExit(f"the server did not start; its log: {log_path}")
            time.sleep(0.2)
        print(f"server on {base}; {args.trainers} trainers working ...", flush=True)
        tally, elapsed = asyncio.run(drive(base, tokens, args, server.pid, killed))
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    check = count_check(folder, tally)
    result = {
        "trainers": args.trainers,
        "tasks": args.tasks,
        "iterations": args.iterations,
        "think_ms": args.think_ms,
        "database": "postgresql (throwaway cluster, fsync off)" if db else "sqlite (WAL, synchronous=FULL)",
        "workers": args.workers,
        "killed_worker_pids": killed,
        "seconds": round(elapsed, 2),
        "requests": {"next": len(tally.next_ms), "submit": len(tally.submit_ms)},
        "latency_ms": {
            name: {
                "p50": _pct(values, 50),
                "p90": _pct(values, 90),
                "p99": _pct(values, 99),
                "max": max(values, default=None),
                "mean": statistics.fmean(values) if values else None,
            }
            for name, values in (("next", tally.next_ms), ("submit", tally.submit_ms))
        },
        "answers_per_second": round(len(tally.acknowledged) / elapsed, 1) if elapsed else None,
        "errors": tally.errors,
        "count_check": check,
        "cpu_count": os.cpu_count(),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load.json").write_text(json.dumps(result, indent=2) + "\n")
    title = f"{args.trainers} trainers, {'PostgreSQL' if db else 'SQLite'}, {args.workers} process(es)"
    title += f", think {args.think_ms:g} ms" + (", one process killed" if killed else "")
    plot(tally, elapsed, args.out / "load.png", title)
    lat = result["latency_ms"]
    rows = [
        ("next task p50 / p99 (ms)", f"{lat['next']['p50']:.1f} / {lat['next']['p99']:.1f}" if tally.next_ms else "—"),
        (
            "submit p50 / p99 (ms)",
            f"{lat['submit']['p50']:.1f} / {lat['submit']['p99']:.1f}" if tally.submit_ms else "—",
        ),
        ("answers per second", str(result["answers_per_second"])),
        ("answers acknowledged / stored", f"{check['acknowledged']} / {check['stored']}"),
        ("acknowledged == stored", str(check["acknowledged_equals_stored"])),
        ("keys or tasks stored twice", f"{check['keys_stored_twice']} / {check['tasks_answered_twice']}"),
        ("resent submits answered with the first", f"{check['resent_answered_with_the_first']} / {check['resent']}"),
        ("errors", json.dumps(tally.errors) if tally.errors else "none"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"\n{title}, {elapsed:.1f} s, load average {result['load_average_after'][0]} on {os.cpu_count()} cores")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    print(f"\nwrote {args.out / 'load.json'} and {args.out / 'load.png'}")
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    ok = check["acknowledged_equals_stored"] and not check["keys_stored_twice"] and not check["tasks_answered_twice"]
    return 0 if ok and check["resent"] == check["resent_answered_with_the_first"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
