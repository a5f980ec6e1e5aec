"""Storage on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from terakoya.errors import ConfigError
from terakoya.storage import open_database
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


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist; create it or fix --db"):
        open_database(f"sqlite:///{tmp_path / 'nope' / 'x.db'}")


def test_unknown_dialect_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown dialect"):
        open_database("nosuchdb://x")
