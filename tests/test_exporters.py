"""Exports: one row per item with teacher, student and expert answers, written whole or not at all."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from terakoya.errors import ConfigError
from terakoya.importers import exporters, import_file
from terakoya.importers.exporters import EXPORT_COLUMNS, export_items
from terakoya.storage import open_database
from terakoya.storage.db import Database
from terakoya.storage.models import Answer, AutoAccept, Item, Person, Suggestion


def build(db: Database, tmp_path: Path) -> int:
    """Three items (two pool, one test) with teacher, student and expert work on them."""
    pid = db.project_id("news")
    data = tmp_path / "news.csv"
    data.write_text(
        "id,text,label,source\n"
        "a,Profit rose.,positive,wire\n"
        "b,Sales fell.,negative,blog\n"
        "c,Costs were flat.,neutral,wire\n",
        encoding="utf-8",
    )
    import_file(db, pid, data, id_column="id", label_column="label")
    with db.session() as s:
        items = {i.external_id: i for i in s.scalars(select(Item).where(Item.project_id == pid))}
        items["c"].split = "test"
        ann, bob, cy = Person(name="ann"), Person(name="bob"), Person(name="cy", simulated=True)
        s.add_all([ann, bob, cy])
        s.flush()

        def teacher(item: Item, label: str, p: float, version: str) -> Suggestion:
            rest = (1 - p) / 2
            probs = {"negative": rest, "neutral": rest, "positive": rest} | {label: p}
            sug = Suggestion(
                item_id=item.id, agent_kind="teacher", agent="smollm2", prompt_version=version,
                label=label, probabilities=probs, confidence=p,
            )  # fmt: skip
            s.add(sug)
            s.flush()
            return sug

        teacher(items["a"], "negative", 0.5, "v1")  # superseded by the newer call below
        sug_a = teacher(items["a"], "positive", 0.95, "v2")
        teacher(items["b"], "neutral", 0.6, "v2")
        s.add(AutoAccept(item_id=items["a"].id, suggestion_id=sug_a.id, label="positive", confidence=0.95))
        s.add(Suggestion(item_id=items["a"].id, agent_kind="student", agent="run-1", label="neutral"))
        s.add(Suggestion(item_id=items["a"].id, agent_kind="student", agent="run-2", label="positive"))
        # b: two votes negative, one neutral, one undone -> negative
        s.add_all(
            [
                Answer(item_id=items["b"].id, person_id=ann.id, kind="label", label="negative", rationale="loss",
                       active_seconds=12.5, source="web"),
                Answer(item_id=items["b"].id, person_id=bob.id, kind="verify", label="negative", active_seconds=3.0,
                       source="web"),
                Answer(item_id=items["b"].id, person_id=cy.id, kind="label", label="neutral", simulated=True,
                       source="simulate"),
                Answer(item_id=items["b"].id, person_id=bob.id, kind="label", label="positive", superseded=True,
                       source="web"),
                Answer(item_id=items["b"].id, person_id=ann.id, kind="flag", label=None, rationale="ambiguous",
                       source="web"),
            ]
        )  # fmt: skip
        # c: a 1-1 tie -> the label answered most recently (aggregate.majority, as training reads it)
        s.add_all(
            [
                Answer(item_id=items["c"].id, person_id=ann.id, kind="label", label="neutral", source="web"),
                Answer(item_id=items["c"].id, person_id=bob.id, kind="label", label="positive", source="web"),
            ]
        )
    return pid


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def check_rows(rows: list[dict[str, Any]]) -> None:
    a, b, c = rows
    assert list(a) == list(EXPORT_COLUMNS)
    assert (a["id"], a["text"], a["split"], a["gold_label"], a["meta"]) == (
        "a",
        "Profit rose.",
        "pool",
        None,
        {"source": "wire"},
    )
    assert (a["teacher_model"], a["prompt_version"], a["teacher_label"], a["teacher_confidence"]) == (
        "smollm2", "v2", "positive", 0.95,
    )  # fmt: skip
    assert a["teacher_probabilities"] == pytest.approx({"negative": 0.025, "neutral": 0.025, "positive": 0.95})
    assert (a["auto_accepted"], a["student_label"], a["answers"], a["expert_label"], a["expert_answers"]) == (
        True, "positive", [], None, 0,
    )  # fmt: skip
    assert (b["auto_accepted"], b["student_label"], b["expert_label"], b["expert_answers"]) == (
        False,
        None,
        "negative",
        3,
    )
    assert [(x["person"], x["kind"], x["label"], x["simulated"], x["source"]) for x in b["answers"]] == [
        ("ann", "label", "negative", False, "web"),
        ("bob", "verify", "negative", False, "web"),
        ("cy", "label", "neutral", True, "simulate"),
        ("ann", "flag", None, False, "web"),
    ]
    assert (b["answers"][0]["rationale"], b["answers"][0]["active_seconds"]) == ("loss", 12.5)
    assert b["answers"][0]["created_at"].startswith("20")
    assert b["gold_label"] is None  # pool gold labels are never exported
    assert (c["split"], c["gold_label"], c["teacher_model"], c["teacher_probabilities"]) == (
        "test",
        "neutral",
        None,
        None,
    )
    assert (c["expert_label"], c["expert_answers"]) == ("positive", 2)  # a tie: the newer answer's label


def test_jsonl_export_on_every_backend(db_url: str, tmp_path: Path) -> None:
    db = open_database(db_url)
    pid = build(db, tmp_path)
    out = tmp_path / "out.jsonl"
    assert export_items(db, pid, out) == 3
    check_rows(read_jsonl(out))
    assert export_items(db, pid, tmp_path / "test.json", split="test") == 1
    assert [r["id"] for r in read_jsonl(tmp_path / "test.json")] == ["c"]
    db.close()


def test_csv_export_holds_nested_values_as_json(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 't.db'}")
    pid = build(db, tmp_path)
    out = tmp_path / "out.csv"
    assert export_items(db, pid, out) == 3
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(EXPORT_COLUMNS)
    assert (rows[0]["auto_accepted"], rows[0]["gold_label"], rows[1]["auto_accepted"]) == ("true", "", "false")
    assert json.loads(rows[0]["meta"]) == {"source": "wire"}
    assert json.loads(rows[0]["teacher_probabilities"])["positive"] == pytest.approx(0.95)
    assert [a["person"] for a in json.loads(rows[1]["answers"])] == ["ann", "bob", "cy", "ann"]
    assert (rows[1]["expert_label"], rows[1]["expert_answers"], rows[2]["gold_label"]) == ("negative", "3", "neutral")


def test_parquet_export_round_trip(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 't.db'}")
    pid = build(db, tmp_path)
    out = tmp_path / "out.parquet"
    assert export_items(db, pid, out) == 3
    rows = pq.read_table(out).to_pylist()
    for row in rows:
        row["meta"] = json.loads(row["meta"])
        if row["teacher_probabilities"] is not None:
            row["teacher_probabilities"] = dict(row["teacher_probabilities"])
    check_rows(rows)


def test_export_is_paged_and_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = open_database(f"sqlite:///{tmp_path / 't.db'}")
    pid = build(db, tmp_path)
    monkeypatch.setattr(exporters, "_PAGE", 2)
    out = tmp_path / "out.jsonl"
    assert export_items(db, pid, out) == 3
    check_rows(read_jsonl(out))
    before = out.read_bytes()
    real = exporters._page_rows
    calls = []

    def fail_on_second_page(session: Any, project_id: int, items: Any, classes: Any) -> Any:
        calls.append(len(items))
        if len(calls) == 2:
            raise RuntimeError("disk gone")
        return real(session, project_id, items, classes)

    monkeypatch.setattr(exporters, "_page_rows", fail_on_second_page)
    with pytest.raises(RuntimeError, match="disk gone"):
        export_items(db, pid, out, force=True)
    assert out.read_bytes() == before  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".part")) == []


def test_export_bad_arguments(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 't.db'}")
    pid = db.project_id("p")
    with pytest.raises(ConfigError) as err:
        export_items(db, pid, tmp_path / "out.jsonl", split="train")
    assert str(err.value) == "--split must be pool or test, got 'train'"
    with pytest.raises(ConfigError) as err:
        export_items(db, pid, tmp_path / "missing" / "out.jsonl")
    assert str(err.value) == f"folder {tmp_path / 'missing'} does not exist; create it or choose another output path"
    assert export_items(db, pid, tmp_path / "empty.csv") == 0
    assert (tmp_path / "empty.csv").read_text() == ",".join(EXPORT_COLUMNS) + "\n"


def test_export_queued_only_lists_open_tasks(tmp_path: Path) -> None:
    from terakoya.storage import open_database
    from terakoya.storage.models import Item, Task

    db = open_database(f"sqlite:///{tmp_path / 'q.db'}")
    pid = db.project_id("q")
    with db.session() as s:
        items = [Item(project_id=pid, external_id=str(i), text=f"t{i}", text_hash=f"h{i}") for i in range(4)]
        s.add_all(items)
        s.flush()
        s.add_all(
            [
                Task(project_id=pid, item_id=items[1].id, status="queued"),
                Task(project_id=pid, item_id=items[2].id, status="answered"),
                Task(project_id=pid, item_id=items[3].id, status="leased"),
            ]
        )
    out = tmp_path / "queue.csv"
    from terakoya.importers.exporters import export_items

    assert export_items(db, pid, out, queued=True) == 2
    assert [line.split(",")[0] for line in out.read_text().splitlines()[1:]] == ["1", "3"]


def test_export_never_writes_over_the_project_or_an_existing_file(tmp_path: Path) -> None:
    """`terakoya export terakoya.db` once replaced the project's database with a CSV file."""
    import subprocess
    import sys

    from terakoya.project import Project

    project = Project.init(tmp_path / "p", "p")
    folder = project.dir
    project.close()
    (folder / "items.csv").write_text("id,text\n1,Profit rose.\n2,Sales fell.\n", encoding="utf-8")
    db_before = (folder / "terakoya.db").read_bytes()
    toml_before = (folder / "terakoya.toml").read_text(encoding="utf-8")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "terakoya", *args], cwd=folder, capture_output=True, text=True, timeout=120
        )

    out = cli("export", "terakoya.db", "--format", "csv")
    assert out.returncode == 1 and "terakoya.db is the project's database; export to another path" in out.stderr
    out = cli("export", "terakoya.toml", "--format", "csv", "--force")
    assert out.returncode == 1 and "terakoya.toml is the project's settings file" in out.stderr
    assert (folder / "terakoya.db").read_bytes() == db_before
    assert (folder / "terakoya.toml").read_text(encoding="utf-8") == toml_before

    out = cli("export", "items.csv")
    assert out.returncode == 1 and "items.csv exists; pass --force to replace it" in out.stderr
    assert (folder / "items.csv").read_text(encoding="utf-8").startswith("id,text")
    assert cli("export", "items.csv", "--force").returncode == 0
    assert cli("export", ".", "--format", "csv").returncode == 1
    assert cli("status").returncode == 0  # the project still opens
