"""Read what the report needs from the database, once, into plain objects.

"The current teacher suggestion" of an item is its newest teacher suggestion without an error
(:func:`terakoya.storage.queries.current_suggestion_ids`, as routing and training read it); an item whose
teacher calls all failed counts as not labelled by the teacher. Expert answers are the live (not
superseded) ``label`` and ``verify`` answers that carry a declared label
(:func:`terakoya.quality.aggregate.live_expert_answer`), and an item's expert label is their
:func:`terakoya.quality.aggregate.majority`, as training reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from terakoya.errors import StateError
from terakoya.quality.aggregate import live_expert_answer, majority
from terakoya.settings import Settings
from terakoya.storage import Database
from terakoya.storage.models import Answer, Item, Person, StudentRun, Suggestion, Task
from terakoya.storage.queries import current_suggestion_ids, items_by_split

__all__ = [
    "NO_GOLD_FIX",
    "AnswerRow",
    "Gathered",
    "ModelRow",
    "RunRow",
    "TeacherCallRow",
    "TestItem",
    "gather",
    "label_of",
]

NO_GOLD_FIX = (
    "import a test split with --label-column, e.g. `terakoya import data.csv --label-column label --split test "
    "--fraction 0.2`"
)


@dataclass(frozen=True)
class TestItem:
    id: int
    external_id: str
    text: str
    gold: str
    #: the extra columns the owner imported with the item (``Item.meta``)
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelRow:
    """One current suggestion: its label, and its probabilities when they are known."""

    label: str
    probabilities: dict[str, float] | None


@dataclass(frozen=True)
class AnswerRow:
    id: int
    item_id: int
    split: str
    person: str
    label: str
    simulated: bool
    active_seconds: float | None
    #: the answer's kind: ``label`` (given blind) or ``verify`` (the teacher's label was shown)
    kind: str = "label"
    #: why its task was queued (``routed``, ``gold``, ``audit``, ``random``); None: given on no task (a file)
    task_reason: str | None = None
    #: the teacher's label a verify answer was shown, as it recorded it (None: not recorded)
    teacher_shown: str | None = None
    #: the item's recorded (gold) label, in either split
    gold: str | None = None


@dataclass(frozen=True)
class TeacherCallRow:
    agent: str
    latency_ms: float
    cost_usd: float
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class RunRow:
    run_id: str
    kind: str
    path: str
    metrics: dict[str, Any]


@dataclass
class Gathered:
    classes: list[str]
    test: list[TestItem]
    test_total: int
    pool_total: int
    pool_with_gold: int
    teacher_test: dict[int, ModelRow]
    teacher_test_failed: int
    teacher_pool: dict[int, str]
    answers: list[AnswerRow]
    texts: dict[int, str]
    external_ids: dict[int, str]
    teacher_calls: list[TeacherCallRow]
    teacher_models: list[str]
    runs: list[RunRow] = field(default_factory=list)


def label_of(answers: list[AnswerRow]) -> str:
    """One label for an item from its answers: :func:`terakoya.quality.aggregate.majority` (ties: newest)."""
    return majority([(a.id, a.label) for a in answers])


def _current(s: Session, project_id: int, agent_kind: str, split: str, agent: str | None = None) -> list[Any]:
    """The current suggestions that carry a label (one without a label leaves its item unlabelled)."""
    sub = current_suggestion_ids(project_id, agent_kind, split=split, agent=agent).subquery()
    return list(
        s.execute(
            select(Suggestion.item_id, Suggestion.label, Suggestion.probabilities, Suggestion.confidence_known)
            .join(sub, Suggestion.id == sub.c.sid)
            .where(Suggestion.label.is_not(None))
        ).all()
    )


def _probabilities(raw: dict[str, Any] | None, known: bool, classes: list[str]) -> dict[str, float] | None:
    if not known or not raw:
        return None
    return {c: float(raw.get(c, 0.0) or 0.0) for c in classes}


def student_pool_labels(db: Database, project_id: int, run_id: str) -> dict[int, str]:
    """item id -> the label the student run ``run_id`` recorded for pool items."""
    with db.session() as s:
        return {row.item_id: row.label for row in _current(s, project_id, "student", "pool", agent=run_id)}


def gather(db: Database, project_id: int, settings: Settings) -> Gathered:
    """Everything from the database; a StateError when the test split has no gold labels."""
    with db.session() as s:
        counts = items_by_split(s, project_id)
        test = _gold_test_items(s, project_id, int(counts.get("test", 0)))
        classes = list(settings.label_names) or sorted({t.gold for t in test})
        pool_with_gold = _pool_with_gold(s, project_id)
        teacher_test, teacher_test_failed = _teacher_on_test(s, project_id, classes, {t.id for t in test})
        teacher_pool = {r.item_id: r.label for r in _current(s, project_id, "teacher", "pool")}
        answers, texts, external = _expert_answers(s, project_id, settings)
        calls = _teacher_calls(s, project_id)
        models = _teacher_models(s, project_id)
        runs = [
            RunRow(r.run_id, r.kind, r.path, dict(r.metrics or {}))
            for r in s.scalars(
                select(StudentRun).where(StudentRun.project_id == project_id).order_by(StudentRun.id.desc())
            ).all()
        ]
    return Gathered(
        classes=classes,
        test=test,
        test_total=int(counts.get("test", 0)),
        pool_total=int(counts.get("pool", 0)),
        pool_with_gold=pool_with_gold,
        teacher_test=teacher_test,
        teacher_test_failed=teacher_test_failed,
        teacher_pool=teacher_pool,
        answers=answers,
        texts=texts,
        external_ids=external,
        teacher_calls=calls,
        teacher_models=sorted(models),
        runs=runs,
    )


def _gold_test_items(s: Session, project_id: int, test_total: int) -> list[TestItem]:
    """The test items with a (non-blank) gold label, by id; a StateError when there is none."""
    rows = s.execute(
        select(Item.id, Item.external_id, Item.text, Item.gold_label, Item.meta)
        .where(Item.project_id == project_id, Item.split == "test", Item.gold_label.is_not(None))
        .order_by(Item.id)
    ).all()
    test = [
        TestItem(r.id, r.external_id, r.text, r.gold_label, dict(r.meta or {})) for r in rows if r.gold_label.strip()
    ]
    if not test:
        detail = f" (the test split has {test_total} items, none with a gold label)" if test_total else ""
        raise StateError(f"no test items with gold labels{detail}: {NO_GOLD_FIX}")
    return test


def _pool_with_gold(s: Session, project_id: int) -> int:
    return int(
        s.scalar(
            select(func.count())
            .select_from(Item)
            .where(Item.project_id == project_id, Item.split == "pool", Item.gold_label.is_not(None))
        )
        or 0
    )


def _teacher_on_test(
    s: Session, project_id: int, classes: list[str], test_ids: set[int]
) -> tuple[dict[int, ModelRow], int]:
    """The teacher's current suggestion per gold test item, and how many others it only failed on."""
    teacher_test = {
        r.item_id: ModelRow(r.label, _probabilities(r.probabilities, bool(r.confidence_known), classes))
        for r in _current(s, project_id, "teacher", "test")
        if r.item_id in test_ids
    }
    failed_ids = set(
        s.scalars(
            select(Suggestion.item_id)
            .join(Item, Item.id == Suggestion.item_id)
            .where(
                Item.project_id == project_id,
                Item.split == "test",
                Suggestion.agent_kind == "teacher",
                Suggestion.error.is_not(None),
            )
            .distinct()
        ).all()
    )
    return teacher_test, len((failed_ids & test_ids) - set(teacher_test))


def _expert_answers(
    s: Session, project_id: int, settings: Settings
) -> tuple[list[AnswerRow], dict[int, str], dict[int, str]]:
    """The live expert answers by id, and the text and external id of each item they answer."""
    query = (
        select(
            Answer.id,
            Answer.item_id,
            Item.split,
            Person.name,
            Answer.label,
            Answer.simulated,
            Answer.active_seconds,
            Item.text,
            Item.external_id,
            Answer.kind,
            Answer.value,
            Task.reason,
            Item.gold_label,
        )
        .join(Item, Item.id == Answer.item_id)
        .join(Person, Person.id == Answer.person_id)
        .outerjoin(Task, Task.id == Answer.task_id)
        .where(Item.project_id == project_id, live_expert_answer())
        .order_by(Answer.id)
    )
    if settings.label_names:  # as training reads them: an answer with an undeclared label counts for nothing
        query = query.where(Answer.label.in_(settings.label_names))
    rows = s.execute(query).all()
    answers = [_answer_row(r) for r in rows]
    return answers, {r.item_id: r.text for r in rows}, {r.item_id: r.external_id for r in rows}


def _answer_row(r: Any) -> AnswerRow:
    simulated, shown, gold = bool(r.simulated), _shown(r.value), _gold(r.gold_label)
    return AnswerRow(r.id, r.item_id, r.split, r.name, r.label, simulated, r.active_seconds,
                     kind=r.kind, task_reason=r.reason, teacher_shown=shown, gold=gold)  # fmt: skip


def _shown(value: Any) -> str | None:
    """The teacher's label a verify answer recorded beside its own (``value["teacher_label"]``)."""
    shown = value.get("teacher_label") if isinstance(value, dict) else None
    return shown if isinstance(shown, str) and shown else None


def _gold(label: str | None) -> str | None:
    return label if label is not None and label.strip() else None


def _teacher_calls(s: Session, project_id: int) -> list[TeacherCallRow]:
    """The teacher's non-cached calls that gave an answer: latency, cost and tokens."""
    rows = s.execute(
        select(
            Suggestion.agent,
            Suggestion.latency_ms,
            Suggestion.cost_usd,
            Suggestion.prompt_tokens,
            Suggestion.completion_tokens,
        )
        .join(Item, Item.id == Suggestion.item_id)
        .where(
            Item.project_id == project_id,
            Suggestion.agent_kind == "teacher",
            Suggestion.cached.is_(False),
            Suggestion.error.is_(None),
        )
    ).all()
    return [
        TeacherCallRow(
            r.agent,
            float(r.latency_ms or 0.0),
            float(r.cost_usd or 0.0),
            r.prompt_tokens or 0,
            r.completion_tokens or 0,
        )
        for r in rows
    ]


def _teacher_models(s: Session, project_id: int) -> list[str]:
    return list(
        s.scalars(
            select(Suggestion.agent)
            .join(Item, Item.id == Suggestion.item_id)
            .where(Item.project_id == project_id, Suggestion.agent_kind == "teacher")
            .distinct()
        ).all()
    )


def find_run(gathered: Gathered, model_path: Path | None, project_dir: Path) -> RunRow | None:
    """The run to evaluate: the one saved at ``model_path``, or the newest one."""
    if model_path is None:
        return gathered.runs[0] if gathered.runs else None
    wanted = model_path.resolve()
    for run in gathered.runs:
        saved = Path(run.path)
        if not saved.is_absolute():
            saved = project_dir / saved
        if saved.resolve() == wanted:
            return run
    return None


def pool_sample(db: Database, project_id: int, ids: list[int], n: int, seed: int) -> list[tuple[int, str]]:
    """(item id, text) for at most ``n`` of ``ids``, drawn uniformly at random with ``seed``."""
    import numpy as np

    if not ids:
        return []
    rng = np.random.default_rng(seed)
    chosen = sorted(int(i) for i in rng.choice(np.array(ids), size=min(n, len(ids)), replace=False))
    out: list[tuple[int, str]] = []
    with db.session() as s:
        for start in range(0, len(chosen), 500):
            chunk = chosen[start : start + 500]
            out += [(r.id, r.text) for r in s.execute(select(Item.id, Item.text).where(Item.id.in_(chunk))).all()]
    return sorted(out)
