"""``teacher check``: which teacher, prompt style and calibration this project should use, measured.

Every available variant — each packaged local model (or the configured endpoint) × prompt style ×
calibration — labels the items whose answer is known (pool items the experts answered, and gold test
items), and is scored on them: accuracy with a 95 % interval, macro-F1, seconds and cost per item.
Calibrations cost nothing extra: they re-use the same label log-probabilities. Calls go through the
project's teacher cache, so checking twice costs nothing, and ``teach`` with the chosen variant
re-uses the answers already paid for.
"""

from __future__ import annotations

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
from terakoya.settings import Settings
from terakoya.storage.db import Database
from terakoya.storage.models import Item

__all__ = ["TeacherCheck", "VariantScore", "check_teachers", "labelled_items"]

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
    db: Database, project_id: int, settings: Settings, *, limit: int = DEFAULT_LIMIT, seed: int = 0
) -> tuple[list[tuple[int, str, str]], str]:
    """(item id, text, known label) for expert-answered pool items and gold test items; a seeded sample of
    at most ``limit``; and a phrase saying where the labels come from."""
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
        elif split == "test" and gold_label in labels:
            out.append((item_id, text, str(gold_label)))
            gold += 1
    if len(out) > limit:
        rng = np.random.default_rng(seed)
        keep = sorted(rng.choice(len(out), size=limit, replace=False).tolist())
        out = [out[i] for i in keep]
    source = f"{experts} expert-answered pool items and {gold} gold test items" + (
        f" (a sample of {limit})" if experts + gold > limit else ""
    )
    return out, source


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
    progress: Callable[[str, int, int], None] | None = None,
) -> TeacherCheck:
    """Score every teacher variant on the labelled items and say which one the project should use."""
    from terakoya.students.base import softmax
    from terakoya.teachers.calibrating import MIN_BATCH_ITEMS
    from terakoya.teachers.calibration import batch_calibrate

    labels = settings.label_names
    if len(labels) < 2:
        raise ConfigError("declare at least two [[labels]] in terakoya.toml before checking teachers")
    items, source = labelled_items(db, project_id, settings, limit=limit, seed=settings.seed)
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
