"""Expert answers: recorded from a file, or simulated from labels the data already carries.

``record_answers`` reads a CSV, TSV, JSON Lines or Parquet file with one answer per row (item id,
label, person, and optionally a rationale and the seconds spent). Every row is checked before
anything is written, and all rows are written in one transaction: a file with one bad row leaves
the database as it was. An answer to an item with an open task closes that task.

``simulate`` answers the open routed tasks from a recorded column (the import's label column, or
a kept extra column). Such answers are flagged ``simulated=True``, come from ``source="simulate"``
and belong to a person flagged ``simulated``, so that no report can mistake them for a person's work.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session

from terakoya.errors import ConfigError, DataError
from terakoya.importers.readers import open_rows, require_columns
from terakoya.kinds import TaskKind, kind_for
from terakoya.people.accounts import NAME_MAX, SIMULATED_PERSON, get_or_create_person, normal_name
from terakoya.people.glossary import guideline_version_in
from terakoya.quality.aggregate import live_expert_answer
from terakoya.settings import Settings
from terakoya.storage.db import Database
from terakoya.storage.models import Answer, Import, Item, Person, Task, utcnow
from terakoya.workqueue import teacher_verdict
from terakoya.workqueue.assignments import OPEN_TASK_STATUSES, lock_task, record_outside_queue

__all__ = [
    "ROUTED_REASONS",
    "SIMULATED_PERSON",
    "AnswerReport",
    "record_answers",
    "simulate",
]

#: task reasons that simulate may answer
ROUTED_REASONS = ("routed", "gold", "random", "audit")
_CHUNK = 500


@dataclass
class AnswerReport:
    recorded: int
    duplicates: int
    people: list[str]
    simulated: bool
    #: open tasks that these answers closed
    tasks_answered: int = 0
    #: simulate only: open tasks left open because their item has no recorded value in the oracle column
    skipped: int = 0
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- reading cells


def _cell(value: Any) -> str:
    """A cell as stripped text; integral floats (Parquet, JSON) read as integers, so 17.0 matches id '17'."""
    if value is None:
        return ""
    if isinstance(value, float) and not isinstance(value, bool):
        if math.isnan(value):
            return ""
        if value.is_integer():
            return str(int(value))
    return str(value).strip()


def _seconds(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(value)
    number = float(value)
    if math.isnan(number) and not isinstance(value, str):
        return None  # an empty Parquet cell
    if not math.isfinite(number) or number < 0:
        raise ValueError(value)
    return number


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


@dataclass
class _Parsed:
    line: int
    external_id: str
    label: str
    person: str
    rationale: str | None
    seconds: float | None
    value: dict[str, Any] = field(default_factory=dict)


def _require_labels(settings: Settings) -> list[str]:
    if not settings.label_names:
        raise ConfigError(
            f"{settings.project_file} declares no labels, so answers cannot be checked; add [[labels]] entries, "
            "or import a file with --label-column so they are taken from the data"
        )
    return settings.label_names


def _open_tasks(s: Session, project_id: int, item_ids: Sequence[int]) -> dict[int, Task]:
    """item id -> its first open task (lowest priority, then oldest)."""
    found: dict[int, Task] = {}
    for chunk in _chunks(item_ids):
        tasks = s.scalars(
            select(Task)
            .where(Task.project_id == project_id, Task.item_id.in_(chunk), Task.status.in_(OPEN_TASK_STATUSES))
            .order_by(Task.priority, Task.id)
        ).all()
        for task in tasks:
            found.setdefault(task.item_id, task)
    return found


def _stored_keys(s: Session, item_ids: Sequence[int]) -> set[tuple[int, str, str | None]]:
    """(item id, person name, label) of the live label answers already stored for these items."""
    keys: set[tuple[int, str, str | None]] = set()
    for chunk in _chunks(item_ids):
        rows = s.execute(
            select(Answer.item_id, Person.name, Answer.label)
            .join(Person, Person.id == Answer.person_id)
            .where(Answer.item_id.in_(chunk), Answer.kind == "label", Answer.superseded.is_(False))
        )
        keys.update((item_id, name, label) for item_id, name, label in rows)
    return keys


def _fill(s: Session, answer: Answer, task: Task | None, person_id: int, closed: set[int]) -> None:
    """Store the answer; where its item has an open task, the answer fills the person's slot of it."""
    s.add(answer)
    s.flush()
    if task is None or not lock_task(s, task.id):
        return
    if record_outside_queue(s, task.id, person_id, answer.id, utcnow()):
        s.refresh(task)
        if task.status not in OPEN_TASK_STATUSES:
            closed.add(task.id)


# ----------------------------------------------------------------------------- from a file


@dataclass
class _AnswerColumns:
    id: str
    label: str
    person: str
    rationale: str
    seconds: str


class _AnswerRows:
    """Turns one answers file's cells into checked answers, with errors that name the line."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        labels: list[str],
        kind: TaskKind,
        cols: _AnswerColumns,
        columns: Sequence[str],
        default: str | None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.labels = labels
        self.kind = kind
        self.cols = cols
        self.default = default
        self.has_person = cols.person in columns
        self.has_rationale = cols.rationale in columns
        self.has_seconds = cols.seconds in columns

    def parse(self, line: int, values: dict[str, Any]) -> _Parsed:
        cols = self.cols
        where = f"{self.name} line {line}"
        external_id = _cell(values.get(cols.id))
        if not external_id:
            raise DataError(f"{where}: the id is empty; fill in the {cols.id!r} column (--id-column)")
        label = _cell(values.get(cols.label))
        if not label:
            raise DataError(
                f"{where}: the label is empty; fill in the {cols.label!r} column with one of: {', '.join(self.labels)}"
            )
        rationale = _cell(values.get(cols.rationale)) if self.has_rationale else ""
        try:
            answer = self.kind.read_answer({"label": label, "rationale": rationale or None}, self.settings)
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
        person = self.person(where, values)
        seconds: float | None = None
        if self.has_seconds:
            raw = values.get(cols.seconds)
            try:
                seconds = _seconds(raw)
            except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer beyond any float
                raise DataError(
                    f"{where}: seconds {reprlib.repr(raw)} is not a number of seconds (0 or more); "
                    f"fix the {cols.seconds!r} column or leave the cell empty"
                ) from None
        return _Parsed(line, external_id, answer.label or label, person, answer.rationale, seconds, answer.value)

    def person(self, where: str, values: dict[str, Any]) -> str:
        person = normal_name(_cell(values.get(self.cols.person))) if self.has_person else ""
        if not person:
            if self.default is None:
                raise DataError(
                    f"{where}: the person is empty; fill in the {self.cols.person!r} column or pass --person NAME"
                )
            person = self.default
        if len(person) > NAME_MAX:
            raise DataError(f"{where}: the person's name is longer than {NAME_MAX} characters; shorten it")
        return person


def _read_answers(
    path: Path,
    settings: Settings,
    labels: list[str],
    kind: TaskKind,
    cols: _AnswerColumns,
    default: str | None,
    fmt: str | None,
    encoding: str,
) -> tuple[list[_Parsed], list[str]]:
    """Every row of the file, checked, and notes on what reading changed (NUL removed); nothing is written here."""
    name = path.name
    parsed: list[_Parsed] = []
    with open_rows(path, fmt=fmt, encoding=encoding) as source:
        require_columns(source, path, {"--id-column": cols.id, "--label-column": cols.label})
        columns = list(source.columns)
        if cols.person not in columns and default is None:
            raise DataError(
                f"column {cols.person!r} not found in {name}; columns are: {', '.join(columns)} — pass --person NAME "
                "to record every answer under one name, or --person-column with the column that says who answered"
            )
        reader = _AnswerRows(name, settings, labels, kind, cols, columns, default)
        for row in source:
            parsed.append(reader.parse(row.line, row.values))
        notes = source.notes()
    _no_conflicts(name, parsed)
    return parsed, notes


def _no_conflicts(name: str, parsed: Sequence[_Parsed]) -> None:
    """One person gives one label per item in a file: two different ones are an error naming both lines."""
    first: dict[tuple[str, str], _Parsed] = {}
    for p in parsed:
        earlier = first.setdefault((p.external_id, p.person), p)
        if earlier.label != p.label:
            raise DataError(
                f"{name} lines {earlier.line} and {p.line}: {p.person!r} answers item {p.external_id!r} twice, "
                f"with {earlier.label!r} and {p.label!r}; keep the row with the label they mean and remove the other"
            )


def _find_items(s: Session, project_id: int, name: str, parsed: Sequence[_Parsed]) -> dict[str, int]:
    """external id -> item id for every answered item; an unknown id is an error that names its line."""
    ids = sorted({p.external_id for p in parsed})
    items: dict[str, int] = {}
    for chunk in _chunks(ids):
        found = s.execute(
            select(Item.external_id, Item.id).where(Item.project_id == project_id, Item.external_id.in_(chunk))
        )
        items.update((ext, item_id) for ext, item_id in found)
    for p in parsed:
        if p.external_id not in items:
            raise DataError(
                f"{name} line {p.line}: no item with id {p.external_id!r} in this project; "
                "check the id column (--id-column)"
            )
    return items


def _check_people(s: Session, name: str, parsed: Sequence[_Parsed]) -> list[str]:
    """The names that answered, sorted; none may be a simulated expert's."""
    people_names = sorted({p.person for p in parsed})
    simulated_names = set(
        s.scalars(select(Person.name).where(Person.name.in_(people_names), Person.simulated.is_(True))).all()
    )
    for p in parsed:
        if p.person in simulated_names:
            raise DataError(
                f"{name} line {p.line}: {p.person!r} is the name of a simulated expert; "
                "record a person's answers under that person's own name"
            )
    return people_names


def _write_file_answers(
    s: Session,
    project_id: int,
    parsed: Sequence[_Parsed],
    items: dict[str, int],
    people_names: Sequence[str],
    version: str,
) -> tuple[int, int, set[int], int]:
    """Store the answers not already stored: (recorded, duplicates, ids of the tasks they closed, earlier
    answers replaced). A person's new label for an item replaces their earlier, different one (it is kept,
    marked superseded), so that one person never has two live answers that disagree."""
    item_ids = sorted(set(items.values()))
    seen = _stored_keys(s, item_ids)
    tasks = _open_tasks(s, project_id, item_ids)
    people = {n: get_or_create_person(s, n) for n in people_names}
    recorded = duplicates = replaced = 0
    closed: set[int] = set()
    for p in parsed:
        item_id = items[p.external_id]
        key = (item_id, p.person, p.label)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        replaced += _supersede_other_labels(s, item_id, people[p.person].id, p.label)
        task = tasks.get(item_id)
        stored = Answer(
            item_id=item_id,
            person_id=people[p.person].id,
            task_id=task.id if task is not None else None,
            kind="label",
            label=p.label,
            value=p.value,
            rationale=p.rationale,
            active_seconds=p.seconds,
            simulated=False,
            source="file",
            guideline_version=version,
        )
        _fill(s, stored, task, people[p.person].id, closed)
        recorded += 1
    return recorded, duplicates, closed, replaced


def _supersede_other_labels(s: Session, item_id: int, person_id: int, label: str) -> int:
    """Mark the person's live answers on the item with another label superseded; how many."""
    done = s.execute(
        update(Answer)
        .where(
            Answer.item_id == item_id,
            Answer.person_id == person_id,
            live_expert_answer(),
            Answer.label != label,
        )
        .values(superseded=True)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(done, "rowcount", 0) or 0)


def record_answers(
    db: Database,
    project_id: int,
    settings: Settings,
    path: Path,
    *,
    id_column: str = "id",
    label_column: str = "label",
    person_column: str = "person",
    rationale_column: str = "rationale",
    seconds_column: str = "seconds",
    default_person: str | None = None,
    fmt: str | None = None,
    encoding: str = "utf-8",
) -> AnswerReport:
    """Record the expert answers in ``path``: all rows or, when one is wrong, none."""
    path = Path(path)
    labels = _require_labels(settings)
    kind = kind_for(settings)
    name = path.name
    default = normal_name(default_person or "") or None
    cols = _AnswerColumns(id_column, label_column, person_column, rationale_column, seconds_column)
    parsed, read_notes = _read_answers(path, settings, labels, kind, cols, default, fmt, encoding)
    if not parsed:
        return AnswerReport(recorded=0, duplicates=0, people=[], simulated=False, notes=[f"{name} has no rows"])

    with db.session() as s:
        # what the expert saw: the guidelines, the labels and the glossary (approved terms included)
        version = guideline_version_in(s, project_id, settings)
        items = _find_items(s, project_id, name, parsed)
        people_names = _check_people(s, name, parsed)
        recorded, duplicates, closed, replaced = _write_file_answers(
            s, project_id, parsed, items, people_names, version
        )
    notes = read_notes + (
        [f"{replaced} earlier answers were replaced by a different label from the same person (kept as superseded)"]
        if replaced
        else []
    )
    return AnswerReport(
        recorded=recorded, duplicates=duplicates, people=people_names, simulated=False,
        tasks_answered=len(closed), notes=notes,
    )  # fmt: skip


# ----------------------------------------------------------------------------- simulated


def _label_columns(columns: dict[str, Any]) -> set[str]:
    """The label column an import read, from its recorded column mapping."""
    found: set[str] = set()
    for key in ("label", "label_column"):
        value = columns.get(key)
        if isinstance(value, str) and value:
            found.add(value)
    return found


def _meta_columns(columns: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for key in ("meta", "meta_columns"):
        value = columns.get(key)
        if isinstance(value, list):
            found.update(str(v) for v in value)
    return found


def _recorded_columns(s: Session, project_id: int) -> tuple[set[str], set[str]]:
    """(label columns, kept extra columns) that the project's imports recorded."""
    mappings = [c for c in s.scalars(select(Import.columns).where(Import.project_id == project_id)).all() if c]
    label_columns: set[str] = set().union(*(_label_columns(c) for c in mappings))
    meta_columns: set[str] = set().union(*(_meta_columns(c) for c in mappings))
    return label_columns, meta_columns


def _open_routed(s: Session, project_id: int, limit: int | None) -> Sequence[Row[Task, Item]]:
    """(task, item) for the open routed label and verify tasks, first in queue order first, at most ``limit``."""
    query = (
        select(Task, Item)
        .join(Item, Item.id == Task.item_id)
        .where(
            Task.project_id == project_id,
            Task.status.in_(OPEN_TASK_STATUSES),
            Task.reason.in_(ROUTED_REASONS),
            Task.kind.in_(("label", "verify")),
        )
        .order_by(Task.priority, Task.id)
    )
    if limit is not None:
        query = query.limit(limit)
    return s.execute(query).all()


def _uses_gold(column: str, label_columns: set[str], meta_columns: set[str]) -> bool:
    """True: the oracle column is the gold label; False: a kept extra column. Any other column is an error."""
    use_gold = column in label_columns
    if not use_gold and column not in meta_columns:
        usable = sorted(label_columns | meta_columns)
        if not usable:
            raise DataError(
                f"column {column!r} was not recorded with this project's items, and no column was: "
                "import the data with --label-column (or keep the column with --meta-columns) to simulate from it"
            )
        raise DataError(
            f"column {column!r} was not recorded with this project's items; columns that can be used: "
            f"{', '.join(usable)} — pass --oracle-column {usable[0]}"
        )
    return use_gold


def _oracle_answers(
    rows: Sequence[Row[Task, Item]], column: str, use_gold: bool, labels: Sequence[str]
) -> tuple[list[tuple[Task, Item, str]], int]:
    """(task, item, label) for every task whose item has a value; and how many have none (left open)."""
    answers: list[tuple[Task, Item, str]] = []
    skipped = 0
    for task, item in rows:
        raw = item.gold_label if use_gold else (item.meta or {}).get(column)
        value = _cell(raw)
        if not value:
            skipped += 1
            continue
        if value not in labels:
            raise DataError(
                f"item {item.external_id!r}: column {column!r} holds {value!r}, which is not one of the project's "
                f"labels: {', '.join(labels)}; pass another --oracle-column or fix [[labels]] in terakoya.toml"
            )
        answers.append((task, item, value))
    return answers, skipped


def _simulated_value(s: Session, task: Task, item_id: int, label: str) -> dict[str, Any]:
    """The answer's value as the work queue stores it: on a verify task, the teacher's label and whether it stood."""
    if task.kind != "verify":
        return {"label": label}
    return {"label": label, **teacher_verdict(s, item_id, label)}


def _write_simulated(
    s: Session, project_id: int, settings: Settings, person: str, answers: Sequence[tuple[Task, Item, str]]
) -> tuple[int, int, set[int], str]:
    """Store the simulated answers not already stored: (recorded, duplicates, closed task ids, expert's name)."""
    expert = get_or_create_person(s, person, simulated=True)
    seen = _stored_keys(s, sorted({item.id for _t, item, _v in answers}))
    recorded = duplicates = 0
    version = guideline_version_in(s, project_id, settings)
    closed: set[int] = set()
    for task, item, value in answers:
        key = (item.id, expert.name, value)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        answer = Answer(
            item_id=item.id,
            person_id=expert.id,
            task_id=task.id,
            kind=task.kind,
            label=value,
            value=_simulated_value(s, task, item.id, value),
            active_seconds=settings.routing.seconds_per_item,
            simulated=True,
            source="simulate",
            guideline_version=version,
        )
        _fill(s, answer, task, expert.id, closed)
        recorded += 1
    return recorded, duplicates, closed, expert.name


def simulate(
    db: Database,
    project_id: int,
    settings: Settings,
    *,
    oracle_column: str,
    person: str = SIMULATED_PERSON,
    limit: int | None = None,
) -> AnswerReport:
    """Answer the open routed tasks (reasons routed, gold, random) from a recorded column.

    ``oracle_column`` is the import's label column (answers come from ``Item.gold_label``) or an extra
    column kept with the items (``Item.meta``). Answers are flagged simulated, with
    ``routing.seconds_per_item`` as their active seconds.
    """
    labels = _require_labels(settings)
    if limit is not None and limit < 0:
        raise ConfigError(f"--limit must be 0 or more (got {limit})")
    column = oracle_column.strip()
    with db.session() as s:
        label_columns, meta_columns = _recorded_columns(s, project_id)
        rows = _open_routed(s, project_id, limit)
        for _task, item in rows:
            meta_columns.update(str(k) for k in (item.meta or {}))
        use_gold = _uses_gold(column, label_columns, meta_columns)
        answers, skipped = _oracle_answers(rows, column, use_gold, labels)
        recorded, duplicates, closed, name = _write_simulated(s, project_id, settings, person, answers)
    notes = []
    if skipped:
        notes.append(f"{skipped} open tasks have no recorded {column!r} value and were left open")
    return AnswerReport(
        recorded=recorded,
        duplicates=duplicates,
        people=[name],
        simulated=True,
        tasks_answered=len(closed),
        skipped=skipped,
        notes=notes,
    )
