"""Assignments: a task takes k answers, each from a different person; and the upgrade that brought them.

Every test runs on a real SQLite file and on a real PostgreSQL database (``db_url``).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from terakoya import workqueue
from terakoya.errors import ConfigError, StateError
from terakoya.settings import Settings, load_settings, parse_overrides
from terakoya.storage import Database, open_database
from terakoya.storage.db import MIGRATIONS
from terakoya.storage.models import Answer, Assignment, Item, Person, Suggestion, Task, utcnow
from terakoya.storage.web_models import Membership

LABELS = ("positive", "negative", "neutral")


def settings_for(tmp_path: Path, **routing: Any) -> Settings:
    return Settings.model_validate(
        {"name": "p", "labels": [{"name": n} for n in LABELS], "routing": routing, "project_dir": tmp_path}
    )


def add_tasks(db: Database, pid: int, n: int, *, k: int = 1, start: int = 0) -> list[int]:
    ids = []
    with db.session() as s:
        for i in range(start, start + n):
            item = Item(project_id=pid, external_id=f"i{i}", text=f"item {i}", text_hash=f"h{pid}-{i}")
            s.add(item)
            s.flush()
            task = Task(project_id=pid, item_id=item.id, priority=i, status="queued", answers_wanted=k)
            s.add(task)
            s.flush()
            ids.append(task.id)
    return ids


def people(db: Database, pid: int, *names: str) -> list[int]:
    ids = []
    with db.session() as s:
        for name in names:
            person = Person(name=name, role="trainer")
            s.add(person)
            s.flush()
            s.add(Membership(project_id=pid, person_id=person.id, role="trainer"))
            ids.append(person.id)
    return ids


def task_row(db: Database, task_id: int) -> Task:
    with db.session() as s:
        task = s.get(Task, task_id)
        assert task is not None
        return task


def states(db: Database, task_id: int) -> dict[int, str]:
    """person id -> the state of their assignment on the task."""
    with db.session() as s:
        rows = s.execute(select(Assignment.person_id, Assignment.status).where(Assignment.task_id == task_id))
        return {person: status for person, status in rows}


@pytest.fixture
def q(db_url: str, tmp_path: Path) -> Iterator[tuple[Database, int, Settings]]:
    db = open_database(db_url)
    yield db, db.project_id("p"), settings_for(tmp_path)
    db.close()


# ----------------------------------------------------------------------------- k answers per task


def test_two_people_answer_a_task_that_takes_two_and_a_third_gets_nothing(q: tuple[Database, int, Settings]) -> None:
    db, pid, settings = q
    (task_id,) = add_tasks(db, pid, 1, k=2)
    ann, bob, cy = people(db, pid, "ann", "bob", "cy")
    first = workqueue.lease_next(db, pid, settings, ann)
    assert first is not None and first.task_id == task_id
    assert task_row(db, task_id).status == "queued"  # one slot of two is taken: still open to others
    second = workqueue.lease_next(db, pid, settings, bob)
    assert second is not None and second.task_id == task_id
    assert task_row(db, task_id).status == "leased"  # every slot taken
    assert workqueue.lease_next(db, pid, settings, cy) is None
    assert workqueue.remaining_for(db, pid, cy) == 0
    assert workqueue.remaining_for(db, pid, ann) == 1  # the one ann holds

    workqueue.submit_answer(db, pid, settings, ann, task_id, label="positive")
    assert task_row(db, task_id).status == "leased"  # one answer of two: bob still holds the other slot
    assert workqueue.lease_next(db, pid, settings, cy) is None
    workqueue.submit_answer(db, pid, settings, bob, task_id, label="negative")
    task = task_row(db, task_id)
    assert (task.status, task.leased_to, task.lease_expires_at) == ("answered", None, None)
    assert states(db, task_id) == {ann: "answered", bob: "answered"}
    with db.session() as s:
        linked = s.execute(select(Assignment.person_id, Answer.person_id, Answer.label).join(
            Answer, Answer.id == Assignment.answer_id)).all()  # fmt: skip
    assert sorted(linked) == sorted([(ann, ann, "positive"), (bob, bob, "negative")])
    assert workqueue.lease_next(db, pid, settings, cy) is None
    assert workqueue.queue_counts(db, pid) == workqueue.QueueCounts(0, 0, 1, 0)


def test_adaptive_overlap_asks_one_more_person_while_the_answers_disagree(
    q: tuple[Database, int, Settings], tmp_path: Path
) -> None:
    db, pid, _ = q
    settings = Settings.model_validate(
        {"name": "p", "labels": [{"name": n} for n in LABELS], "project_dir": tmp_path,
         "quality": {"max_answers_per_item": 3}}
    )  # fmt: skip
    agree, split = add_tasks(db, pid, 2, k=2)
    ann, bob, cy, dee = people(db, pid, "ann", "bob", "cy", "dee")
    for person, labels in ((ann, ("positive", "positive")), (bob, ("positive", "negative"))):
        for task_id, label in zip((agree, split), labels, strict=True):
            view = workqueue.lease_next(db, pid, settings, person)
            assert view is not None and view.task_id == task_id
            workqueue.submit_answer(db, pid, settings, person, task_id, label=label)
    assert task_row(db, agree).status == "answered" and task_row(db, agree).answers_wanted == 2  # they agree
    task = task_row(db, split)
    assert (task.status, task.answers_wanted) == ("queued", 3)  # they disagree: a third person is asked
    view = workqueue.lease_next(db, pid, settings, cy)
    assert view is not None and view.task_id == split
    workqueue.submit_answer(db, pid, settings, cy, split, label="neutral")
    task = task_row(db, split)
    assert (task.status, task.answers_wanted) == ("answered", 3)  # still no agreement, but the cap is reached
    assert workqueue.lease_next(db, pid, settings, dee) is None

    # one answer wanted: one more person is asked when the answer differs from the teacher's suggestion
    confirm, correct = add_tasks(db, pid, 2, k=1, start=10)
    with db.session() as s:
        for task_id in (confirm, correct):
            item_id = s.scalar(select(Task.item_id).where(Task.id == task_id))
            probs = {"positive": 0.6, "negative": 0.2, "neutral": 0.2}
            s.add(Suggestion(item_id=item_id, agent_kind="teacher", agent="t", label="positive", probabilities=probs))
    for task_id, label in ((confirm, "positive"), (correct, "negative")):
        view = workqueue.lease_next(db, pid, settings, dee)
        assert view is not None and view.task_id == task_id
        workqueue.submit_answer(db, pid, settings, dee, task_id, label=label)
    assert (task_row(db, confirm).status, task_row(db, confirm).answers_wanted) == ("answered", 1)
    assert (task_row(db, correct).status, task_row(db, correct).answers_wanted) == ("queued", 2)


def test_answers_from_a_file_fill_one_slot_each(q: tuple[Database, int, Settings], tmp_path: Path) -> None:
    """A task that takes two answers closes only after two people answered it from files; the same person
    answering again fills no second slot; a running lease of someone else gives way to an answer that is in."""
    from terakoya.workqueue.answers import record_answers

    db, pid, settings = q
    first, second = add_tasks(db, pid, 2, k=2)
    (cy,) = people(db, pid, "cy")
    held = workqueue.lease_next(db, pid, settings, cy)
    assert held is not None and held.task_id == first

    def answer_file(name: str, rows: list[tuple[str, str, str]]) -> int:
        path = tmp_path / name
        path.write_text("id,label,person\n" + "".join(f"{i},{lab},{who}\n" for i, lab, who in rows), encoding="utf-8")
        return record_answers(db, pid, settings, path).tasks_answered

    assert answer_file("a.csv", [("i0", "positive", "ann"), ("i1", "negative", "ann")]) == 0
    assert task_row(db, first).status == "leased" and task_row(db, second).status == "queued"
    assert answer_file("b.csv", [("i1", "positive", "ann")]) == 0  # ann again: no second slot
    assert task_row(db, second).status == "queued"
    assert answer_file("c.csv", [("i0", "negative", "bob"), ("i1", "negative", "bob")]) == 2
    assert task_row(db, first).status == task_row(db, second).status == "answered"
    assert states(db, first)[cy] == "expired"  # cy's lease gave way to bob's answer


def test_the_same_person_never_gets_a_task_twice(q: tuple[Database, int, Settings]) -> None:
    db, pid, settings = q
    (task_id,) = add_tasks(db, pid, 1, k=3)
    (ann,) = people(db, pid, "ann")
    view = workqueue.lease_next(db, pid, settings, ann)
    assert view is not None and view.task_id == task_id
    # the preload (the task on screen excluded) finds nothing: the other two slots are not for ann
    assert workqueue.lease_next(db, pid, settings, ann, exclude=[task_id]) is None
    workqueue.submit_answer(db, pid, settings, ann, task_id, label="positive")
    assert workqueue.lease_next(db, pid, settings, ann) is None
    with pytest.raises(StateError) as err:
        workqueue.submit_answer(db, pid, settings, ann, task_id, label="negative")
    assert err.value.message == f"task {task_id} is already answered; fetch the next task"
    assert task_row(db, task_id).status == "queued"  # one answer of three
    # and the database itself refuses a second assignment of one person to one task
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(Assignment(task_id=task_id, person_id=ann, status="leased"))
        s.flush()


def test_a_flag_fills_a_slot_and_marks_the_task_flagged_once_it_is_done(q: tuple[Database, int, Settings]) -> None:
    db, pid, settings = q
    (task_id,) = add_tasks(db, pid, 1, k=2)
    ann, bob = people(db, pid, "ann", "bob")
    for person in (ann, bob):
        assert workqueue.lease_next(db, pid, settings, person) is not None
    workqueue.flag_task(db, pid, settings, ann, task_id, reason="ambiguous")
    assert task_row(db, task_id).status == "leased"
    workqueue.submit_answer(db, pid, settings, bob, task_id, label="neutral")
    assert task_row(db, task_id).status == "flagged"
    assert states(db, task_id) == {ann: "flagged", bob: "answered"}


def test_an_expired_lease_frees_its_slot_for_someone_else(q: tuple[Database, int, Settings]) -> None:
    db, pid, settings = q
    (task_id,) = add_tasks(db, pid, 1, k=2)
    ann, bob, cy = people(db, pid, "ann", "bob", "cy")
    long_ago = utcnow() - timedelta(hours=1)
    assert workqueue.lease_next(db, pid, settings, ann, now=long_ago) is not None
    assert workqueue.lease_next(db, pid, settings, bob) is not None
    task = task_row(db, task_id)
    assert task.status == "leased" and task.leased_to == ann  # the lease that runs out first
    assert workqueue.queue_counts(db, pid).queued == 1  # ann's lease ran out: a slot is free
    taken = workqueue.lease_next(db, pid, settings, cy)
    assert taken is not None and taken.task_id == task_id
    assert states(db, task_id) == {ann: "expired", bob: "leased", cy: "leased"}
    with pytest.raises(StateError) as err:
        workqueue.submit_answer(db, pid, settings, ann, task_id, label="positive")
    assert (
        err.value.message == f"task {task_id} was given to someone else after your lease ran out; fetch the next task"
    )
    assert workqueue.lease_next(db, pid, settings, ann) is None  # both slots are held again
    workqueue.submit_answer(db, pid, settings, bob, task_id, label="positive")
    workqueue.submit_answer(db, pid, settings, cy, task_id, label="positive")
    assert task_row(db, task_id).status == "answered"


def test_a_lease_that_ran_out_is_kept_while_its_slot_is_not_needed(q: tuple[Database, int, Settings]) -> None:
    db, pid, settings = q
    (task_id,) = add_tasks(db, pid, 1, k=2)
    ann, bob = people(db, pid, "ann", "bob")
    assert workqueue.lease_next(db, pid, settings, ann, now=utcnow() - timedelta(hours=1)) is not None
    assert workqueue.lease_next(db, pid, settings, bob) is not None  # the second slot: ann's is not needed
    assert states(db, task_id) == {ann: "leased", bob: "leased"}
    done = workqueue.submit_answer(db, pid, settings, ann, task_id, label="positive")
    assert not done.duplicate


def test_a_person_whose_lease_was_taken_over_may_get_the_task_again(q: tuple[Database, int, Settings]) -> None:
    db, pid, settings = q
    (task_id,) = add_tasks(db, pid, 1)
    ann, bob = people(db, pid, "ann", "bob")
    assert workqueue.lease_next(db, pid, settings, ann, now=utcnow() - timedelta(hours=1)) is not None
    assert workqueue.lease_next(db, pid, settings, bob) is not None
    workqueue.skip_task(db, pid, settings, bob, task_id)
    again = workqueue.lease_next(db, pid, settings, ann)  # as before assignments: ann neither answered nor skipped
    assert again is not None and again.task_id == task_id
    assert states(db, task_id) == {ann: "leased", bob: "skipped"}
    workqueue.submit_answer(db, pid, settings, ann, task_id, label="positive")
    assert task_row(db, task_id).status == "answered"


def test_undo_reopens_the_slot_of_the_undone_answer(q: tuple[Database, int, Settings]) -> None:
    db, pid, settings = q
    (task_id,) = add_tasks(db, pid, 1, k=2)
    ann, bob, cy = people(db, pid, "ann", "bob", "cy")
    for person in (ann, bob):
        assert workqueue.lease_next(db, pid, settings, person) is not None
        workqueue.submit_answer(db, pid, settings, person, task_id, label="positive")
    assert task_row(db, task_id).status == "answered"
    undone = workqueue.undo_last(db, pid, settings, ann)
    assert undone.task is not None and undone.task.task_id == task_id
    assert task_row(db, task_id).status == "leased"  # bob's answer and ann's lease fill both slots
    assert states(db, task_id) == {ann: "leased", bob: "answered"}
    assert workqueue.lease_next(db, pid, settings, cy) is None
    # ann gives the slot up; now cy can take it
    workqueue.skip_task(db, pid, settings, ann, task_id)
    assert task_row(db, task_id).status == "queued"
    taken = workqueue.lease_next(db, pid, settings, cy)
    assert taken is not None and taken.task_id == task_id
    assert workqueue.lease_next(db, pid, settings, ann) is None  # ann skipped it
    workqueue.submit_answer(db, pid, settings, cy, task_id, label="negative")
    assert task_row(db, task_id).status == "answered"
    assert states(db, task_id) == {ann: "skipped", bob: "answered", cy: "answered"}


def test_one_answer_per_task_behaves_as_before(q: tuple[Database, int, Settings]) -> None:
    db, pid, settings = q
    first_id, second_id = add_tasks(db, pid, 2)
    ann, bob = people(db, pid, "ann", "bob")
    view = workqueue.lease_next(db, pid, settings, ann)
    assert view is not None and view.task_id == first_id
    task = task_row(db, first_id)
    assert (task.status, task.leased_to, task.lease_expires_at) == ("leased", ann, view.lease_expires_at)
    other = workqueue.lease_next(db, pid, settings, bob)
    assert other is not None and other.task_id == second_id
    assert workqueue.lease_next(db, pid, settings, bob, exclude=[second_id]) is None
    workqueue.skip_task(db, pid, settings, ann, first_id)
    task = task_row(db, first_id)
    assert (task.status, task.leased_to, task.lease_expires_at) == ("queued", None, None)
    again = workqueue.lease_next(db, pid, settings, bob, exclude=[second_id])
    assert again is not None and again.task_id == first_id
    workqueue.submit_answer(db, pid, settings, bob, first_id, label="positive")
    assert task_row(db, first_id).status == "answered"
    undone = workqueue.undo_last(db, pid, settings, bob)
    assert undone.task is not None and undone.task.task_id == first_id
    task = task_row(db, first_id)
    assert (task.status, task.leased_to) == ("leased", bob)
    assert workqueue.queue_counts(db, pid) == workqueue.QueueCounts(0, 2, 0, 0)


def test_concurrent_leasing_gives_each_task_to_exactly_k_people(db_url: str, tmp_path: Path) -> None:
    db = open_database(db_url)
    pid = db.project_id("p")
    settings = settings_for(tmp_path)
    add_tasks(db, pid, 12, k=2)
    ids = people(db, pid, *(f"t{i}" for i in range(6)))
    dbs = [db, open_database(db_url)]  # two handles, like two server processes: only the database is shared
    done: list[tuple[int, int]] = []
    errors: list[Exception] = []
    barrier = threading.Barrier(len(ids))

    def work(person: int) -> None:
        handle = dbs[person % 2]
        barrier.wait()
        try:
            while (task := workqueue.lease_next(handle, pid, settings, person)) is not None:
                workqueue.submit_answer(handle, pid, settings, person, task.task_id, label="neutral")
                done.append((task.task_id, person))
        except Exception as exc:  # collected and shown by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert len(done) == len(set(done)) == 24
    assert set(Counter(task for task, _ in done).values()) == {2}
    assert workqueue.queue_counts(db, pid) == workqueue.QueueCounts(0, 0, 12, 0)
    dbs[1].close()
    db.close()


# ----------------------------------------------------------------------------- the setting


def test_answers_per_item_is_a_routing_setting_of_one_or_more(tmp_path: Path) -> None:
    from terakoya.project_file import write_new_project

    write_new_project(tmp_path, "fin")
    assert "answers_per_item = 1" in (tmp_path / "terakoya.toml").read_text()
    assert load_settings(tmp_path, env={}).routing.answers_per_item == 1
    more = load_settings(tmp_path, env={}, overrides=parse_overrides(["routing.answers_per_item=3"]))
    assert more.routing.answers_per_item == 3
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path, env={"TERAKOYA_ROUTING__ANSWERS_PER_ITEM": "0"})
    assert "routing.answers_per_item: Input should be greater than or equal to 1 (got 0)" in str(err.value)


def test_routing_gives_each_new_task_answers_per_item(db_url: str, tmp_path: Path) -> None:
    from terakoya.routing import route
    from terakoya.storage.models import Suggestion

    db = open_database(db_url)
    pid = db.project_id("p")
    with db.session() as s:
        for i in range(6):
            split = "test" if i >= 4 else "pool"
            item = Item(project_id=pid, external_id=f"i{i}", text=f"item number {i} is here", text_hash=f"h{i}",
                        split=split, gold_label="positive" if split == "test" else None)  # fmt: skip
            s.add(item)
            s.flush()
            if split == "pool":
                probs = {"positive": 0.5, "negative": 0.3, "neutral": 0.2}
                s.add(Suggestion(item_id=item.id, agent_kind="teacher", agent="m", label="positive",
                                 probabilities=probs, confidence=0.5))  # fmt: skip
    settings = Settings.model_validate(
        {
            "name": "p",
            "labels": [{"name": n} for n in LABELS],
            "routing": {"answers_per_item": 2, "gold_share": 0.5, "trust_teacher": "always", "audit_share": 0.0},
            "teacher": {"kind": "python"},
            "project_dir": tmp_path,
        }
    )
    report = route(db, pid, settings, budget_items=8)  # the budget counts answers: 8 answers, 4 items
    assert (report.routed, report.gold) == (2, 2)
    assert "a budget of 8 answers at 2 answers per item (routing.answers_per_item) routes 4 items" in report.notes
    with db.session() as s:
        wanted = s.execute(select(Task.reason, Task.answers_wanted)).all()
    assert sorted(wanted) == [("gold", 2), ("gold", 2), ("routed", 2), ("routed", 2)]
    db.close()


# ----------------------------------------------------------------------------- upgrades from older databases


def _engine_at(url: str, revision: str) -> sa.Engine:
    """A database built with the migrations up to ``revision`` only, as an older terakoya left it."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return engine


def _insert(conn: sa.Connection, table: str, **row: Any) -> None:
    names = ", ".join(row)
    conn.execute(sa.text(f"INSERT INTO {table} ({names}) VALUES ({', '.join(':' + n for n in row)})"), row)


def _fill_old(conn: sa.Connection, now: datetime, revision: str) -> dict[str, Any]:
    """A project as terakoya at ``revision`` left it: tasks in every state, answers, skips, a student run."""
    later, earlier = now + timedelta(minutes=10), now - timedelta(minutes=10)
    _insert(conn, "projects", id=1, name="legacy", created_at=now)
    for pid, name in enumerate(["ann", "bob", "cy", "dee"], start=1):
        _insert(conn, "people", id=pid, name=name, role="trainer", tags="[]", languages="[]", simulated=False,
                created_at=now)  # fmt: skip
    _insert(conn, "memberships", id=1, project_id=1, person_id=1, role="trainer", tags="[]", languages="[]",
            created_at=now)  # fmt: skip
    for i in range(1, 9):
        test = i == 7
        _insert(conn, "items", id=i, project_id=1, external_id=f"x{i}", text=f"legacy item {i}", text_hash=f"lh{i}",
                split="test" if test else "pool", gold_label="negative" if test else None, meta=f'{{"n": {i}}}',
                created_at=now)  # fmt: skip
        _insert(conn, "suggestions", id=i, item_id=i, agent_kind="teacher", agent="m", prompt_version="v1",
                label="positive", probabilities='{"positive": 0.6, "negative": 0.4}', confidence=0.6,
                confidence_known=True, raw_output="positive", prompt_tokens=3, completion_tokens=1, latency_ms=1.5,
                cost_usd=0.0, cached=False, created_at=now)  # fmt: skip
    _insert(conn, "route_runs", id=1, project_id=1, strategy="terakoya", budget_items=8, params="{}", routed=7,
            gold=1, auto_accepted=0, created_at=now)  # fmt: skip
    # task id -> (status, leased_to, lease_expires_at)
    tasks = {
        1: ("queued", None, None),
        2: ("leased", 1, later),  # ann holds it
        3: ("leased", 2, earlier),  # bob's lease ran out
        4: ("answered", 3, None),  # cy answered
        5: ("flagged", 1, None),  # ann flagged
        6: ("queued", None, None),  # dee skipped it
        7: ("answered", 4, None),  # gold: dee answered twice (undid the first), bob from a file
        8: ("skipped", 2, None),  # an older state: bob skipped
    }
    for tid, (status, who, until) in tasks.items():
        _insert(conn, "tasks", id=tid, project_id=1, item_id=tid, route_run_id=1, kind="label",
                reason="gold" if tid == 7 else "routed", score=0.5, components="{}", priority=tid, status=status,
                leased_to=who, lease_expires_at=until, created_at=now)  # fmt: skip
    answers = [  # id, item/task, person, kind, label, superseded
        (1, 4, 3, "label", "positive", False),
        (2, 5, 1, "flag", None, False),
        (3, 7, 4, "label", "positive", True),
        (4, 7, 4, "label", "negative", False),
        (5, 7, 2, "label", "negative", False),
    ]
    for aid, tid, who, kind, label, superseded in answers:
        _insert(conn, "answers", id=aid, item_id=tid, person_id=who, task_id=tid, kind=kind, label=label,
                value='{"reason": "ambiguous"}' if kind == "flag" else "{}", rationale=None, active_seconds=4.0,
                simulated=False, source="web", guideline_version="g1", idempotency_key=f"k{aid}",
                superseded=superseded, created_at=now)  # fmt: skip
    _insert(conn, "task_skips", id=1, project_id=1, item_id=6, person_id=4, task_id=6, created_at=now)
    _insert(conn, "student_runs", id=1, project_id=1, run_id="run-1", kind="linear", path="/runs/1",
            metrics='{"macro_f1": 0.5}', created_at=now)  # fmt: skip
    if revision >= "0004":  # training labels came with 0004
        _insert(conn, "training_labels", id=1, student_run_id=1, item_id=4, label="positive",
                target='{"positive": 1.0}', source="expert", weight=3.0, answer_ids="[1]", suggestion_id=None,
                aggregator="majority")  # fmt: skip
    if conn.dialect.name == "postgresql":  # rows inserted with explicit ids: move the sequences past them
        for table in ("people", "items", "tasks", "answers", "memberships"):
            conn.execute(sa.text(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))"))
    return {"tasks": tasks, "answers": answers, "later": later, "earlier": earlier}


_KEPT = ("projects", "people", "items", "suggestions", "route_runs", "tasks", "answers", "task_skips",
         "student_runs", "training_labels", "memberships")  # fmt: skip


def _snapshot(conn: sa.Connection, tables: tuple[str, ...]) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: [tuple(row) for row in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id"))] for table in tables
    }


@pytest.mark.parametrize("revision", ["0003", "0004"])
def test_upgrade_keeps_every_row_and_turns_task_states_into_assignments(
    db_url: str, tmp_path: Path, revision: str
) -> None:
    """0003: the schema before task kinds, training labels and assignments; 0004: before assignments."""
    engine = _engine_at(db_url, revision)
    kept = tuple(t for t in _KEPT if revision >= "0004" or t != "training_labels")
    now = utcnow().replace(microsecond=0)
    with engine.begin() as conn:
        old = _fill_old(conn, now, revision)
        before = _snapshot(conn, kept)
    engine.dispose()

    db = open_database(db_url)  # the ordinary way in: migrations to head on open
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() != revision
        after = _snapshot(conn, kept)
        for table in kept:
            if table in ("tasks", "items", "suggestions"):  # the same rows, and columns more
                assert [row[: len(before[table][0])] for row in after[table]] == before[table], table
            else:
                assert after[table] == before[table], table
    with db.session() as s:
        # 0010: every known label became the kind's value of the known answer; old suggestions say nothing more
        known = s.execute(select(Item.gold_label, Item.gold)).all()
        assert any(label is not None for label, _ in known)
        assert all(gold == ({"label": label} if label is not None else None) for label, gold in known)
        assert set(s.scalars(select(Suggestion.value)).all()) == {None}
        assert s.scalar(select(func.count()).select_from(Assignment)) == 8
        tasks = {t.id: t for t in s.scalars(select(Task))}
        assert {t.answers_wanted for t in tasks.values()} == {1}
        assert {tid: (t.status, t.leased_to, t.lease_expires_at) for tid, t in tasks.items()} == old["tasks"]
        rows = s.execute(
            select(
                Assignment.task_id,
                Assignment.person_id,
                Assignment.status,
                Assignment.lease_expires_at,
                Assignment.answer_id,
            )
        ).all()
    assert sorted(rows) == [
        (2, 1, "leased", old["later"], None),
        (3, 2, "leased", old["earlier"], None),
        (4, 3, "answered", None, 1),
        (5, 1, "flagged", None, 2),
        (6, 4, "skipped", None, None),
        (7, 2, "answered", None, 5),
        (7, 4, "answered", None, 4),  # dee's newest, live answer
        (8, 2, "skipped", None, None),
    ]

    # the queue carries on where the old one stopped
    settings = settings_for(tmp_path)
    ann, bob, cy, dee = 1, 2, 3, 4
    back = workqueue.undo_last(db, 1, settings, ann)  # her flag on task 5, answered before the upgrade
    assert back.answer_id == 2 and back.task is not None and back.task.task_id == 5
    assert states(db, 5) == {ann: "leased"} and task_row(db, 5).status == "leased"
    held = workqueue.lease_next(db, 1, settings, ann)
    assert held is not None and held.task_id == 2  # ann still holds task 2 (before task 5 in queue order)
    workqueue.submit_answer(db, 1, settings, ann, 2, label="positive")
    assert states(db, 2) == {ann: "answered"} and task_row(db, 2).status == "answered"
    first = workqueue.lease_next(db, 1, settings, cy)
    assert first is not None and first.task_id == 1
    second = workqueue.lease_next(db, 1, settings, cy, exclude=[1])
    assert second is not None and second.task_id == 3  # bob's lease had run out
    with pytest.raises(StateError, match="was given to someone else after your lease ran out"):
        workqueue.submit_answer(db, 1, settings, bob, 3, label="positive")
    assert workqueue.lease_next(db, 1, settings, dee) is None  # task 6 is still queued, but dee skipped it
    sixth = workqueue.lease_next(db, 1, settings, bob)
    assert sixth is not None and sixth.task_id == 6
    # dee's answer on task 7 is not given back: bob's answer fills its one slot
    undone = workqueue.undo_last(db, 1, settings, dee)
    assert (undone.answer_id, undone.task) == (4, None)
    assert states(db, 7) == {bob: "answered", dee: "expired"} and task_row(db, 7).status == "answered"
    db.close()


def test_the_models_match_the_migrations(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    import terakoya.storage.web_models  # noqa: F401  (the web tables are part of the schema)
    from terakoya.storage.models import Base

    db = open_database(db_url)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    touched = [d for d in diff if "assignments" in repr(d) or "answers_wanted" in repr(d)]
    assert touched == []
    db.close()
