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
import shlex
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from terakoya.errors import ConfigError, DataError, EncodingError

__all__ = ["FORMATS", "Row", "RowSource", "detect_format", "open_rows", "require_columns"]

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


def _text_lines(path: Path, encoding: str) -> Generator[str]:
    """The file's lines (ending with their "\\n"), decoded incrementally so a bad byte's offset is exact.

    Hand-written rather than ``open(encoding=...)``: a text stream's error does not say where in the file it is.
    Lines are split on "\\n" only, as the csv module expects (``newline=""``).
    """
    codec = _codec_name(encoding)
    decoder = codecs.getincrementaldecoder(codec)(errors="strict")
    consumed = 0  # bytes handed to the decoder so far
    newlines = 0  # b"\n" among them
    rest = ""
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
                good = data[: exc.start].decode(codec, errors="replace")
                buf = rest + good
                start = 0
                while (end := buf.find("\n", start)) != -1:
                    yield buf[start : end + 1]
                    start = end + 1
                offset = consumed - len(pending) + exc.start
                line = newlines - pending.count(b"\n") + data[: exc.start].count(b"\n") + 1
                bad = data[exc.start] if exc.start < len(data) else 0
                raise EncodingError(
                    f"{path.name} is not valid {encoding}: byte 0x{bad:02x} at offset {offset} (line {line}); "
                    "pass --encoding latin-1 (or the file's real encoding)"
                ) from None
            consumed += len(chunk)
            newlines += chunk.count(b"\n")
            buf = rest + text
            start = 0
            while (end := buf.find("\n", start)) != -1:
                yield buf[start : end + 1]
                start = end + 1
            rest = buf[start:]
            if final:
                break
    if rest:
        yield rest


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
            rows = self._parquet_rows()
        elif self.format == "jsonl":
            rows = self._jsonl_rows()
        else:
            rows = self._csv_rows(header=False)
        self._open.append(rows)
        return rows

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
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    if number == 1 and line.lstrip().startswith("["):
                        raise DataError(
                            f"{self.name} holds one JSON array, not one JSON object per line; "
                            "write it as JSON Lines (one object per line)"
                        ) from None
                    raise DataError(
                        f"{self.name} line {number}, column {exc.colno}: invalid JSON ({exc.msg}); fix that line"
                    ) from None
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


def require_columns(source: RowSource, path: Path, wanted: dict[str, str | None]) -> None:
    """Check that every wanted column exists; ``wanted`` maps a flag (``--text-column``) to a column (None: unused).

    A missing column raises a DataError that lists the columns and suggests the closest unclaimed one.
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
        # closest by spelling, case-insensitively; with no near match, the best of the rest is still a useful hint
        lowered = {c.lower(): c for c in free}
        match = difflib.get_close_matches(col.lower(), list(lowered), n=1, cutoff=0.0)
        hint = f"pass {flag} {shlex.quote(lowered[match[0]])}" if match else f"pass {flag} with one of them"
        raise DataError(f"column {col!r} not found in {name}; columns are: {_list_columns(columns)} — {hint}")
