"""Export a project's items with everything known about them: teacher, student, expert answers.

One row per item, read page by page (never the whole project at once) and written to a temporary file
beside the target, renamed into place only when complete. JSON Lines and Parquet keep nested values
(Parquet stores ``meta`` as a JSON string, since its keys differ from item to item); CSV and TSV hold
them as JSON strings.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from terakoya.errors import ConfigError
from terakoya.importers.readers import detect_format
from terakoya.quality.aggregate import by_item, expert_answer_rows, majority
from terakoya.storage.models import Answer, AutoAccept, Item, Person, StudentRun, Suggestion, Task, TrainingLabel
from terakoya.storage.queries import current_suggestion_ids

if TYPE_CHECKING:
    from terakoya.storage.db import Database

__all__ = ["EXPORT_COLUMNS", "export_items", "iter_export_rows"]

EXPORT_COLUMNS = (
    "id",
    "text",
    "split",
    "gold_label",
    "meta",
    "teacher_model",
    "prompt_version",
    "teacher_label",
    "teacher_confidence",
    "teacher_probabilities",
    "auto_accepted",
    "student_label",
    "answers",
    "expert_label",
    "expert_answers",
    "training_label",
    "training_source",
)
_NESTED = ("meta", "teacher_probabilities", "answers")
_PAGE = 1_000


def _current(session: Session, project_id: int, ids: list[int], kind: str) -> dict[int, Suggestion]:
    """The current suggestion of one agent kind for each item (:func:`current_suggestion_ids`)."""
    newest = current_suggestion_ids(project_id, kind, item_ids=ids)
    return {s.item_id: s for s in session.scalars(select(Suggestion).where(Suggestion.id.in_(newest)))}


def _trained(session: Session, project_id: int, ids: list[int]) -> dict[int, tuple[str, str]]:
    """Item -> (label, source with its aggregator) the newest student run learned for it (``training_labels``)."""
    run = session.scalar(
        select(StudentRun.id).where(StudentRun.project_id == project_id).order_by(StudentRun.id.desc()).limit(1)
    )
    if run is None:
        return {}
    rows = session.execute(
        select(TrainingLabel.item_id, TrainingLabel.label, TrainingLabel.source, TrainingLabel.aggregator).where(
            TrainingLabel.student_run_id == run, TrainingLabel.item_id.in_(ids)
        )
    )
    return {int(i): (str(label), f"{src} ({agg})" if agg and agg != src else str(src)) for i, label, src, agg in rows}


def _page_rows(
    session: Session, project_id: int, items: list[Item], classes: Sequence[str] | None
) -> Iterator[dict[str, Any]]:
    ids = [item.id for item in items]
    teacher = _current(session, project_id, ids, "teacher")
    student = _current(session, project_id, ids, "student")
    accepted = set(session.scalars(select(AutoAccept.item_id).where(AutoAccept.item_id.in_(ids))))
    trained = _trained(session, project_id, ids)
    votes = by_item(session.execute(expert_answer_rows(classes).where(Answer.item_id.in_(ids))).all())
    answers: dict[int, list[dict[str, Any]]] = {}
    stmt = (
        select(Answer, Person.name)
        .join(Person, Person.id == Answer.person_id)
        .where(Answer.item_id.in_(ids), Answer.superseded.is_(False))
        .order_by(Answer.id)
    )
    for answer, person in session.execute(stmt):
        answers.setdefault(answer.item_id, []).append(
            {
                "person": person,
                "kind": answer.kind,
                "label": answer.label,
                "rationale": answer.rationale,
                "active_seconds": answer.active_seconds,
                "simulated": bool(answer.simulated),
                "source": answer.source,
                "created_at": answer.created_at.isoformat() if answer.created_at else None,
            }
        )
    for item in items:
        t = teacher.get(item.id)
        st = student.get(item.id)
        item_votes = votes.get(item.id, [])
        yield {
            "id": item.external_id,
            "text": item.text,
            "split": item.split,
            # a pool item's recorded label is for `simulate` only, never an answer
            "gold_label": item.gold_label if item.split == "test" else None,
            "meta": dict(item.meta or {}),
            "teacher_model": t.agent if t else None,
            "prompt_version": t.prompt_version if t else None,
            "teacher_label": t.label if t else None,
            "teacher_confidence": t.confidence if t else None,
            "teacher_probabilities": {str(k): float(v) for k, v in (t.probabilities or {}).items()} if t else None,
            "auto_accepted": item.id in accepted,
            "student_label": st.label if st else None,
            "answers": answers.get(item.id, []),
            "expert_label": majority(item_votes) if item_votes else None,
            "expert_answers": len(item_votes),
            "training_label": trained[item.id][0] if item.id in trained else None,
            "training_source": trained[item.id][1] if item.id in trained else None,
        }


def iter_export_rows(
    db: Database,
    project_id: int,
    *,
    split: str | None = None,
    queued: bool = False,
    classes: Sequence[str] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Export rows in pages of up to 1,000, in item order; ``split`` None means every item.

    ``queued`` keeps only items with an open expert task (routed, not yet answered): the file to hand to experts.
    ``expert_label`` is :func:`terakoya.quality.aggregate.majority` of the item's live expert answers — the target
    training uses by default — and ``expert_answers`` their number; ``training_label`` and ``training_source``
    are what the newest student run learned for the item and from what (with another ``quality.aggregator``,
    or a review decision, they may differ from ``expert_label``); ``classes`` (the project's labels) leaves out
    answers with an undeclared label, as training does. Teacher and student columns show the current
    suggestion (:func:`terakoya.storage.queries.current_suggestion_ids`).
    """
    if split not in (None, "pool", "test"):
        raise ConfigError(f"--split must be pool or test, got {split!r}")
    last = 0
    with db.session() as session:
        while True:
            stmt = select(Item).where(Item.project_id == project_id, Item.id > last)
            if split is not None:
                stmt = stmt.where(Item.split == split)
            if queued:
                open_task = select(Task.item_id).where(Task.status.in_(("queued", "leased")))
                stmt = stmt.where(Item.id.in_(open_task))
            items = list(session.scalars(stmt.order_by(Item.id).limit(_PAGE)))
            if not items:
                return
            last = items[-1].id
            yield list(_page_rows(session, project_id, items, classes))
            session.expunge_all()  # keep the identity map to one page


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


def _write_text(pages: Iterator[list[dict[str, Any]]], fh: IO[str], fmt: str) -> int:
    written = 0
    if fmt == "jsonl":
        for page in pages:
            for row in page:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            written += len(page)
        return written
    writer = csv.writer(fh, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for page in pages:
        writer.writerows([_csv_cell(row[c]) for c in EXPORT_COLUMNS] for row in page)
        written += len(page)
    return written


def _parquet_schema() -> Any:
    import pyarrow as pa

    answer = pa.struct(
        [
            ("person", pa.string()),
            ("kind", pa.string()),
            ("label", pa.string()),
            ("rationale", pa.string()),
            ("active_seconds", pa.float64()),
            ("simulated", pa.bool_()),
            ("source", pa.string()),
            ("created_at", pa.string()),
        ]
    )
    return pa.schema(
        [
            ("id", pa.string()),
            ("text", pa.string()),
            ("split", pa.string()),
            ("gold_label", pa.string()),
            ("meta", pa.string()),  # JSON: keys differ between items
            ("teacher_model", pa.string()),
            ("prompt_version", pa.string()),
            ("teacher_label", pa.string()),
            ("teacher_confidence", pa.float64()),
            ("teacher_probabilities", pa.map_(pa.string(), pa.float64())),
            ("auto_accepted", pa.bool_()),
            ("student_label", pa.string()),
            ("answers", pa.list_(answer)),
            ("expert_label", pa.string()),
            ("expert_answers", pa.int64()),
            ("training_label", pa.string()),
            ("training_source", pa.string()),
        ]
    )


def _write_parquet(pages: Iterator[list[dict[str, Any]]], target: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema()
    written = 0
    with pq.ParquetWriter(target, schema) as writer:
        for page in pages:
            for row in page:
                row["meta"] = json.dumps(row["meta"], ensure_ascii=False)
                if row["teacher_probabilities"] is not None:
                    row["teacher_probabilities"] = list(row["teacher_probabilities"].items())
            writer.write_table(pa.Table.from_pylist(page, schema=schema))
            written += len(page)
    return written


def _check_target(path: Path, force: bool, protected: Mapping[Path, str]) -> None:
    """Refuse to write over the project's own files, and over any file without ``force``."""
    target = path.resolve()
    for file, what in protected.items():
        if target == Path(file).resolve():
            raise ConfigError(f"{path} is {what}; export to another path, for example items.csv")
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give a file name, for example {path / 'items.csv'}")
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; pass --force to replace it, or choose another path")


def export_items(
    db: Database,
    project_id: int,
    path: Path,
    *,
    fmt: str | None = None,
    split: str | None = None,
    queued: bool = False,
    classes: Sequence[str] | None = None,
    force: bool = False,
    protected: Mapping[Path, str] | None = None,
) -> int:
    """Write one row per item to ``path`` (.jsonl, .csv, .tsv or .parquet, or ``fmt``); returns the rows written.

    An existing file is replaced only with ``force``; a ``protected`` file (the project's database or
    settings, with what it is) never.

    Rows as :func:`iter_export_rows` makes them (``classes``: the project's labels).

    The file appears only when complete: rows go to a temporary file beside it, renamed at the end.
    """
    path = Path(path)
    _check_target(path, force, protected or {})
    kind = detect_format(path, fmt)
    if split not in (None, "pool", "test"):
        raise ConfigError(f"--split must be pool or test, got {split!r}")
    if not path.parent.is_dir():
        raise ConfigError(f"folder {path.parent} does not exist; create it or choose another output path")
    pages = iter_export_rows(db, project_id, split=split, queued=queued, classes=classes)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise ConfigError(
            f"cannot write in {path.parent} ({exc.strerror}); choose an output path in a folder you can write to"
        ) from exc
    tmp = Path(tmp_name)
    try:
        if kind == "parquet":
            os.close(fd)
            written = _write_parquet(pages, tmp)
        else:
            with open(fd, "w", encoding="utf-8", newline="") as fh:
                written = _write_text(pages, fh, kind)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; an export is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return written
