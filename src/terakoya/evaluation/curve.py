"""The learning curve: student quality on the test split against the number of expert items it was trained with.

Each point retrains the student (same kind and hyper-parameters as the one evaluated) on the training
set that ``terakoya train`` builds, keeping only the first ``k`` expert items in the order they were
answered (the rest fall back to the teacher). Where the pool carries recorded labels, a second curve
simulates random routing: the teacher-only training set plus ``k`` pool items drawn uniformly at random
(seeded), each with its recorded label standing in for an expert's answer.

The temperature is not fitted here: it does not change which label wins, so accuracy and macro-F1
are the same without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select

from terakoya.errors import DataError, StudentError
from terakoya.evaluation.gather import Gathered, RunRow
from terakoya.evaluation.metrics import classification_metrics
from terakoya.evaluation.sections import CurvePoint, LearningCurve, RandomCurve
from terakoya.settings import Settings
from terakoya.storage import Database
from terakoya.storage.models import Item, RouteRun

if TYPE_CHECKING:
    from terakoya.training import TrainingSet

__all__ = ["RANDOM_LABEL", "curve_points", "curve_steps", "learning_curve_data"]

RANDOM_LABEL = "random routing (simulated from recorded labels)"
NO_CHOSEN_CURVE = "no chosen-routing curve to compare"


def curve_points(n_expert: int, points: int) -> list[int]:
    """About ``points`` expert-item counts from 0 to ``n_expert``, evenly spaced, no repeats."""
    return sorted({round(x) for x in np.linspace(0, n_expert, max(points, 2))})


def curve_steps(points: int) -> int:
    """Progress ticks the curve reports: one per retrained student, at most, for both curves."""
    return 2 * max(points, 2)


def _student_recipe(student: Any, settings: Settings) -> tuple[str, dict[str, Any]]:
    """The kind and hyper-parameters to retrain with: the evaluated student's, else the project's."""
    kind = str(getattr(student, "kind", "") or "")
    if kind:
        params = {k: v for k, v in student.get_params().items() if k != "classes"}
    else:
        from terakoya.students import make_student, resolve

        kind = resolve(settings.student.kind)
        params = {k: v for k, v in make_student(kind).get_params().items() if k != "classes"}
    if "cache_dir" in params:
        # embeddings are shared by every retrained point through the project's cache
        params["cache_dir"] = str(settings.project_dir / "cache" / "embeddings")
    return kind, params


def _label_version(student: Any) -> str:
    """The teacher label version (``corrected`` / ``uncorrected``) the evaluated student's recipe chose."""
    metadata = getattr(student, "metadata", None) or {}
    return str((metadata.get("metrics") or {}).get("teacher_label_version") or "corrected")


def _routing_label(db: Database, project_id: int) -> str:
    with db.session() as s:
        strategies = sorted(set(s.scalars(select(RouteRun.strategy).where(RouteRun.project_id == project_id)).all()))
    if not strategies:
        return "expert answers in the order given"
    return f"{' + '.join(strategies)} routing (expert answers in the order given)"


class _Ticks:
    """At most ``budget`` progress ticks: one per retrained student, the rest when the curve is done."""

    def __init__(self, budget: int, tick: Callable[[int], None]) -> None:
        self.budget, self.used, self.tick = budget, 0, tick

    def step(self) -> None:
        if self.used < self.budget:
            self.used += 1
            self.tick(1)

    def finish(self) -> None:
        if self.budget > self.used:
            self.tick(self.budget - self.used)


class _Scorer:
    """Retrain a student of one kind on a training set and score it on the test split (no temperature)."""

    def __init__(self, gathered: Gathered, kind: str, params: dict[str, Any], seed: int) -> None:
        self.gathered, self.kind, self.params, self.seed = gathered, kind, params, seed

    def fit_score(self, expert_items: int, texts: list[str], targets: Any, weights: Any) -> CurvePoint | str:
        """The point, or why the student could not be trained."""
        from terakoya.training import train_arrays

        g = self.gathered
        try:
            fitted = train_arrays(
                texts, targets, weights, g.classes, kind=self.kind, params=self.params, calibrate=False,
                seed=self.seed,
            )  # fmt: skip
        except (DataError, StudentError) as exc:
            return str(exc)
        raw = np.asarray(fitted.student.predict_proba([t.text for t in g.test]), dtype=float)
        names = [str(c) for c in fitted.student.classes_]
        pred = [names[i] for i in raw.argmax(axis=1)]
        m = classification_metrics([t.gold for t in g.test], None, pred, g.classes)
        return CurvePoint(expert_items, m["accuracy"], m["macro_f1"], len(texts))


def learning_curve_data(
    db: Database,
    project_id: int,
    settings: Settings,
    gathered: Gathered,
    *,
    run: RunRow | None,
    student: Any,
    points: int,
    tick: Callable[[int], None],
) -> LearningCurve:
    """Both curves: the chosen routing's ``points``, and the random-routing baseline as ``random``."""
    from terakoya.training import build_training_set

    ticks = _Ticks(curve_steps(points), tick)
    version = _label_version(student)
    full = build_training_set(db, project_id, settings).with_version(version)
    n_expert = full.expert_items
    out = LearningCurve(available=False, label=_routing_label(db, project_id), expert_items=n_expert)
    if n_expert == 0:
        out.random = RandomCurve(available=False, reason=NO_CHOSEN_CURVE)
        out.reason = (
            "no pool item has an expert answer yet, so there is nothing to add along the curve: "
            "run `terakoya route`, then answer the routed items"
        )
        ticks.finish()
        return out
    kind, params = _student_recipe(student, settings)
    out.student_kind = kind
    scorer = _Scorer(gathered, kind, params, settings.student.seed)
    skipped: list[str] = []
    teacher_only: CurvePoint | None = None
    for k in curve_points(n_expert, points):
        ts = full if k == n_expert else build_training_set(db, project_id, settings, max_expert=k).with_version(version)
        scored = scorer.fit_score(ts.expert_items, ts.texts, ts.targets, ts.weights)
        ticks.step()
        if isinstance(scored, str):
            skipped.append(f"{k} expert items: {scored}")
            continue
        out.points.append(scored)
        if k == 0:
            teacher_only = scored
    out.available = bool(out.points)
    out.skipped = skipped or None
    if not out.available:
        out.reason = "no point could be trained: " + "; ".join(skipped)
        out.random = RandomCurve(available=False, reason=NO_CHOSEN_CURVE)
    else:
        out.note = (
            f"each point retrains the student ({kind}) on the teacher's labels plus the first k expert items; "
            "the temperature is left out (it does not change accuracy or macro-F1)"
        )
        out.random = _random_curve(
            db, project_id, settings, gathered, n_expert, points, teacher_only, scorer, ticks, version
        )
    ticks.finish()
    return out


def _random_curve(
    db: Database,
    project_id: int,
    settings: Settings,
    gathered: Gathered,
    n_expert: int,
    points: int,
    teacher_only: CurvePoint | None,
    scorer: _Scorer,
    ticks: _Ticks,
    version: str,
) -> RandomCurve:
    from terakoya.training import build_training_set

    out = RandomCurve(available=False, label=RANDOM_LABEL)
    if gathered.pool_with_gold == 0:
        out.reason = (
            "the pool items carry no recorded labels (Item.gold_label), so random routing cannot be simulated "
            "without asking experts again; import the pool with --label-column to compare"
        )
        return out
    candidates = _pool_labels(db, project_id, gathered.classes)
    if not candidates:
        out.reason = "no recorded pool label is one of the project's labels, so random routing cannot be simulated"
        return out
    order = np.random.default_rng(settings.routing.seed).permutation(len(candidates))
    base = build_training_set(db, project_id, settings, max_expert=0).with_version(version)
    skipped: list[str] = []
    for k in curve_points(n_expert, points):
        if k == 0 and teacher_only is not None:
            out.points.append(teacher_only)
            continue
        drawn = [candidates[i] for i in order[: min(k, len(candidates))]]
        texts, targets, weights = _with_drawn(db, base, drawn, gathered.classes, settings.student.expert_weight)
        scored = scorer.fit_score(len(drawn), texts, targets, weights)
        ticks.step()
        if isinstance(scored, str):
            skipped.append(f"{k} expert items: {scored}")
            continue
        out.points.append(scored)
    out.available = bool(out.points)
    out.skipped = skipped or None
    if not out.available:
        out.reason = "no point could be trained: " + "; ".join(skipped)
    out.seed = settings.routing.seed
    out.note = (
        f"{len(candidates)} pool items with recorded labels to draw from (seed routing.seed={settings.routing.seed}); "
        "a recorded label stands in for the expert's answer, while the chosen-routing curve uses the answers "
        "experts actually gave"
    )
    return out


def _pool_labels(db: Database, project_id: int, classes: list[str]) -> list[tuple[int, str]]:
    """(item id, recorded label) of the pool items whose recorded label is one of ``classes``, by id."""
    with db.session() as s:
        labelled = s.execute(
            select(Item.id, Item.gold_label)
            .where(Item.project_id == project_id, Item.split == "pool", Item.gold_label.is_not(None))
            .order_by(Item.id)
        ).all()
    return [(row.id, row.gold_label) for row in labelled if row.gold_label in classes]


def _with_drawn(
    db: Database, base: TrainingSet, drawn: list[tuple[int, str]], classes: list[str], weight: float
) -> tuple[list[str], Any, Any]:
    """``base`` (the teacher-only training set) with the drawn items' recorded labels as expert answers."""
    index = {c: i for i, c in enumerate(classes)}
    row_of = {item_id: i for i, item_id in enumerate(base.item_ids)}
    texts, targets, weights = list(base.texts), base.targets.copy(), base.weights.copy()
    extra_ids = [item_id for item_id, _ in drawn if item_id not in row_of]
    with db.session() as s:
        text_of = dict(s.execute(select(Item.id, Item.text).where(Item.id.in_(extra_ids))).all()) if extra_ids else {}
    extra_targets, extra_weights = [], []
    for item_id, label in drawn:
        one_hot = np.zeros(len(index))
        one_hot[index[label]] = 1.0
        if item_id in row_of:
            targets[row_of[item_id]] = one_hot
            weights[row_of[item_id]] = weight
        else:
            texts.append(text_of[item_id])
            extra_targets.append(one_hot)
            extra_weights.append(weight)
    if extra_targets:
        targets = np.vstack([targets.reshape(-1, len(index)), np.asarray(extra_targets)])
        weights = np.concatenate([weights, np.asarray(extra_weights)])
    return texts, targets, weights
