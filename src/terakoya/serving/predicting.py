"""Label a file with a saved student, streamed in chunks: CSV, TSV, JSON Lines or Parquet in and out.

The output holds every input column, then what the student's task kind shows of each prediction
(``kind.present``; for ``classify.v1``: ``predicted_label``, ``confidence`` and one ``p_<label>`` column
per label; a generative student writes ``answer`` and ``answer_tokens`` for each row's prompt). Its format
follows the output file's suffix. The file is written next to its final name and renamed when complete, so a
failed run leaves no half-written output.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from terakoya.errors import DataError
from terakoya.importers.readers import Row, RowSource, open_rows, require_columns
from terakoya.students import Student, load

if TYPE_CHECKING:
    from terakoya.students.generative import GenerativeStudent

__all__ = ["CHUNK_ROWS", "output_columns", "predict_file"]

CHUNK_ROWS = 2048
_OUT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


def output_columns(input_columns: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """The kind's output column names, each kept clear of the input's columns (``student_`` put in front)."""
    taken = set(input_columns)

    def free(name: str) -> str:
        while name in taken:
            name = f"student_{name}"
        taken.add(name)
        return name

    return [free(name) for name in wanted]


def _chunks(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _text(row: Row, column: str) -> str:
    value = row.values.get(column)
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def predict_file(
    model_path: Path,
    in_path: Path,
    out_path: Path,
    *,
    text_column: str = "text",
    fmt: str | None = None,
    encoding: str = "utf-8",
) -> int:
    """Predict every row of ``in_path`` (format ``fmt`` or its suffix) into ``out_path``; returns rows written."""
    in_path, out_path = Path(in_path), Path(out_path)
    out_format = _OUT_FORMATS.get(out_path.suffix.lower())
    if out_format is None:
        raise DataError(f"cannot tell which format to write {out_path.name} in; name it .csv, .tsv, .jsonl or .parquet")
    if out_path.exists() and in_path.exists() and out_path.resolve() == in_path.resolve():
        raise DataError(f"the output {out_path} is the input file; pass another output path")
    from terakoya.students.generative import GenerativeStudent, is_generative_folder

    student: Student | GenerativeStudent = (
        GenerativeStudent.load(model_path) if is_generative_folder(Path(model_path)) else load(model_path)
    )
    with open_rows(in_path, fmt=fmt, encoding=encoding) as source:
        require_columns(source, in_path, {"--text-column": text_column})
        out_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            written = _write(student, source, text_column, tmp, out_format)
            tmp.replace(out_path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return written


class _Outputs:
    """What the task kind makes of each prediction (``kind.present``), under names clear of the input's."""

    def __init__(self, student: Student, columns: Sequence[str]) -> None:
        from terakoya.kinds import get_kind

        self.student = student
        self.classes = list(student.classes_)
        self.kind = get_kind(str(student.metadata.get("task_kind") or "classify.v1"))
        sample = self.kind.present(self.classes, [1.0 / len(self.classes)] * len(self.classes))
        self.keys = list(sample)
        self.names = output_columns(columns, self.keys)
        self.sample = {name: sample[key] for name, key in zip(self.names, self.keys, strict=True)}

    def rows(self, chunk: list[Row], text_column: str) -> list[list[Any]]:
        """The output cells of each row of ``chunk``, in column order."""
        proba = self.student.predict_proba([_text(row, text_column) for row in chunk])
        out = []
        for p in proba.tolist():
            shown = self.kind.present(self.classes, p)
            out.append([shown[key] for key in self.keys])
        return out


class _Answers:
    """A generative student's answer to each row's prompt (plain text, or a conversation in chat format)."""

    def __init__(self, student: GenerativeStudent, columns: Sequence[str]) -> None:
        self.student = student
        self.keys = ["answer", "answer_tokens"]
        self.names = output_columns(columns, self.keys)
        self.sample: dict[str, Any] = {self.names[0]: "", self.names[1]: 0}

    def rows(self, chunk: list[Row], text_column: str) -> list[list[Any]]:
        from terakoya.kinds.generate import messages_of, prompt_text

        prompts = []
        for row in chunk:
            value = row.values.get(text_column)
            prompts.append(messages_of(prompt_text(value if isinstance(value, list) else _text(row, text_column))))
        return [[out.text, out.tokens] for out in self.student.generate(prompts)]


def _write(
    student: Student | GenerativeStudent, source: RowSource, text_column: str, tmp: Path, out_format: str
) -> int:
    from terakoya.students.generative import GenerativeStudent

    columns = list(source.columns)
    outputs = _Answers(student, columns) if isinstance(student, GenerativeStudent) else _Outputs(student, columns)
    header = [*columns, *outputs.names]
    written = 0
    if out_format in {"csv", "tsv"}:
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t" if out_format == "tsv" else ",")
            writer.writerow(header)
            for chunk in _chunks(iter(source), CHUNK_ROWS):
                for row, shown in zip(chunk, outputs.rows(chunk, text_column), strict=True):
                    cells = ["" if (v := _cell(row.values.get(c))) is None else v for c in columns]
                    writer.writerow([*cells, *shown])
                written += len(chunk)
        return written
    if out_format == "jsonl":
        with tmp.open("w", encoding="utf-8") as handle:
            for chunk in _chunks(iter(source), CHUNK_ROWS):
                for row, shown in zip(chunk, outputs.rows(chunk, text_column), strict=True):
                    record = {**row.values, **dict(zip(outputs.names, shown, strict=True))}
                    handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                written += len(chunk)
        return written
    return _write_parquet(outputs, source, text_column, tmp, columns, header)


def _arrow_type(value: Any) -> Any:
    import pyarrow as pa

    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64()
    if isinstance(value, float):
        return pa.float64()
    return pa.string()


def _write_parquet(
    outputs: _Outputs | _Answers, source: RowSource, text_column: str, tmp: Path, columns: list[str], header: list[str]
) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fixed: dict[str, Any] = {name: _arrow_type(value) for name, value in outputs.sample.items()}
    if source.format == "parquet":
        known = pq.ParquetFile(source.path).schema_arrow
        input_types = {name: known.field(name).type for name in columns}
    elif source.format in {"csv", "tsv"}:
        input_types = {name: pa.string() for name in columns}
    else:
        input_types = {}  # JSON Lines: inferred from the first chunk
    schema: Any = None
    writer: Any = None
    written = 0
    try:
        for chunk in _chunks(iter(source), CHUNK_ROWS):
            data: dict[str, list[Any]] = {name: [] for name in header}
            for row, shown in zip(chunk, outputs.rows(chunk, text_column), strict=True):
                for name in columns:
                    value = row.values.get(name)
                    data[name].append(value if source.format == "parquet" else _cell(value))
                for name, v in zip(outputs.names, shown, strict=True):
                    data[name].append(v)
            if schema is None:
                fields = []
                for name in header:
                    kind = fixed.get(name) or input_types.get(name) or pa.array(data[name]).type
                    fields.append(pa.field(name, pa.string() if pa.types.is_null(kind) else kind))
                schema = pa.schema(fields)
                writer = pq.ParquetWriter(tmp, schema)
            try:
                table = pa.Table.from_pydict(data, schema=schema)
            except (pa.ArrowException, TypeError, ValueError) as exc:
                raise DataError(
                    f"{source.name}: a column changes type after row {written} ({exc}); "
                    "write the predictions to .jsonl or .csv instead"
                ) from exc
            writer.write_table(table)
            written += len(chunk)
        if writer is None:
            empty = pa.schema([pa.field(n, fixed.get(n) or input_types.get(n) or pa.string()) for n in header])
            writer = pq.ParquetWriter(tmp, empty)
    finally:
        if writer is not None:
            writer.close()
    return written
