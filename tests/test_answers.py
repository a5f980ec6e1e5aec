"""Expert answers from files and simulated answers, on real databases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from terakoya.errors import ConfigError, DataError
from terakoya.people.accounts import get_or_create_person
from terakoya.people.glossary import guideline_version
from terakoya.routing import route
from terakoya.settings import Settings
from terakoya.storage import Database, open_database
from terakoya.storage.models import Answer, Import, Item, Person, Suggestion, Task
from terakoya.workqueue.answers import record_answers, simulate

LABELS = ["positive", "negative", "neutral"]


def settings_for(tmp_path: Path, **extra: Any) -> Settings:
    return Settings.model_validate(
        {"name": "p", "labels": [{"name": n} for n in LABELS], "project_dir": tmp_path, **extra}
    )


def seed_items(db: Database, pid: int, n: int = 5, *, split: str = "pool", meta: bool = False) -> None:
    with db.session() as s:
        for i in range(1, n + 1):
            item = Item(
                project_id=pid,
                external_id=str(i) if split == "pool" else f"t{i}",
                text=f"Sentence number {i} about {split} markets.",
                text_hash=f"{split}{i}",
                split=split,
                gold_label=LABELS[i % 3],
                meta={"second_opinion": LABELS[(i + 1) % 3]} if meta else {},
            )
            s.add(item)
            s.flush()
            top = 0.4 + 0.1 * (i % 5)
            s.add(
                Suggestion(
                    item_id=item.id,
                    agent_kind="teacher",
                    agent="m",
                    label="positive",
                    probabilities={"positive": top, "negative": (1 - top) / 2, "neutral": (1 - top) / 2},
                    confidence=top,
                )
            )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'terakoya.db'}")
    yield database
    database.close()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def count(db: Database, model: Any = Answer) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


# ----------------------------------------------------------------------------- from a file


def test_record_answers_from_csv_closes_open_tasks(db_url: str, tmp_path: Path) -> None:
    db = open_database(db_url)
    pid = db.project_id("p")
    seed_items(db, pid)
    settings = settings_for(tmp_path, guidelines="Label the tone.", routing={"gold_share": 0.0})
    run = route(db, pid, settings, budget_items=2)
    with db.session() as s:
        queued = s.scalars(select(Item.external_id).join(Task).where(Task.route_run_id == run.route_run_id)).all()
    other = next(str(i) for i in range(1, 6) if str(i) not in queued)
    path = write(
        tmp_path / "answers.csv",
        "id,label,person,rationale,seconds\n"
        f"{queued[0]},negative,ann,loss widened,12.5\n"
        f"{queued[1]},neutral,ben,,\n"
        f"{other},positive,ann,,8\n",
    )
    report = record_answers(db, pid, settings, path)
    assert (report.recorded, report.duplicates, report.people, report.simulated) == (3, 0, ["ann", "ben"], False)
    assert report.tasks_answered == 2
    with db.session() as s:
        rows = s.execute(select(Item.external_id, Answer).join(Item).order_by(Answer.id)).all()
        got = [(ext, a.label, a.person.name, a.rationale, a.active_seconds, a.source, a.simulated) for ext, a in rows]
        assert got == [
            (queued[0], "negative", "ann", "loss widened", 12.5, "file", False),
            (queued[1], "neutral", "ben", None, None, "file", False),
            (other, "positive", "ann", None, 8.0, "file", False),
        ]
        answers = [a for _, a in rows]
        assert answers[0].task_id is not None and answers[2].task_id is None
        # the stamp is the glossary-aware version the web answers carry: guidelines, labels and glossary
        assert {a.guideline_version for a in answers} == {guideline_version(db, pid, settings)}
        statuses = s.scalars(select(Task.status).where(Task.route_run_id == run.route_run_id)).all()
        assert statuses == ["answered", "answered"]
    db.close()


def test_unknown_id_names_the_line_and_writes_nothing(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    seed_items(db, pid)
    path = write(tmp_path / "answers.csv", "id,label,person\n1,positive,ann\n2,negative,ann\n17x,neutral,ann\n")
    with pytest.raises(DataError) as err:
        record_answers(db, pid, settings_for(tmp_path), path)
    assert str(err.value) == (
        "answers.csv line 4: no item with id '17x' in this project; check the id column (--id-column)"
    )
    assert count(db) == 0
    assert count(db, Person) == 0


def test_an_error_while_writing_leaves_nothing_behind(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    seed_items(db, pid)
    # a simulated person's name is refused for file answers; the valid rows before it are not written either
    with db.session() as s:
        get_or_create_person(s, "simulated-expert", simulated=True)
    path = write(tmp_path / "a.csv", "id,label,person\n1,positive,ann\n2,negative,simulated-expert\n")
    with pytest.raises(DataError) as err:
        record_answers(db, pid, settings_for(tmp_path), path)
    assert str(err.value) == (
        "a.csv line 3: 'simulated-expert' is the name of a simulated expert; "
        "record a person's answers under that person's own name"
    )
    assert count(db) == 0
    with db.session() as s:
        assert s.scalars(select(Person.name)).all() == ["simulated-expert"]


def test_label_outside_the_project_labels(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    seed_items(db, pid)
    path = write(tmp_path / "answers.csv", "id,label,person\n1,positive,ann\n2,postive,ann\n")
    with pytest.raises(DataError) as err:
        record_answers(db, pid, settings_for(tmp_path), path)
    assert str(err.value) == (
        "answers.csv line 3: label 'postive' is not one of the project's labels: positive, negative, neutral; "
        "fix the label, or declare it under [[labels]] in terakoya.toml"
    )
    empty = write(tmp_path / "empty.csv", "id,label,person\n1,,ann\n")
    with pytest.raises(DataError) as err:
        record_answers(db, pid, settings_for(tmp_path), empty)
    assert str(err.value) == (
        "empty.csv line 2: the label is empty; fill in the 'label' column with one of: positive, negative, neutral"
    )


def test_missing_person_needs_a_default(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    seed_items(db, pid)
    settings = settings_for(tmp_path)
    path = write(tmp_path / "answers.csv", "id,label\n1,positive\n2,negative\n")
    with pytest.raises(DataError) as err:
        record_answers(db, pid, settings, path)
    assert str(err.value) == (
        "column 'person' not found in answers.csv; columns are: id, label — pass --person NAME to record every "
        "answer under one name, or --person-column with the column that says who answered"
    )
    report = record_answers(db, pid, settings, path, default_person="carol")
    assert (report.recorded, report.people) == (2, ["carol"])

    blank = write(tmp_path / "blank.csv", "id,label,person\n3,positive,\n")
    with pytest.raises(DataError) as err:
        record_answers(db, pid, settings, blank)
    assert str(err.value) == "blank.csv line 2: the person is empty; fill in the 'person' column or pass --person NAME"
    assert record_answers(db, pid, settings, blank, default_person="dan").people == ["dan"]


def test_bad_seconds_and_missing_columns(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    seed_items(db, pid)
    settings = settings_for(tmp_path)
    path = write(tmp_path / "answers.csv", "id,label,person,seconds\n1,positive,ann,12\n2,negative,ann,abc\n")
    with pytest.raises(DataError) as err:
        record_answers(db, pid, settings, path)
    assert str(err.value) == (
        "answers.csv line 3: seconds 'abc' is not a number of seconds (0 or more); "
        "fix the 'seconds' column or leave the cell empty"
    )
    negative = write(tmp_path / "neg.csv", "id,label,person,seconds\n1,positive,ann,-3\n")
    with pytest.raises(DataError, match=r"^neg.csv line 2: seconds '-3' is not a number of seconds"):
        record_answers(db, pid, settings, negative)
    renamed = write(tmp_path / "renamed.csv", "item,verdict,person\n1,positive,ann\n")
    with pytest.raises(DataError) as err:
        record_answers(db, pid, settings, renamed)
    assert str(err.value).startswith("column 'id' not found in renamed.csv; columns are: item, verdict, person")
    report = record_answers(db, pid, settings, renamed, id_column="item", label_column="verdict")
    assert report.recorded == 1
    assert count(db) == 1


def test_duplicates_in_the_file_and_in_the_database(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    seed_items(db, pid)
    settings = settings_for(tmp_path)
    path = write(
        tmp_path / "answers.csv",
        "id,label,person\n1,positive,ann\n1,positive,ann\n2,negative,ann\n1,positive,ben\n",
    )
    first = record_answers(db, pid, settings, path)
    assert (first.recorded, first.duplicates) == (3, 1)
    again = record_answers(db, pid, settings, path)
    assert (again.recorded, again.duplicates) == (0, 4)
    assert count(db) == 3


def test_one_person_never_has_two_live_answers_that_disagree(db: Database, tmp_path: Path) -> None:
    """Two labels from one person for one item in a file are an error naming both lines; a later file's new
    label replaces the person's earlier one (kept, superseded) and the report says so."""
    pid = db.project_id("p")
    seed_items(db, pid)
    settings = settings_for(tmp_path)
    clash = write(tmp_path / "clash.csv", "id,label,person\n1,positive,ann\n2,neutral,ann\n1,negative,ann\n")
    with pytest.raises(DataError, match=r"^clash.csv lines 2 and 4: 'ann' answers item '1' twice, with 'positive' "):
        record_answers(db, pid, settings, clash)
    assert count(db) == 0
    record_answers(db, pid, settings, write(tmp_path / "a.csv", "id,label,person\n1,positive,ann\n"))
    later = record_answers(db, pid, settings, write(tmp_path / "b.csv", "id,label,person\n1,negative,ann\n"))
    assert later.recorded == 1 and later.notes and "1 earlier answers were replaced" in later.notes[0]
    with db.session() as s:
        rows = s.execute(select(Answer.label, Answer.superseded).order_by(Answer.id)).all()
    assert [tuple(r) for r in rows] == [("positive", True), ("negative", False)]


def test_jsonl_with_numeric_ids(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    seed_items(db, pid)
    rows = [{"id": 1, "label": "neutral", "person": "ann", "seconds": 4}, {"id": 2.0, "label": "negative"}]
    path = write(tmp_path / "answers.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    report = record_answers(db, pid, settings_for(tmp_path), path, default_person="ann")
    assert (report.recorded, report.people) == (2, ["ann"])
    with db.session() as s:
        assert s.execute(select(Item.external_id, Answer.active_seconds).join(Answer).order_by(Answer.id)).all() == [
            ("1", 4.0),
            ("2", None),
        ]


def test_answers_need_declared_labels(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    settings = Settings.model_validate({"name": "p", "project_dir": tmp_path})
    path = write(tmp_path / "answers.csv", "id,label,person\n1,positive,ann\n")
    with pytest.raises(ConfigError, match="declares no labels, so answers cannot be checked"):
        record_answers(db, pid, settings, path)


# ----------------------------------------------------------------------------- simulated


def add_import(db: Database, pid: int) -> None:
    with db.session() as s:
        s.add(
            Import(
                project_id=pid,
                source="data.csv",
                format="csv",
                file_sha256="0" * 64,
                columns={"text": "sentence", "label": "sentiment", "meta": ["second_opinion"]},
            )
        )


def test_simulate_answers_only_routed_tasks_and_flags_them(db_url: str, tmp_path: Path) -> None:
    db = open_database(db_url)
    pid = db.project_id("p")
    seed_items(db, pid, n=12, meta=True)
    seed_items(db, pid, n=4, split="test")
    add_import(db, pid)
    settings = settings_for(tmp_path, routing={"gold_share": 0.25, "seconds_per_item": 20, "auto_accept_threshold": 1})
    run = route(db, pid, settings, budget_items=4)
    assert (run.routed, run.gold) == (3, 1)
    report = simulate(db, pid, settings, oracle_column="sentiment")
    assert (report.recorded, report.duplicates, report.people, report.simulated) == (4, 0, ["simulated-expert"], True)
    with db.session() as s:
        answers = s.scalars(select(Answer)).all()
        task_items = set(s.scalars(select(Task.item_id).where(Task.route_run_id == run.route_run_id)))
        assert {a.item_id for a in answers} == task_items
        for a in answers:
            assert (a.simulated, a.source, a.person.name, a.person.simulated) == (
                True,
                "simulate",
                "simulated-expert",
                True,
            )
            assert a.active_seconds == 20
            assert a.label == a.item.gold_label
            assert a.task_id is not None
        assert set(s.scalars(select(Task.status))) == {"answered"}
    # nothing left open: a second simulation records nothing
    assert simulate(db, pid, settings, oracle_column="sentiment").recorded == 0
    db.close()


def test_simulate_from_a_kept_column_with_a_limit(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    seed_items(db, pid, n=10, meta=True)
    add_import(db, pid)
    settings = settings_for(tmp_path, routing={"gold_share": 0.0})
    route(db, pid, settings, budget_items=5)
    report = simulate(db, pid, settings, oracle_column="second_opinion", limit=2)
    assert report.recorded == 2
    with db.session() as s:
        answers = s.scalars(select(Answer)).all()
        assert all(a.label == a.item.meta["second_opinion"] for a in answers)
        # the two answered are the first two in the queue
        first_two = s.scalars(select(Task.item_id).order_by(Task.priority).limit(2)).all()
        assert sorted(a.item_id for a in answers) == sorted(first_two)
        assert s.scalar(select(func.count()).select_from(Task).where(Task.status == "queued")) == 3


def test_simulate_with_an_unknown_column(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    seed_items(db, pid, meta=True)
    add_import(db, pid)
    settings = settings_for(tmp_path, routing={"gold_share": 0.0})
    route(db, pid, settings, budget_items=2)
    with pytest.raises(DataError) as err:
        simulate(db, pid, settings, oracle_column="label")
    assert str(err.value) == (
        "column 'label' was not recorded with this project's items; columns that can be used: "
        "second_opinion, sentiment — pass --oracle-column second_opinion"
    )
    assert count(db) == 0


def test_simulated_answers_never_use_a_real_person(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    seed_items(db, pid)
    add_import(db, pid)
    settings = settings_for(tmp_path, routing={"gold_share": 0.0})
    route(db, pid, settings, budget_items=2)
    with db.session() as s:
        get_or_create_person(s, "ann")
    with pytest.raises(ConfigError) as err:
        simulate(db, pid, settings, oracle_column="sentiment", person="ann")
    assert (
        str(err.value) == "'ann' is a real person; simulated answers need a name of their own, e.g. 'simulated-expert'"
    )
    assert count(db) == 0
