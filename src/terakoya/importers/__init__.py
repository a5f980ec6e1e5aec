"""Import a data file into a project: streamed, de-duplicated, split into pool and test, all in one transaction.

Two passes over the file. The first checks every row (text, label, id) and keeps only small numbers per row
(a 64-bit prefix of the text hash, a label index, a 64-bit id key), from which duplicates and the seeded,
stratified split are decided. The second pass reads the file again and inserts the new items in chunks.
Any error, on any line, rolls the whole import back: the project is left as it was.

Two rules about what a text may be. It may be at most ``import.max_text_chars`` characters long (a longer one
is an error naming its line, and nothing is imported). NUL characters (``\\x00``) are removed from every cell
by the reader (:meth:`~terakoya.importers.readers.RowSource.notes`): no database text column can hold them
(PostgreSQL refuses them); the report's ``notes`` say how many rows lost one, and where the first was.
"""

from __future__ import annotations

import hashlib
import math
import time
import unicodedata
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from terakoya.errors import ConfigError, DataError
from terakoya.importers.readers import RowSource, open_rows, require_columns
from terakoya.kinds.base import AnswerValue
from terakoya.settings import ImportSettings
from terakoya.storage.models import Import, Item, Project, utcnow

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from terakoya.storage.db import Database

__all__ = ["ImportReport", "import_file", "normalize_text", "text_hash"]

_INSERT_CHUNK = 5_000
_MAX_KEY_CHARS = 200  # external_id and gold_label are String(200)
_EMPTY = 1  # row status: skipped because its text is empty


@dataclass
class ImportReport:
    """What one import did."""

    import_id: int
    path: str
    format: str
    rows_read: int
    added: int
    duplicates: int
    pool: int
    test: int
    labels_seen: list[str]  # distinct gold labels in the file, sorted
    seconds: float
    skipped_empty: int = 0
    label_counts: dict[str, int] = field(default_factory=dict)  # rows per gold label in the file
    #: what was changed or worth knowing, as sentences (e.g. NUL characters removed)
    notes: list[str] = field(default_factory=list)


def normalize_text(text: str) -> str:
    """The form a text is compared in: NFC, whitespace runs collapsed to one space, ends stripped."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def text_hash(text: str) -> str:
    """sha256 (hex) of the normalised text: two items with the same hash are duplicates."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


def _key64(value: str) -> int:
    # 64-bit keys keep per-row memory at 8 bytes; a collision (~1e-8 at a million rows) is re-checked exactly
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "big")


def _hash64(hex_hash: str) -> int:
    return int(hex_hash[:16], 16)


def _cell(value: Any) -> str:
    """A cell as text: None and NaN are empty, booleans are true/false, integral floats lose their '.0'."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer():
            return str(int(value))
    return str(value)


def _json_safe(value: Any) -> Any:
    """A value the JSON column can store on every backend (no NaN, no dates, no bytes)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_json_safe(v) for v in value]
    return str(value)


@dataclass
class _Columns:
    text: str
    id: str | None
    label: str | None
    meta: list[str] | None  # None: every other column

    @property
    def used(self) -> set[str]:
        return {c for c in (self.text, self.id, self.label) if c is not None}


@dataclass
class _Plan:
    """Small numbers per row from the first pass."""

    hashes: array[int] = field(default_factory=lambda: array("Q"))
    labels: array[int] = field(default_factory=lambda: array("i"))  # -1: no label
    ids: array[int] = field(default_factory=lambda: array("Q"))
    status: bytearray = field(default_factory=bytearray)  # 0: a row to add, _EMPTY: skipped
    label_names: dict[str, int] = field(default_factory=dict)
    label_counts: dict[str, int] = field(default_factory=dict)


class _Rows:
    """Reads one file's rows and turns cells into checked values, with errors that name the line."""

    def __init__(
        self,
        source: RowSource,
        cols: _Columns,
        import_id: int,
        allowed: Sequence[str],
        skip_empty: bool,
        max_text_chars: int,
        read_gold: Callable[[str], AnswerValue] | None = None,
        read_text: Callable[[Any], str] | None = None,
    ) -> None:
        self.read_gold = read_gold
        self.read_text = read_text
        self.source = source
        self.name = source.name
        self.cols = cols
        self.import_id = import_id
        self.allowed = list(allowed)
        self.allowed_set = set(allowed)
        self.skip_empty = skip_empty
        self.max_text_chars = max_text_chars

    def text(self, line: int, values: dict[str, Any]) -> str | None:
        raw = values.get(self.cols.text)
        if self.read_text is not None and raw is not None and _cell(raw).strip():
            try:
                text = self.read_text(raw)
            except DataError as exc:
                raise DataError(f"{self.name} line {line}, column {self.cols.text!r}: {exc}") from None
        else:
            text = _cell(raw)
        if len(text) > self.max_text_chars:
            raise DataError(
                f"{self.name} line {line}: the text in column {self.cols.text!r} is {len(text):,} characters long, "
                f"longer than the limit of {self.max_text_chars:,} (setting import.max_text_chars); split it into "
                f"shorter texts, or raise the limit: add max_text_chars = {_raised_limit(len(text))} under [import] "
                f"in terakoya.toml, or pass --set import.max_text_chars={_raised_limit(len(text))}"
            )
        if text.strip():
            return text
        if self.skip_empty:
            return None
        raise DataError(
            f"{self.name} line {line}: the text in column {self.cols.text!r} is empty; "
            "remove the row or pass --skip-empty"
        )

    def label(self, line: int, values: dict[str, Any]) -> str | None:
        known = self.known(line, values)
        return known.label if known is not None else None

    def known(self, line: int, values: dict[str, Any]) -> AnswerValue | None:
        """The row's known answer (None: no label column, or an empty cell), read by the task kind's rule."""
        if self.cols.label is None:
            return None
        label: str | None = _cell(values.get(self.cols.label)).strip()
        if not label:
            return None
        if self.read_gold is not None:
            try:
                known = self.read_gold(label)
            except DataError as exc:
                raise DataError(f"{self.name} line {line}: {exc}") from None
            label = known.label
        elif self.allowed_set and label not in self.allowed_set:
            raise DataError(
                f"{self.name} line {line}: label {label!r} is not one of the project's labels: "
                f"{', '.join(self.allowed)} — fix the file or declare the label in terakoya.toml"
            )
        else:
            known = AnswerValue(label, {"label": label})
        if label is not None and len(label) > _MAX_KEY_CHARS:
            raise DataError(
                f"{self.name} line {line}: the label in column {self.cols.label!r} is longer than "
                f"{_MAX_KEY_CHARS} characters; check --label-column"
            )
        return known

    def external_id(self, line: int, values: dict[str, Any]) -> str:
        if self.cols.id is None:
            return f"{self.import_id}:{line}"
        ext = _cell(values.get(self.cols.id)).strip()
        if not ext:
            raise DataError(
                f"{self.name} line {line}: the id in column {self.cols.id!r} is empty; "
                "give the row an id, or leave out --id-column to number rows automatically"
            )
        if len(ext) > _MAX_KEY_CHARS:
            raise DataError(
                f"{self.name} line {line}: the id in column {self.cols.id!r} is longer than "
                f"{_MAX_KEY_CHARS} characters; check --id-column"
            )
        return ext

    def meta(self, values: dict[str, Any]) -> dict[str, Any]:
        if self.cols.meta is None:
            used = self.cols.used
            return {str(k): _json_safe(v) for k, v in values.items() if k not in used}
        return {c: _json_safe(values.get(c)) for c in self.cols.meta}

    def __iter__(self) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """(row index, line, values) for every row of the file (NUL characters already removed by the reader)."""
        for index, row in enumerate(self.source):
            yield index, row.line, row.values


def _raised_limit(length: int) -> int:
    """A round limit at or above ``length``, to suggest."""
    step = int(10 ** max(3, len(str(length)) - 1))
    return -(-length // step) * step


def _existing_keys(session: Session, project_id: int, column: Any, key: Callable[[str], int]) -> npt.NDArray[np.uint64]:
    """The 64-bit keys of one column over the project's items, sorted."""
    import numpy as np

    keys = array("Q")
    stmt = select(column).where(Item.project_id == project_id).execution_options(yield_per=50_000)
    for value in session.execute(stmt).scalars():
        try:
            keys.append(key(value))
        except ValueError:
            continue  # not a hash this module wrote; it cannot equal one
    found = np.frombuffer(keys, dtype=np.uint64).copy() if keys else np.zeros(0, dtype=np.uint64)
    found.sort()
    return found


def _in_sorted(values: npt.NDArray[np.uint64], pool: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
    """values ∈ pool (sorted), in blocks so the temporaries stay small (np.isin sorts both arrays together)."""
    import numpy as np

    out = np.zeros(len(values), dtype=bool)
    if not pool.size:
        return out
    block = 1 << 16
    for start in range(0, len(values), block):
        part = values[start : start + block]
        at = np.minimum(np.searchsorted(pool, part), len(pool) - 1)
        out[start : start + block] = pool[at] == part
    return out


def _first_occurrences(hashes: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
    """True for the first row of every distinct hash."""
    import numpy as np

    first = np.zeros(len(hashes), dtype=bool)
    if not len(hashes):
        return first
    order = np.argsort(hashes, kind="stable")  # stable: among equal hashes the earliest row comes first
    ordered = hashes[order]
    head = np.empty(len(hashes), dtype=bool)
    head[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=head[1:])
    del ordered
    first[order] = head
    return first


def _repeated(values: npt.NDArray[np.uint64]) -> set[int]:
    """The values that occur more than once."""
    ordered = values.copy()
    ordered.sort()
    return set(ordered[1:][ordered[1:] == ordered[:-1]].tolist())


def _first_pass(rows: _Rows, plan: _Plan, with_ids: bool) -> None:
    for _index, line, values in rows:
        text = rows.text(line, values)
        label = rows.label(line, values)
        ext = rows.external_id(line, values)
        if label is None:
            plan.labels.append(-1)
        else:
            plan.labels.append(plan.label_names.setdefault(label, len(plan.label_names)))
            plan.label_counts[label] = plan.label_counts.get(label, 0) + 1
        if with_ids:
            plan.ids.append(_key64(ext))
        if text is None:
            plan.hashes.append(0)
            plan.status.append(_EMPTY)
        else:
            plan.hashes.append(_hash64(text_hash(text)))
            plan.status.append(0)


def _check_ids(session: Session, project_id: int, rows: _Rows, plan: _Plan, keep: npt.NDArray[np.bool_]) -> None:
    """No two added rows share an id, and no added row reuses an id already in the project."""
    import numpy as np

    if rows.cols.id is None:
        # numbered ids ("<import id>:<line>") are unique in the file; only an old item could hold one
        prefix = f"{rows.import_id}:"
        stmt = select(Item.external_id).where(Item.project_id == project_id, Item.external_id.startswith(prefix))
        taken_ids = set(session.scalars(stmt))
        if not taken_ids:
            return
        for index, line, values in rows:
            ext = rows.external_id(line, values)
            if keep[index] and ext in taken_ids:
                raise DataError(
                    f"{rows.name} line {line}: the automatic id {ext!r} is already used by another item in this "
                    "project; give the rows ids of their own with --id-column"
                )
        return
    ids = np.frombuffer(plan.ids, dtype=np.uint64)
    kept = ids[keep]
    twice = _repeated(kept)
    existing = _existing_keys(session, project_id, Item.external_id, _key64)
    taken = set(kept[_in_sorted(kept, existing)].tolist())
    del kept, existing
    if not twice and not taken:
        return
    # rare: read the file again to name the line (and to rule out a 64-bit key collision)
    suspects = twice | taken
    first_line: dict[str, int] = {}
    for index, line, values in rows:
        if not keep[index] or plan.ids[index] not in suspects:
            continue
        ext = rows.external_id(line, values)
        if ext in first_line:
            raise DataError(
                f"{rows.name} line {line}: id {ext!r} is used twice in the file (lines {first_line[ext]} and "
                f"{line}); give every row its own id"
            )
        first_line[ext] = line
        if plan.ids[index] in taken and session.scalar(
            select(Item.id).where(Item.project_id == project_id, Item.external_id == ext)
        ):
            raise DataError(
                f"{rows.name} line {line}: id {ext!r} is already used by another item in this project; "
                "give the row a new id, or leave out --id-column to number rows automatically"
            )


def _assign_split(plan: _Plan, keep: npt.NDArray[np.bool_], fraction: float, seed: int) -> npt.NDArray[np.bool_]:
    """Which kept rows go to the chosen split: exactly round(fraction × n) of each gold label, seeded."""
    import numpy as np

    labels = np.frombuffer(plan.labels, dtype=np.int32)
    chosen = np.zeros(len(labels), dtype=bool)
    rng = np.random.default_rng(seed)
    by_name = sorted(plan.label_names.items())
    for code in [-1, *(code for _name, code in by_name)]:
        idx = np.flatnonzero(keep & (labels == code))
        k = math.floor(fraction * len(idx) + 0.5)
        if k:
            chosen[rng.permutation(idx)[:k]] = True
    return chosen


def _check_options(split: str, fraction: float) -> None:
    if split not in ("pool", "test"):
        raise ConfigError(f"--split must be pool or test, got {split!r}")
    if not 0.0 <= fraction <= 1.0 or math.isnan(fraction):
        raise ConfigError(f"--fraction must be between 0 and 1, got {fraction}")


def _require_file_columns(source: RowSource, path: Path, cols: _Columns) -> None:
    """Every column the import was told to read is in the file; the error names the flag to fix."""
    wanted: dict[str, str | None] = {
        "--text-column": cols.text,
        "--id-column": cols.id,
        "--label-column": cols.label,
    }
    require_columns(source, path, wanted)
    if cols.meta is not None:
        for column in cols.meta:
            require_columns(source, path, {**wanted, "--meta-column": column})


def _file_sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _start_import(
    session: Session, project_id: int, path: Path, source: RowSource, file_sha: str, columns: dict[str, Any]
) -> Import:
    """The import's own row, flushed so its id can number rows; the project must exist."""
    if session.get(Project, project_id) is None:
        raise ConfigError(f"project id {project_id} does not exist; create the project first")
    record = Import(
        project_id=project_id,
        source=str(path),
        format=source.format,
        file_sha256=file_sha,
        columns=columns,
    )
    session.add(record)
    session.flush()
    return record


@dataclass
class _Decision:
    """What the first pass decided for every row."""

    keep: npt.NDArray[np.bool_]  # a new item: not empty, not a duplicate in the file or the project
    to_split: npt.NDArray[np.bool_]  # goes to the chosen split (the rest to the other)
    skipped: int  # rows skipped because their text is empty


def _plan_rows(session: Session, project_id: int, rows: _Rows, plan: _Plan, fraction: float, seed: int) -> _Decision:
    """First pass: check every row, drop duplicates, check ids, and choose the split."""
    import numpy as np

    _first_pass(rows, plan, with_ids=rows.cols.id is not None)
    n = len(plan.hashes)
    hashes = np.frombuffer(plan.hashes, dtype=np.uint64)
    valid = np.frombuffer(plan.status, dtype=np.uint8) == 0
    keep = _first_occurrences(hashes) & valid
    keep &= ~_in_sorted(hashes, _existing_keys(session, project_id, Item.text_hash, _hash64))
    _check_ids(session, project_id, rows, plan, keep)
    to_split = _assign_split(plan, keep, fraction, seed)
    return _Decision(keep=keep, to_split=to_split, skipped=int(n - int(valid.sum())))


def _file_changed(rows: _Rows) -> DataError:
    return DataError(f"{rows.name} changed while it was being imported; import it again")


def _write_items(
    session: Session,
    project_id: int,
    rows: _Rows,
    plan: _Plan,
    decision: _Decision,
    split: str,
    progress: Callable[[int], None] | None,
) -> dict[str, int]:
    """Second pass: insert the kept rows in chunks; the items per split. The file must read as in the first pass."""
    other = "pool" if split == "test" else "test"
    n = len(plan.hashes)
    created = utcnow()
    items = cast(Table, Item.__table__)
    counts = {"pool": 0, "test": 0}
    chunk: list[dict[str, Any]] = []
    seen = 0
    for index, line, values in rows:
        seen = index + 1
        if index >= n:
            raise _file_changed(rows)
        if not decision.keep[index]:
            continue
        text = rows.text(line, values)
        if text is None:
            raise _file_changed(rows)
        digest = text_hash(text)
        if _hash64(digest) != plan.hashes[index]:
            raise _file_changed(rows)
        item_split = split if decision.to_split[index] else other
        counts[item_split] += 1
        known = rows.known(line, values)
        chunk.append(
            {
                "project_id": project_id,
                "import_id": rows.import_id,
                "external_id": rows.external_id(line, values),
                "text": text,
                "text_hash": digest,
                "split": item_split,
                "gold_label": known.label if known is not None else None,
                "gold": known.value if known is not None else None,
                "meta": rows.meta(values),
                "created_at": created,
            }
        )
        if len(chunk) >= _INSERT_CHUNK:
            session.execute(insert(items), chunk)
            chunk.clear()
            if progress is not None:
                progress(seen)
    if seen != n:
        raise _file_changed(rows)
    if chunk:
        session.execute(insert(items), chunk)
    return counts


def _finish_import(
    session: Session,
    record: Import,
    path: Path,
    source: RowSource,
    plan: _Plan,
    skipped: int,
    counts: dict[str, int],
    progress: Callable[[int], None] | None,
    notes: list[str],
) -> ImportReport:
    """Store the import's counts and report them (its seconds are filled in after the commit)."""
    n = len(plan.hashes)
    added = counts["pool"] + counts["test"]
    record.rows_read = n
    record.items_added = added
    record.duplicates = n - skipped - added
    session.flush()
    if progress is not None:
        progress(n)
    return ImportReport(
        import_id=record.id,
        path=str(path),
        format=source.format,
        rows_read=n,
        added=added,
        duplicates=n - skipped - added,
        pool=counts["pool"],
        test=counts["test"],
        labels_seen=sorted(plan.label_names),
        seconds=0.0,
        skipped_empty=skipped,
        label_counts=dict(sorted(plan.label_counts.items())),
        notes=notes,
    )


def import_file(
    db: Database,
    project_id: int,
    path: Path,
    *,
    text_column: str = "text",
    id_column: str | None = None,
    label_column: str | None = None,
    meta_columns: Sequence[str] | None = None,
    split: Literal["pool", "test"] = "pool",
    fraction: float = 1.0,
    seed: int = 0,
    allowed_labels: Sequence[str] | None = None,
    fmt: str | None = None,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    header_names: Sequence[str] | None = None,
    skip_empty: bool = False,
    progress: Callable[[int], None] | None = None,
    max_text_chars: int | None = None,
    read_gold: Callable[[str], AnswerValue] | None = None,
    read_text: Callable[[Any], str] | None = None,
) -> ImportReport:
    """Add the rows of ``path`` to the project as items; ``fraction`` of them go to ``split``, the rest to the other.

    The split is seeded and stratified by gold label. Rows whose normalised text is already in the file or the
    project are skipped and counted as duplicates. ``allowed_labels`` empty or None accepts any label.
    ``progress(rows)`` is called during the writing pass with the number of rows handled so far.
    ``max_text_chars`` is the longest text accepted (None: the default of the ``import.max_text_chars`` setting).
    ``read_gold`` reads a known answer from its cell into the task kind's value (the kind's rule; a DataError
    names what is wrong, and the error raised adds the file and line); without it, a label must be one of
    ``allowed_labels`` and its value is ``{"label": label}``. ``read_text`` turns a text cell into the item's
    text (a generation prompt in chat format becomes canonical JSON; the same error rule).
    Everything happens in one transaction: on any error the project is unchanged.
    """
    started = time.perf_counter()
    path = Path(path)
    _check_options(split, fraction)
    limit = ImportSettings().max_text_chars if max_text_chars is None else max_text_chars
    if limit < 1:
        raise ConfigError(f"import.max_text_chars must be 1 or more, got {limit}; set it in terakoya.toml [import]")
    cols = _Columns(
        text_column, id_column or None, label_column or None, list(meta_columns) if meta_columns is not None else None
    )
    with open_rows(path, fmt=fmt, encoding=encoding, delimiter=delimiter, header_names=header_names) as source:
        _require_file_columns(source, path, cols)
        file_sha = _file_sha256(path)
        with db.session() as session:
            record = _start_import(
                session,
                project_id,
                path,
                source,
                file_sha,
                {
                    "text": cols.text,
                    "id": cols.id,
                    "label": cols.label,
                    "meta": cols.meta,
                    "split": split,
                    "fraction": fraction,
                    "seed": seed,
                    "encoding": encoding,
                    "delimiter": source.delimiter,
                    "header_names": list(header_names) if header_names else None,
                    "skip_empty": skip_empty,
                },
            )
            rows = _Rows(source, cols, record.id, allowed_labels or [], skip_empty, limit, read_gold, read_text)
            plan = _Plan()
            decision = _plan_rows(session, project_id, rows, plan, fraction, seed)
            counts = _write_items(session, project_id, rows, plan, decision, split, progress)
            report = _finish_import(
                session, record, path, source, plan, decision.skipped, counts, progress, source.notes()
            )
    report.seconds = time.perf_counter() - started  # the commit included
    return report
