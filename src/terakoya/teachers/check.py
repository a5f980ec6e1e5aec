"""``teacher check``: which teacher, prompt style and calibration this project should use, measured.

Every available variant — each packaged local model (or the configured endpoint) × prompt style ×
calibration — labels the items whose answer is known (pool items the experts answered, and gold test
items), and is scored on them: accuracy with a 95 % interval, macro-F1, seconds and cost per item.
Calibrations cost nothing extra: they re-use the same label log-probabilities. Calls go through the
project's teacher cache, so checking twice costs nothing, and ``teach`` with the chosen variant
re-uses the answers already paid for.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from terakoya.errors import ConfigError, StateError, TerakoyaError
from terakoya.quality.aggregate import expert_answers, majority
from terakoya.settings import Example, Settings
from terakoya.storage.db import Database
from terakoya.storage.models import Item

__all__ = [
    "ExampleCheck",
    "ExampleSetScore",
    "TeacherCheck",
    "VariantScore",
    "check_examples",
    "check_teachers",
    "labelled_items",
]

#: items scored per variant at most (a seeded sample when there are more)
DEFAULT_LIMIT = 200
STYLES = ("chat", "plain")


@dataclass
class VariantScore:
    model: str
    style: str
    calibration: str
    items: int = 0
    accuracy: float | None = None
    accuracy_ci: tuple[float, float] | None = None
    macro_f1: float | None = None
    seconds_per_item: float | None = None
    cost_per_item_usd: float | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        return f"{self.model} · {self.style} · {self.calibration}"


@dataclass
class TeacherCheck:
    items: int
    source: str
    scores: list[VariantScore] = field(default_factory=list)
    best: VariantScore | None = None
    advice: str = ""


def labelled_items(
    db: Database, project_id: int, settings: Settings, *, limit: int = DEFAULT_LIMIT, seed: int = 0,
    include_test: bool = True,
) -> tuple[list[tuple[int, str, str]], str]:  # fmt: skip
    """(item id, text, known label) for expert-answered pool items and (with ``include_test``) gold test items;
    a seeded sample of at most ``limit``; and a phrase saying where the labels come from. Leave the test split
    out to keep it untouched by the choice: a teacher chosen on the test items scores a little too well there."""
    labels = settings.label_names
    answers = expert_answers(db, project_id, labels)
    with db.session() as s:
        rows = s.execute(
            select(Item.id, Item.text, Item.split, Item.gold_label)
            .where(Item.project_id == project_id)
            .order_by(Item.id)
        ).all()
    out: list[tuple[int, str, str]] = []
    experts = gold = 0
    for item_id, text, split, gold_label in rows:
        if item_id in answers:
            out.append((item_id, text, majority(answers[item_id])))
            experts += 1
        elif include_test and split == "test" and gold_label in labels:
            out.append((item_id, text, str(gold_label)))
            gold += 1
    if len(out) > limit:
        rng = np.random.default_rng(seed)
        keep = sorted(rng.choice(len(out), size=limit, replace=False).tolist())
        out = [out[i] for i in keep]
    known = f"{experts} expert-answered pool items and {gold} gold test items"
    if not include_test:
        known = f"{experts} expert-answered pool items (the test split left out)"
    source = known + (f" (a sample of {limit})" if experts + gold > limit else "")
    return out, source


def _label_project(settings: Settings, what: str) -> list[str]:
    """The project's labels, or a clear error when ``what`` cannot run on it."""
    from terakoya.kinds import get_kind

    if get_kind(settings.task.kind).generative:
        raise ConfigError(
            f"{what} scores teachers that choose a label; this project's task kind is {settings.task.kind!r} "
            "(written answers), whose teachers are judged by the experts' ratings and comparisons in "
            "`terakoya evaluate`"
        )
    labels = settings.label_names
    if len(labels) < 2:
        raise ConfigError(f"declare at least two [[labels]] in terakoya.toml before running {what}")
    return labels


def _score(proba: NDArray[np.float64], truth: NDArray[np.intp], k: int, out: VariantScore) -> None:
    from sklearn.metrics import f1_score

    from terakoya.evaluation.metrics import wilson_interval

    pred = proba.argmax(axis=1)
    correct = int((pred == truth).sum())
    out.items = len(truth)
    out.accuracy = correct / len(truth)
    interval = wilson_interval(correct, len(truth))
    out.accuracy_ci = (interval[0], interval[1]) if interval else None
    out.macro_f1 = float(f1_score(truth, pred, labels=list(range(k)), average="macro", zero_division=0))


def _variants(settings: Settings, models: Sequence[str] | None, styles: Sequence[str] | None) -> list[dict[str, Any]]:
    """Teacher settings to try: the configured endpoint as it is, or every available local model × prompt style
    (a model without a chat template has the plain style only)."""
    t = settings.teacher
    if t.kind != "local":
        return [{}]
    from terakoya.teachers.local import available_models, resolve_style

    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for model in models or available_models() or [t.model]:
        for style in styles or STYLES:
            resolved = resolve_style(model, style)
            if (model, resolved) not in seen:
                seen.add((model, resolved))
                out.append({"model": model, "prompt_style": resolved})
    return out


def _run_variant(
    db: Database, project_id: int, settings: Settings, items: list[tuple[int, str, str]],
    progress: Callable[[str, int, int], None] | None,
) -> tuple[NDArray[np.float64], float, float]:  # fmt: skip
    """(label log-probabilities per item, seconds per item, cost per item) of one teacher variant."""
    from terakoya.teachers import make_teacher
    from terakoya.teachers.cache import CachedTeacher
    from terakoya.teachers.calibrating import label_logprobs
    from terakoya.teachers.teaching import build_requests, current_prompt

    labels = settings.label_names
    teacher = make_teacher(settings.teacher)
    prompt = current_prompt(db, project_id, settings)
    cache = CachedTeacher(teacher, db, prompt_version=prompt.version)
    rows: list[list[float]] = []
    seconds = tokens_in = tokens_out = 0.0
    size = settings.teacher.batch_size
    for start in range(0, len(items), size):
        batch = items[start : start + size]
        for result in cache.label_cached(build_requests(prompt, settings, [(i, text) for i, text, _ in batch])):
            a = result.answer
            values = label_logprobs(a.raw, a.probabilities, labels) if a.error is None else None
            rows.append(values if values is not None else [0.0] * len(labels))
            seconds += a.latency_s
            tokens_in += a.prompt_tokens
            tokens_out += a.completion_tokens
        if progress is not None:
            progress(teacher.name, start + len(batch), len(items))
    t = settings.teacher
    cost = (tokens_in * t.price_input_per_million + tokens_out * t.price_output_per_million) / 1e6
    n = max(1, len(items))
    return np.asarray(rows, dtype=np.float64), seconds / n, cost / n


def check_teachers(
    db: Database,
    project_id: int,
    settings: Settings,
    *,
    models: Sequence[str] | None = None,
    styles: Sequence[str] | None = None,
    limit: int = DEFAULT_LIMIT,
    include_test: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> TeacherCheck:
    """Score every teacher variant on the labelled items and say which one the project should use."""
    from terakoya.students.base import softmax
    from terakoya.teachers.calibrating import MIN_BATCH_ITEMS
    from terakoya.teachers.calibration import batch_calibrate

    labels = _label_project(settings, "teacher check")
    items, source = labelled_items(db, project_id, settings, limit=limit, seed=settings.seed, include_test=include_test)
    if len(items) < 10:
        raise StateError(
            f"only {len(items)} items have a known label; import a test split with --label-column, "
            "or record expert answers, so that at least 10 can score the teachers"
        )
    truth = np.asarray([labels.index(lab) for _, _, lab in items], dtype=np.intp)
    report = TeacherCheck(items=len(items), source=source)
    for variant in _variants(settings, models, styles):
        teacher_settings = settings.teacher.model_copy(update=variant)
        vsettings = settings.model_copy(update={"teacher": teacher_settings})
        model = teacher_settings.model if teacher_settings.kind != "python" else str(teacher_settings.function)
        style = str(variant.get("prompt_style", teacher_settings.prompt_style))
        started = time.perf_counter()
        try:
            logprobs, per_item, cost = _run_variant(db, project_id, vsettings, items, progress)
        except TerakoyaError as exc:
            report.scores.append(VariantScore(model, style, "—", error=str(exc)))
            continue
        per_item = per_item or (time.perf_counter() - started) / len(items)
        cands: list[tuple[str, NDArray[np.float64]]] = [("none", softmax(logprobs))]
        if len(items) >= MIN_BATCH_ITEMS:
            cands.append(("batch", batch_calibrate(logprobs)[1]))
        for calibration, proba in cands:
            score = VariantScore(model, style, calibration, seconds_per_item=per_item, cost_per_item_usd=cost)
            _score(proba, truth, len(labels), score)
            report.scores.append(score)
    scored = [v for v in report.scores if v.accuracy is not None]
    if scored:
        report.best = max(scored, key=lambda v: (v.accuracy or 0.0, v.macro_f1 or 0.0))
        report.advice = _advice(report.best, settings, scored)
    return report


def _advice(best: VariantScore, settings: Settings, scored: list[VariantScore]) -> str:
    t = settings.teacher
    current = [v for v in scored if v.model == t.model and v.style == str(getattr(t, "prompt_style", v.style))]
    line = f"Best: {best.name} — {100 * (best.accuracy or 0):.1f}% accuracy, macro-F1 {best.macro_f1:.3f}."
    settings_line = f'[teacher] model = "{best.model}"'
    if best.style in STYLES:
        settings_line += f', prompt_style = "{best.style}"'
    settings_line += f', calibrate = "{"batch" if best.calibration == "batch" else "none"}"'
    if current:
        now = max(current, key=lambda v: v.accuracy or 0.0)
        if best.accuracy is not None and now.accuracy is not None and best.accuracy - now.accuracy < 0.005:
            return line + " The project's teacher is already this good; keep its settings."
    interval = best.accuracy_ci
    if interval and not math.isnan(interval[0]):
        line += f" (95% CI {100 * interval[0]:.0f}–{100 * interval[1]:.0f}%)"
    return line + f" Use it: in terakoya.toml set {settings_line}."


# ----------------------------------------------------------------------------------------- example sets


@dataclass
class ExampleSetScore:
    """One set of few-shot examples, scored on the same items as every other set."""

    examples: list[tuple[str, str]]
    current: bool = False
    score: VariantScore | None = None
    correct: list[bool] = field(default_factory=list)


@dataclass
class ExampleCheck:
    items: int
    source: str
    candidates: int
    sets: list[ExampleSetScore] = field(default_factory=list)
    best: ExampleSetScore | None = None
    #: whether the best set beats the current one by more than one standard error of the paired difference
    better: bool = False
    advice: str = ""


def _draw_sets(
    pool: dict[str, list[str]], current: list[tuple[str, str]], shots: int, sets: int, seed: int, labels: list[str]
) -> list[list[tuple[str, str]]]:
    """``sets`` label-balanced draws of ``shots`` examples from ``pool`` (label -> texts), the current set first."""
    rng = np.random.default_rng(seed)
    out = [list(current)] if current else []
    seen = {tuple(sorted(current))}
    for _ in range(sets * 10):
        if len(out) >= sets:
            break
        chosen: list[tuple[str, str]] = []
        order = [labels[i] for i in rng.permutation(len(labels))]
        while len(chosen) < shots:
            added = False
            for label in order:
                left = [t for t in pool.get(label, []) if (t, label) not in chosen]
                if left and len(chosen) < shots:
                    chosen.append((left[int(rng.integers(len(left)))], label))
                    added = True
            if not added:
                break
        key = tuple(sorted(chosen))
        if chosen and key not in seen:
            seen.add(key)
            out.append([chosen[i] for i in rng.permutation(len(chosen))])
    return out


def check_examples(
    db: Database,
    project_id: int,
    settings: Settings,
    *,
    sets: int = 5,
    limit: int = 150,
    include_test: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> ExampleCheck:
    """Which few-shot examples the project's teacher should see, measured.

    Candidates are the project file's ``[[examples]]`` and the pool items the experts agree on; ``sets``
    label-balanced sets of ``teacher.few_shot`` of them (the current set first) each prompt the project's
    teacher on the same labelled items — those with a known label that are in none of the sets — and are
    scored after the project's calibration (batch when enough items); ``include_test=False`` keeps the test
    split out of the choice. A set is advised only when it beats
    the current one by more than one standard error of the paired per-item difference: which examples are
    shown moves a small model by up to ten points, but so does chance on a hundred items.
    """
    from terakoya.students.base import softmax
    from terakoya.teachers.calibrating import MIN_BATCH_ITEMS, calibration_mode
    from terakoya.teachers.calibration import batch_calibrate
    from terakoya.teachers.prompts import collect_examples, expert_examples, file_examples

    labels = _label_project(settings, "teacher examples")
    shots = settings.teacher.few_shot
    if shots == 0:
        raise ConfigError("teacher.few_shot is 0: the teacher is shown no examples; set it to 2 or more first")
    pool = expert_examples(db, project_id, settings)
    for text, label in file_examples(settings):
        if text not in pool[label]:
            pool[label].append(text)
    candidates = sum(len(v) for v in pool.values())
    if candidates <= shots:
        raise StateError(
            f"only {candidates} candidate examples for {shots} places: add [[examples]] to terakoya.toml or "
            "record expert answers, so that there is something to choose from"
        )
    current = collect_examples(db, project_id, settings)
    drawn = _draw_sets(pool, current, shots, sets, settings.seed, labels)
    shown = {text for examples in drawn for text, _ in examples}
    items, source = labelled_items(
        db, project_id, settings, limit=limit + len(shown), seed=settings.seed, include_test=include_test
    )
    items = [row for row in items if row[1] not in shown][:limit]
    if len(items) < 10:
        raise StateError(
            f"only {len(items)} items with a known label are left outside the example sets; import a test split "
            "with --label-column, or record expert answers, so that at least 10 can score them"
        )
    truth = np.asarray([labels.index(lab) for _, _, lab in items], dtype=np.intp)
    # the project's own rule (python functions' probabilities stay as they are under "auto")
    calibrate = calibration_mode(settings) == "batch" and len(items) >= MIN_BATCH_ITEMS
    report = ExampleCheck(items=len(items), source=source, candidates=candidates)
    model = settings.teacher.model
    for n, examples in enumerate(drawn):
        vsettings = settings.model_copy(
            update={
                "teacher": settings.teacher.model_copy(update={"examples_from": "file"}),
                "examples": [Example(text=text, label=label) for text, label in examples],
            }
        )
        entry = ExampleSetScore(examples=examples, current=n == 0 and bool(current))
        try:
            logprobs, per_item, cost = _run_variant(db, project_id, vsettings, items, progress)
        except TerakoyaError as exc:
            entry.score = VariantScore(model, "", "—", error=str(exc))
            report.sets.append(entry)
            continue
        proba = batch_calibrate(logprobs)[1] if calibrate else softmax(logprobs)
        entry.score = VariantScore(model, "", "batch" if calibrate else "none", seconds_per_item=per_item,
                                   cost_per_item_usd=cost)  # fmt: skip
        _score(proba, truth, len(labels), entry.score)
        entry.correct = (proba.argmax(axis=1) == truth).tolist()
        report.sets.append(entry)
    scored = [e for e in report.sets if e.score is not None and e.score.accuracy is not None]
    if not scored:
        return report
    report.best = max(scored, key=lambda e: (e.score.accuracy or 0.0, e.current) if e.score else (0.0, False))
    base = next((e for e in scored if e.current), None)
    if base is None or base is report.best:
        report.better = base is None
    else:
        from terakoya.evaluation.metrics import paired_within

        # better: the current set's accuracy is not within one standard error of the best one's
        report.better = not paired_within(np.asarray(report.best.correct, float) - np.asarray(base.correct, float), 1.0)
    report.advice = _example_advice(report, base)
    return report


def _example_advice(report: ExampleCheck, base: ExampleSetScore | None) -> str:
    best = report.best
    assert best is not None and best.score is not None
    line = f"Best: set {report.sets.index(best) + 1} — {100 * (best.score.accuracy or 0):.1f}% accuracy."
    if not report.better:
        return line + " The current examples are as good within chance (one standard error); keep them."
    toml = "\n".join(
        f"[[examples]]\ntext = {json.dumps(text, ensure_ascii=False)}\nlabel = {json.dumps(label)}\n"
        for text, label in best.examples
    )
    against = (
        f", {100 * (best.score.accuracy or 0) - 100 * (base.score.accuracy or 0):+.1f} points against the current set"
        if base is not None and base.score is not None and base.score.accuracy is not None
        else ""
    )
    return (
        line[:-1] + against + ". Use it: in terakoya.toml put these first among the [[examples]] and set "
        f'[teacher] examples_from = "file":\n\n{toml}'
    )
