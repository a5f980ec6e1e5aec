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
        f"news.csv is not valid utf-8: byte 0xe9 at offset {offset} (line 17, column 6); no common encoding reads "
        "the file cleanly (it may mix encodings, or not be a text file); fix the bytes on that line, or pass "
        "--encoding with the file's real encoding (e.g. cp1252, shift_jis, utf-16)"
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
    assert f"byte 0xff at offset {len(body) + 2} (line 4, column 3)" in str(err.value)


JAPANESE = [
    ("1", "東京株式市場で日経平均株価は大幅に上昇した。", "positive"),
    ("2", "円安が進み、輸入物価の上昇が懸念されている。", "negative"),
    ("3", "新製品の発表会は来週の月曜日に開かれる予定だ。", "neutral"),
]


def test_shift_jis_files_suggest_their_encoding(tmp_path: Path) -> None:
    """The hint names the encoding the file is really in (it used to suggest latin-1 for every file)."""
    csv_path = tmp_path / "ニュース.csv"
    csv_path.write_bytes(b"id,text,label\r\n" + "".join(",".join(r) + "\r\n" for r in JAPANESE).encode("cp932"))
    with pytest.raises(EncodingError) as err:
        rows_of(csv_path)
    assert str(err.value) == (
        "ニュース.csv is not valid utf-8: byte 0x93 at offset 17 (line 2, column 3); "
        "it looks like cp932: pass --encoding cp932"
    )
    assert [r.values["text"] for r in rows_of(csv_path, encoding="cp932")] == [r[1] for r in JAPANESE]
    jsonl = tmp_path / "news.jsonl"
    lines = [json.dumps({"id": i, "text": t, "label": lab}, ensure_ascii=False) for i, t, lab in JAPANESE]
    jsonl.write_bytes("\n".join(lines).encode("shift_jis"))
    with pytest.raises(EncodingError) as err:
        open_rows(jsonl)  # the first line is read on opening, for the columns
    assert str(err.value).startswith("news.jsonl is not valid utf-8: byte 0x93 at offset 21 (line 1, column 22);")
    assert str(err.value).endswith("it looks like cp932: pass --encoding cp932")
    assert [r.values["text"] for r in rows_of(jsonl, encoding="shift_jis")] == [r[1] for r in JAPANESE]


def test_encoding_hint_for_utf16_and_for_a_bad_byte_far_into_the_file(tmp_path: Path) -> None:
    utf16 = tmp_path / "u.csv"
    utf16.write_text("text,label\nhello there,pos\n", encoding="utf-16")
    with pytest.raises(EncodingError, match=r"^u.csv is not valid utf-8: byte 0xff at offset 0 \(line 1, column 1\); "):
        open_rows(utf16)
    with pytest.raises(EncodingError) as err:
        open_rows(utf16)
    assert str(err.value).endswith("it looks like utf-16: pass --encoding utf-16")
    # a Windows-1252 file whose first accented letter comes after the first 256 KiB
    far = tmp_path / "far.csv"
    body = "text\n" + "plain ascii line\n" * 20_000 + "Das Café in München schließt früh.\n" * 3
    far.write_bytes(body.encode("cp1252"))
    with pytest.raises(EncodingError) as err:
        rows_of(far)
    assert str(err.value).endswith("it looks like cp1252: pass --encoding cp1252")
    assert rows_of(far, encoding="cp1252")[-1].values["text"] == "Das Café in München schließt früh."


def test_a_line_of_many_megabytes_reads_whole(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    long_text = "word " * 700_000  # 3.5 MB: spans several read chunks
    path.write_text(f'text,label\n"{long_text}",pos\nshort,neg\n', encoding="utf-8")
    assert rows_of(path) == [Row(2, {"text": long_text, "label": "pos"}), Row(3, {"text": "short", "label": "neg"})]


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


def test_jsonl_lines_python_cannot_read_are_data_errors(tmp_path: Path) -> None:
    """Found by tests/test_fuzz_files.py: each of these used to escape as ValueError, RecursionError or
    UnicodeEncodeError (a lone surrogate reached the text hash, or the database)."""
    path = tmp_path / "odd.jsonl"
    cases = {
        '{"text": ' + "1" * 5000 + "}": "odd.jsonl line 2: a number has more than 4300 digits, too long to read; "
        "write it as a string, or fix that line",
        '{"text": ' + "[" * 50_000 + "]" * 50_000 + "}": "odd.jsonl line 2: the JSON is nested too deeply to read; "
        "fix that line",
        '{"text": "half \\ud83d of an emoji"}': "odd.jsonl line 2: the JSON holds \\ud83d, half of a UTF-16 surrogate "
        "pair, which is not a character (an escaped emoji needs both halves, e.g. \\ud83d\\ude00); fix that line",
        '{"\\udc00": "a key too"}': "odd.jsonl line 2: the JSON holds \\udc00, half of a UTF-16 surrogate pair, which "
        "is not a character (an escaped emoji needs both halves, e.g. \\ud83d\\ude00); fix that line",
    }
    for line, message in cases.items():
        path.write_text('{"text": "fine \\ud83d\\ude00"}\n' + line + "\n", encoding="utf-8")
        with pytest.raises(DataError) as err:
            rows_of(path)
        assert str(err.value) == message
    path.write_text('{"text": "fine \\ud83d\\ude00"}\n', encoding="utf-8")
    assert rows_of(path) == [Row(1, {"text": "fine \U0001f600"})]


def test_utf16_without_a_byte_order_mark_is_an_encoding_error(tmp_path: Path) -> None:
    """Found by fuzzing: --encoding utf-16 on a file without a BOM raised a bare UnicodeError."""
    path = tmp_path / "le.csv"
    path.write_bytes("text\nhello\n".encode("utf-16-le"))
    with pytest.raises(EncodingError) as err:
        rows_of(path, encoding="utf-16")
    assert str(err.value) == (
        "le.csv is not valid utf-16 (UTF-16 stream does not start with BOM); "
        "pass --encoding utf-16-le (or utf-16-be) for a file without a byte order mark"
    )
    assert rows_of(path, encoding="utf-16-le") == [Row(2, {"text": "hello"})]


def test_nul_characters_are_removed_by_the_reader_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "n.jsonl"
    path.write_text('{"text": "a\\u0000b", "tags": ["x\\u0000"]}\n{"text": "clean"}\n{"text": "\\u0000"}\n')
    with open_rows(path) as src:
        assert list(src) == [
            Row(1, {"text": "ab", "tags": ["x"]}),
            Row(2, {"text": "clean"}),
            Row(3, {"text": ""}),
        ]
        assert (src.nul_rows, src.first_nul_line) == (2, 1)
        assert src.notes()[0].startswith(
            "NUL characters (\\x00) were removed from 2 rows of n.jsonl, the first on line 1"
        )


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


def test_a_missing_text_column_suggests_a_text_never_an_id(tmp_path: Path) -> None:
    """The suggestion used to be the closest name by spelling, whatever it held: 'id', 'item_id', 'label'."""
    path = tmp_path / "reviews.csv"
    path.write_text(
        "item_id,stars,review,lang\n"
        "a1,5,Great little kettle; boils fast and looks good.,en\n"
        "a2,1,Broke after two weeks. Do not buy.,en\n"
        "a3,3,素晴らしいが少し高い。,ja\n",
        encoding="utf-8",
    )
    with open_rows(path) as src, pytest.raises(DataError) as err:
        require_columns(src, path, {"--text-column": "text"})
    assert str(err.value) == (
        "column 'text' not found in reviews.csv; columns are: item_id, stars, review, lang — pass --text-column review"
    )
    body = tmp_path / "body.jsonl"
    body.write_text('{"id": 1, "body": "Profit rose sharply in the quarter."}\n', encoding="utf-8")
    with open_rows(body) as src, pytest.raises(DataError) as err:
        require_columns(src, body, {"--text-column": "text"})
    assert str(err.value).endswith("— pass --text-column body")
    # a name close by spelling that holds no texts is passed over too
    test_col = tmp_path / "flags.csv"
    test_col.write_text("id,test,comment\n1,0,Sales fell a little.\n2,1,Costs were flat.\n", encoding="utf-8")
    with open_rows(test_col) as src, pytest.raises(DataError) as err:
        require_columns(src, test_col, {"--text-column": "text"})
    assert str(err.value).endswith("— pass --text-column comment")


def test_no_plausible_text_column_lists_the_columns_without_a_guess(tmp_path: Path) -> None:
    path = tmp_path / "ids.csv"
    path.write_text("id,label\n1,pos\n2,neg\n", encoding="utf-8")
    with open_rows(path) as src, pytest.raises(DataError) as err:
        require_columns(src, path, {"--text-column": "text"})
    assert (
        str(err.value)
        == "column 'text' not found in ids.csv; columns are: id, label — pass --text-column with one of them"
    )
    with open_rows(path) as src, pytest.raises(DataError) as err:
        require_columns(src, path, {"--text-column": "label", "--id-column": "uid", "--label-column": None})
    assert str(err.value).endswith("— pass --id-column id")  # near by spelling: still suggested for other flags
    with open_rows(path) as src, pytest.raises(DataError) as err:
        require_columns(src, path, {"--text-column": "label", "--label-column": "gold"})
    assert str(err.value).endswith("— pass --label-column with one of them")  # no near name: no guess


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
