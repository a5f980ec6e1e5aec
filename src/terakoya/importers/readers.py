"""Read rows from CSV, TSV, JSON Lines and Parquet files, streamed, with errors that name file, line and column.

``open_rows(path)`` gives a :class:`RowSource`: its ``columns`` are known at once, and iterating it yields
:class:`Row` objects (the record's 1-based starting line and its values) without loading the file into memory.
Each iteration reads the file afresh, so a source can be read twice (a planning pass, then a writing pass).
"""

from __future__ import annotations

import codecs
import csv
import difflib
import json
import re
import shlex
import sys
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from terakoya.errors import ConfigError, DataError, EncodingError, TerakoyaError

__all__ = ["FORMATS", "Row", "RowSource", "detect_format", "guess_encoding", "open_rows", "require_columns"]

FORMATS = ("csv", "tsv", "jsonl", "parquet")

_SUFFIXES = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
}
_ALIASES = {"csv": "csv", "tsv": "tsv", "jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl", "parquet": "parquet"}
_CHUNK_BYTES = 1 << 20
_PARQUET_BATCH = 10_000
_MAX_LISTED_COLUMNS = 30


@dataclass(frozen=True)
class Row:
    """One record: ``line`` is the 1-based line where it starts (CSV/TSV/JSONL) or its 1-based row number (Parquet)."""

    line: int
    values: dict[str, Any]


def detect_format(path: Path, fmt: str | None = None) -> str:
    """``csv``, ``tsv``, ``jsonl`` or ``parquet``: from ``fmt`` (the --format flag) when given, else from the suffix."""
    if fmt:
        found = _ALIASES.get(fmt.strip().lower())
        if found is None:
            raise ConfigError(f"unknown --format {fmt!r}; use one of: {', '.join(FORMATS)}")
        return found
    suffix = path.suffix.lower()
    found = _SUFFIXES.get(suffix)
    if found is None:
        shown = f"suffix {suffix!r}" if suffix else "no suffix"
        raise DataError(
            f"cannot tell the format of {path.name} ({shown}); name it .csv, .tsv, .txt, .jsonl, .ndjson, .json "
            f"or .parquet, or pass --format with one of: {', '.join(FORMATS)}"
        )
    return found


def _delimiter(fmt: str, delimiter: str | None) -> str:
    if delimiter is None or delimiter == "":
        return "\t" if fmt == "tsv" else ","
    if delimiter in {"\\t", "tab", "TAB"}:
        return "\t"
    if len(delimiter) != 1:
        raise ConfigError(f"--delimiter must be one character, got {delimiter!r}")
    if delimiter in {"\n", "\r", '"'}:
        raise ConfigError(f"--delimiter cannot be {delimiter!r}; pick another character such as ',' ';' '|' or '@'")
    return delimiter


def _codec_name(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError as exc:
        raise ConfigError(
            f"unknown encoding {encoding!r}; pass --encoding with a name Python knows, "
            "e.g. utf-8, latin-1, cp1252, shift_jis"
        ) from exc


class _Lines:
    """Decoded text cut into lines ending with "\\n"; the piece of a line not ended yet is kept as parts.

    Keeping parts (rather than ``rest + text`` per chunk) keeps a very long line linear to read.
    """

    def __init__(self) -> None:
        self.parts: list[str] = []

    def feed(self, text: str) -> Iterator[str]:
        start = 0
        while (end := text.find("\n", start)) != -1:
            if self.parts:
                self.parts.append(text[start : end + 1])
                yield "".join(self.parts)
                self.parts.clear()
            else:
                yield text[start : end + 1]
            start = end + 1
        if start < len(text):
            self.parts.append(text[start:])

    def pending(self) -> str:
        return "".join(self.parts)


def _text_lines(path: Path, encoding: str) -> Generator[str]:
    """The file's lines (ending with their "\\n"), decoded incrementally so a bad byte's offset is exact.

    Hand-written rather than ``open(encoding=...)``: a text stream's error does not say where in the file it is.
    Lines are split on "\\n" only, as the csv module expects (``newline=""``).
    """
    codec = _codec_name(encoding)
    decoder = codecs.getincrementaldecoder(codec)(errors="strict")
    consumed = 0  # bytes handed to the decoder so far
    newlines = 0  # b"\n" among them
    lines = _Lines()
    first = True
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(_CHUNK_BYTES)
            final = not chunk
            if first and codec == "utf-8" and chunk.startswith(codecs.BOM_UTF8):
                chunk = chunk[len(codecs.BOM_UTF8) :]
                consumed += len(codecs.BOM_UTF8)
            first = False
            pending: bytes = decoder.getstate()[0]
            try:
                text = decoder.decode(chunk, final)
            except UnicodeDecodeError as exc:
                data = exc.object  # the decoder's pending bytes + this chunk
                yield from lines.feed(data[: exc.start].decode(codec, errors="replace"))
                offset = consumed - len(pending) + exc.start
                line = newlines - pending.count(b"\n") + data[: exc.start].count(b"\n") + 1
                column = len(lines.pending()) + 1  # in characters: the line's start decoded fine
                bad = data[exc.start] if exc.start < len(data) else 0
                raise EncodingError(
                    f"{path.name} is not valid {encoding}: byte 0x{bad:02x} at offset {offset} "
                    f"(line {line}, column {column}); {_encoding_fix(path, codec, offset)}"
                ) from None
            except UnicodeError as exc:  # not a bad byte: UTF-16 and UTF-32 need a byte order mark to start
                fix = (
                    f"pass --encoding {codec}-le (or {codec}-be) for a file without a byte order mark"
                    if codec in {"utf-16", "utf-32"}
                    else _encoding_fix(path, codec, consumed)
                )
                raise EncodingError(f"{path.name} is not valid {encoding} ({exc}); {fix}") from None
            consumed += len(chunk)
            newlines += chunk.count(b"\n")
            yield from lines.feed(text)
            if final:
                break
    if rest := lines.pending():
        yield rest


#: the encodings a suggestion is chosen from, most likely first (Python's codec names)
_LIKELY_ENCODINGS = (
    "utf_8", "utf_16", "utf_32", "cp1252", "latin_1", "iso8859_15", "cp932", "shift_jis", "euc_jp", "iso2022_jp",
    "gb18030", "big5", "euc_kr", "cp1251", "koi8_r", "cp1250", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257",
)  # fmt: skip
_SNIFF_BYTES = 1 << 18


def _whole_lines(data: bytes, *, at_start: bool, at_end: bool) -> bytes:
    """``data`` cut to whole lines, so a multi-byte character is not cut in two where samples are joined."""
    if not at_start and (cut := data.find(b"\n")) != -1:
        data = data[cut + 1 :]
    if not at_end and (cut := data.rfind(b"\n")) != -1:
        data = data[: cut + 1]
    return data


def _sniff_sample(path: Path, offset: int) -> bytes:
    """The file's start and the lines around ``offset``: what an encoding is guessed from."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES)
        if len(head) >= size:
            return head
        sample = _whole_lines(head, at_start=True, at_end=False)
        if offset >= len(head) - _SNIFF_BYTES // 4:
            start = max(len(sample), offset - _SNIFF_BYTES // 2)
            fh.seek(start)
            around = fh.read(_SNIFF_BYTES)
            sample += _whole_lines(around, at_start=False, at_end=start + len(around) >= size)
    return sample


def guess_encoding(path: Path, *, offset: int = 0) -> str | None:
    """The encoding charset-normalizer finds for ``path`` (its start, and the lines around ``offset``), or None.

    Only common encodings are considered; among equally good fits the most common one is named (cp1252 before
    cp1250, cp932 before shift_jis). The name is Python's (``codecs.lookup(...).name``), usable as --encoding.
    """
    from charset_normalizer import from_bytes

    sample = _sniff_sample(path, offset)
    if not sample:
        return None
    found = from_bytes(sample, cp_isolation=list(_LIKELY_ENCODINGS))
    best = found.best()
    if best is None:
        return None
    fits: set[str] = set()
    for match in found:
        if match.chaos <= best.chaos and match.coherence >= best.coherence:
            fits.update(codecs.lookup(name).name for name in match.could_be_from_charset)
    for name in _LIKELY_ENCODINGS:
        codec = codecs.lookup(name).name
        if codec in fits:
            try:
                sample.decode(codec)
            except UnicodeDecodeError:
                continue
            return codec
    return None


def _encoding_fix(path: Path, codec: str, offset: int) -> str:
    """How to fix an undecodable file: the encoding it looks like, else how to find it."""
    try:
        found = guess_encoding(path, offset=offset)
    except OSError:
        found = None
    if found is not None and found != codec:
        return f"it looks like {found}: pass --encoding {found}"
    return (
        "no common encoding reads the file cleanly (it may mix encodings, or not be a text file); fix the bytes "
        "on that line, or pass --encoding with the file's real encoding (e.g. cp1252, shift_jis, utf-16)"
    )


_NUL = "\x00"


def _strip_nul(value: Any) -> Any:
    """``value`` with NUL removed from every string in it (lists and dict values too); the same object if none."""
    if isinstance(value, str):
        return value.replace(_NUL, "") if _NUL in value else value
    if isinstance(value, dict):
        if all(_strip_nul(v) is v for v in value.values()):  # the common case: nothing copied
            return value
        return {k: _strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        if all(_strip_nul(v) is v for v in value):
            return value
        return [_strip_nul(v) for v in value]
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(value: Any) -> str | None:
    """The first unpaired surrogate in a parsed JSON value (keys included): JSON escapes can make one."""
    if isinstance(value, str):
        found = _SURROGATE.search(value)
        return found.group() if found else None
    items: list[Any] = []
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    for item in items:
        if (half := _lone_surrogate(item)) is not None:
            return half
    return None


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"file not found: {path}; check the path")
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a file; pass the path of the data file inside it")


def _list_columns(columns: Sequence[str]) -> str:
    if not columns:
        return "(none)"
    shown = ", ".join(columns[:_MAX_LISTED_COLUMNS])
    if len(columns) > _MAX_LISTED_COLUMNS:
        shown += f", … ({len(columns) - _MAX_LISTED_COLUMNS} more)"
    return shown


class RowSource:
    """Rows of one file. Use as a context manager; ``columns`` is known on opening; iterate for :class:`Row`."""

    def __init__(
        self,
        path: Path,
        fmt: str,
        *,
        encoding: str = "utf-8",
        delimiter: str | None = None,
        header_names: Sequence[str] | None = None,
    ) -> None:
        self.path = path
        self.format = fmt
        self.encoding = encoding
        self.delimiter = _delimiter(fmt, delimiter) if fmt in {"csv", "tsv"} else None
        self.header_names = [str(h).strip() for h in header_names] if header_names else None
        if self.header_names is not None:
            if fmt not in {"csv", "tsv"}:
                raise ConfigError(f"header names apply to CSV and TSV files only; {path.name} is {fmt}")
            self._check_unique(self.header_names, "header names", "rename one of them")
        self._open: list[Generator[Row]] = []
        #: rows of the last complete read that held a NUL character, and the line of the first
        self.nul_rows = 0
        self.first_nul_line: int | None = None
        self.columns: list[str] = self._read_columns()

    @property
    def name(self) -> str:
        return self.path.name

    def __enter__(self) -> RowSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every iteration still open (its file handle with it)."""
        for rows in self._open:
            rows.close()
        self._open.clear()

    def __iter__(self) -> Iterator[Row]:
        if self.format == "parquet":
            raw = self._parquet_rows()
        elif self.format == "jsonl":
            raw = self._jsonl_rows()
        else:
            raw = self._csv_rows(header=False)
        rows = self._without_nul(raw)
        self._open.append(rows)
        return rows

    def _without_nul(self, rows: Generator[Row]) -> Generator[Row]:
        """The rows with NUL characters removed from every string value, counted for :meth:`notes`.

        No database text can hold NUL (PostgreSQL refuses it), and it is never part of a real text.
        """
        self.nul_rows = 0
        self.first_nul_line = None
        try:
            for row in rows:
                try:  # the fast test, for rows of strings (CSV, TSV)
                    if _NUL not in "".join(row.values.values()):
                        yield row
                        continue
                except TypeError:  # other values too (JSON, Parquet): look inside them
                    pass
                values = _strip_nul(row.values)
                if values is not row.values:
                    self.nul_rows += 1
                    if self.first_nul_line is None:
                        self.first_nul_line = row.line
                    row = Row(row.line, values)
                yield row
        finally:
            rows.close()

    def notes(self) -> list[str]:
        """What the last complete read changed, as sentences for a report (NUL characters removed)."""
        if not self.nul_rows:
            return []
        rows = "1 row" if self.nul_rows == 1 else f"{self.nul_rows:,} rows"
        return [
            f"NUL characters (\\x00) were removed from {rows} of {self.name}, the first on line "
            f"{self.first_nul_line}, as no database text can hold them; check that those rows read as intended "
            "(a file full of them is usually UTF-16: then pass --encoding utf-16)"
        ]

    # --- columns -------------------------------------------------------------------------------------

    def _check_unique(self, names: Sequence[str], where: str, fix: str) -> None:
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise DataError(f"column {name!r} appears twice in the {where} of {self.name}; {fix}")
            seen.add(name)

    def _read_columns(self) -> list[str]:
        if self.format == "parquet":
            return self._parquet_columns()
        if self.format == "jsonl":
            rows = self._jsonl_rows()
            try:
                first = next(rows, None)
            finally:
                rows.close()
            return list(first.values) if first is not None else []
        if self.header_names is not None:
            _check_file(self.path)
            return list(self.header_names)
        header = self._csv_rows(header=True)
        try:
            found = next(header, None)
        finally:
            header.close()
        return list(found.values) if found is not None else []

    # --- CSV / TSV -----------------------------------------------------------------------------------

    def _csv_rows(self, *, header: bool) -> Generator[Row]:
        """With ``header=True``, yield only the header row (values: name -> name); else the data rows."""
        _check_file(self.path)
        # the csv module refuses fields over 128 KiB by default; long documents are legitimate input
        csv.field_size_limit(2**31 - 1)
        lines = _text_lines(self.path, self.encoding)
        reader = csv.reader(lines, delimiter=self.delimiter or ",")
        columns: list[str] | None = list(self.header_names) if self.header_names is not None else None
        try:
            while True:
                start = reader.line_num + 1
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    raise DataError(
                        f"{self.name} line {start}: cannot read this row as {self.format.upper()} ({exc}); "
                        "check its quotes and the --delimiter"
                    ) from None
                if not fields:
                    continue  # a blank line
                if columns is None:
                    names = [f.strip() or f"column_{i + 1}" for i, f in enumerate(fields)]
                    self._check_unique(names, "header", "rename one of them")
                    if header:
                        yield Row(start, {n: n for n in names})
                        return
                    columns = names
                    continue
                if len(fields) != len(columns):
                    sep = "tab" if self.delimiter == "\t" else repr(self.delimiter)
                    raise DataError(
                        f"{self.name} line {start}: expected {len(columns)} fields ({', '.join(columns)}), "
                        f"found {len(fields)}; quote values that contain the delimiter {sep}, or fix the row"
                    )
                yield Row(start, dict(zip(columns, fields, strict=True)))
        finally:
            lines.close()

    # --- JSON Lines ----------------------------------------------------------------------------------

    def _jsonl_rows(self) -> Generator[Row]:
        _check_file(self.path)
        lines = _text_lines(self.path, self.encoding)
        try:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                value = self._json_line(number, line)
                if not isinstance(value, dict):
                    kind = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
                        type(value), "a number"
                    )
                    raise DataError(
                        f'{self.name} line {number}: expected a JSON object like {{"text": ...}}, found {kind}; '
                        "fix that line"
                    )
                yield Row(number, value)
        finally:
            lines.close()

    def _json_line(self, number: int, line: str) -> Any:
        where = f"{self.name} line {number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == 1 and line.lstrip().startswith("["):
                raise DataError(
                    f"{self.name} holds one JSON array, not one JSON object per line; "
                    "write it as JSON Lines (one object per line)"
                ) from None
            raise DataError(f"{where}, column {exc.colno}: invalid JSON ({exc.msg}); fix that line") from None
        except ValueError:  # the one other ValueError json raises: an integer too long to convert
            raise DataError(
                f"{where}: a number has more than {sys.get_int_max_str_digits()} digits, too long to read; "
                "write it as a string, or fix that line"
            ) from None
        except RecursionError:
            raise DataError(f"{where}: the JSON is nested too deeply to read; fix that line") from None
        if "\\u" in line and (half := _lone_surrogate(value)) is not None:
            raise DataError(
                f"{where}: the JSON holds \\u{ord(half):04x}, half of a UTF-16 surrogate pair, which is not a "
                "character (an escaped emoji needs both halves, e.g. \\ud83d\\ude00); fix that line"
            )
        return value

    # --- Parquet -------------------------------------------------------------------------------------

    def _parquet_file(self) -> Any:
        _check_file(self.path)
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(self.path)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(
                f"{self.name} is not a readable Parquet file ({exc}); check the file or pass --format"
            ) from None

    def _parquet_columns(self) -> list[str]:
        pf = self._parquet_file()
        try:
            names = [str(n) for n in pf.schema_arrow.names]
        finally:
            pf.close()
        self._check_unique(names, "schema", "rename one of them")
        return names

    def _parquet_rows(self) -> Generator[Row]:
        import pyarrow as pa

        pf = self._parquet_file()
        number = 0
        try:
            batches = pf.iter_batches(batch_size=_PARQUET_BATCH)
            while True:
                try:
                    batch = next(batches)
                except StopIteration:
                    return
                except (pa.ArrowException, OSError) as exc:
                    raise DataError(
                        f"{self.name}: cannot read the Parquet rows after row {number} ({exc}); check the file"
                    ) from None
                for values in batch.to_pylist():
                    number += 1
                    yield Row(number, values)
        finally:
            pf.close()


def open_rows(
    path: Path,
    *,
    fmt: str | None = None,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    header_names: Sequence[str] | None = None,
) -> RowSource:
    """Open ``path`` for streaming. ``header_names`` names the columns of a file without a header line."""
    path = Path(path)
    _check_file(path)
    return RowSource(path, detect_format(path, fmt), encoding=encoding, delimiter=delimiter, header_names=header_names)


_ID_LIKE = re.compile(r"(?:.*[\W_])?(?:ids?|uuid|guid|key|idx|index|no|num|number|row|rownum)", re.IGNORECASE)
_TOKEN = re.compile(r"[\w\-:./#@+=,;]*", re.ASCII)  # one ASCII word, number, code or URL: not a text
_NUMBER = re.compile(r"[\s\d.,:/%+\-eE]*")  # numbers, dates, times
#: column names that say "a text is here", for files whose texts are single words
_TEXT_NAMES = frozenset({
    "text", "texts", "sentence", "sentences", "review", "reviews", "body", "content", "comment", "comments",
    "message", "msg", "tweet", "title", "headline", "description", "document", "doc", "abstract", "summary",
    "question", "answer", "utterance", "prompt", "query", "passage", "paragraph", "caption", "snippet", "post",
})  # fmt: skip
_SAMPLE_ROWS = 200


def _id_like(column: str) -> bool:
    """``id``, ``item_id``, ``uuid``, ``row number``, ``itemId``: a name that says the column holds keys."""
    return bool(_ID_LIKE.fullmatch(column.strip())) or column.strip().endswith("Id")


@dataclass
class _ColumnSample:
    filled: int = 0  # cells with a value
    words: int = 0  # strings that are not numbers or dates
    texts: list[int] = field(default_factory=list)  # lengths of the strings that are more than one ASCII token

    @property
    def is_text(self) -> bool:
        return bool(self.texts) and 2 * len(self.texts) >= self.filled

    @property
    def is_words(self) -> bool:
        return self.words > 0 and 2 * self.words >= self.filled


def _sample_columns(source: RowSource, columns: Sequence[str]) -> dict[str, _ColumnSample]:
    """What the first rows hold in each of ``columns``."""
    found = {c: _ColumnSample() for c in columns}
    rows = iter(source)
    try:
        for number, row in enumerate(rows):
            if number >= _SAMPLE_ROWS:
                break
            for column, sample in found.items():
                value = row.values.get(column)
                if value is None or value == "":
                    continue
                sample.filled += 1
                if not isinstance(value, str) or _NUMBER.fullmatch(value):
                    continue
                sample.words += 1
                if not _TOKEN.fullmatch(value.strip()):
                    sample.texts.append(len(value))
    except TerakoyaError:
        pass  # a bad row further on: judge by the rows before it (the import reports that row by itself)
    finally:
        if isinstance(rows, Generator):
            rows.close()
    return found


def _text_column_guess(source: RowSource, columns: Sequence[str], near: str | None) -> str | None:
    """The column of ``columns`` that most plausibly holds the texts, or None; never an id-like column.

    ``near`` (a name close by spelling to the one asked for) wins when it holds words. Else the column whose
    cells are mostly more than one word (or non-ASCII), longest on average; else one named like a text column.
    """
    candidates = [c for c in columns if not _id_like(c)]
    if not candidates:
        return None
    samples = _sample_columns(source, candidates)
    if near is not None and near in samples and samples[near].is_words:
        return near
    texts = {c: sum(s.texts) / len(s.texts) for c, s in samples.items() if s.is_text}
    if texts:
        return max(texts, key=lambda c: texts[c])
    named = [c for c, s in samples.items() if s.is_words and c.strip().lower() in _TEXT_NAMES]
    return named[0] if named else None


def require_columns(source: RowSource, path: Path, wanted: dict[str, str | None]) -> None:
    """Check that every wanted column exists; ``wanted`` maps a flag (``--text-column``) to a column (None: unused).

    A missing column raises a DataError that lists the columns and suggests an unclaimed one where one fits:
    the same name but for case and spelling, or, for ``--text-column``, the column that plausibly holds texts
    (never an id-like one). With no good guess it lists the columns and suggests none.
    """
    name = Path(path).name
    columns = list(source.columns)
    if not columns:
        raise DataError(f"{name} has no columns (the file is empty); check that it is the right file")
    claimed = {col for col in wanted.values() if col is not None and col in columns}
    for flag, col in wanted.items():
        if col is None or col in columns:
            continue
        free = [c for c in columns if c not in claimed]
        lowered = {c.strip().lower(): c for c in free}
        match = difflib.get_close_matches(col.strip().lower(), list(lowered), n=1, cutoff=0.6)
        guess: str | None = lowered[match[0]] if match else None
        if flag == "--text-column":
            guess = _text_column_guess(source, free, guess)
        hint = f"pass {flag} {shlex.quote(guess)}" if guess is not None else f"pass {flag} with one of them"
        raise DataError(f"column {col!r} not found in {name}; columns are: {_list_columns(columns)} — {hint}")
