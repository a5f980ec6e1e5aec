"""Storage on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from terakoya.errors import ConfigError
from terakoya.storage import Database, open_database
from terakoya.storage.models import Answer, Item, Person, Suggestion


def test_migrations_create_every_table(db_url: str) -> None:
    db = open_database(db_url)
    tables = set(inspect(db.engine).get_table_names())
    assert {"items", "suggestions", "answers", "teacher_calls", "tasks", "people", "alembic_version"} <= tables
    db.close()
    # opening again is a no-op, not a second migration
    db = open_database(db_url)
    with db.engine.connect() as conn:
        assert conn.execute(text("select count(*) from alembic_version")).scalar() == 1
    db.close()


def test_suggestion_and_answer_kept_apart_with_provenance(db_url: str) -> None:
    db = open_database(db_url)
    pid = db.project_id("p")
    assert db.project_id("p") == pid
    with db.session() as s:
        item = Item(project_id=pid, external_id="1", text="Profit rose.", text_hash="h1", split="pool")
        s.add(item)
        s.flush()
        s.add(
            Suggestion(
                item_id=item.id, agent_kind="teacher", agent="m", prompt_version="v1",
                label="positive", probabilities={"positive": 0.8, "negative": 0.2}, confidence=0.8,
            )
        )  # fmt: skip
        person = Person(name="ann")
        s.add(person)
        s.flush()
        s.add(Answer(item_id=item.id, person_id=person.id, label="negative", rationale="loss", active_seconds=12.5))
    with db.session() as s:
        sug = s.scalars(select(Suggestion)).one()
        ans = s.scalars(select(Answer)).one()
        assert (sug.agent, sug.prompt_version, sug.probabilities["positive"]) == ("m", "v1", 0.8)
        got = (ans.person.name, ans.label, ans.active_seconds, ans.item.text)
        assert got == ("ann", "negative", 12.5, "Profit rose.")
    db.close()


def test_sqlite_is_wal_with_foreign_keys(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    db.close()


def _two_writers(first: Database, second: Database, *, grace_s: float) -> list[str]:
    """Thread A writes on ``first``; while inside, thread B tries to write on ``second``. Returns who went when.

    A waits inside for B to get in too: for ``grace_s`` seconds only, since on a serialised database B cannot.
    """
    order: list[str] = []
    a_in, b_trying, b_in = threading.Event(), threading.Event(), threading.Event()

    def writer_a() -> None:
        with first.writing():
            order.append("A in")
            a_in.set()
            assert b_trying.wait(10)
            b_in.wait(grace_s)
            order.append("A out")

    def writer_b() -> None:
        assert a_in.wait(10)
        b_trying.set()
        with second.writing():
            order.append("B in")
            b_in.set()
            order.append("B out")

    threads = [threading.Thread(target=writer_a), threading.Thread(target=writer_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    return order


def test_writing_lets_one_thread_at_a_time_write_to_a_sqlite_file(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    assert _two_writers(db, db, grace_s=0.3) == ["A in", "A out", "B in", "B out"]
    # one lock per open database: another file is not held up, and the lock is free again afterwards
    other = open_database(f"sqlite:///{tmp_path / 'y.db'}")
    assert _two_writers(db, other, grace_s=30) == ["A in", "B in", "B out", "A out"]
    with db.writing():
        pass
    db.close()
    other.close()


@pytest.mark.postgres
def test_writing_is_a_no_op_on_postgresql(postgres_url: str) -> None:
    db = open_database(postgres_url)
    assert db.dialect == "postgresql"
    assert _two_writers(db, db, grace_s=30) == ["A in", "B in", "B out", "A out"]
    db.close()


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist; create it or fix --db"):
        open_database(f"sqlite:///{tmp_path / 'nope' / 'x.db'}")


def test_unknown_dialect_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown dialect"):
        open_database("nosuchdb://x")
