"""The training recipe: expert answers and the teacher's labels -> a calibrated student.

For every pool item, its target is:

1. the experts' answer where there is one: what the task kind makes of its current (not superseded)
   ``label`` and ``verify`` answers (``kind.expert_targets``; for ``classify.v1`` their majority,
   :func:`terakoya.quality.aggregate.majority`, one-hot), with sample weight ``student.expert_weight``
   times the aggregate's confidence;
2. else the teacher's current suggestion — already calibrated on the project's items and, once
   experts have answered, re-calibrated on their answers (:mod:`terakoya.teachers.calibrating`: the measured
   model of the teacher's errors) — when the teacher is trusted (:mod:`terakoya.routing.trust`), confident
   enough (``student.teacher_min_confidence``) or auto-accepted: its probabilities at temperature
   ``student.temperature`` mixed with its one-hot argmax (``student.soft_weight`` of soft);
3. else the item is *unlabelled*: self-training may label it with the student's own confident
   prediction.

Test-split items are never trained on: they are the expert-checked test set.

Which version of the teacher's labels (re-calibrated on the experts' answers, or from before — a correction
fitted on a few dozen answers can shrink a weak teacher to the majority label, and a student trained on
that learns the majority label too), how much they weigh (0, 0.1, 0.3, 1 or 3 times) and whether
self-training helps (and at which confidence) are chosen by k-fold cross-validation on the expert answers
(:func:`fit_recipe`);
the out-of-fold scores of the chosen recipe also fit the student's temperature, bounded, and only
when enough expert items back it. The run is saved under ``runs/<run id>/`` and every item gets a
student suggestion, so routing can look for disagreement between student and teacher.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Row, insert, select

from terakoya.errors import ConfigError, StateError
from terakoya.evaluation.metrics import paired_within, probabilities_ece
from terakoya.kinds import TaskKind, kind_for
from terakoya.kinds.base import ExpertTarget
from terakoya.quality.aggregate import AGGREGATOR, evidence, expert_answers
from terakoya.quality.review import REVIEW
from terakoya.settings import Settings
from terakoya.storage import Database
from terakoya.storage.models import AutoAccept, Item, StudentRun, Suggestion, TrainingLabel
from terakoya.storage.queries import current_suggestion_ids
from terakoya.students import make_student, resolve
from terakoya.students.base import Student, softmax

__all__ = [
    "CORRECTED",
    "MIN_EXPERT_CALIBRATION",
    "NOTHING_TO_TRAIN",
    "UNCORRECTED",
    "FitResult",
    "Recipe",
    "TrainReport",
    "TrainingSet",
    "build_training_set",
    "choose_teacher_scale",
    "fit_recipe",
    "student_params",
    "train",
    "train_arrays",
]

#: the teacher's labels as re-calibrated on the experts' answers, and from before that
CORRECTED, UNCORRECTED = "corrected", "uncorrected"
#: fewer expert items than this in the held-out slice: calibrate on a slice of all items instead
MIN_EXPERT_CALIBRATION = 20
#: out-of-fold expert items needed before the student's temperature is fitted at all
MIN_TEMPERATURE_ITEMS = 30
#: the student's temperature stays within these bounds (a handful of items cannot make it sure of everything)
TEMPERATURE_BOUNDS = (0.5, 3.0)
NOTHING_TO_TRAIN = "nothing to train on: run `terakoya teach` and `terakoya route`/`answer` first"
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
    #: pool items with neither an expert answer nor a usable teacher suggestion
    left_out: int = 0
    #: expert answers behind the expert targets
    expert_answers: int = 0
    #: teacher model -> items it labelled here; prompt version -> items
    teacher_models: dict[str, int] = field(default_factory=dict)
    prompt_versions: dict[str, int] = field(default_factory=dict)
    #: the left-out pool items (text, id): candidates for self-training
    unlabelled_texts: list[str] = field(default_factory=list)
    unlabelled_ids: list[int] = field(default_factory=list)
    #: why the teacher's labels are not used, when they are not
    teacher_dropped: str | None = None
    #: per row, where its target came from: the expert answer ids behind it, the teacher suggestion id,
    #: and "auto_accept" for teacher labels taken at routing time (else the row's source)
    answer_ids: list[list[int]] = field(default_factory=list)
    suggestion_ids: list[int | None] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)
    #: per row, the versioned rule that aggregated its expert answers (None for other rows)
    aggregators: list[str | None] = field(default_factory=list)
    #: ``version`` names which teacher labels ``targets`` and ``suggestion_ids`` hold: ``corrected`` (re-calibrated
    #: on the experts' answers) or ``uncorrected`` (from before); ``other_*`` hold the other version (expert rows
    #: as in ``targets``), None when no teacher row was re-calibrated
    other_targets: NDArray[np.float64] | None = None
    other_ids: list[int | None] | None = None
    version: str = CORRECTED

    def with_version(self, version: str) -> TrainingSet:
        """This set with the teacher's labels of ``version`` (``corrected`` or ``uncorrected``)."""
        if version not in (CORRECTED, UNCORRECTED):
            raise ValueError(f"unknown teacher label version {version!r}: {CORRECTED!r} or {UNCORRECTED!r}")
        if version == self.version or self.other_targets is None or self.other_ids is None:
            return self
        # the two versions trade places: the other one stays at hand under other_*
        return replace(
            self, targets=self.other_targets, suggestion_ids=list(self.other_ids),
            other_targets=self.targets, other_ids=list(self.suggestion_ids), version=version,
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def expert_items(self) -> int:
        return self.sources.count("expert")

    @property
    def teacher_items(self) -> int:
        return self.sources.count("teacher")

    def row_weights(self, teacher_scale: float) -> NDArray[np.float64]:
        """Each row's sample weight when the teacher's labels weigh ``teacher_scale`` times (0: not used)."""
        return self.weights * np.where(np.asarray(self.sources) == "teacher", teacher_scale, 1.0)

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
    calibration: dict[str, float | None]  # as FitResult.calibration
    recipe: dict[str, Any] = field(default_factory=dict)


@dataclass
class FitResult:
    """A fitted, calibrated student and how the calibration went."""

    student: Student
    temperature: float
    #: n_calibration, from_expert, and (when a temperature was fitted) ece_before/after
    #: (:func:`terakoya.evaluation.metrics.probabilities_ece`), nll_before/after
    calibration: dict[str, float | None]
    seconds: float


# ----------------------------------------------------------------------------- the training set


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


def _teacher_target(row: Any, classes: list[str], settings: Settings) -> NDArray[np.float64] | None:
    vector = _teacher_vector(row.probabilities or {}, classes) if row is not None and not row.error else None
    if vector is None:
        return None
    cfg = settings.student
    if cfg.temperature != 1.0:
        with np.errstate(divide="ignore"):
            vector = softmax((np.log(vector) / cfg.temperature)[None, :])[0]
    hard = np.zeros(len(classes))
    hard[int(vector.argmax())] = 1.0
    return np.asarray(cfg.soft_weight * vector + (1.0 - cfg.soft_weight) * hard, dtype=np.float64)


def _teacher_gate(db: Database, project_id: int, settings: Settings) -> str | None:
    """Why the teacher's labels are left out of training, or None when they are used."""
    if not settings.student.use_teacher:
        return "student.use_teacher is false"
    from terakoya.routing.trust import measure_trust

    trust = measure_trust(db, project_id, settings)
    return trust.sentence if trust.chance_level else None


def _read_pool(
    db: Database, project_id: int
) -> tuple[Sequence[Row[int, str]], Sequence[Row[*tuple[Any, ...]]], set[int]]:
    """The pool's (id, text) rows in id order, its current teacher suggestions and its auto-accepted item ids."""
    pool = (Item.project_id == project_id) & (Item.split == "pool")
    with db.session() as s:
        items = s.execute(select(Item.id, Item.text).where(pool).order_by(Item.id)).all()
        newest = current_suggestion_ids(project_id, "teacher", split="pool")
        teacher_rows = s.execute(
            select(
                Suggestion.id,
                Suggestion.item_id,
                Suggestion.agent,
                Suggestion.prompt_version,
                Suggestion.probabilities,
                Suggestion.confidence,
                Suggestion.confidence_known,
                Suggestion.error,
                Suggestion.calibration,
            ).where(Suggestion.id.in_(newest))
        ).all()
        accepted = set(
            s.scalars(select(AutoAccept.item_id).join(Item, AutoAccept.item_id == Item.id).where(pool)).all()
        )
    return items, teacher_rows, accepted


def _uncorrected_rows(db: Database, project_id: int, item_ids: list[int]) -> dict[int, Row[Any]]:
    """Item -> (id, probabilities, error) of its teacher suggestion from before re-calibration."""
    from terakoya.teachers.calibrating import uncorrected_suggestion_ids

    if not item_ids:
        return {}
    with db.session() as s:
        sids = uncorrected_suggestion_ids(project_id, split="pool").subquery()
        rows = s.execute(
            select(Suggestion.item_id, Suggestion.id, Suggestion.probabilities, Suggestion.error).join(
                sids, Suggestion.id == sids.c.sid
            )
        ).all()
    wanted = set(item_ids)
    return {int(row.item_id): row for row in rows if row.item_id in wanted}


def _add_uncorrected(
    db: Database, project_id: int, out: TrainingSet, teacher: dict[int, Any], settings: Settings
) -> None:
    """Fill ``out.other_*`` with the uncorrected version where some teacher row is re-calibrated and its earlier
    version is stored."""
    from terakoya.teachers.calibrating import is_uncorrected

    rows = [i for i, sid in enumerate(out.suggestion_ids) if sid is not None]
    corrected = [i for i in rows if not is_uncorrected(teacher[out.item_ids[i]].calibration)]
    if not corrected:
        return
    earlier = _uncorrected_rows(db, project_id, [out.item_ids[i] for i in corrected])
    targets = out.targets.copy()
    ids = list(out.suggestion_ids)
    changed = False
    for i in corrected:
        row = earlier.get(out.item_ids[i])
        vector = _teacher_target(row, out.classes, settings) if row is not None else None
        if row is None or vector is None:
            continue  # no earlier version: the row keeps its corrected label in both versions
        targets[i], ids[i] = vector, int(row.id)
        changed = True
    if changed:
        out.other_targets, out.other_ids = targets, ids


def _reviewed(
    db: Database, project_id: int, classes: list[str], answers: dict[int, list[tuple[int, str]]]
) -> dict[int, ExpertTarget]:
    """Pool items with a standing review decision: the decided label wins over the answers' aggregate."""
    from terakoya.quality.review import reviewed_labels

    with db.session() as s:
        decided = reviewed_labels(s, project_id)
    out: dict[int, ExpertTarget] = {}
    for item_id, (answer_id, label) in decided.items():
        if label in classes:
            ids = (answer_id, *(a for a, _ in answers.get(item_id, [])))
            out[item_id] = ExpertTarget(label, {c: float(c == label) for c in classes}, 1.0, ids, REVIEW)
    return out


def build_training_set(
    db: Database, project_id: int, settings: Settings, *, max_expert: int | None = None
) -> TrainingSet:
    """Targets for the pool (see the module docstring). ``max_expert`` keeps only the first N expert-labelled
    items (in the order they were first answered); the others fall back to the teacher."""
    kind = kind_for(settings)
    classes = list(kind.labels(settings))
    if len(classes) < 2:
        raise ConfigError(
            f"the project declares {len(classes)} label(s); a student needs at least two: "
            "add [[labels]] entries with name = ... to terakoya.toml"
        )
    cfg = settings.student
    answers = expert_answers(db, project_id, classes)
    dropped = _teacher_gate(db, project_id, settings)
    items, teacher_rows, accepted = _read_pool(db, project_id)
    expert_order = list(answers)
    if max_expert is not None:
        expert_order = expert_order[: max(0, max_expert)]
    experts = kind.expert_targets(evidence(db, project_id, {i: answers[i] for i in expert_order}), settings)
    experts.update(_reviewed(db, project_id, classes, answers))
    teacher = {row.item_id: row for row in teacher_rows} if dropped is None else {}

    out = TrainingSet([], np.zeros((0, len(classes))), np.zeros(0), [], [], list(classes), teacher_dropped=dropped)
    targets: list[NDArray[np.float64]] = []
    weights: list[float] = []
    models: Counter[str] = Counter()
    prompts: Counter[str] = Counter()
    for item_id, text in items:
        if item_id in experts:
            expert = experts[item_id]
            target = np.asarray([expert.distribution.get(c, 0.0) for c in classes], dtype=np.float64)
            source, weight = "expert", cfg.expert_weight * expert.confidence
            out.expert_answers += len(expert.answer_ids)
            out.answer_ids.append(list(expert.answer_ids))
            out.aggregators.append(expert.aggregator)
            out.suggestion_ids.append(None)
            out.origins.append(REVIEW if expert.aggregator == REVIEW else "expert")
        else:
            row = teacher.get(item_id)
            vector = _teacher_target(row, classes, settings) if row is not None else None
            confident = row is not None and (
                item_id in accepted
                or (
                    row.confidence_known and row.confidence is not None and row.confidence >= cfg.teacher_min_confidence
                )
            )
            if row is None or vector is None or not confident:
                out.left_out += 1
                out.unlabelled_texts.append(text)
                out.unlabelled_ids.append(item_id)
                continue
            target, source, weight = vector, "teacher", 1.0
            out.answer_ids.append([])
            out.suggestion_ids.append(int(row.id))
            out.origins.append("auto_accept" if item_id in accepted else "teacher")
            out.aggregators.append(None)
            models[row.agent] += 1
            prompts[row.prompt_version or ""] += 1
        out.texts.append(text)
        targets.append(target)
        weights.append(weight)
        out.sources.append(source)
        out.item_ids.append(item_id)
    out.targets = np.asarray(targets, dtype=np.float64).reshape(len(out.texts), len(classes))
    out.weights = np.asarray(weights, dtype=np.float64)
    out.teacher_models = dict(models.most_common())
    out.prompt_versions = dict(prompts.most_common())
    _add_uncorrected(db, project_id, out, teacher, settings)
    return out


# ----------------------------------------------------------------------------- choosing the recipe


#: candidate weights of a teacher label (an expert label weighs ``student.expert_weight``, 3 by default);
#: 3 was added on the benchmark: +2.0 points with the simulated 60 % teacher at 10 %, +0.5 with the 85 %
#: one, -0.5 and -0.2 with the real local teacher at 10 % and 5 % (FPB sample, 3 seeds)
TEACHER_SCALES = (0.0, 0.1, 0.3, 1.0, 3.0)
#: confidence thresholds tried for self-training (None: no self-training)
SELF_TRAINING_THRESHOLDS = (None, 0.9, 0.7)
MIN_EXPERT_FOR_SEARCH = 20
#: sample weight of a self-training target (the student's own confident prediction)
PSEUDO_WEIGHT = 1.0


@dataclass
class Recipe:
    """What cross-validation chose: the teacher's label version and weight, self-training, the temperature."""

    teacher_scale: float = 1.0
    #: ``corrected`` (re-calibrated on the experts' answers) or ``uncorrected``
    teacher_version: str = CORRECTED
    self_training: float | None = None
    temperature: float = 1.0
    #: cross-validated accuracy on the expert items of each candidate ("scale=0.3", "self=0.9", ...)
    scores: dict[str, float] = field(default_factory=dict)
    cv_accuracy: float | None = None
    calibration: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _fit_rows(
    data: TrainingSet, rows: NDArray[np.intp], scale: float, kind: str, params: dict[str, Any],
    extra: tuple[list[str], NDArray[np.float64]] | None = None,
) -> Student:  # fmt: skip
    sources = np.asarray(data.sources)
    use = rows if scale > 0 else rows[sources[rows] == "expert"]
    texts = [data.texts[i] for i in use]
    targets = data.targets[use]
    weights = data.row_weights(scale)[use]
    if extra is not None and extra[0]:
        texts = texts + extra[0]
        targets = np.vstack([targets, extra[1]])
        weights = np.concatenate([weights, np.full(len(extra[0]), PSEUDO_WEIGHT)])
    student = make_student(kind, classes=list(data.classes), **params)
    student.fit(texts, targets, sample_weight=weights)
    return student


def _confident(student: Student, texts: list[str], threshold: float) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """The positions of the texts the student is at least ``threshold`` sure of, with its one-hot answers."""
    if not texts:
        return np.zeros(0, dtype=np.intp), np.zeros((0, len(student.classes_)))
    proba = student.predict_proba(texts)
    keep = np.flatnonzero(proba.max(axis=1) >= threshold)
    hard = np.zeros((len(keep), proba.shape[1]))
    hard[np.arange(len(keep)), proba[keep].argmax(axis=1)] = 1.0
    return keep, hard


def _pseudo_labels(student: Student, texts: list[str], threshold: float) -> tuple[list[str], NDArray[np.float64]]:
    """The texts the student is at least ``threshold`` sure of, with its one-hot answers."""
    keep, hard = _confident(student, texts, threshold)
    return [texts[i] for i in keep], hard


def _cv_scores(
    data: TrainingSet, kind: str, params: dict[str, Any], scale: float, threshold: float | None, folds: int, seed: int
) -> tuple[float, NDArray[np.float64]]:
    """Cross-validated accuracy on the expert items, and their out-of-fold decision values."""
    sources = np.asarray(data.sources)
    expert_idx = np.flatnonzero(sources == "expert")
    teacher_idx = np.flatnonzero(sources == "teacher")
    fold_of = np.random.default_rng(seed).permutation(len(expert_idx)) % folds
    truth = data.targets.argmax(axis=1)
    logits = np.zeros((len(expert_idx), len(data.classes)))
    for fold in range(folds):
        held = expert_idx[fold_of == fold]
        rows = np.concatenate([expert_idx[fold_of != fold], teacher_idx])
        student = _fit_rows(data, rows, scale, kind, params)
        if threshold is not None:
            extra = _pseudo_labels(student, data.unlabelled_texts, threshold)
            student = _fit_rows(data, rows, scale, kind, params, extra)
        logits[fold_of == fold] = student.decision_function([data.texts[i] for i in held])
    accuracy = float((logits.argmax(axis=1) == truth[expert_idx]).mean())
    return accuracy, logits


def _scale_search(
    data: TrainingSet, kind: str, params: dict[str, Any], scales: Sequence[float], folds: int, seed: int
) -> tuple[float, dict[str, float], NDArray[np.float64]]:
    """The teacher's weight by cross-validation, with the one-standard-error rule towards the larger weight.

    Each candidate is scored on the same held-out expert items. The chosen weight is the largest whose
    accuracy is within one standard error (of the paired per-item difference) of the best one: with tens of
    expert items, most of them routed because the teacher looked unsure, the plain maximum picked a small
    weight by chance and lost several points to using the teacher fully (bench/: 10 % budget, 80 items).
    """
    truth = data.targets.argmax(axis=1)[np.asarray(data.sources) == "expert"]
    runs = {s: _cv_scores(data, kind, params, s, None, folds, seed) for s in scales}
    right = {s: (logits.argmax(axis=1) == truth).astype(float) for s, (_, logits) in runs.items()}
    best = max(scales, key=lambda s: (right[s].mean(), s))
    chosen = max(s for s in scales if paired_within(right[best] - right[s], 1.0))
    return chosen, {f"scale={s:g}": float(right[s].mean()) for s in scales}, runs[chosen][1]


def choose_teacher_scale(
    data: TrainingSet, *, kind: str, params: dict[str, Any] | None = None, seed: int = 0, folds: int = 3
) -> tuple[float, dict[str, float]]:
    """How much the teacher's labels should weigh, chosen on the expert answers by k-fold cross-validation.

    A teacher that clearly hurts gets 0; with fewer than MIN_EXPERT_FOR_SEARCH expert items (or no teacher
    items) the scale stays 1. Within one standard error the larger scale wins (see ``_scale_search``).
    """
    sources = np.asarray(data.sources)
    if (sources == "expert").sum() < MIN_EXPERT_FOR_SEARCH or not (sources == "teacher").any():
        return 1.0, {}
    scale, scores, _ = _scale_search(data, kind, params or {}, TEACHER_SCALES, folds, seed)
    return scale, scores


def fit_recipe(
    data: TrainingSet, *, kind: str, params: dict[str, Any] | None = None, settings: Settings, folds: int = 3
) -> Recipe:
    """Choose the teacher's weight, self-training and the temperature by cross-validation on the expert items."""
    params = params or {}
    cfg = settings.student
    recipe = Recipe()
    sources = np.asarray(data.sources)
    n_expert = int((sources == "expert").sum())
    has_teacher = bool((sources == "teacher").any())
    if data.teacher_dropped:
        recipe.notes.append(f"the teacher's labels were left out: {data.teacher_dropped}")
    if n_expert < MIN_EXPERT_FOR_SEARCH or len(set(data.targets[sources == "expert"].argmax(axis=1))) < 2:
        recipe.notes.append(
            f"{n_expert} expert items: too few to cross-validate (at least {MIN_EXPERT_FOR_SEARCH}); "
            "the teacher keeps its full weight, no self-training, no temperature"
        )
        return recipe
    seed = cfg.seed
    candidates = TEACHER_SCALES if has_teacher and cfg.teacher_weight_search else (1.0,)
    scale, scores, logits = _scale_search(data, kind, params, candidates, folds, seed)
    recipe.scores.update(scores)
    if has_teacher and data.other_targets is not None and data.version == CORRECTED:
        # the same search on the teacher's labels from before re-calibration; it wins only when strictly better
        other = data.with_version(UNCORRECTED)
        u_scale, u_scores, u_logits = _scale_search(other, kind, params, candidates, folds, seed)
        recipe.scores.update({f"{UNCORRECTED} {k}": v for k, v in u_scores.items()})
        kept, before = scores[f"scale={scale:g}"], u_scores[f"scale={u_scale:g}"]
        if before > kept:
            data, scale, scores, logits = other, u_scale, u_scores, u_logits
            recipe.teacher_version = UNCORRECTED
            recipe.notes.append(
                "the teacher's labels from before re-calibration on the experts' answers were used: the student "
                f"learned better from them in cross-validation ({before:.1%} vs {kept:.1%})"
            )
    best: tuple[float, float, float | None, NDArray[np.float64]] = (scores[f"scale={scale:g}"], scale, None, logits)
    # self-training only has something to add where items are left without a target
    if cfg.self_training and data.unlabelled_texts and (best[1] == 0 or not has_teacher):
        for threshold in SELF_TRAINING_THRESHOLDS[1:]:
            acc, logits = _cv_scores(data, kind, params, best[1], threshold, folds, seed)
            recipe.scores[f"self={threshold:g}"] = acc
            if acc > best[0]:
                best = (acc, best[1], threshold, logits)
    recipe.cv_accuracy, recipe.teacher_scale, recipe.self_training, logits = best
    truth = data.targets[sources == "expert"].argmax(axis=1)
    recipe.calibration = {"n_calibration": float(len(truth)), "from_expert": 1.0}
    if len(truth) >= MIN_TEMPERATURE_ITEMS:
        onehot = np.zeros_like(logits)
        onehot[np.arange(len(truth)), truth] = 1.0
        recipe.temperature = _fit_temperature(logits, onehot, bounds=TEMPERATURE_BOUNDS)
        recipe.calibration.update(
            ece_before=probabilities_ece(softmax(logits.copy()), truth),
            ece_after=probabilities_ece(softmax(logits / recipe.temperature), truth),
        )
    else:
        recipe.notes.append(
            f"{len(truth)} out-of-fold expert items: too few to fit a temperature (at least {MIN_TEMPERATURE_ITEMS})"
        )
    return recipe


def _nll(logits: NDArray[np.float64], targets: NDArray[np.float64], temperature: float) -> float:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-(targets * log_p).sum(axis=1).mean())


def _fit_temperature(
    logits: NDArray[np.float64],
    targets: NDArray[np.float64],
    *,
    bounds: tuple[float, float] = (math.exp(-3), math.exp(3)),
) -> float:
    """The temperature within ``bounds`` that minimises the NLL of ``logits / T`` against ``targets``."""
    from scipy.optimize import minimize_scalar

    low, high = (math.log(b) for b in bounds)
    result = minimize_scalar(lambda log_t: _nll(logits, targets, math.exp(log_t)), bounds=(low, high), method="bounded")
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
    calibration: dict[str, float | None] = {"n_calibration": 0.0, "from_expert": 0.0}
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
            "ece_before": probabilities_ece(softmax(logits.copy()), truth),
            "ece_after": probabilities_ece(softmax(logits / temperature), truth),
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


def student_params(name: str, settings: Settings) -> dict[str, Any]:
    """Hyper-parameters the project implies for student ``name`` (the embed student's features for its language
    and ``student.features``, the embedding cache): what training and the report's experts-alone student use."""
    from terakoya.students import student_params_for

    return student_params_for(
        name, language=settings.language, project_dir=settings.project_dir, features=settings.student.features
    )


#: students that ``student.kind = "auto"`` chooses among, unless ``student.auto_candidates`` says otherwise
AUTO = "auto"


def _choose_kind(data: TrainingSet, settings: Settings) -> tuple[str, dict[str, Any]]:
    """``student.kind = "auto"``: the candidate with the best cross-validated accuracy on the expert items."""
    from terakoya.students import choose_student

    cfg = settings.student
    experts = np.asarray([src == "expert" for src in data.sources])
    if experts.sum() < MIN_EXPERT_FOR_SEARCH:
        first = resolve(cfg.auto_candidates[0])
        return first, {"chosen": first, "reason": f"{int(experts.sum())} expert items: too few to compare students"}
    name, scores = choose_student(
        data.texts, data.targets, data.weights, data.classes, candidates=cfg.auto_candidates,
        time_limit_s=cfg.auto_time_limit_s, seed=cfg.seed, language=settings.language, eval_mask=experts,
        project_dir=settings.project_dir, features=cfg.features,
    )  # fmt: skip
    return name, {"chosen": name, "scores": {k: v.as_dict() for k, v in scores.items()}}


def _record_training_labels(
    db: Database,
    run_pk: int,
    data: TrainingSet,
    teacher_scale: float,
    pseudo: tuple[NDArray[np.intp], NDArray[np.float64]],
    *,
    aggregator: str = AGGREGATOR,
) -> None:
    """One ``training_labels`` row per target the student was fitted on (rows weighted 0 are not written)."""
    classes = data.classes

    def target_of(vector: NDArray[np.float64]) -> tuple[str, dict[str, float]]:
        return classes[int(vector.argmax())], {c: round(float(v), 6) for c, v in zip(classes, vector, strict=True)}

    rows: list[dict[str, Any]] = []
    weights = data.row_weights(teacher_scale)
    for i, item_id in enumerate(data.item_ids):
        source = data.sources[i]
        weight = float(weights[i])
        if weight <= 0:
            continue
        label, target = target_of(data.targets[i])
        rows.append(
            {
                "student_run_id": run_pk, "item_id": item_id, "label": label, "target": target,
                "source": data.origins[i] if data.origins else source, "weight": weight,
                "answer_ids": data.answer_ids[i] if data.answer_ids else [],
                "suggestion_id": data.suggestion_ids[i] if data.suggestion_ids else None,
                "aggregator": (data.aggregators[i] if data.aggregators else aggregator) if source == "expert" else None,
            }
        )  # fmt: skip
    for position, vector in zip(pseudo[0], pseudo[1], strict=True):
        label, target = target_of(vector)
        rows.append(
            {
                "student_run_id": run_pk, "item_id": data.unlabelled_ids[int(position)], "label": label,
                "target": target, "source": "self_training", "weight": PSEUDO_WEIGHT, "answer_ids": [],
                "suggestion_id": None, "aggregator": None,
            }
        )  # fmt: skip
    for start in range(0, len(rows), _CHUNK):
        with db.session() as s:
            s.execute(insert(TrainingLabel), rows[start : start + _CHUNK])


def _student_name(wanted: str, settings: Settings) -> tuple[str, TaskKind]:
    """The registered student that ``wanted`` names (or "auto"), checked against the project's task kind."""
    name = AUTO if wanted == AUTO else resolve(wanted)
    task_kind = kind_for(settings)
    if wanted != AUTO and name.rsplit(".v", 1)[0] not in task_kind.students:
        raise ConfigError(
            f"student {name!r} cannot learn task kind {task_kind.name}; set student.kind to one of: "
            f"{', '.join(task_kind.students)}"
        )
    return name, task_kind


_PseudoRows = tuple[NDArray[np.intp], NDArray[np.float64]]


def _fit(
    data: TrainingSet, name: str, params: dict[str, Any], settings: Settings
) -> tuple[Recipe, FitResult, _PseudoRows, TrainingSet]:
    """Choose the recipe by cross-validation, then fit the student on every row (and its own confident labels);
    returns the training set with the teacher label version the recipe chose."""
    fit_started = time.perf_counter()
    recipe = fit_recipe(data, kind=name, params=params, settings=settings)
    data = data.with_version(recipe.teacher_version)
    every = np.arange(len(data))
    student = _fit_rows(data, every, recipe.teacher_scale, name, params)
    pseudo_rows: _PseudoRows = (np.zeros(0, dtype=np.intp), np.zeros((0, 0)))
    if recipe.self_training is not None:
        pseudo_rows = _confident(student, data.unlabelled_texts, recipe.self_training)
        extra = ([data.unlabelled_texts[i] for i in pseudo_rows[0]], pseudo_rows[1])
        student = _fit_rows(data, every, recipe.teacher_scale, name, params, extra)
    student.temperature_ = recipe.temperature
    fitted = FitResult(student, recipe.temperature, recipe.calibration, time.perf_counter() - fit_started)
    return recipe, fitted, pseudo_rows, data


def _predict_all(
    student: Student, all_items: Sequence[Any], n_classes: int, progress: Progress | None
) -> tuple[NDArray[np.float64], list[float]]:
    """The student's probabilities for every item, and its seconds per item for each chunk."""
    total = len(all_items)
    proba_chunks: list[NDArray[np.float64]] = []
    seconds_per_item: list[float] = []
    for start in range(0, total, _CHUNK):
        chunk = all_items[start : start + _CHUNK]
        t0 = time.perf_counter()
        proba_chunks.append(student.predict_proba([row.text for row in chunk]))
        seconds_per_item.append((time.perf_counter() - t0) / max(1, len(chunk)))
        if progress is not None:
            progress(min(start + _CHUNK, total), total)
    proba = np.concatenate(proba_chunks) if proba_chunks else np.zeros((0, n_classes))
    return proba, seconds_per_item


def _run_metrics(
    data: TrainingSet, recipe: Recipe, fitted: FitResult, choice: dict[str, Any], pseudo: int,
    proba: NDArray[np.float64], all_items: Sequence[Any],
) -> dict[str, Any]:  # fmt: skip
    """The run's metrics: the recipe chosen, the data behind it and how well the student fits its targets."""
    texts = [t for t, src in zip(data.texts, data.sources, strict=True) if src == "expert" or recipe.teacher_scale > 0]
    row_of = {row.id: i for i, row in enumerate(all_items)}
    trained = np.asarray([row_of[i] for i in data.item_ids])
    train_proba = proba[trained]
    train_accuracy = float((train_proba.argmax(axis=1) == data.targets.argmax(axis=1)).mean())
    train_ce = float(-(data.targets * np.log(np.clip(train_proba, 1e-12, 1.0))).sum(axis=1).mean())
    return {
        "train_items": len(texts) + pseudo,
        "teacher_weight_scale": recipe.teacher_scale,
        "teacher_label_version": recipe.teacher_version,
        "teacher_weight_scores": recipe.scores,
        "cv_accuracy": recipe.cv_accuracy,
        # what the experts' answers alone achieve: the bar a teacher must clear to be trusted
        "cv_accuracy_experts_only": recipe.scores.get("scale=0"),
        "student_choice": choice,
        "self_training_threshold": recipe.self_training,
        "self_training_items": pseudo,
        "teacher_dropped": data.teacher_dropped,
        "recipe_notes": recipe.notes,
        "expert_items": data.expert_items,
        "teacher_items": data.teacher_items,
        "left_out": data.left_out,
        "expert_answers": data.expert_answers,
        "train_accuracy": train_accuracy,
        "train_cross_entropy": train_ce,
        "temperature": fitted.temperature,
        "calibration": fitted.calibration,
        "fit_seconds": fitted.seconds,
    }


def _student_metadata(run_id: str, settings: Settings, data: TrainingSet, metrics: dict[str, Any]) -> dict[str, Any]:
    """What the saved student carries about its run, so that ``load`` needs no side file."""
    return {
        "run_id": run_id,
        "project": settings.name,
        "task_kind": settings.task.kind,
        "language": settings.language,
        "data_hash": data.data_hash(),
        "teacher_model": next(iter(data.teacher_models), None),
        "prompt_version": next(iter(data.prompt_versions), None),
        "teacher_models": data.teacher_models,
        "prompt_versions": data.prompt_versions,
        "expert_items": data.expert_items,
        "expert_answers": data.expert_answers,
        "teacher_items": data.teacher_items,
        "left_out": data.left_out,
        "recipe": settings.student.model_dump(),
        "metrics": metrics,
    }


def _record_run(db: Database, project_id: int, run_id: str, name: str, path: Path, metrics: dict[str, Any]) -> int:
    """The ``student_runs`` row; returns its primary key."""
    with db.session() as s:
        run = StudentRun(project_id=project_id, run_id=run_id, kind=name, path=str(path.resolve()), metrics=metrics)
        s.add(run)
        s.flush()
        return run.id


def _record_suggestions(
    db: Database, run_id: str, all_items: Sequence[Any], proba: NDArray[np.float64], seconds_per_item: list[float],
    classes: list[str],
) -> None:  # fmt: skip
    """One student suggestion per item of the project, written a chunk at a time."""
    for start in range(0, len(all_items), _CHUNK):
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
    name, task_kind = _student_name(kind or settings.student.kind, settings)
    from terakoya.teachers.calibrating import calibrate_teacher

    calibrate_teacher(db, project_id, settings)  # re-calibrated on the newest expert answers
    data = build_training_set(db, project_id, settings)
    if len(data) == 0:
        raise StateError(NOTHING_TO_TRAIN)
    choice: dict[str, Any] = {}
    if name == AUTO:
        name, choice = _choose_kind(data, settings)
    short = name.rsplit(".v", 1)[0]
    with db.session() as s:
        all_items = s.execute(select(Item.id, Item.text).where(Item.project_id == project_id).order_by(Item.id)).all()
    total = len(all_items)
    if progress is not None:
        progress(0, total)
    params = student_params(name, settings)
    recipe, fitted, pseudo_rows, data = _fit(data, name, params, settings)
    pseudo = len(pseudo_rows[0])
    student = fitted.student
    proba, seconds_per_item = _predict_all(student, all_items, len(data.classes), progress)
    if "cache_dir" in params:
        student.set_params(cache_dir=None)  # the cache belongs to this project folder, not to the saved model
    metrics = _run_metrics(data, recipe, fitted, choice, pseudo, proba, all_items)

    run_id = _run_id(db, settings, short)
    path = Path(out_dir) if out_dir is not None else settings.project_dir / "runs" / run_id
    student.metadata = _student_metadata(run_id, settings, data, metrics)
    student.save(path)
    metrics["seconds"] = time.perf_counter() - started

    run_pk = _record_run(db, project_id, run_id, name, path, metrics)
    _record_training_labels(db, run_pk, data, recipe.teacher_scale, pseudo_rows, aggregator=task_kind.aggregator)
    _record_suggestions(db, run_id, all_items, proba, seconds_per_item, data.classes)
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
        recipe={
            "teacher_scale": recipe.teacher_scale,
            "teacher_version": recipe.teacher_version,
            "self_training": recipe.self_training,
            "pseudo_labels": pseudo,
            "cv_accuracy": recipe.cv_accuracy,
            "notes": recipe.notes,
        },
    )
