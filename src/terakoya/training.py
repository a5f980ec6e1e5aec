"""The training recipe: expert answers and confident teacher labels -> a calibrated student.

For every pool item, its target is:

1. the experts' answer where there is one: the majority of its current (not superseded) ``label`` and
   ``verify`` answers, one-hot, with sample weight ``student.expert_weight``;
2. else the teacher's current suggestion, if the teacher was confident (confidence known and at least
   ``student.teacher_min_confidence``) or the item was auto-accepted: the teacher's probabilities at
   temperature ``student.temperature``, mixed with its one-hot argmax (``student.soft_weight`` of
   soft), sample weight 1. With ``student.teacher_correction`` the teacher is treated as one more
   annotator whose confusion is measured on the pool items experts answered: where the teacher said
   label t, the target moves towards what experts actually said when the teacher said t (trusting the
   teacher's own probabilities as ``student.correction_prior`` pseudo-items), and the sample weight
   shrinks to how informative the teacher's label proved (1 - normalised entropy of that row);
3. else the item is left out.

Test-split items are never trained on: they are the expert-checked test set.

The student is fitted on all but a held-out slice (``student.calibration_fraction`` of the expert
items, or of all items when experts answered fewer than ~20 of them), a temperature is fitted on that
slice by minimising the negative log-likelihood, then the student is refitted on everything and keeps
the temperature. The run is saved under ``runs/<run id>/`` and every item gets a student suggestion,
so routing can look for disagreement between student and teacher.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import insert, select

from terakoya.errors import ConfigError, StateError
from terakoya.settings import Settings
from terakoya.storage import Database
from terakoya.storage.models import Answer, AutoAccept, Item, StudentRun, Suggestion
from terakoya.storage.queries import current_suggestion_ids
from terakoya.students import make_student, resolve
from terakoya.students.base import Student, softmax

__all__ = [
    "MIN_EXPERT_CALIBRATION",
    "NOTHING_TO_TRAIN",
    "FitResult",
    "TrainReport",
    "TrainingSet",
    "build_training_set",
    "expected_calibration_error",
    "train",
    "train_arrays",
]

#: fewer expert items than this in the held-out slice: calibrate on a slice of all items instead
MIN_EXPERT_CALIBRATION = 20
NOTHING_TO_TRAIN = "nothing to train on: run `terakoya teach` and `terakoya route`/`answer` first"
EXPERT_KINDS = ("label", "verify")
_CHUNK = 1000

Progress = Callable[[int, int], None]


@dataclass
class TrainingSet:
    """What the student learns from: one row per pool item that has a target."""

    texts: list[str]
    targets: NDArray[np.float64]  # (n, k), rows sum to 1, columns follow ``classes``
    weights: NDArray[np.float64]
    sources: list[str]  # "expert" | "teacher"
    item_ids: list[int]
    classes: list[str]
    #: pool items with neither an expert answer nor a confident teacher suggestion
    left_out: int = 0
    #: expert answers behind the expert targets
    expert_answers: int = 0
    #: teacher model -> items it labelled here; prompt version -> items
    teacher_models: dict[str, int] = field(default_factory=dict)
    prompt_versions: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def expert_items(self) -> int:
        return self.sources.count("expert")

    @property
    def teacher_items(self) -> int:
        return self.sources.count("teacher")

    def data_hash(self) -> str:
        """sha256 of the classes and every (item, text, source, weight, target): same data, same hash."""
        digest = hashlib.sha256()
        digest.update("\x1f".join(self.classes).encode())
        for i, item_id in enumerate(self.item_ids):
            target = ",".join(f"{v:.6g}" for v in self.targets[i])
            digest.update(f"\x1e{item_id}\x1f{self.sources[i]}\x1f{self.weights[i]:.6g}\x1f{target}\x1f".encode())
            digest.update(self.texts[i].encode())
        return digest.hexdigest()


@dataclass
class TrainReport:
    run_id: str
    kind: str
    path: Path
    expert_items: int
    teacher_items: int
    left_out: int
    seconds: float
    temperature: float
    calibration: dict[str, float]


@dataclass
class FitResult:
    """A fitted, calibrated student and how the calibration went."""

    student: Student
    temperature: float
    calibration: dict[str, float]
    seconds: float


# ----------------------------------------------------------------------------- the training set


def _majority(answers: list[tuple[int, str]]) -> str:
    """The most frequent label; a tie goes to the label answered most recently."""
    counts = Counter(label for _, label in answers)
    top = max(counts.values())
    latest = {label: answer_id for answer_id, label in answers}
    return max((label for label, c in counts.items() if c == top), key=lambda label: latest[label])


def _teacher_confusion(
    experts: dict[int, list[tuple[int, str]]], teacher: dict[int, Any], classes: list[str], prior: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]] | None:
    """What experts said, by what the teacher said, on the pool items both labelled.

    Returns (rows, trust, gain): ``rows[t]`` is the distribution of expert labels when the teacher's top
    label was t, smoothed towards the teacher's own mean probabilities with ``prior`` pseudo-items;
    ``trust[t] = n_t / (n_t + prior)`` is how much those rows should move the teacher's targets;
    ``gain[t]`` is how much knowing "the teacher said t" tells about the expert label, as the share of
    the expert labels' entropy it removes (0: no better than the label frequencies, 1: certain).
    None when no item has both.
    """
    k = len(classes)
    index = {c: i for i, c in enumerate(classes)}
    counts = np.zeros((k, k))
    own = np.zeros((k, k))
    for item_id, answers in experts.items():
        row = teacher.get(item_id)
        vector = _teacher_vector(row.probabilities or {}, classes) if row is not None and not row.error else None
        if vector is None:
            continue
        said = int(vector.argmax())
        counts[said, index[_majority(answers)]] += 1.0
        own[said] += vector
    n = counts.sum(axis=1)
    if n.sum() == 0:
        return None
    mean_own = np.where(n[:, None] > 0, own / np.maximum(n, 1.0)[:, None], np.eye(k))
    rows = (counts + prior * mean_own) / (n + prior)[:, None]
    base = (counts.sum(axis=0) + 1.0) / (n.sum() + k)  # the expert labels' frequencies, smoothed
    gain = np.clip(1.0 - np.array([_entropy(r) for r in rows]) / max(_entropy(base), 1e-12), 0.0, 1.0)
    return rows, n / (n + prior), gain


def _entropy(p: NDArray[np.float64]) -> float:
    q = p[p > 0]
    return float(-(q * np.log(q)).sum())


def _teacher_vector(probabilities: dict[str, Any], classes: list[str]) -> NDArray[np.float64] | None:
    values = []
    for c in classes:
        try:
            v = float(probabilities.get(c, 0.0) or 0.0)
        except (TypeError, ValueError):
            return None
        values.append(v if math.isfinite(v) and v > 0 else 0.0)
    vector = np.asarray(values)
    total = vector.sum()
    return vector / total if total > 0 else None


def build_training_set(
    db: Database, project_id: int, settings: Settings, *, max_expert: int | None = None
) -> TrainingSet:
    """Targets for the pool (see the module docstring). ``max_expert`` keeps only the first N expert-labelled
    items (in the order they were first answered); the others fall back to the teacher."""
    classes = settings.label_names
    if len(classes) < 2:
        raise ConfigError(
            f"the project declares {len(classes)} label(s); a student needs at least two: "
            "add [[labels]] entries with name = ... to terakoya.toml"
        )
    index = {c: i for i, c in enumerate(classes)}
    cfg = settings.student
    pool = (Item.project_id == project_id) & (Item.split == "pool")
    with db.session() as s:
        items = s.execute(select(Item.id, Item.text).where(pool).order_by(Item.id)).all()
        answer_rows = s.execute(
            select(Answer.id, Answer.item_id, Answer.label)
            .join(Item, Answer.item_id == Item.id)
            .where(pool, Answer.kind.in_(EXPERT_KINDS), Answer.superseded.is_(False), Answer.label.is_not(None))
            .order_by(Answer.id)
        ).all()
        newest = current_suggestion_ids(project_id, "teacher", split="pool")
        teacher_rows = s.execute(
            select(
                Suggestion.item_id,
                Suggestion.agent,
                Suggestion.prompt_version,
                Suggestion.probabilities,
                Suggestion.confidence,
                Suggestion.confidence_known,
                Suggestion.error,
            ).where(Suggestion.id.in_(newest))
        ).all()
        accepted = set(
            s.scalars(select(AutoAccept.item_id).join(Item, AutoAccept.item_id == Item.id).where(pool)).all()
        )

    answers: dict[int, list[tuple[int, str]]] = {}
    for answer_id, item_id, label in answer_rows:
        if label in index:
            answers.setdefault(item_id, []).append((answer_id, label))
    # expert items in the order they were first answered (dicts keep insertion order)
    expert_order = list(answers)
    if max_expert is not None:
        expert_order = expert_order[: max(0, max_expert)]
    experts = {item_id: answers[item_id] for item_id in expert_order}
    teacher = {row.item_id: row for row in teacher_rows}

    texts: list[str] = []
    targets: list[NDArray[np.float64]] = []
    weights: list[float] = []
    sources: list[str] = []
    item_ids: list[int] = []
    models: Counter[str] = Counter()
    prompts: Counter[str] = Counter()
    expert_answers = 0
    left_out = 0
    k = len(classes)
    correction = _teacher_confusion(experts, teacher, classes, cfg.correction_prior) if cfg.teacher_correction else None
    for item_id, text in items:
        if item_id in experts:
            target = np.zeros(k)
            target[index[_majority(experts[item_id])]] = 1.0
            texts.append(text)
            targets.append(target)
            weights.append(cfg.expert_weight)
            sources.append("expert")
            item_ids.append(item_id)
            expert_answers += len(experts[item_id])
            continue
        row = teacher.get(item_id)
        vector = _teacher_vector(row.probabilities or {}, classes) if row is not None and not row.error else None
        confident = row is not None and (
            item_id in accepted
            or (row.confidence_known and row.confidence is not None and row.confidence >= cfg.teacher_min_confidence)
        )
        if row is None or vector is None or not confident:
            left_out += 1
            continue
        if cfg.temperature != 1.0:
            with np.errstate(divide="ignore"):
                vector = softmax((np.log(vector) / cfg.temperature)[None, :])[0]
        hard = np.zeros(k)
        said = int(vector.argmax())
        hard[said] = 1.0
        target = cfg.soft_weight * vector + (1.0 - cfg.soft_weight) * hard
        weight = 1.0
        if correction is not None:
            rows, trust, gain = correction
            share = trust[said]
            target = share * rows[said] + (1.0 - share) * target
            weight = share * gain[said] + (1.0 - share)
        texts.append(text)
        targets.append(target)
        weights.append(weight)
        sources.append("teacher")
        item_ids.append(item_id)
        models[row.agent] += 1
        prompts[row.prompt_version or ""] += 1
    return TrainingSet(
        texts=texts,
        targets=np.asarray(targets, dtype=np.float64).reshape(len(texts), k),
        weights=np.asarray(weights, dtype=np.float64),
        sources=sources,
        item_ids=item_ids,
        classes=list(classes),
        left_out=left_out,
        expert_answers=expert_answers,
        teacher_models=dict(models.most_common()),
        prompt_versions=dict(prompts.most_common()),
    )


# ----------------------------------------------------------------------------- fit + calibrate


TEACHER_SCALES = (0.0, 0.1, 0.3, 1.0)
MIN_EXPERT_FOR_SEARCH = 20


def choose_teacher_scale(
    data: TrainingSet, *, kind: str, params: dict[str, Any] | None = None, seed: int = 0, folds: int = 3
) -> tuple[float, dict[str, float]]:
    """How much the teacher's labels should weigh, chosen on the expert answers by k-fold cross-validation.

    Each candidate scale multiplies the teacher items' weights; a student is fitted on the teacher items plus
    the expert items outside a fold and scored (accuracy) on the fold's expert items. A teacher that hurts
    gets 0; with fewer than MIN_EXPERT_FOR_SEARCH expert items (or no teacher items) the scale stays 1.
    """
    sources = np.asarray(data.sources)
    expert_idx = np.flatnonzero(sources == "expert")
    teacher_idx = np.flatnonzero(sources == "teacher")
    if len(expert_idx) < MIN_EXPERT_FOR_SEARCH or len(teacher_idx) == 0:
        return 1.0, {}
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(len(expert_idx)) % folds
    truth = data.targets.argmax(axis=1)
    scores: dict[str, float] = {}
    for scale in TEACHER_SCALES:
        correct = 0
        for fold in range(folds):
            held = expert_idx[fold_of == fold]
            fit_idx = np.concatenate([expert_idx[fold_of != fold], teacher_idx if scale > 0 else teacher_idx[:0]])
            weights = data.weights[fit_idx] * np.where(sources[fit_idx] == "teacher", scale, 1.0)
            student = make_student(kind, classes=list(data.classes), **(params or {}))
            student.fit([data.texts[i] for i in fit_idx], data.targets[fit_idx], sample_weight=weights)
            predicted = student.predict_proba([data.texts[i] for i in held]).argmax(axis=1)
            correct += int((predicted == truth[held]).sum())
        scores[f"{scale:g}"] = correct / len(expert_idx)
    best = max(TEACHER_SCALES, key=lambda s: (scores[f"{s:g}"], s))
    return best, scores


def expected_calibration_error(proba: NDArray[np.float64], truth: NDArray[np.intp], bins: int = 10) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins."""
    if len(truth) == 0:
        return math.nan
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == truth).astype(float)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(total / len(truth))


def _nll(logits: NDArray[np.float64], targets: NDArray[np.float64], temperature: float) -> float:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-(targets * log_p).sum(axis=1).mean())


def _fit_temperature(logits: NDArray[np.float64], targets: NDArray[np.float64]) -> float:
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(lambda log_t: _nll(logits, targets, math.exp(log_t)), bounds=(-3.0, 3.0), method="bounded")
    return float(math.exp(result.x))


def _as_targets(targets: NDArray[np.float64] | Sequence[str], classes: Sequence[str]) -> NDArray[np.float64]:
    array = np.asarray(targets)
    if array.ndim == 2:
        return array.astype(np.float64)
    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(array), len(classes)))
    out[np.arange(len(array)), [index[str(v)] for v in array.tolist()]] = 1.0
    return out


def train_arrays(
    texts: Sequence[str],
    targets: NDArray[np.float64] | Sequence[str],
    weights: NDArray[np.float64] | Sequence[float] | None,
    classes: Sequence[str],
    *,
    kind: str = "linear",
    params: dict[str, Any] | None = None,
    calibration_fraction: float = 0.15,
    calibrate_on: NDArray[np.bool_] | Sequence[bool] | None = None,
    calibrate: bool = True,
    seed: int = 0,
) -> FitResult:
    """Fit a student of ``kind`` on arrays and calibrate its temperature (pure: no database, no files).

    ``targets`` is an (n, k) array of distributions over ``classes`` or a list of labels. The held-out
    slice for the temperature is drawn (with ``seed``) from the rows where ``calibrate_on`` is true
    when that gives at least ``MIN_EXPERT_CALIBRATION`` rows, else from all rows; with ``calibrate``
    false, or too few rows, the temperature stays 1.
    """
    started = time.perf_counter()
    texts = list(texts)
    classes = [str(c) for c in classes]
    y = _as_targets(targets, classes)
    w = np.ones(len(texts)) if weights is None else np.asarray(weights, dtype=np.float64)
    student_params = {**(params or {}), "classes": classes}
    n = len(texts)
    rng = np.random.default_rng(seed)
    candidates = np.arange(n)
    from_expert = 0.0
    if calibrate_on is not None:
        preferred = np.flatnonzero(np.asarray(calibrate_on, dtype=bool))
        if round(calibration_fraction * len(preferred)) >= MIN_EXPERT_CALIBRATION:
            candidates, from_expert = preferred, 1.0
    n_cal = round(calibration_fraction * len(candidates)) if calibrate else 0
    calibration: dict[str, float] = {"n_calibration": 0.0, "from_expert": 0.0}
    temperature = 1.0
    if n_cal >= 2 and n - n_cal >= 2:
        held = np.sort(rng.choice(candidates, size=n_cal, replace=False))
        keep = np.setdiff1d(np.arange(n), held)
        first = make_student(kind, **student_params)
        first.fit([texts[i] for i in keep], y[keep], w[keep])
        logits = first.decision_function([texts[i] for i in held])
        truth = y[held].argmax(axis=1)
        temperature = _fit_temperature(logits, y[held])
        calibration = {
            "n_calibration": float(n_cal),
            "from_expert": from_expert,
            "ece_before": expected_calibration_error(softmax(logits.copy()), truth),
            "ece_after": expected_calibration_error(softmax(logits / temperature), truth),
            "nll_before": _nll(logits, y[held], 1.0),
            "nll_after": _nll(logits, y[held], temperature),
        }
    student = make_student(kind, **student_params).fit(texts, y, w)
    student.temperature_ = temperature
    return FitResult(student, temperature, calibration, time.perf_counter() - started)


# ----------------------------------------------------------------------------- the whole run


def _run_id(db: Database, settings: Settings, short: str) -> str:
    base = f"{datetime.now():%Y%m%d-%H%M%S}-{short}"
    with db.session() as s:
        taken = set(s.scalars(select(StudentRun.run_id).where(StudentRun.run_id.like(f"{base}%"))).all())
    run_id, n = base, 1
    while run_id in taken or (settings.project_dir / "runs" / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def _student_params(name: str, settings: Settings) -> dict[str, Any]:
    if name.startswith("embed."):
        return {"cache_dir": str(settings.project_dir / "cache" / "embeddings")}
    return {}


def train(
    db: Database,
    project_id: int,
    settings: Settings,
    *,
    kind: str | None = None,
    out_dir: Path | None = None,
    progress: Progress | None = None,
) -> TrainReport:
    """Build the training set, fit and calibrate a student, save it, record the run and its suggestions."""
    started = time.perf_counter()
    name = resolve(kind or settings.student.kind)
    short = name.rsplit(".v", 1)[0]
    data = build_training_set(db, project_id, settings)
    if len(data) == 0:
        raise StateError(NOTHING_TO_TRAIN)
    with db.session() as s:
        all_items = s.execute(select(Item.id, Item.text).where(Item.project_id == project_id).order_by(Item.id)).all()
    total = len(all_items)
    if progress is not None:
        progress(0, total)
    params = _student_params(name, settings)
    teacher_scale, scale_scores = 1.0, dict[str, float]()
    if settings.student.teacher_weight_search:
        teacher_scale, scale_scores = choose_teacher_scale(data, kind=name, params=params, seed=settings.student.seed)
    keep = np.asarray([src == "expert" or teacher_scale > 0 for src in data.sources])
    weights = np.where(np.asarray(data.sources) == "teacher", data.weights * teacher_scale, data.weights)
    texts = [t for t, k in zip(data.texts, keep, strict=True) if k]
    fitted = train_arrays(
        texts,
        data.targets[keep],
        weights[keep],
        data.classes,
        kind=name,
        params=params,
        calibration_fraction=settings.student.calibration_fraction,
        calibrate_on=np.asarray([src == "expert" for src, k in zip(data.sources, keep, strict=True) if k]),
        seed=settings.student.seed,
    )
    student = fitted.student
    proba_chunks: list[NDArray[np.float64]] = []
    seconds_per_item: list[float] = []
    for start in range(0, total, _CHUNK):
        chunk = all_items[start : start + _CHUNK]
        t0 = time.perf_counter()
        proba_chunks.append(student.predict_proba([row.text for row in chunk]))
        seconds_per_item.append((time.perf_counter() - t0) / max(1, len(chunk)))
        if progress is not None:
            progress(min(start + _CHUNK, total), total)
    proba = np.concatenate(proba_chunks) if proba_chunks else np.zeros((0, len(data.classes)))
    if "cache_dir" in params:
        student.set_params(cache_dir=None)  # the cache belongs to this project folder, not to the saved model

    row_of = {row.id: i for i, row in enumerate(all_items)}
    trained = np.asarray([row_of[i] for i in data.item_ids])
    train_proba = proba[trained]
    train_accuracy = float((train_proba.argmax(axis=1) == data.targets.argmax(axis=1)).mean())
    train_ce = float(-(data.targets * np.log(np.clip(train_proba, 1e-12, 1.0))).sum(axis=1).mean())

    run_id = _run_id(db, settings, short)
    path = Path(out_dir) if out_dir is not None else settings.project_dir / "runs" / run_id
    teacher_model = next(iter(data.teacher_models), None)
    prompt_version = next(iter(data.prompt_versions), None)
    fit_seconds = fitted.seconds
    metrics: dict[str, Any] = {
        "train_items": len(texts),
        "teacher_weight_scale": teacher_scale,
        "teacher_weight_scores": scale_scores,
        "expert_items": data.expert_items,
        "teacher_items": data.teacher_items,
        "left_out": data.left_out,
        "expert_answers": data.expert_answers,
        "train_accuracy": train_accuracy,
        "train_cross_entropy": train_ce,
        "temperature": fitted.temperature,
        "calibration": fitted.calibration,
        "fit_seconds": fit_seconds,
    }
    student.metadata = {
        "run_id": run_id,
        "project": settings.name,
        "language": settings.language,
        "data_hash": data.data_hash(),
        "teacher_model": teacher_model,
        "prompt_version": prompt_version,
        "teacher_models": data.teacher_models,
        "prompt_versions": data.prompt_versions,
        "expert_items": data.expert_items,
        "expert_answers": data.expert_answers,
        "teacher_items": data.teacher_items,
        "left_out": data.left_out,
        "recipe": settings.student.model_dump(),
        "metrics": metrics,
    }
    student.save(path)
    seconds = time.perf_counter() - started
    metrics["seconds"] = seconds

    with db.session() as s:
        s.add(StudentRun(project_id=project_id, run_id=run_id, kind=name, path=str(path.resolve()), metrics=metrics))
    classes = data.classes
    for start in range(0, total, _CHUNK):
        rows = []
        latency = seconds_per_item[start // _CHUNK] * 1000.0
        for offset, item in enumerate(all_items[start : start + _CHUNK]):
            p = proba[start + offset]
            best = int(p.argmax())
            rows.append(
                {
                    "item_id": item.id,
                    "agent_kind": "student",
                    "agent": run_id,
                    "prompt_version": "",
                    "label": classes[best],
                    "probabilities": {c: float(v) for c, v in zip(classes, p, strict=True)},
                    "confidence": float(p[best]),
                    "confidence_known": True,
                    "latency_ms": latency,
                }
            )
        with db.session() as s:
            s.execute(insert(Suggestion), rows)
    return TrainReport(
        run_id=run_id,
        kind=name,
        path=path,
        expert_items=data.expert_items,
        teacher_items=data.teacher_items,
        left_out=data.left_out,
        seconds=time.perf_counter() - started,
        temperature=fitted.temperature,
        calibration=fitted.calibration,
    )
