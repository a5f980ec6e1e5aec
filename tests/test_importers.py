"""Importing files into a project: checked rows, de-duplication, seeded stratified split, one transaction."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from terakoya.errors import DataError, EncodingError
from terakoya.importers import import_file, normalize_text, text_hash
from terakoya.storage import open_database
from terakoya.storage.db import Database
from terakoya.storage.models import Import, Item

LABELS = ["negative", "neutral", "positive"]


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return open_database(f"sqlite:///{tmp_path / 'terakoya.db'}")


def write_csv(path: Path, rows: list[tuple[str, ...]], header: tuple[str, ...] = ("id", "text", "label")) -> Path:
    import csv

    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def labelled(n: int, labels: list[str] = LABELS) -> list[tuple[str, str, str]]:
    return [(f"r{i}", f"Sentence number {i} about the market.", labels[i % len(labels)]) for i in range(n)]


def counts(db: Database, pid: int) -> tuple[int, int]:
    with db.session() as s:
        items = s.scalar(select(func.count()).select_from(Item).where(Item.project_id == pid))
        imports = s.scalar(select(func.count()).select_from(Import).where(Import.project_id == pid))
    return int(items or 0), int(imports or 0)


def splits(db: Database, pid: int) -> dict[str, str]:
    with db.session() as s:
        return dict(s.execute(select(Item.external_id, Item.split).where(Item.project_id == pid)).all())


def test_text_hash_normalises_whitespace_and_unicode() -> None:
    assert normalize_text("  Caf\u0065\u0301  rose\n\tsharply ") == "Caf\u00e9 rose sharply"
    assert text_hash("Café rose sharply") == text_hash(" Cafe\u0301  rose\nsharply")
    assert text_hash("a b") != text_hash("ab")


def test_import_on_every_backend_records_items_and_the_import(db_url: str, tmp_path: Path) -> None:
    db = open_database(db_url)
    pid = db.project_id("news")
    path = write_csv(
        tmp_path / "news.csv",
        [("a1", "Profit rose.", "positive", "wire"), ("a2", "Sales fell.", "negative", "blog")],
        header=("id", "text", "label", "source"),
    )
    seen: list[int] = []
    report = import_file(
        db, pid, path, id_column="id", label_column="label", allowed_labels=LABELS, progress=seen.append
    )
    assert (report.rows_read, report.added, report.duplicates, report.pool, report.test) == (2, 2, 0, 2, 0)
    assert report.labels_seen == ["negative", "positive"]
    assert report.format == "csv" and seen[-1] == 2
    with db.session() as s:
        items = s.scalars(select(Item).order_by(Item.id)).all()
        rec = s.scalars(select(Import)).one()
        assert [(i.external_id, i.text, i.gold_label, i.split, i.meta) for i in items] == [
            ("a1", "Profit rose.", "positive", "pool", {"source": "wire"}),
            ("a2", "Sales fell.", "negative", "pool", {"source": "blog"}),
        ]
        assert items[0].text_hash == text_hash("Profit rose.") and items[0].import_id == rec.id
        import hashlib

        assert rec.file_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert (rec.source, rec.format, rec.rows_read, rec.items_added, rec.duplicates) == (str(path), "csv", 2, 2, 0)
        assert rec.columns["text"] == "text" and rec.columns["label"] == "label" and rec.columns["id"] == "id"
    db.close()


def test_errors_late_in_the_file_leave_the_project_unchanged(db_url: str, tmp_path: Path) -> None:
    db = open_database(db_url)
    pid = db.project_id("news")
    import_file(db, pid, write_csv(tmp_path / "first.csv", labelled(10)), id_column="id", label_column="label")
    before = counts(db, pid)
    rows = [(f"x{i}", f"Another sentence {i}.", LABELS[i % 3]) for i in range(3000)]
    rows[2900] = ("x2900", "Bad label here.", "positve")
    bad_label = write_csv(tmp_path / "news.csv", rows)
    with pytest.raises(DataError) as err:
        import_file(db, pid, bad_label, id_column="id", label_column="label", allowed_labels=LABELS)
    assert str(err.value) == (
        "news.csv line 2902: label 'positve' is not one of the project's labels: negative, neutral, positive "
        "— fix the file or declare the label in terakoya.toml"
    )
    assert counts(db, pid) == before
    good = write_csv(tmp_path / "late.csv", [(f"y{i}", f"Yet another {i}.", "neutral") for i in range(3000)])
    broken = tmp_path / "late_enc.csv"
    broken.write_bytes(good.read_bytes() + "z1,Nestlé fell.,neutral\n".encode("latin-1"))
    with pytest.raises(EncodingError, match=r"^late_enc.csv is not valid utf-8: byte 0xe9 at offset \d+ \(line 3002, "):
        import_file(db, pid, broken, id_column="id", label_column="label")
    assert counts(db, pid) == before
    db.close()


def test_a_text_longer_than_the_limit_stops_the_import(db_url: str, tmp_path: Path) -> None:
    """A text of any length used to become one item (a 200 MB line was one item)."""
    db = open_database(db_url)
    pid = db.project_id("news")
    import_file(db, pid, write_csv(tmp_path / "first.csv", labelled(10)), id_column="id", label_column="label")
    before = counts(db, pid)
    rows = [(f"x{i}", f"Another sentence {i}.", "neutral") for i in range(3000)]
    rows[2500] = ("x2500", "word " * 5_000 + "end", "neutral")  # 25,003 characters, over the default 20,000
    path = write_csv(tmp_path / "long.csv", rows)
    with pytest.raises(DataError) as err:
        import_file(db, pid, path, id_column="id", label_column="label")
    assert str(err.value) == (
        "long.csv line 2502: the text in column 'text' is 25,003 characters long, longer than the limit of 20,000 "
        "(setting import.max_text_chars); split it into shorter texts, or raise the limit: add "
        "max_text_chars = 30000 under [import] in terakoya.toml, or pass --set import.max_text_chars=30000"
    )
    assert counts(db, pid) == before  # nothing stored: not the rows before it, not the import
    with pytest.raises(DataError, match=r"^long.csv line 1002: the text in column 'text' is 22 characters long, "):
        import_file(db, pid, path, id_column="id", max_text_chars=21)
    assert counts(db, pid) == before
    report = import_file(db, pid, path, id_column="id", max_text_chars=30_000)
    assert report.added == 3000
    with db.session() as s:
        assert s.scalar(select(func.max(func.length(Item.text)))) == 25_003
    db.close()


def test_nul_characters_are_removed_and_noted(db_url: str, tmp_path: Path) -> None:
    """NUL used to reach the database as is (PostgreSQL refuses it in a text column); now it is removed."""
    db = open_database(db_url)
    pid = db.project_id("news")
    path = write_csv(
        tmp_path / "nul.csv",
        [
            ("a\x001", "Profit\x00 rose.", "posi\x00tive", "wire\x00"),
            ("a2", "Sales fell.", "negative", "blog"),
            ("a3", "Costs\x00\x00 were flat.", "neutral", "x"),
        ],
        header=("id", "text", "label", "source"),
    )
    report = import_file(db, pid, path, id_column="id", label_column="label", allowed_labels=LABELS)
    assert (report.added, report.labels_seen) == (3, LABELS)
    assert report.notes == [
        "NUL characters (\\x00) were removed from 2 rows of nul.csv, the first on line 2, as no database text can "
        "hold them; check that those rows read as intended (a file full of them is usually UTF-16: then pass "
        "--encoding utf-16)"
    ]
    with db.session() as s:
        got = s.execute(select(Item.external_id, Item.text, Item.gold_label, Item.meta).order_by(Item.id)).all()
    assert got == [
        ("a1", "Profit rose.", "positive", {"source": "wire"}),
        ("a2", "Sales fell.", "negative", {"source": "blog"}),
        ("a3", "Costs were flat.", "neutral", {"source": "x"}),
    ]
    jl = tmp_path / "nul.jsonl"
    jl.write_text(
        json.dumps({"text": "Guidance\u0000 cut.", "tags": ["a\u0000b"]}) + "\n" + json.dumps({"text": "\u0000"}) + "\n"
    )
    report = import_file(db, pid, jl, skip_empty=True)  # a text of NUL alone is empty once they are removed
    assert (report.added, report.skipped_empty) == (1, 1)
    assert report.notes[0].startswith(
        "NUL characters (\\x00) were removed from 2 rows of nul.jsonl, the first on line 1,"
    )
    with db.session() as s:
        assert s.execute(select(Item.text, Item.meta).order_by(Item.id.desc())).first() == (
            "Guidance cut.",
            {"tags": ["ab"]},
        )
    clean = import_file(db, pid, write_csv(tmp_path / "clean.csv", labelled(3)), id_column="id")
    assert clean.notes == []
    db.close()


def test_an_interruption_while_writing_rolls_everything_back(db_url: str, tmp_path: Path) -> None:
    db = open_database(db_url)
    pid = db.project_id("news")
    path = write_csv(tmp_path / "big.csv", [(f"r{i}", f"Row {i}.", "neutral") for i in range(12_000)])
    calls: list[int] = []

    def cancel(rows: int) -> None:
        calls.append(rows)
        with db.session() as s:  # the first chunk is written, but not visible outside the import
            assert s.scalar(select(func.count()).select_from(Item)) == 0
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_file(db, pid, path, id_column="id", progress=cancel)
    assert calls == [5000]
    assert counts(db, pid) == (0, 0)
    db.close()


def test_duplicates_within_the_file_and_against_the_project(db_url: str, tmp_path: Path) -> None:
    db = open_database(db_url)
    pid = db.project_id("news")
    first = write_csv(tmp_path / "a.csv", [("1", "Profit rose.", "positive"), ("2", "Sales  fell.", "negative")])
    import_file(db, pid, first, id_column="id", label_column="label")
    second = write_csv(
        tmp_path / "b.csv",
        [
            ("3", " Sales fell. ", "negative"),  # same as item 2 once normalised
            ("4", "Costs rose.", "negative"),
            ("5", "Costs\nrose.", "positive"),  # same as row 4
            ("6", "Café closed.", "neutral"),
            ("7", "Cafe\u0301 closed.", "neutral"),  # NFC-equal to row 6
        ],
    )
    report = import_file(db, pid, second, id_column="id", label_column="label")
    assert (report.rows_read, report.added, report.duplicates) == (5, 2, 3)
    assert sorted(splits(db, pid)) == ["1", "2", "4", "6"]
    # importing the same file again adds nothing and is not an id clash
    again = import_file(db, pid, second, id_column="id", label_column="label")
    assert (again.added, again.duplicates) == (0, 5)
    db.close()


def test_ids_must_be_unique_in_the_file_and_the_project(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("news")
    twice = write_csv(tmp_path / "news.csv", [("1", "A.", "positive"), ("2", "B.", "neutral"), ("1", "C.", "neutral")])
    with pytest.raises(DataError) as err:
        import_file(db, pid, twice, id_column="id")
    assert (
        str(err.value) == "news.csv line 4: id '1' is used twice in the file (lines 2 and 4); give every row its own id"
    )
    import_file(db, pid, write_csv(tmp_path / "a.csv", [("1", "A.", "positive")]), id_column="id")
    clash = write_csv(tmp_path / "b.csv", [("9", "New text.", "neutral"), ("1", "Other text.", "neutral")])
    with pytest.raises(DataError) as err:
        import_file(db, pid, clash, id_column="id")
    assert str(err.value) == (
        "b.csv line 3: id '1' is already used by another item in this project; "
        "give the row a new id, or leave out --id-column to number rows automatically"
    )
    assert counts(db, pid) == (1, 1)


def test_numbered_ids_without_an_id_column(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("news")
    path = write_csv(tmp_path / "n.csv", [("x", "First."), ("y", "Second.")], header=("other", "text"))
    report = import_file(db, pid, path)
    assert sorted(splits(db, pid)) == [f"{report.import_id}:2", f"{report.import_id}:3"]
    with db.session() as s:
        assert s.scalars(select(Item.meta).order_by(Item.id)).all() == [{"other": "x"}, {"other": "y"}]
    path2 = write_csv(tmp_path / "m.csv", [("z", "Third.")], header=("other", "text"))
    import_file(db, pid, path2, meta_columns=[])
    with db.session() as s:
        assert s.scalars(select(Item.meta).order_by(Item.id)).all()[-1] == {}


def test_split_is_seeded_and_stratified(tmp_path: Path) -> None:
    labels = ["a"] * 503 + ["b"] * 301 + ["c"] * 96
    rows = [(f"r{i}", f"Text {i}.", lab) for i, lab in enumerate(labels)]
    path = write_csv(tmp_path / "s.csv", rows)

    def run(name: str, seed: int) -> dict[str, str]:
        db = open_database(f"sqlite:///{tmp_path / name}")
        pid = db.project_id("p")
        report = import_file(db, pid, path, id_column="id", label_column="label", split="test", fraction=0.2, seed=seed)
        assert (report.test, report.pool) == (101 + 60 + 19, 900 - 180)
        got = splits(db, pid)
        db.close()
        return got

    one, same, other = run("1.db", 7), run("2.db", 7), run("3.db", 8)
    assert one == same
    assert one != other
    per_label = Counter(lab for (rid, _t, lab) in rows if one[rid] == "test")
    assert per_label == {"a": 101, "b": 60, "c": 19}  # round(0.2 × n) of every label


def test_new_items_are_split_among_themselves(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    import_file(db, pid, write_csv(tmp_path / "a.csv", labelled(30)), id_column="id", split="test", fraction=1.0)
    rows = [(f"n{i}", f"New text {i}.", "neutral") for i in range(40)]
    report = import_file(db, pid, write_csv(tmp_path / "b.csv", rows), id_column="id", split="test", fraction=0.25)
    assert (report.test, report.pool) == (10, 30)
    assert Counter(splits(db, pid).values()) == {"test": 40, "pool": 30}


def test_unknown_label_missing_column_and_empty_text(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    path = write_csv(tmp_path / "news.csv", [("1", "Fine.", "positive")], header=("id", "sentence", "label"))
    with pytest.raises(DataError) as err:
        import_file(db, pid, path, label_column="label")
    assert str(err.value) == (
        "column 'text' not found in news.csv; columns are: id, sentence, label — pass --text-column sentence"
    )
    reviews = write_csv(tmp_path / "r.csv", [("1", "Great kettle, boils fast.")], header=("item_id", "review"))
    with pytest.raises(DataError) as err:
        import_file(db, pid, reviews)
    assert str(err.value).endswith("columns are: item_id, review — pass --text-column review")  # was: item_id
    with pytest.raises(DataError) as err:
        import_file(db, pid, path, text_column="sentence", meta_columns=["source"])
    assert str(err.value).startswith("column 'source' not found in news.csv; columns are: id, sentence, label")
    empty = write_csv(tmp_path / "e.csv", [("1", "Fine.", "positive"), ("2", "  ", "neutral"), ("3", "Ok.", "neutral")])
    with pytest.raises(DataError) as err:
        import_file(db, pid, empty, id_column="id")
    assert str(err.value) == "e.csv line 3: the text in column 'text' is empty; remove the row or pass --skip-empty"
    assert counts(db, pid) == (0, 0)
    report = import_file(db, pid, empty, id_column="id", skip_empty=True)
    assert (report.rows_read, report.added, report.skipped_empty, report.duplicates) == (3, 2, 1, 0)


def test_any_label_is_accepted_when_none_are_declared(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    path = write_csv(tmp_path / "x.csv", [("1", "A.", "spam"), ("2", "B.", "ham"), ("3", "C.", "")])
    report = import_file(db, pid, path, id_column="id", label_column="label", allowed_labels=[])
    assert report.labels_seen == ["ham", "spam"]
    with db.session() as s:
        assert s.scalars(select(Item.gold_label).order_by(Item.id)).all() == ["spam", "ham", None]


def test_headerless_at_delimited_file(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("fpb")
    path = tmp_path / "Sentences.txt"
    path.write_text("Profit rose , it said .@positive\nSales fell .@negative\nCosts were flat .@neutral\n")
    report = import_file(
        db, pid, path, text_column="sentence", label_column="label", delimiter="@", header_names=["sentence", "label"]
    )
    assert (report.rows_read, report.added, report.labels_seen) == (3, 3, LABELS)
    with db.session() as s:
        assert s.execute(select(Item.external_id, Item.gold_label).order_by(Item.id)).all() == [
            (f"{report.import_id}:1", "positive"),
            (f"{report.import_id}:2", "negative"),
            (f"{report.import_id}:3", "neutral"),
        ]


def test_jsonl_and_parquet_imports_keep_meta_json_safe(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    jl = tmp_path / "news.jsonl"
    jl.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"id": 1, "text": "Profit rose.", "label": "positive", "tags": ["q1"], "score": 0.5},
                {"id": 2, "text": "Sales fell.", "label": "negative", "extra": {"k": None}},
            ]
        )
    )
    report = import_file(db, pid, jl, id_column="id", label_column="label")
    assert (report.format, report.added) == ("jsonl", 2)
    pq_path = tmp_path / "news.parquet"
    table = pa.table(
        {
            "uid": ["p1", "p2", "p3"],
            "body": ["Costs were flat.", "Profit rose.", "Guidance cut."],
            "gold": ["neutral", "positive", "negative"],
            "when": [datetime(2024, 1, 2, 3, 4, 5)] * 3,
            "weight": [1.5, 2.0, float("nan")],
        }
    )
    pq.write_table(table, pq_path)
    report = import_file(db, pid, pq_path, text_column="body", id_column="uid", label_column="gold")
    assert (report.format, report.rows_read, report.added, report.duplicates) == ("parquet", 3, 2, 1)
    with db.session() as s:
        got = s.execute(select(Item.external_id, Item.gold_label, Item.meta).order_by(Item.id)).all()
    assert got == [
        ("1", "positive", {"tags": ["q1"], "score": 0.5}),
        ("2", "negative", {"extra": {"k": None}}),
        ("p1", "neutral", {"when": "2024-01-02T03:04:05", "weight": 1.5}),
        ("p3", "negative", {"when": "2024-01-02T03:04:05", "weight": None}),
    ]


def test_financial_phrasebank(shared_data: Path, db: Database) -> None:
    pid = db.project_id("fpb")
    path = shared_data / "financial_phrasebank" / "Sentences_50Agree.txt"
    report = import_file(
        db, pid, path, text_column="sentence", label_column="label", delimiter="@",
        header_names=["sentence", "label"], split="test", fraction=0.2, allowed_labels=LABELS,
    )  # fmt: skip
    assert report.rows_read == 4846
    assert report.label_counts == {"negative": 604, "neutral": 2879, "positive": 1363}
    assert report.duplicates == 8
    assert report.added == 4838
    with db.session() as s:
        rows = s.execute(select(Item.gold_label, Item.split, func.count()).group_by(Item.gold_label, Item.split))
        table = {(label, split): n for label, split, n in rows}
    for label in LABELS:
        kept = table[(label, "test")] + table[(label, "pool")]
        assert table[(label, "test")] == int(0.2 * kept + 0.5)
    assert report.test == sum(table[(label, "test")] for label in LABELS)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads resident memory from /proc")
def test_a_million_rows_stream_with_modest_memory(tmp_path: Path, test_output: Path) -> None:
    """The import runs in a fresh process so that its peak resident memory belongs to the import alone."""
    import random

    words = ["profit", "loss", "sales", "rose", "fell", "quarter", "company", "market", "shares", "outlook"]
    rnd = random.Random(0)
    path = tmp_path / "big.csv"
    with path.open("w") as fh:
        fh.write("id,text,label,source\n")
        for i in range(1_000_000):
            text = " ".join(rnd.choice(words) for _ in range(12))
            fh.write(f"r{i},{text} {i},{LABELS[i % 3]},feed{i % 7}\n")
    script = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        from terakoya.importers import import_file
        from terakoya.storage import open_database

        def status(key):
            line = next(x for x in open("/proc/self/status") if x.startswith(key + ":"))
            return int(line.split()[1]) / 1024

        path = Path(sys.argv[1])
        db = open_database(f"sqlite:///{path.parent / 'big.db'}")
        pid = db.project_id("big")
        base = status("VmRSS")
        report = import_file(db, pid, path, id_column="id", label_column="label", split="test", fraction=0.2)
        print(json.dumps({"rows": report.rows_read, "added": report.added, "test": report.test,
                          "seconds": round(report.seconds, 1), "file_mb": round(path.stat().st_size / 1e6, 1),
                          "rss_growth_mb": round(status("VmHWM") - base, 1)}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    (test_output / "import_1m_rows.json").write_text(json.dumps(result, indent=2) + "\n")
    print(result)
    assert (result["rows"], result["added"], result["test"]) == (1_000_000, 1_000_000, 200_001)
    # the file is >100 MB; holding its rows in memory would cost several times that
    assert result["rss_growth_mb"] < 100
