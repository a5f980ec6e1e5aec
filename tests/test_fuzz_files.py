"""Fuzzing the file readers: items files (`terakoya import`) and answers files (`terakoya answers`).

Hypothesis writes CSV, TSV, JSON Lines and Parquet files with random bytes, random Unicode, missing and extra
columns, duplicate ids, huge fields and broken JSON, and imports them into a real SQLite project. The property:
a file is either read, or refused with a Terakoya error (a subclass of TerakoyaError) whose message is not empty
— never another exception — and a refused file leaves the project exactly as it was.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from terakoya.errors import TerakoyaError
from terakoya.importers import import_file
from terakoya.people.accounts import get_or_create_person
from terakoya.routing import route
from terakoya.settings import Settings
from terakoya.storage import Database, open_database
from terakoya.storage.models import Answer, Import, Item, Person, Suggestion, Task
from terakoya.workqueue.answers import record_answers

LABELS = ["positive", "negative", "neutral"]
_numbers = count()  # a new file name per example

# bounded: the whole file runs in well under a minute on two cores; no example database is written to the tree.
# A longer hunt: FUZZ_EXAMPLES=2000 pytest tests/test_fuzz_files.py
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ----------------------------------------------------------------------------- strategies


def mostly(valid: st.SearchStrategy[Any], odd: st.SearchStrategy[Any], odds: int = 8) -> st.SearchStrategy[Any]:
    """``valid`` ``odds`` times in ``odds + 1``, else ``odd``: most rows get past the first checks, some do not."""
    return st.integers(0, odds).flatmap(lambda k: odd if k == 0 else valid)


#: characters that break naive readers: delimiters, quotes, line ends, NUL, a BOM, escapes, wide characters
SPECIAL = [",", "\t", '"', "'", "\n", "\r", "\r\n", "\x00", "\ufeff", "\\", "{", "}", "[", "]", "é", "東京", "😀"]
HUGE = "x" * 25_000  # over the default import.max_text_chars
special_text = st.lists(st.sampled_from([*SPECIAL, "a", " ", "b"]), min_size=1, max_size=8).map("".join)
junk = st.one_of(
    st.text(max_size=20),
    special_text,
    st.sampled_from(["", " ", "1", "17", *LABELS, "NaN", "1e400", "-3", "x" * 250, "\x00", HUGE]),
)
#: cells by column: mostly sensible (ids repeat at times: duplicates), at times junk
ITEM_CELLS: dict[str, st.SearchStrategy[Any]] = {
    "id": mostly(st.integers(0, 40).map(str), junk),
    "text": mostly(st.one_of(st.text(min_size=1, max_size=30), special_text), junk, odds=4),
    "label": mostly(st.sampled_from(LABELS), junk),
}
column_names = st.one_of(
    st.sampled_from(["id", "text", "label", "person", "seconds", "rationale", "source", ""]),
    st.text(max_size=6),
)
#: JSON values beyond strings: numbers (beyond any float too), booleans, null, nesting
json_values = st.one_of(
    junk,
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.just(10**400),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
#: lines that are not one JSON object: broken, truncated, nested too deep, numbers too long, escapes
BAD_JSON_LINES = [
    '{"text": "a"',
    '{"text": "a" "label": "b"}',
    "[1, 2]",
    "3",
    "null",
    '"just a string"',
    "{'text': 'single quotes'}",
    '{"text": "\\ud800 half a surrogate pair"}',
    '{"text": "\\udfff", "id": "x"}',
    '{"text": ' + "1" * 5000 + "}",
    "[" * 50_000 + "]" * 50_000,
    '{"text": ' + "[" * 50_000 + "]" * 50_000 + "}",
    '{"text": NaN, "id": Infinity}',
    '{"text": "a\x00b"}',
    "\ufeff" + '{"text": "a"}',
]
#: how a file is encoded; the import is mostly told the right one
ENCODINGS = ["utf-8", "utf-8", "utf-8", "utf-8-sig", "cp932", "latin-1", "utf-16"]


@st.composite
def rows_for(draw: st.DrawFn, header: list[str], cell_for: dict[str, st.SearchStrategy[Any]]) -> list[list[Any]]:
    """Up to eight rows; now and then one with a cell too few or too many, and a repeated row (same id and text)."""
    width = len(header)
    rows = []
    for _ in range(draw(mostly(st.integers(1, 8), st.just(0)))):
        n = width if draw(st.integers(0, 9)) else draw(st.sampled_from([max(0, width - 1), width + 1]))
        rows.append([draw(cell_for.get(header[i] if i < width else "", junk)) for i in range(n)])
    if rows and draw(st.integers(0, 3)) == 0:
        rows.append(list(draw(st.sampled_from(rows))))
    return rows


def delimited(header: list[str], rows: list[list[Any]], delimiter: str, proper: bool) -> str:
    """CSV/TSV text: quoted by the csv module, or joined naively (broken where a cell holds the delimiter)."""
    if proper:
        out = io.StringIO()
        writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return out.getvalue()
    return "".join(delimiter.join(str(c) for c in line) + "\n" for line in [header, *rows])


@st.composite
def jsonl_text(draw: st.DrawFn, header: list[str], rows: list[list[Any]]) -> str:
    lines = []
    for row in rows:
        keys = [header[i] if i < len(header) else f"extra{i}" for i in range(len(row))]
        values = [draw(mostly(st.just(cell), json_values)) for cell in row]
        lines.append(json.dumps(dict(zip(keys, values, strict=True)), ensure_ascii=draw(st.booleans())))
    if draw(st.integers(0, 3)) == 0:
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from([*BAD_JSON_LINES, ""])))
    return "\n".join(lines) + ("\n" if draw(st.booleans()) else "")


def mutate(data: bytes, draw: st.DrawFn) -> bytes:
    """Random bytes: the whole file, a few inserted into it, or the file cut short (mid-character too)."""
    choice = draw(st.integers(0, 2))
    if choice == 0:
        return draw(st.binary(max_size=200))
    if choice == 1:
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(data)))
            data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
        return data
    return data[: draw(st.integers(0, len(data)))]


@st.composite
def encoded(draw: st.DrawFn, suffix: str, header: list[str], rows: list[list[Any]]) -> tuple[str, bytes, str]:
    """(suffix, bytes, encoding) of a CSV, TSV or JSON Lines file holding ``rows``."""
    if suffix == ".jsonl":
        text = draw(jsonl_text(header, rows))
    else:
        text = delimited(header, rows, "\t" if suffix == ".tsv" else ",", draw(st.booleans()))
    encoding = draw(st.sampled_from(ENCODINGS))
    data = text.encode(encoding, errors="replace")
    if draw(st.integers(0, 5)) == 0:
        data = mutate(data, draw)
    return suffix, data, encoding


@st.composite
def items_files(draw: st.DrawFn) -> tuple[str, bytes, str]:
    """(suffix, bytes, encoding) of one items file."""
    header = draw(mostly(st.just(["id", "text", "label"]), st.lists(column_names, max_size=5), odds=2))
    if draw(st.integers(0, 3)) == 0:
        header = [*header, *draw(st.lists(column_names, max_size=2))]  # extra columns: meta, or a repeated name
    rows = draw(rows_for(header, ITEM_CELLS))
    suffix = draw(st.sampled_from([".csv", ".tsv", ".jsonl", ".parquet"]))
    if suffix != ".parquet":
        return draw(encoded(suffix, header, rows))
    if draw(st.integers(0, 3)) == 0 or not header:
        return suffix, draw(st.binary(max_size=300)), "utf-8"
    names = list(dict.fromkeys(h or "blank" for h in header))
    columns = {n: [str(r[i]) if i < len(r) else None for r in rows] for i, n in enumerate(names)}
    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    return suffix, buf.getvalue(), "utf-8"


def outcome(exc: TerakoyaError) -> str:
    """The kind of refusal, for the statistics (pytest --hypothesis-show-statistics): no file names or numbers."""
    text = re.sub(r"\S+\.(csv|tsv|jsonl|parquet)\b", "FILE", str(exc))
    text = re.sub(r"'[^']*'", "'…'", re.sub(r"\d+", "N", text))
    return f"refused: {type(exc).__name__}: {text.split(';')[0][:70]}"


# ----------------------------------------------------------------------------- the project


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'terakoya.db'}")
    yield database
    database.close()


def item_state(db: Database, pid: int) -> tuple[int, int, str]:
    """Counts of items and imports, and a digest of every item's stored fields."""
    digest = hashlib.sha256()
    with db.session() as s:
        for row in s.execute(
            select(Item.external_id, Item.text, Item.split, Item.gold_label, Item.meta, Item.import_id)
            .where(Item.project_id == pid)
            .order_by(Item.id)
        ):
            digest.update(repr(tuple(row)).encode("utf-8", "backslashreplace"))
        items = s.scalar(select(func.count()).select_from(Item).where(Item.project_id == pid)) or 0
        imports = s.scalar(select(func.count()).select_from(Import).where(Import.project_id == pid)) or 0
    return int(items), int(imports), digest.hexdigest()


def answer_state(db: Database) -> tuple[Any, ...]:
    with db.session() as s:
        answers = s.execute(select(Answer.id, Answer.superseded, Answer.task_id).order_by(Answer.id)).all()
        people = s.scalars(select(Person.name).order_by(Person.id)).all()
        tasks = s.execute(select(Task.id, Task.status).order_by(Task.id)).all()
    return tuple(map(tuple, answers)), tuple(people), tuple(map(tuple, tasks))


def check_refusal(exc: TerakoyaError) -> None:
    """A refusal the CLI can print as it is (see the outcomes with pytest --hypothesis-show-statistics)."""
    assert isinstance(exc, TerakoyaError)
    assert str(exc).strip(), f"{type(exc).__name__} with an empty message"
    assert "Traceback" not in str(exc)
    event(outcome(exc))


# ----------------------------------------------------------------------------- items files


@FUZZ
@given(
    file=items_files(),
    text_column=mostly(st.just("text"), st.sampled_from(["id", "label", "missing"])),
    id_column=st.sampled_from([None, "id"]),
    label_column=st.sampled_from([None, "label"]),
    allowed=st.sampled_from([None, LABELS]),
    skip_empty=st.booleans(),
    max_text_chars=st.sampled_from([None, None, 5, 100]),
    wrong_encoding=mostly(st.none(), st.sampled_from([*ENCODINGS, "utf-16-le", "klingon"])),
)
def test_any_items_file_imports_or_is_refused_cleanly(
    db: Database,
    tmp_path: Path,
    file: tuple[str, bytes, str],
    text_column: str,
    id_column: str | None,
    label_column: str | None,
    allowed: list[str] | None,
    skip_empty: bool,
    max_text_chars: int | None,
    wrong_encoding: str | None,
) -> None:
    pid = db.project_id("fuzz")
    suffix, data, encoding = file
    encoding = wrong_encoding or encoding
    path = tmp_path / f"items{next(_numbers)}{suffix}"
    path.write_bytes(data)
    before = item_state(db, pid)
    try:
        report = import_file(
            db, pid, path, text_column=text_column, id_column=id_column, label_column=label_column,
            allowed_labels=allowed, skip_empty=skip_empty, max_text_chars=max_text_chars, encoding=encoding,
        )  # fmt: skip
    except TerakoyaError as exc:
        check_refusal(exc)
        assert item_state(db, pid) == before, f"a refused import changed the project: {exc}"
        return
    event("imported")
    items, imports, _ = item_state(db, pid)
    assert (items, imports) == (before[0] + report.added, before[1] + 1)
    assert report.rows_read == report.added + report.duplicates + report.skipped_empty
    limit = max_text_chars or 20_000
    with db.session() as s:
        for text, ext in s.execute(select(Item.text, Item.external_id).where(Item.import_id == report.import_id)):
            assert "\x00" not in text and "\x00" not in ext
            assert text.strip() and len(text) <= limit


# ----------------------------------------------------------------------------- answers files


def seed_project(db: Database, tmp_path: Path) -> tuple[int, Settings]:
    """Five items with teacher suggestions, two of them routed (open tasks), one earlier answer, and a simulated
    expert (whose name a file may not use)."""
    pid = db.project_id("answers")
    settings = Settings.model_validate(
        {"name": "p", "labels": [{"name": n} for n in LABELS], "project_dir": tmp_path, "routing": {"gold_share": 0}}
    )
    with db.session() as s:
        for i in range(1, 6):
            item = Item(project_id=pid, external_id=str(i), text=f"Sentence {i}.", text_hash=f"h{i}", split="pool")
            s.add(item)
            s.flush()
            top = 0.4 + 0.1 * i
            probs = {"positive": top, "negative": (1 - top) / 2, "neutral": (1 - top) / 2}
            s.add(Suggestion(item_id=item.id, agent_kind="teacher", agent="m", label="positive",
                             probabilities=probs, confidence=top))  # fmt: skip
    route(db, pid, settings, budget_items=2)
    with db.session() as s:
        get_or_create_person(s, "simulated-expert", simulated=True)
    path = tmp_path / "first.csv"
    path.write_text("id,label,person\n1,positive,ann\n", encoding="utf-8")
    record_answers(db, pid, settings, path)
    return pid, settings


@pytest.fixture
def seeded(db: Database, tmp_path: Path) -> tuple[int, Settings]:
    """Made once per test, not per example: the examples share the project, as files do one after another."""
    return seed_project(db, tmp_path)


#: cells by column: mostly answers that can be recorded, at times junk
ANSWER_CELLS: dict[str, st.SearchStrategy[Any]] = {
    "id": mostly(st.sampled_from(["1", "2", "3", "4", "5", " 2 "]), st.one_of(junk, st.sampled_from(["99", "1\x00"]))),
    "label": mostly(st.sampled_from(LABELS), st.one_of(junk, st.sampled_from(["Positive", "neutral\x00"]))),
    "person": mostly(
        st.sampled_from(["ann", "ben", "  carol  "]),
        st.one_of(junk, st.sampled_from(["x" * 300, "d\x00an", "simulated-expert"])),
    ),
    "rationale": st.text(max_size=12),
    "seconds": mostly(
        st.sampled_from(["12", "0", " 2 ", "", "3.5"]), st.sampled_from(["-3", "nan", "inf", "1e400", "abc"])
    ),
}
ANSWER_COLUMNS = ["id", "label", "person", "rationale", "seconds"]


@st.composite
def answers_files(draw: st.DrawFn) -> tuple[str, bytes, str]:
    """(suffix, bytes, encoding) of one answers file."""
    header = draw(
        mostly(
            st.one_of(st.just(ANSWER_COLUMNS), st.permutations(ANSWER_COLUMNS[:4])),
            st.lists(st.sampled_from([*ANSWER_COLUMNS, "", "x"]), max_size=6),
            odds=2,
        )
    )
    rows = draw(rows_for(header, ANSWER_CELLS))
    return draw(encoded(draw(st.sampled_from([".csv", ".tsv", ".jsonl"])), header, rows))


@FUZZ
@given(file=answers_files(), default_person=st.sampled_from([None, "ann", "  "]))
def test_any_answers_file_records_or_is_refused_cleanly(
    db: Database, seeded: tuple[int, Settings], tmp_path: Path, file: tuple[str, bytes, str], default_person: str | None
) -> None:
    pid, project_settings = seeded
    suffix, data, encoding = file
    path = tmp_path / f"answers{next(_numbers)}{suffix}"
    path.write_bytes(data)
    before = answer_state(db)
    try:
        report = record_answers(db, pid, project_settings, path, default_person=default_person, encoding=encoding)
    except TerakoyaError as exc:
        check_refusal(exc)
        assert answer_state(db) == before, f"a refused answers file changed the project: {exc}"
        return
    event("recorded" if report.recorded else "read, nothing new")
    answers, people, _tasks = answer_state(db)
    assert len(answers) == len(before[0]) + report.recorded
    assert not any("\x00" in name for name in people)


# ----------------------------------------------------------------------------- what fuzzing found, kept as examples


def test_seconds_beyond_any_float_are_a_data_error(db: Database, seeded: tuple[int, Settings], tmp_path: Path) -> None:
    """A JSON integer too large for a float used to escape as OverflowError."""
    pid, project_settings = seeded
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"id": "2", "label": "positive", "person": "ann", "seconds": 10**400}) + "\n")
    before = answer_state(db)
    with pytest.raises(TerakoyaError) as err:
        record_answers(db, pid, project_settings, path)
    assert str(err.value) == (
        "a.jsonl line 1: seconds 100000000000000000...0000000000000000000 is not a number of seconds (0 or more); "
        "fix the 'seconds' column or leave the cell empty"
    )
    assert answer_state(db) == before


def test_nul_in_an_answers_file_is_removed_on_every_backend(db_url: str, tmp_path: Path) -> None:
    """On PostgreSQL a NUL in a person, id or rationale used to end the command with a raw database error."""
    db = open_database(db_url)
    pid, project_settings = seed_project(db, tmp_path)
    path = tmp_path / "a.csv"
    path.write_text("id,label,person,rationale\n2\x00,negative,b\x00en,too\x00 short\n3,neutral,ben,\n")
    report = record_answers(db, pid, project_settings, path)
    assert (report.recorded, report.people) == (2, ["ben"])
    assert report.notes == [
        "NUL characters (\\x00) were removed from 1 row of a.csv, the first on line 2, as no database text can hold "
        "them; check that those rows read as intended (a file full of them is usually UTF-16: then pass "
        "--encoding utf-16)"
    ]
    with db.session() as s:
        got = s.execute(select(Item.external_id, Answer.label, Answer.rationale).join(Item).order_by(Answer.id)).all()
    assert got[-2:] == [("2", "negative", "too short"), ("3", "neutral", None)]
    db.close()
