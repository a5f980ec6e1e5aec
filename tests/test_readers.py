"""Readers: streamed rows from real files, and error texts that name file, line, column and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from terakoya.errors import ConfigError, DataError, EncodingError
from terakoya.importers.readers import Row, detect_format, open_rows, require_columns


def rows_of(path: Path, **kw: object) -> list[Row]:
    with open_rows(path, **kw) as src:  # type: ignore[arg-type]
        return list(src)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.csv", "csv"),
        ("a.TSV", "tsv"),
        ("a.txt", "csv"),
        ("a.jsonl", "jsonl"),
        ("a.ndjson", "jsonl"),
        ("a.json", "jsonl"),
        ("a.parquet", "parquet"),
    ],
)
def test_detect_format_from_suffix(name: str, fmt: str) -> None:
    assert detect_format(Path(name)) == fmt


def test_detect_format_flag_wins_and_unknown_names_the_choices() -> None:
    assert detect_format(Path("data.xlsx"), "TSV") == "tsv"
    with pytest.raises(DataError) as err:
        detect_format(Path("data.xlsx"))
    assert str(err.value) == (
        "cannot tell the format of data.xlsx (suffix '.xlsx'); name it .csv, .tsv, .txt, .jsonl, .ndjson, .json "
        "or .parquet, or pass --format with one of: csv, tsv, jsonl, parquet"
    )
    with pytest.raises(ConfigError) as cerr:
        detect_format(Path("a.csv"), "xls")
    assert str(cerr.value) == "unknown --format 'xls'; use one of: csv, tsv, jsonl, parquet"


def test_csv_rows_carry_their_starting_physical_line(tmp_path: Path) -> None:
    path = tmp_path / "news.csv"
    path.write_bytes(b'\xef\xbb\xbfid,text\r\n1,plain\r\n\r\n2,"two\nlines"\r\n3,"a, b"\r\n')
    with open_rows(path) as src:
        assert src.columns == ["id", "text"]
        rows = list(src)
        assert list(src) == rows  # a source can be read twice
    assert rows == [
        Row(2, {"id": "1", "text": "plain"}),
        Row(4, {"id": "2", "text": "two\nlines"}),
        Row(6, {"id": "3", "text": "a, b"}),
    ]


def test_tsv_and_headerless_at_delimited(tmp_path: Path) -> None:
    tsv = tmp_path / "a.tsv"
    tsv.write_text("text\tlabel\nhello, world\tpos\n", encoding="utf-8")
    assert rows_of(tsv) == [Row(2, {"text": "hello, world", "label": "pos"})]
    txt = tmp_path / "Sentences.txt"
    txt.write_text("Profit rose , the CEO said .@positive\nSales fell .@negative", encoding="utf-8")
    rows = rows_of(txt, delimiter="@", header_names=["sentence", "label"])
    assert rows == [
        Row(1, {"sentence": "Profit rose , the CEO said .", "label": "positive"}),
        Row(2, {"sentence": "Sales fell .", "label": "negative"}),
    ]


def test_csv_wrong_field_count_names_line_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "news.csv"
    path.write_text("text,label\nok,pos\nProfit, up,pos\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        rows_of(path)
    assert str(err.value) == (
        "news.csv line 3: expected 2 fields (text, label), found 3; "
        "quote values that contain the delimiter ',', or fix the row"
    )


def test_bad_encoding_names_byte_offset_line_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "news.csv"
    head = "text,label\n" + "".join(f"row {i} caf\u00e9,pos\n" for i in range(15))
    good = head.encode("utf-8")
    path.write_bytes(good + b"Nestl\xe9,neg\n")
    offset = len(good) + 5
    with open_rows(path) as src:
        seen: list[Row] = []
        with pytest.raises(EncodingError) as err:
            for row in src:
                seen.append(row)
    assert str(err.value) == (
        f"news.csv is not valid utf-8: byte 0xe9 at offset {offset} (line 17); "
        "pass --encoding latin-1 (or the file's real encoding)"
    )
    assert len(seen) == 15  # every good row before the bad byte came through
    assert rows_of(path, encoding="latin-1")[-1] == Row(17, {"text": "Nestl\u00e9", "label": "neg"})


def test_bad_encoding_offset_exact_across_chunk_boundaries(tmp_path: Path) -> None:
    # a multi-byte character split across the 1 MiB read boundary, then a bad byte far after it
    path = tmp_path / "big.csv"
    body = b"text\n" + b"x" * ((1 << 20) - 6) + "\u00e9".encode() + b"\n" + b"y" * 70_000 + b"\n"
    path.write_bytes(body + b"ab\xff\n")
    with pytest.raises(EncodingError) as err:
        rows_of(path)
    assert f"byte 0xff at offset {len(body) + 2} (line 4)" in str(err.value)


def test_jsonl_malformed_line_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "news.jsonl"
    path.write_text('{"text": "a", "label": "pos"}\n\n{"text": "b" "label": "neg"}\n', encoding="utf-8")
    with pytest.raises(DataError) as err:
        rows_of(path)
    assert str(err.value) == "news.jsonl line 3, column 14: invalid JSON (Expecting ',' delimiter); fix that line"


def test_jsonl_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "news.jsonl"
    path.write_text('{"text": "a"}\n["b"]\n', encoding="utf-8")
    with pytest.raises(DataError) as err:
        rows_of(path)
    assert str(err.value) == 'news.jsonl line 2: expected a JSON object like {"text": ...}, found a list; fix that line'
    arr = tmp_path / "all.json"
    arr.write_text('[{"text": "a"},\n{"text": "b"}]\n', encoding="utf-8")
    with pytest.raises(DataError, match="holds one JSON array, not one JSON object per line"):
        open_rows(arr)


def test_jsonl_rows_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "news.ndjson"
    path.write_text(
        json.dumps({"text": "a", "n": 1}) + "\n" + json.dumps({"text": "b", "extra": [1, 2]}) + "\n", encoding="utf-8"
    )
    with open_rows(path) as src:
        assert src.columns == ["text", "n"]
        assert list(src) == [Row(1, {"text": "a", "n": 1}), Row(2, {"text": "b", "extra": [1, 2]})]


def test_parquet_streams_batches(tmp_path: Path) -> None:
    path = tmp_path / "news.parquet"
    n = 25_000  # more than one batch
    pq.write_table(pa.table({"text": [f"t{i}" for i in range(n)], "score": list(range(n))}), path, row_group_size=7000)
    with open_rows(path) as src:
        assert src.columns == ["text", "score"]
        rows = list(src)
    assert len(rows) == n
    assert rows[0] == Row(1, {"text": "t0", "score": 0})
    assert rows[-1] == Row(n, {"text": f"t{n - 1}", "score": n - 1})


def test_not_parquet_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.parquet"
    bad.write_text("text\nhello\n")
    with pytest.raises(DataError, match=r"^x.parquet is not a readable Parquet file \(.*\); check the file or pass"):
        open_rows(bad)
    assert rows_of(bad, fmt="csv") == [Row(2, {"text": "hello"})]
    with pytest.raises(DataError) as err:
        open_rows(Path("nowhere/x.csv"))
    assert str(err.value) == "file not found: nowhere/x.csv; check the path"


def test_require_columns_suggests_the_closest_unclaimed_column(tmp_path: Path) -> None:
    path = tmp_path / "news.csv"
    path.write_text("sentence,label\nhi,pos\n", encoding="utf-8")
    with open_rows(path) as src:
        require_columns(src, path, {"--text-column": "sentence", "--label-column": "label", "--id-column": None})
        with pytest.raises(DataError) as err:
            require_columns(src, path, {"--text-column": "text", "--label-column": "label"})
    assert str(err.value) == (
        "column 'text' not found in news.csv; columns are: sentence, label — pass --text-column sentence"
    )
    with open_rows(path) as src, pytest.raises(DataError) as err:
        require_columns(src, path, {"--text-column": "sentence", "--label-column": "Label "})
    assert str(err.value).endswith("— pass --label-column label")


def test_empty_file_and_flag_errors(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    with open_rows(path) as src:
        assert src.columns == []
        assert list(src) == []
        with pytest.raises(DataError) as err:
            require_columns(src, path, {"--text-column": "text"})
    assert str(err.value) == "empty.csv has no columns (the file is empty); check that it is the right file"
    with pytest.raises(ConfigError, match="--delimiter must be one character, got '::'"):
        open_rows(path, delimiter="::")
    with pytest.raises(ConfigError, match="unknown encoding 'klingon'"):
        rows_of(path, encoding="klingon")
    dup = tmp_path / "dup.csv"
    dup.write_text("text,text\na,b\n")
    with pytest.raises(DataError) as err:
        open_rows(dup)
    assert str(err.value) == "column 'text' appears twice in the header of dup.csv; rename one of them"


def test_phrasebank_file_reads_every_line(shared_data: Path) -> None:
    path = shared_data / "financial_phrasebank" / "Sentences_50Agree.txt"
    with open_rows(path, delimiter="@", header_names=["sentence", "label"]) as src:
        rows = list(src)
    assert len(rows) == 4846
    assert rows[-1].line == 4846
    assert {r.values["label"] for r in rows} == {"negative", "neutral", "positive"}
