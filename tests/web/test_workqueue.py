"""The expert queue on a real SQLite file and a real PostgreSQL database: leases, answers, skips, undo."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from terakoya import workqueue
from terakoya.errors import DataError, StateError
from terakoya.storage import open_database
from terakoya.storage.models import Answer, Person, Task, utcnow

from .conftest import WebProject, add_tasks, build_project, exact, make_trainer


@pytest.fixture
def wq(db_url: str, tmp_path: Path) -> Iterator[WebProject]:
    p = build_project(db_url, tmp_path, pool=6, gold=0, verify=0)
    yield p
    p.close()


def people(p: WebProject, *names: str) -> list[int]:
    """Trainers as plain rows (the queue does not care how they signed in)."""
    from terakoya.storage.web_models import Membership

    ids = []
    with p.db.session() as s:
        for name in names:
            person = Person(name=name, role="trainer")
            s.add(person)
            s.flush()
            s.add(Membership(project_id=p.project_id, person_id=person.id, role="trainer"))
            ids.append(person.id)
    return ids


def answers(p: WebProject) -> list[Answer]:
    with p.db.session() as s:
        return list(s.scalars(select(Answer).order_by(Answer.id)))


def test_lease_takes_tasks_in_priority_order_and_renews_what_you_hold(wq: WebProject) -> None:
    (ann,) = people(wq, "ann")
    with wq.db.session() as s:
        last = s.scalars(select(Task).order_by(Task.id.desc())).first()
        assert last is not None
        last.priority = -1  # lower comes first
    first = workqueue.lease_next(wq.db, wq.project_id, wq.settings, ann)
    assert first is not None and first.task_id == last.id
    assert first.labels[0].name == "positive" and first.labels[0].key == "1"
    # asking again gives the same task back (a reload), excluding it gives the next one (the preload)
    again = workqueue.lease_next(wq.db, wq.project_id, wq.settings, ann)
    assert again is not None and again.task_id == first.task_id
    preload = workqueue.lease_next(wq.db, wq.project_id, wq.settings, ann, exclude=[first.task_id])
    assert preload is not None and preload.task_id not in {first.task_id}
    with wq.db.session() as s:
        leased = s.scalars(select(Task).where(Task.status == "leased")).all()
        assert {t.id for t in leased} == {first.task_id, preload.task_id}
        assert all(t.leased_to == ann for t in leased)
        for t in leased:
            assert t.lease_expires_at is not None
            minutes = (t.lease_expires_at - utcnow()).total_seconds() / 60
            assert 14 < minutes <= wq.settings.routing.lease_minutes


def test_label_task_hides_the_teacher_and_verify_task_shows_it(tmp_path: Path, db_url: str) -> None:
    p = build_project(db_url, tmp_path, pool=1, gold=0, verify=1)
    (ann,) = people(p, "ann")
    label = workqueue.lease_next(p.db, p.project_id, p.settings, ann)
    verify = workqueue.lease_next(p.db, p.project_id, p.settings, ann, exclude=[label.task_id] if label else [])
    assert label is not None and verify is not None
    assert (label.kind, label.teacher_label, label.teacher_confidence) == ("label", None, None)
    assert (verify.kind, verify.teacher_label, verify.teacher_confidence) == ("verify", "positive", 0.5)
    result = workqueue.submit_answer(p.db, p.project_id, p.settings, ann, verify.task_id, label="negative")
    (stored,) = [a for a in answers(p) if a.id == result.answer_id]
    assert (stored.kind, stored.label, stored.value) == (
        "verify",
        "negative",
        {"label": "negative", "teacher_label": "positive", "accepted": False},
    )
    p.close()


def test_one_trainer_never_sees_an_item_twice(wq: WebProject) -> None:
    ann, bob = people(wq, "ann", "bob")
    seen: list[int] = []
    while (task := workqueue.lease_next(wq.db, wq.project_id, wq.settings, ann)) is not None:
        seen.append(task.item_id)
        if len(seen) % 2:
            workqueue.submit_answer(wq.db, wq.project_id, wq.settings, ann, task.task_id, label="neutral")
        else:
            workqueue.skip_task(wq.db, wq.project_id, wq.settings, ann, task.task_id)
    assert len(seen) == len(set(seen)) == 6
    # the skipped items went back to the pool: bob gets exactly those
    bobs = []
    while (task := workqueue.lease_next(wq.db, wq.project_id, wq.settings, bob)) is not None:
        bobs.append(task.item_id)
        workqueue.submit_answer(wq.db, wq.project_id, wq.settings, bob, task.task_id, label="neutral")
    assert sorted(bobs) == sorted(seen[1::2])
    assert workqueue.queue_counts(wq.db, wq.project_id) == workqueue.QueueCounts(0, 0, 6, 0)


def test_expired_lease_returns_the_item_to_the_pool(wq: WebProject) -> None:
    ann, bob = people(wq, "ann", "bob")
    long_ago = utcnow() - timedelta(hours=1)
    task = workqueue.lease_next(wq.db, wq.project_id, wq.settings, ann, now=long_ago)
    assert task is not None
    assert workqueue.queue_counts(wq.db, wq.project_id).queued == 6  # expired counts as queued
    taken = workqueue.lease_next(wq.db, wq.project_id, wq.settings, bob)
    assert taken is not None and taken.task_id == task.task_id
    with pytest.raises(StateError) as err:
        workqueue.submit_answer(wq.db, wq.project_id, wq.settings, ann, task.task_id, label="positive")
    assert err.value.message == (
        f"task {task.task_id} was given to someone else after your lease ran out; fetch the next task"
    )
    workqueue.submit_answer(wq.db, wq.project_id, wq.settings, bob, task.task_id, label="positive")
    with pytest.raises(StateError, match=f"task {task.task_id} is already answered; fetch the next task"):
        workqueue.submit_answer(wq.db, wq.project_id, wq.settings, ann, task.task_id, label="positive")


def test_an_expired_lease_nobody_took_can_still_be_answered(wq: WebProject) -> None:
    (ann,) = people(wq, "ann")
    task = workqueue.lease_next(wq.db, wq.project_id, wq.settings, ann, now=utcnow() - timedelta(hours=1))
    assert task is not None
    done = workqueue.submit_answer(wq.db, wq.project_id, wq.settings, ann, task.task_id, label="positive")
    assert not done.duplicate


def test_duplicate_submit_is_recorded_once(wq: WebProject) -> None:
    (ann,) = people(wq, "ann")
    task = workqueue.lease_next(wq.db, wq.project_id, wq.settings, ann)
    assert task is not None
    first = workqueue.submit_answer(
        wq.db, wq.project_id, wq.settings, ann, task.task_id, label="negative", idempotency_key="key-1"
    )
    again = workqueue.submit_answer(
        wq.db, wq.project_id, wq.settings, ann, task.task_id, label="negative", idempotency_key="key-1"
    )
    assert (first.duplicate, again.duplicate, again.answer_id) == (False, True, first.answer_id)
    assert len(answers(wq)) == 1
    other = workqueue.lease_next(wq.db, wq.project_id, wq.settings, ann)
    assert other is not None
    with pytest.raises(DataError) as err:
        workqueue.submit_answer(
            wq.db, wq.project_id, wq.settings, ann, other.task_id, label="negative", idempotency_key="key-1"
        )
    assert err.value.message == (
        "this idempotency key was already used for another answer; send a new key for each answer"
    )


def test_duplicate_submits_at_the_same_moment_are_recorded_once(wq: WebProject) -> None:
    (ann,) = people(wq, "ann")
    task = workqueue.lease_next(wq.db, wq.project_id, wq.settings, ann)
    assert task is not None
    results: list[workqueue.SubmitResult] = []
    errors: list[Exception] = []
    barrier = threading.Barrier(6)

    def send() -> None:
        barrier.wait()
        try:
            results.append(
                workqueue.submit_answer(
                    wq.db, wq.project_id, wq.settings, ann, task.task_id, label="positive", idempotency_key="same"
                )
            )
        except Exception as exc:  # collected and shown by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({r.answer_id for r in results}) == 1
    assert sorted(r.duplicate for r in results) == [False] + [True] * 5
    assert len(answers(wq)) == 1


def test_concurrent_leasing_never_gives_a_task_to_two_trainers(db_url: str, tmp_path: Path) -> None:
    p = build_project(db_url, tmp_path, pool=60)
    ids = people(p, *(f"t{i}" for i in range(8)))
    # two handles on one database, like two server processes: they share no lock, only the database
    dbs = [p.db, open_database(db_url)]
    leased: list[tuple[int, int]] = []
    errors: list[Exception] = []
    barrier = threading.Barrier(len(ids))

    def work(person: int) -> None:
        db = dbs[person % 2]
        barrier.wait()
        try:
            while (task := workqueue.lease_next(db, p.project_id, p.settings, person)) is not None:
                leased.append((task.task_id, person))
                workqueue.submit_answer(
                    db,
                    p.project_id,
                    p.settings,
                    person,
                    task.task_id,
                    label="neutral",
                    idempotency_key=f"{person}-{task.task_id}",
                )
        except Exception as exc:  # collected and shown by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    counts = Counter(task for task, _ in leased)
    assert len(counts) == 60 and max(counts.values()) == 1
    stored = answers(p)
    assert len(stored) == 60 and len({a.task_id for a in stored}) == 60
    assert len({person for _, person in leased}) > 1
    dbs[1].close()
    p.close()


def test_undo_marks_the_answer_superseded_and_gives_the_item_back(wq: WebProject) -> None:
    ann, bob = people(wq, "ann", "bob")
    with pytest.raises(StateError, match=exact("there is no answer of yours to undo in this project")):
        workqueue.undo_last(wq.db, wq.project_id, wq.settings, ann)
    first = workqueue.lease_next(wq.db, wq.project_id, wq.settings, ann)
    assert first is not None
    workqueue.submit_answer(
        wq.db, wq.project_id, wq.settings, ann, first.task_id, label="positive", idempotency_key="a"
    )
    undone = workqueue.undo_last(wq.db, wq.project_id, wq.settings, ann)
    assert undone.task is not None and undone.task.task_id == first.task_id
    (stored,) = answers(wq)
    assert stored.superseded
    # bob cannot get it (it is leased back to ann); ann gets it again first
    bobs = workqueue.lease_next(wq.db, wq.project_id, wq.settings, bob)
    assert bobs is not None and bobs.task_id != first.task_id
    again = workqueue.lease_next(wq.db, wq.project_id, wq.settings, ann)
    assert again is not None and again.task_id == first.task_id
    workqueue.submit_answer(
        wq.db, wq.project_id, wq.settings, ann, first.task_id, label="negative", idempotency_key="b"
    )
    assert [(a.label, a.superseded) for a in answers(wq)] == [("positive", True), ("negative", False)]


def test_flag_is_an_answer_of_kind_flag(wq: WebProject) -> None:
    (ann,) = people(wq, "ann")
    task = workqueue.lease_next(wq.db, wq.project_id, wq.settings, ann)
    assert task is not None
    with pytest.raises(DataError) as err:
        workqueue.flag_task(wq.db, wq.project_id, wq.settings, ann, task.task_id, reason="boring")
    assert err.value.message == "flag reason 'boring' is unknown; choose one of: broken, ambiguous, guideline_unclear"
    workqueue.flag_task(
        wq.db, wq.project_id, wq.settings, ann, task.task_id, reason="ambiguous", comment=" two readings "
    )
    (stored,) = answers(wq)
    assert (stored.kind, stored.label, stored.value) == (
        "flag",
        None,
        {"reason": "ambiguous", "comment": "two readings"},
    )
    assert workqueue.queue_counts(wq.db, wq.project_id).flagged == 1


def test_bad_labels_and_foreign_tasks_are_refused_with_the_fix(wq: WebProject, tmp_path: Path) -> None:
    ann, bob = people(wq, "ann", "bob")
    task = workqueue.lease_next(wq.db, wq.project_id, wq.settings, ann)
    assert task is not None
    with pytest.raises(DataError) as err:
        workqueue.submit_answer(wq.db, wq.project_id, wq.settings, ann, task.task_id, label="Positive")
    assert err.value.message == (
        "label 'Positive' is not one of this project's labels: positive, negative, neutral; choose one of them"
    )
    with pytest.raises(StateError) as state:
        workqueue.submit_answer(wq.db, wq.project_id, wq.settings, bob, task.task_id, label="positive")
    assert (
        state.value.message
        == f"task {task.task_id} was given to someone else after your lease ran out; fetch the next task"
    )
    with pytest.raises(StateError) as skip:
        workqueue.skip_task(wq.db, wq.project_id, wq.settings, bob, task.task_id)
    assert (
        skip.value.message == f"task {task.task_id} is not leased to you, so it cannot be skipped; fetch the next task"
    )
    other = wq.db.project_id("other")
    (foreign,) = add_tasks(wq.db, other, pool=1, start=100)
    with pytest.raises(Exception, match=f"task {foreign} does not exist in this project; fetch the next task"):
        workqueue.submit_answer(wq.db, wq.project_id, wq.settings, ann, foreign, label="positive")


def test_active_seconds_are_capped_by_the_server(wq: WebProject) -> None:
    (ann,) = people(wq, "ann")
    start = utcnow()
    task = workqueue.lease_next(wq.db, wq.project_id, wq.settings, ann, now=start)
    assert task is not None
    # the client claims 50 s, but the server saw only 10 s since the fetch: 10 s + 2 s slack
    r = workqueue.submit_answer(
        wq.db, wq.project_id, wq.settings, ann, task.task_id, label="positive", active_seconds=50,
        now=start + timedelta(seconds=10),
    )  # fmt: skip
    assert r.active_seconds == 12.0
    task = workqueue.lease_next(wq.db, wq.project_id, wq.settings, ann, now=start + timedelta(seconds=11))
    assert task is not None
    # an hour away from the keyboard counts as the 2-minute cap, no more
    r = workqueue.submit_answer(
        wq.db, wq.project_id, wq.settings, ann, task.task_id, label="positive", active_seconds=3600,
        now=start + timedelta(hours=1),
    )  # fmt: skip
    assert r.active_seconds == workqueue.IDLE_CAP_S
    task = workqueue.lease_next(wq.db, wq.project_id, wq.settings, ann, now=start + timedelta(hours=1, seconds=1))
    assert task is not None
    r = workqueue.submit_answer(
        wq.db, wq.project_id, wq.settings, ann, task.task_id, label="positive", active_seconds=7.5,
        now=start + timedelta(hours=1, seconds=20),
    )  # fmt: skip
    assert r.active_seconds == 7.5


def test_one_person_holds_at_most_three_tasks(wq: WebProject) -> None:
    (ann,) = people(wq, "ann")
    held: list[int] = []
    for _ in range(workqueue.MAX_HELD):
        task = workqueue.lease_next(wq.db, wq.project_id, wq.settings, ann, exclude=held)
        assert task is not None
        held.append(task.task_id)
    with pytest.raises(StateError) as err:
        workqueue.lease_next(wq.db, wq.project_id, wq.settings, ann, exclude=held)
    assert err.value.message == "you already hold 3 tasks; answer or skip one of them before asking for another"
    assert workqueue.remaining_for(wq.db, wq.project_id, ann) == 6


def test_released_tasks_go_to_the_next_person_at_once(project: WebProject) -> None:
    tom, ann = make_trainer(project, "tom"), make_trainer(project, "ann")
    first = workqueue.lease_next(project.db, project.project_id, project.settings, tom.id)
    assert first is not None
    second = workqueue.lease_next(project.db, project.project_id, project.settings, tom.id, exclude=[first.task_id])
    assert second is not None
    # not held by ann, or unknown: left alone
    assert workqueue.release_tasks(project.db, project.project_id, ann.id, [first.task_id, 10**9]) == 0
    assert workqueue.release_tasks(project.db, project.project_id, tom.id, [first.task_id, first.task_id]) == 1
    taken = workqueue.lease_next(project.db, project.project_id, project.settings, ann.id)
    assert taken is not None and taken.task_id == first.task_id
    # tom may be offered it again later; his other task stays his
    assert workqueue.release_tasks(project.db, project.project_id, tom.id, [first.task_id]) == 0
    done = workqueue.submit_answer(
        project.db, project.project_id, project.settings, tom.id, second.task_id, label="neutral", active_seconds=3
    )
    assert done.answer_id > 0
