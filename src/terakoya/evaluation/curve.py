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
from typing import Any

import numpy as np
from sqlalchemy import select

from terakoya.errors import DataError, StudentError
from terakoya.evaluation.gather import Gathered, RunRow
from terakoya.evaluation.metrics import classification_metrics
from terakoya.settings import Settings
from terakoya.storage import Database
from terakoya.storage.models import Item, RouteRun

__all__ = ["RANDOM_LABEL", "curve_points", "curve_steps", "learning_curve_data"]

RANDOM_LABEL = "random routing (simulated from recorded labels)"


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


def _routing_label(db: Database, project_id: int) -> str:
    with db.session() as s:
        strategies = sorted(set(s.scalars(select(RouteRun.strategy).where(RouteRun.project_id == project_id)).all()))
    if not strategies:
        return "expert answers in the order given"
    return f"{' + '.join(strategies)} routing (expert answers in the order given)"


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
) -> dict[str, Any]:
    """Both curves as JSON-safe dicts: ``points`` [{expert_items, accuracy, macro_f1, train_items}], ``random``."""
    from terakoya.training import build_training_set, train_arrays

    budget = curve_steps(points)
    used = 0

    def step() -> None:
        nonlocal used
        if used < budget:
            used += 1
            tick(1)

    def finish(out: dict[str, Any]) -> dict[str, Any]:
        if budget > used:
            tick(budget - used)
        return out

    texts = [t.text for t in gathered.test]
    gold = [t.gold for t in gathered.test]
    full = build_training_set(db, project_id, settings)
    n_expert = full.expert_items
    out: dict[str, Any] = {"label": _routing_label(db, project_id), "points": [], "expert_items": n_expert}
    if n_expert == 0:
        out.update(available=False, random={"available": False, "reason": "no chosen-routing curve to compare"})
        out["reason"] = (
            "no pool item has an expert answer yet, so there is nothing to add along the curve: "
            "run `terakoya route`, then answer the routed items"
        )
        return finish(out)
    kind, params = _student_recipe(student, settings)
    out["student_kind"] = kind

    def fit_score(ts_texts: list[str], targets: Any, weights: Any) -> dict[str, Any] | str:
        try:
            fitted = train_arrays(
                ts_texts, targets, weights, gathered.classes, kind=kind, params=params, calibrate=False,
                seed=settings.student.seed,
            )  # fmt: skip
        except (DataError, StudentError) as exc:
            return str(exc)
        raw = np.asarray(fitted.student.predict_proba(texts), dtype=float)
        names = [str(c) for c in fitted.student.classes_]
        pred = [names[i] for i in raw.argmax(axis=1)]
        m = classification_metrics(gold, None, pred, gathered.classes)
        return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "train_items": len(ts_texts)}

    skipped: list[str] = []
    teacher_only: dict[str, Any] | None = None
    for k in curve_points(n_expert, points):
        ts = full if k == n_expert else build_training_set(db, project_id, settings, max_expert=k)
        scored = fit_score(ts.texts, ts.targets, ts.weights)
        step()
        if isinstance(scored, str):
            skipped.append(f"{k} expert items: {scored}")
            continue
        point = {"expert_items": ts.expert_items, **scored}
        out["points"].append(point)
        if k == 0:
            teacher_only = point
    out["available"] = bool(out["points"])
    if skipped:
        out["skipped"] = skipped
    if not out["available"]:
        out["reason"] = "no point could be trained: " + "; ".join(skipped)
        out["random"] = {"available": False, "reason": "no chosen-routing curve to compare"}
        return finish(out)
    out["note"] = (
        f"each point retrains the student ({kind}) on the teacher's labels plus the first k expert items; "
        "the temperature is left out (it does not change accuracy or macro-F1)"
    )
    out["random"] = _random_curve(db, project_id, settings, gathered, n_expert, points, teacher_only, fit_score, step)
    return finish(out)


def _random_curve(
    db: Database,
    project_id: int,
    settings: Settings,
    gathered: Gathered,
    n_expert: int,
    points: int,
    teacher_only: dict[str, Any] | None,
    fit_score: Callable[[list[str], Any, Any], dict[str, Any] | str],
    step: Callable[[], None],
) -> dict[str, Any]:
    from terakoya.training import build_training_set

    out: dict[str, Any] = {"label": RANDOM_LABEL, "points": []}
    if gathered.pool_with_gold == 0:
        out["available"] = False
        out["reason"] = (
            "the pool items carry no recorded labels (Item.gold_label), so random routing cannot be simulated "
            "without asking experts again; import the pool with --label-column to compare"
        )
        return out
    index = {c: i for i, c in enumerate(gathered.classes)}
    with db.session() as s:
        labelled = s.execute(
            select(Item.id, Item.gold_label)
            .where(Item.project_id == project_id, Item.split == "pool", Item.gold_label.is_not(None))
            .order_by(Item.id)
        ).all()
    candidates = [(row.id, row.gold_label) for row in labelled if row.gold_label in index]
    if not candidates:
        out["available"] = False
        out["reason"] = "no recorded pool label is one of the project's labels, so random routing cannot be simulated"
        return out
    order = np.random.default_rng(settings.routing.seed).permutation(len(candidates))
    base = build_training_set(db, project_id, settings, max_expert=0)
    row_of = {item_id: i for i, item_id in enumerate(base.item_ids)}
    weight = settings.student.expert_weight
    for k in curve_points(n_expert, points):
        if k == 0 and teacher_only is not None:
            out["points"].append(dict(teacher_only))
            continue
        drawn = [candidates[i] for i in order[: min(k, len(candidates))]]
        texts, targets, weights = list(base.texts), base.targets.copy(), base.weights.copy()
        extra_ids = [item_id for item_id, _ in drawn if item_id not in row_of]
        with db.session() as s:
            text_of = (
                dict(s.execute(select(Item.id, Item.text).where(Item.id.in_(extra_ids))).all()) if extra_ids else {}
            )
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
        scored = fit_score(texts, targets, weights)
        step()
        if isinstance(scored, str):
            out.setdefault("skipped", []).append(f"{k} expert items: {scored}")
            continue
        out["points"].append({"expert_items": len(drawn), **scored})
    out["available"] = bool(out["points"])
    if not out["available"]:
        out["reason"] = "no point could be trained: " + "; ".join(out.get("skipped", []))
    out["seed"] = settings.routing.seed
    out["note"] = (
        f"{len(candidates)} pool items with recorded labels to draw from (seed routing.seed={settings.routing.seed}); "
        "a recorded label stands in for the expert's answer, while the chosen-routing curve uses the answers "
        "experts actually gave"
    )
    return out
