"""The scrutiny report: student vs teacher vs experts on the expert-checked test split.

``evaluate`` reads the project once (``gather``), scores each of the three on the gold test items,
looks at where the teacher is wrong and what the experts overrode, times the student, prices both,
retrains the student along a learning curve, and writes ``report.json`` and a self-contained
``report.html``. A number that cannot be computed is ``null`` in the JSON, with the reason in ``notes``.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from terakoya.aggregate import top_labels
from terakoya.errors import StudentError
from terakoya.evaluation.gather import (
    AnswerRow,
    Gathered,
    ModelRow,
    RunRow,
    TestItem,
    find_run,
    gather,
    label_of,
    pool_sample,
    student_pool_labels,
)
from terakoya.evaluation.metrics import agreement, classification_metrics, cohen_kappa, confusions, wilson_interval
from terakoya.settings import Settings
from terakoya.storage import Database

__all__ = ["EvaluationReport", "evaluate", "write_report"]

Progress = Callable[[int, int], None]

#: examples shown per confusion or override pair, and their length
EXAMPLES = 3
EXAMPLE_CHARS = 300
TOP_PAIRS = 6
#: pool items the student predicts now when its run recorded no pool suggestions
POOL_SAMPLE = 2000
TRAIN_HINT = "run `terakoya train`"


@dataclass
class EvaluationReport:
    """``data`` holds everything (JSON-safe); the files are written under ``out_dir``."""

    data: dict[str, Any]
    out_dir: Path
    json_path: Path
    html_path: Path


# ----------------------------------------------------------------------------- helpers


def json_safe(value: Any) -> Any:
    """Plain JSON: numpy scalars to Python, NaN and infinities to None, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _example(item_id: int, external_id: str, text: str) -> dict[str, Any]:
    short = text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1] + "…"
    return {"id": external_id, "item_id": item_id, "text": short}


def _scored(
    gold: Sequence[str], proba: np.ndarray | None, pred: Sequence[str], classes: Sequence[str]
) -> dict[str, Any]:
    out = classification_metrics(gold, proba, pred, classes)
    correct = sum(g == p for g, p in zip(gold, pred, strict=True))
    out["correct"] = correct
    out["accuracy_ci95"] = wilson_interval(correct, len(gold))
    return out


def _errors(items: Sequence[TestItem], pred: Sequence[str]) -> dict[str, Any]:
    """Error rate per gold label and the most common confusions, with example texts."""
    by_gold: dict[str, list[bool]] = defaultdict(list)
    for item, p in zip(items, pred, strict=True):
        by_gold[item.gold].append(item.gold != p)
    by_class: list[dict[str, Any]] = [
        {"label": g, "items": len(w), "errors": sum(w), "error_rate": sum(w) / len(w)} for g, w in by_gold.items()
    ]
    by_class.sort(key=lambda r: (-r["error_rate"], -r["items"], r["label"]))
    top = confusions([i.gold for i in items], pred, top=TOP_PAIRS)
    for conf in top:
        conf["examples"] = [
            _example(i.id, i.external_id, i.text)
            for i, p in zip(items, pred, strict=True)
            if i.gold == conf["true"] and p == conf["predicted"]
        ][:EXAMPLES]
    return {"by_class": by_class, "confusions": top}


def _proba_matrix(rows: Sequence[ModelRow], classes: Sequence[str]) -> np.ndarray:
    out = np.full((len(rows), len(classes)), np.nan)
    for i, row in enumerate(rows):
        if row.probabilities is not None:
            out[i] = [row.probabilities.get(c, 0.0) for c in classes]
    return out


# ----------------------------------------------------------------------------- the three


def _teacher(g: Gathered, notes: list[str]) -> dict[str, Any]:
    labelled = [t for t in g.test if t.id in g.teacher_test]
    unlabelled = len(g.test) - len(labelled)
    block: dict[str, Any] = {
        "models": g.teacher_models,
        "labelled": len(labelled),
        "unlabelled": unlabelled,
        "failed": g.teacher_test_failed,
        "coverage": len(labelled) / len(g.test),
    }
    if not labelled:
        block.update(available=False, items=0, accuracy=None, macro_f1=None, ece=None)
        block["reason"] = "the teacher has not labelled any gold test item: run `terakoya teach`"
        notes.append(f"teacher quality: {block['reason']}")
        return block
    rows = [g.teacher_test[t.id] for t in labelled]
    gold = [t.gold for t in labelled]
    pred = [r.label for r in rows]
    block.update(available=True, **_scored(gold, _proba_matrix(rows, g.classes), pred, g.classes))
    block["accuracy_counting_unlabelled_as_wrong"] = block["correct"] / len(g.test)
    if unlabelled:
        failed = f", {g.teacher_test_failed} of them after failed calls" if g.teacher_test_failed else ""
        notes.append(
            f"the teacher has not labelled {unlabelled} of {len(g.test)} gold test items{failed}; its scores cover "
            f"the {len(labelled)} it labelled (counting the rest as wrong: "
            f"{100 * block['accuracy_counting_unlabelled_as_wrong']:.1f}%) — run `terakoya teach` to label them"
        )
    if block.get("probabilities_unknown"):
        notes.append(
            f"the teacher gave no probabilities for {block['probabilities_unknown']} test items; calibration "
            "(ECE, Brier, NLL) covers the others"
        )
    return block


def _align(proba: Any, student_classes: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    raw = np.asarray(proba, dtype=float)
    out = np.zeros((raw.shape[0], len(classes)))
    where = {c: i for i, c in enumerate(student_classes)}
    for j, c in enumerate(classes):
        if c in where:
            out[:, j] = raw[:, where[c]]
    return out


def _load_student(model_path: Path | None, run: RunRow | None, settings: Settings) -> tuple[Any, Path]:
    if model_path is not None:
        folder = model_path
        if not folder.exists():
            raise StudentError(f"no saved student at {folder}; pass --model with a folder written by `terakoya train`")
    else:
        assert run is not None
        folder = Path(run.path)
        if not folder.is_absolute():
            folder = settings.project_dir / folder
        if not folder.exists():
            raise StudentError(
                f"the newest student (run {run.run_id}) was saved at {folder}, which no longer exists; "
                f"{TRAIN_HINT} again or pass --model PATH"
            )
    from terakoya.students import load

    return load(folder), folder


def _student(
    student: Any, g: Gathered, run: RunRow | None, folder: Path
) -> tuple[dict[str, Any], list[str], np.ndarray]:
    texts = [t.text for t in g.test]
    student_classes = [str(c) for c in student.classes_]
    raw = np.asarray(student.predict_proba(texts), dtype=float)
    pred = [student_classes[i] for i in raw.argmax(axis=1)]
    proba = _align(raw, student_classes, g.classes)
    block: dict[str, Any] = {
        "available": True,
        "run_id": run.run_id if run else None,
        "kind": run.kind if run else getattr(student, "kind", None),
        "path": str(folder),
        "classes": student_classes,
    }
    block.update(_scored([t.gold for t in g.test], proba, pred, g.classes))
    return block, pred, proba


def _experts(g: Gathered, settings: Settings, notes: list[str]) -> dict[str, Any]:
    gold = {t.id: t.gold for t in g.test}
    test_answers = [a for a in g.answers if a.item_id in gold]
    block: dict[str, Any] = {"test_answers": len(test_answers)}
    if not test_answers:
        block.update(available=False, items=0, accuracy=None, macro_f1=None)
        block["reason"] = (
            "no expert answered a gold test item, so the experts cannot be scored; routing sends a share of "
            "test items to experts (routing.gold_share) — answer some routed items"
        )
        notes.append(f"experts: {block['reason']}")
        _expert_economics(block, g.answers, settings)
        return block
    by_person: dict[str, list[AnswerRow]] = defaultdict(list)
    by_item: dict[int, list[AnswerRow]] = defaultdict(list)
    for a in test_answers:
        by_person[a.person].append(a)
        by_item[a.item_id].append(a)
    block["per_expert"] = sorted(
        (
            {
                "person": person,
                "answers": len(rows),
                "accuracy": sum(a.label == gold[a.item_id] for a in rows) / len(rows),
                "simulated": all(a.simulated for a in rows),
            }
            for person, rows in by_person.items()
        ),
        key=lambda r: (-r["answers"], r["person"]),
    )
    ids = sorted(by_item)
    block.update(
        available=True, **_scored([gold[i] for i in ids], None, [label_of(by_item[i]) for i in ids], g.classes)
    )
    block["note"] = "one label per item: the most common of its expert answers (ties to the newest)"
    block["multi"] = _multi(by_item, gold)
    if any(a.simulated for a in test_answers):
        sims = sum(a.simulated for a in test_answers)
        block["simulated_answers"] = sims
        block["simulated_note"] = (
            f"{sims} of {len(test_answers)} expert answers on test items are simulated (recorded labels, not a "
            "person): their accuracy says nothing about people"
        )
    _expert_economics(block, g.answers, settings)
    return block


def _multi(by_item: dict[int, list[AnswerRow]], gold: dict[int, str]) -> dict[str, Any]:
    """Items answered by two or more people: agreement between them, and their aggregate label vs gold.

    Agreement compares each person's newest answer; the aggregate label is :func:`label_of` over all the
    item's live answers (the label training uses), a tie going to the newest answer: ``ties`` counts those.
    """
    multi = {i: rows for i, rows in by_item.items() if len({a.person for a in rows}) >= 2}
    if not multi:
        return {"items": 0, "reason": "no test item was answered by two or more experts, so agreement is unknown"}
    # each person's newest answer per item
    latest = {i: {a.person: a.label for a in sorted(rows, key=lambda a: a.id)} for i, rows in multi.items()}
    same = total = 0
    for answers in latest.values():
        for x, y in itertools.combinations(answers.values(), 2):
            same += x == y
            total += 1
    majority_right = ties = 0
    for i, rows in multi.items():
        ties += len(top_labels([(a.id, a.label) for a in rows])) > 1
        majority_right += label_of(rows) == gold[i]
    majority_items = len(multi)
    people = sorted({p for answers in latest.values() for p in answers})
    pairs = []
    for a, b in itertools.combinations(people, 2):
        shared = [i for i, answers in latest.items() if a in answers and b in answers]
        if shared:
            la, lb = [latest[i][a] for i in shared], [latest[i][b] for i in shared]
            pairs.append(
                {"a": a, "b": b, "items": len(shared), "agreement": agreement(la, lb), "kappa": cohen_kappa(la, lb)}
            )
    return {
        "items": len(multi),
        "pairwise_agreement": same / total,
        "pairs": pairs,
        "majority_items": majority_items,
        "ties": ties,
        "majority_accuracy": majority_right / majority_items if majority_items else None,
        "majority_accuracy_ci95": wilson_interval(majority_right, majority_items),
    }


def _expert_economics(block: dict[str, Any], answers: Sequence[AnswerRow], settings: Settings) -> None:
    seconds = [a.active_seconds for a in answers if a.active_seconds and a.active_seconds > 0 and not a.simulated]
    if not seconds:
        block.update(items_per_second=None, p50_latency_ms=None, cost_per_million_usd=None, size_bytes=None)
        block["cost_note"] = "no recorded active seconds from people (simulated answers are left out)"
        return
    mean_s = float(np.mean(seconds))
    pay = settings.pay
    per_item = pay.per_item if pay.mode == "per_item" else pay.per_hour * mean_s / 3600
    block.update(
        items_per_second=1 / mean_s,
        p50_latency_ms=float(np.median(seconds)) * 1000,
        cost_per_million_usd=per_item * 1_000_000 if pay.currency.upper() == "USD" else None,
        size_bytes=None,
    )
    block["cost_note"] = (
        f"from {len(seconds)} answers with active seconds; pay {pay.mode} "
        f"({pay.per_item if pay.mode == 'per_item' else pay.per_hour} {pay.currency})"
        + ("" if pay.currency.upper() == "USD" else f"; not shown in USD because pay.currency is {pay.currency}")
    )


def _overrides(g: Gathered) -> dict[str, Any]:
    """Pool items where the expert's label differs from the teacher's current label."""
    by_item: dict[int, list[AnswerRow]] = defaultdict(list)
    for a in g.answers:
        if a.split == "pool":
            by_item[a.item_id].append(a)
    out: dict[str, Any] = {"pool_items_answered": len(by_item)}
    if not by_item:
        out.update(compared=0, overridden=0, rate=None, by_pair=[])
        out["reason"] = "no pool item has an expert answer yet: run `terakoya route`, then answer the routed items"
        return out
    pairs: dict[tuple[str, str], list[int]] = defaultdict(list)
    compared = 0
    for item_id, rows in sorted(by_item.items()):
        teacher = g.teacher_pool.get(item_id)
        if teacher is None:
            continue
        compared += 1
        expert = label_of(rows)
        if expert != teacher:
            pairs[(teacher, expert)].append(item_id)
    overridden = sum(len(v) for v in pairs.values())
    ordered = sorted(pairs.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:TOP_PAIRS]
    out.update(
        compared=compared,
        not_teacher_labelled=len(by_item) - compared,
        overridden=overridden,
        rate=overridden / compared if compared else None,
        by_pair=[
            {
                "teacher": t,
                "expert": e,
                "count": len(ids),
                "examples": [_example(i, g.external_ids.get(i, str(i)), g.texts.get(i, "")) for i in ids[:EXAMPLES]],
            }
            for (t, e), ids in ordered
        ],
    )
    return out


def _agreement(
    db: Database, project_id: int, g: Gathered, student: Any, student_pred: Sequence[str], run: RunRow | None, seed: int
) -> dict[str, Any]:
    test_ids = [t.id for t in g.test if t.id in g.teacher_test]
    index = {t.id: i for i, t in enumerate(g.test)}
    a = [g.teacher_test[i].label for i in test_ids]
    b = [student_pred[index[i]] for i in test_ids]
    out: dict[str, Any] = {
        "test": {
            "items": len(a),
            "agreement": agreement(a, b) if a else None,
            "kappa": cohen_kappa(a, b),
            "source": "predicted now",
        },
    }
    recorded = student_pool_labels(db, project_id, run.run_id) if run else {}
    shared = [i for i in recorded if i in g.teacher_pool]
    if shared:
        a, b = [g.teacher_pool[i] for i in shared], [recorded[i] for i in shared]
        source = f"recorded suggestions of run {run.run_id}" if run else ""
    else:
        sample = pool_sample(db, project_id, sorted(g.teacher_pool), POOL_SAMPLE, seed)
        if sample:
            raw = np.asarray(student.predict_proba([text for _, text in sample]), dtype=float)
            classes = [str(c) for c in student.classes_]
            a = [g.teacher_pool[i] for i, _ in sample]
            b = [classes[j] for j in raw.argmax(axis=1)]
            source = f"predicted now on {len(sample)} pool items drawn at random (seed {seed})"
        else:
            a, b, source = [], [], "no pool item has a teacher label"
    out["pool"] = {
        "items": len(a),
        "agreement": agreement(a, b) if a else None,
        "kappa": cohen_kappa(a, b),
        "source": source,
    }
    return out


# ----------------------------------------------------------------------------- findings


def _money(x: float) -> str:
    return f"${x:,.2f}" if x >= 0.01 or x == 0 else f"${x:.2g}"


def _paired(g: Gathered, student_pred: Sequence[str]) -> dict[str, Any]:
    """Student vs teacher on the same gold items (those the teacher labelled), with an exact McNemar test."""
    from scipy.stats import binomtest

    rows = [(t.gold, g.teacher_test[t.id].label, p) for t, p in zip(g.test, student_pred, strict=True)
            if t.id in g.teacher_test]  # fmt: skip
    if not rows:
        return {"items": 0}
    teacher_only = sum(tl == gold and sp != gold for gold, tl, sp in rows)
    student_only = sum(sp == gold and tl != gold for gold, tl, sp in rows)
    discordant = teacher_only + student_only
    return {
        "items": len(rows),
        "teacher_accuracy": sum(tl == gold for gold, tl, _ in rows) / len(rows),
        "student_accuracy": sum(sp == gold for gold, _, sp in rows) / len(rows),
        "teacher_only_right": teacher_only,
        "student_only_right": student_only,
        "mcnemar_p": float(binomtest(student_only, discordant).pvalue) if discordant else None,
        "note": "same items for both: the gold test items the teacher labelled",
    }


def _experts_alone(
    db: Database, project_id: int, settings: Settings, g: Gathered, run: RunRow | None, notes: list[str]
) -> dict[str, Any]:
    """A student of the same kind trained on the experts' answers alone (no teacher), scored on the test split."""
    from terakoya.training import build_training_set, train_arrays

    empty: dict[str, Any] = {"available": False, "items": None, "accuracy": None, "macro_f1": None, "ece": None}
    kind = run.kind if run else settings.student.kind
    if kind.startswith("finetune"):
        empty["reason"] = "not computed for fine-tuned students (minutes of CPU per fit)"
        notes.append(f"experts alone: {empty['reason']}")
        return empty
    alone = settings.model_copy(update={"student": settings.student.model_copy(update={"use_teacher": False})})
    data = build_training_set(db, project_id, alone)
    if data.expert_items < 2 or len(set(data.targets.argmax(axis=1).tolist())) < 2:
        empty["reason"] = "fewer than two labels among the expert answers"
        notes.append(f"experts alone: {empty['reason']}")
        return empty
    from terakoya.students import student_params_for

    params = student_params_for(kind, language=settings.language, project_dir=settings.project_dir)
    fitted = train_arrays(data.texts, data.targets, data.weights, data.classes, kind=kind, params=params,
                          calibrate=False, seed=settings.student.seed)  # fmt: skip
    texts = [t.text for t in g.test]
    names = [str(c) for c in fitted.student.classes_]
    raw = np.asarray(fitted.student.predict_proba(texts), dtype=float)
    pred = [names[i] for i in raw.argmax(axis=1)]
    block: dict[str, Any] = {"available": True, "kind": kind, "expert_items": data.expert_items}
    block.update(_scored([t.gold for t in g.test], _align(raw, names, g.classes), pred, g.classes))
    return block


def _headline(data: dict[str, Any]) -> list[str]:
    """The report's first lines, in plain words: does the student beat the teacher, and at what expert cost."""
    t, s, alone = data["teacher"], data["student"], data.get("experts_alone") or {}
    out: list[str] = []
    if s.get("accuracy") is not None and t.get("accuracy") is not None:
        diff = 100 * (s["accuracy"] - t["accuracy"])
        p = (data.get("paired") or {}).get("mcnemar_p")
        sure = "" if p is None else (" — a difference this large is unlikely to be chance" if p < 0.05 else
                                     f" — but with p = {p:.2g} it may be chance")  # fmt: skip
        verdict = "beats" if diff > 0 else ("matches" if diff == 0 else "does NOT beat")
        out.append(
            f"The student {verdict} its teacher: {100 * s['accuracy']:.1f}% vs {100 * t['accuracy']:.1f}% on "
            f"{data['test_items']} expert-checked test items ({diff:+.1f} points{sure})."
        )
    if alone.get("accuracy") is not None and s.get("accuracy") is not None:
        diff = 100 * (s["accuracy"] - alone["accuracy"])
        out.append(
            f"The experts' {alone['expert_items']} answers alone (no teacher) would give a student of "
            f"{100 * alone['accuracy']:.1f}%: the teacher adds {diff:+.1f} points."
        )
    minutes = data.get("expert_minutes") or 0.0
    cost = data.get("expert_cost") or {}
    line = f"Expert cost: {data['expert_answers']} answers, {minutes:.1f} minutes of expert time"
    if isinstance(cost.get("amount"), int | float):
        line += f", {cost['amount']:,.2f} {cost['currency']} at {cost['rule']}"
    if data.get("simulated_answers"):
        line += f" ({data['simulated_answers']} answers simulated from recorded labels)"
    out.append(line + ".")
    trust = data.get("teacher_trust") or {}
    if trust.get("sentence"):
        out.append(str(trust["sentence"]))
    if s.get("mean_confidence") is not None and s.get("accuracy") is not None:
        gap = s["mean_confidence"] - s["accuracy"]
        if gap > 0.1:
            out.append(
                f"Warning: the student is over-confident — mean confidence {100 * s['mean_confidence']:.0f}% but "
                f"{100 * s['accuracy']:.0f}% accurate; treat its confidences with care."
            )
    return out


def _findings(data: dict[str, Any]) -> list[str]:
    out: list[str] = _headline(data)
    t, s, e = data["teacher"], data["student"], data["experts"]
    n = data["test_items"]
    paired = data.get("paired") or {}
    if paired.get("items"):
        diff = 100 * (paired["student_accuracy"] - paired["teacher_accuracy"])
        where = f"On the {paired['items']} gold test items both labelled"
        if abs(diff) >= 0.05:
            line = (
                f"{where}, the student is {abs(diff):.1f} points {'more' if diff > 0 else 'less'} accurate than the "
                f"teacher ({100 * paired['student_accuracy']:.1f}% vs {100 * paired['teacher_accuracy']:.1f}%)"
            )
        else:
            line = (
                f"{where}, the student and the teacher are equally accurate ({100 * paired['student_accuracy']:.1f}%)"
            )
        line += (
            f"; only the student is right on {paired['student_only_right']}, only the teacher on "
            f"{paired['teacher_only_right']}"
        )
        if paired.get("mcnemar_p") is not None:
            line += f" (exact McNemar p = {paired['mcnemar_p']:.2g})"
        out.append(line + ".")
    if n < 200 and (t.get("accuracy") is not None or s.get("accuracy") is not None):
        out.append(
            f"Only {n} gold test items: the 95% intervals are wide, so differences of a few points may be noise."
        )
    if e.get("accuracy") is not None:
        out.append(
            f"Experts (one label per item) score {100 * e['accuracy']:.1f}% against gold on the {e['items']} test "
            "items they answered"
            + (
                f" ({e['simulated_answers']} of {e['test_answers']} answers simulated)."
                if e.get("simulated_answers")
                else "."
            )
        )
    errs = data.get("teacher_errors") or {}
    if errs.get("by_class") and errs["by_class"][0]["errors"]:
        worst = errs["by_class"][0]
        line = (
            f"The teacher is most often wrong on gold '{worst['label']}' ({100 * worst['error_rate']:.0f}% of "
            f"{worst['items']} items)"
        )
        if errs.get("confusions"):
            c = errs["confusions"][0]
            line += f"; its most common confusion is {c['true']} → {c['predicted']} ({c['count']} items)"
        out.append(line + ".")
    ov = data.get("overrides") or {}
    if ov.get("compared"):
        line = (
            f"Experts changed the teacher's label on {ov['overridden']} of {ov['compared']} pool items they answered "
            f"({100 * (ov['rate'] or 0):.0f}%)"
        )
        if ov.get("by_pair"):
            p = ov["by_pair"][0]
            line += f", most often teacher '{p['teacher']}' → expert '{p['expert']}' ({p['count']})"
        out.append(line + ".")
    speed = (data.get("economics") or {}).get("speedup")
    if speed:
        out.append(
            f"The student handles {speed:,.0f}x the items per second of the teacher "
            f"({s['items_per_second']:,.0f} vs {t['items_per_second']:,.2f})."
        )
    if s.get("cost_per_million_usd") is not None and t.get("cost_per_million_usd") is not None:
        out.append(
            f"A million predictions cost about {_money(s['cost_per_million_usd'])} with the student and "
            f"{_money(t['cost_per_million_usd'])} with the teacher."
        )
    curve = data.get("learning_curve") or {}
    pts = curve.get("points") or []
    if len(pts) >= 2:
        first, last = pts[0], pts[-1]
        out.append(
            f"Learning curve ({curve.get('label')}): {100 * first['accuracy']:.1f}% with {first['expert_items']} "
            f"expert items, {100 * last['accuracy']:.1f}% with {last['expert_items']}."
        )
        rnd = (curve.get("random") or {}).get("points") or []
        if rnd:
            out.append(
                f"With the same {rnd[-1]['expert_items']} expert labels drawn at random from the pool (simulated from "
                f"recorded labels) the student reaches {100 * rnd[-1]['accuracy']:.1f}%."
            )
    if data.get("simulated_answers"):
        out.append(
            f"{data['simulated_answers']} of {data['expert_answers']} expert answers are simulated from recorded "
            "labels, not given by people."
        )
    return out


# ----------------------------------------------------------------------------- the whole report


def _out_dir(settings: Settings, out_dir: Path | None) -> tuple[Path, bool]:
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        return out_dir, False
    base = settings.project_dir / "reports"
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    folder = base / stamp
    for n in itertools.count(2):
        if not folder.exists():
            break
        folder = base / f"{stamp}-{n}"
    folder.mkdir(parents=True)
    return folder, True


def write_report(data: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write report.json and report.html into ``out_dir``."""
    from terakoya.evaluation.render import render_html

    json_path = out_dir / "report.json"
    html_path = out_dir / "report.html"
    json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    html_path.write_text(render_html(data), encoding="utf-8")
    return json_path, html_path


def evaluate(
    db: Database,
    project_id: int,
    settings: Settings,
    *,
    model_path: Path | None = None,
    out_dir: Path | None = None,
    learning_curve: bool = True,
    progress: Progress | None = None,
    curve_points: int = 5,
) -> EvaluationReport:
    """Score teacher, student and experts on the gold test split; write report.json and report.html."""
    from terakoya.evaluation.curve import curve_steps, learning_curve_data
    from terakoya.evaluation.timing import student_economics, student_size, teacher_economics

    steps = 5 + (curve_steps(curve_points) if learning_curve else 0)
    done = 0

    def tick(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(min(done, steps), steps)

    g = gather(db, project_id, settings)
    tick()
    notes: list[str] = []
    simulated_only: dict[int, bool] = {}
    for a in g.answers:
        simulated_only[a.item_id] = simulated_only.get(a.item_id, True) and a.simulated
    seconds = [a.active_seconds for a in g.answers if a.active_seconds]
    simulated_seconds = sum(a.active_seconds for a in g.answers if a.active_seconds and a.simulated)
    data: dict[str, Any] = {
        "format": 1,
        "project": settings.name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "classes": g.classes,
        "test_items": len(g.test),
        "test_items_total": g.test_total,
        "pool_items": g.pool_total,
        "expert_items": len(simulated_only),
        "expert_items_simulated": sum(simulated_only.values()),
        "expert_answers": len(g.answers),
        "simulated_answers": sum(a.simulated for a in g.answers),
        "expert_people": len({a.person for a in g.answers}),
        "expert_minutes": sum(seconds) / 60,
        "expert_minutes_simulated": simulated_seconds / 60,
        "expert_minutes_note": (
            f"sum of active_seconds / 60 over {len(seconds)} of {len(g.answers)} answers"
            + (" (the others recorded no time)" if len(seconds) < len(g.answers) else "")
        ),
    }
    if g.test_total > len(g.test):
        notes.append(f"{g.test_total - len(g.test)} test items have no gold label and are left out of every score")
    data["teacher"] = _teacher(g, notes)
    data["teacher"].update(teacher_economics(g.teacher_calls, settings))
    configured = settings.teacher.model.strip()
    recorded = g.teacher_models
    if (
        settings.teacher.kind != "python"
        and recorded
        and not any(m in {configured, configured.lower(), Path(configured).name} for m in recorded)
    ):
        notes.append(
            f"the recorded teacher suggestions come from {', '.join(recorded)}, but teacher.model is {configured!r}: "
            "the teacher's size and cost describe the configured model, its speed the recorded calls"
        )
    if data["teacher"]["items_per_second"] is None:
        notes.append(f"teacher speed: {data['teacher']['timing_note']}")
    if data["teacher"]["cost_per_million_usd"] is None:
        notes.append(f"teacher cost: {data['teacher']['cost_note']}")
    if data["teacher"].get("available"):
        labelled = [t for t in g.test if t.id in g.teacher_test]
        data["teacher_errors"] = _errors(labelled, [g.teacher_test[t.id].label for t in labelled])
    data["experts"] = _experts(g, settings, notes)
    data["overrides"] = _overrides(g)
    if not data["overrides"]["compared"]:
        notes.append(
            f"expert overrides: {data['overrides'].get('reason', 'no answered pool item has a teacher label')}"
        )
    tick()

    run = find_run(g, model_path, settings.project_dir)
    student: Any = None
    if model_path is None and run is None:
        data["student"] = {
            "available": False,
            "reason": f"no student yet: {TRAIN_HINT}",
            "items": None,
            "accuracy": None,
            "macro_f1": None,
            "ece": None,
            "items_per_second": None,
        }
        notes.append(f"student: no student yet: {TRAIN_HINT}")
        data["agreement"] = {}
        tick(2)
    else:
        student, folder = _load_student(model_path, run, settings)
        block, pred, _ = _student(student, g, run, folder)
        data["student"] = block
        data["student_errors"] = _errors(g.test, pred)
        data["paired"] = _paired(g, pred)
        data["agreement"] = _agreement(db, project_id, g, student, pred, run, settings.seed)
        tick()
        from terakoya.students import load

        block.update(student_economics(lambda: load(folder), [t.text for t in g.test], settings))
        block["size_bytes"], block["size_note"] = student_size(folder, student)
        tick()
    from terakoya.trust import measure_trust

    data["teacher_trust"] = measure_trust(db, project_id, settings).to_json()
    data["experts_alone"] = _experts_alone(db, project_id, settings, g, run, notes)
    pay = settings.pay
    data["expert_cost"] = {
        "amount": pay.per_item * len(g.answers)
        if pay.mode == "per_item"
        else pay.per_hour * data["expert_minutes"] / 60,
        "currency": pay.currency,
        "rule": f"{pay.per_item:g} per item" if pay.mode == "per_item" else f"{pay.per_hour:g} per hour",
    }
    t_speed, s_speed = data["teacher"].get("items_per_second"), data["student"].get("items_per_second")
    data["economics"] = {
        "speedup": s_speed / t_speed if s_speed and t_speed else None,
        "latency_ratio": (
            data["teacher"]["p50_latency_ms"] / data["student"]["p50_latency_ms"]
            if data["teacher"].get("p50_latency_ms") and data["student"].get("p50_latency_ms")
            else None
        ),
        "note": "speed-up = student items/s / teacher items/s; latency ratio = teacher p50 / student p50",
    }
    if learning_curve:
        data["learning_curve"] = learning_curve_data(
            db, project_id, settings, g, run=run, student=student, points=curve_points, tick=tick
        )
    else:
        data["learning_curve"] = {"available": False, "reason": "skipped (--no-curve)", "points": []}
    if not data["learning_curve"].get("available"):
        notes.append(f"learning curve: {data['learning_curve']['reason']}")
    elif not (data["learning_curve"].get("random") or {}).get("available"):
        notes.append(f"random-routing baseline: {data['learning_curve']['random']['reason']}")
    data["findings"] = _findings(data)
    data["notes"] = notes
    data = json_safe(data)

    folder_out, default = _out_dir(settings, out_dir)
    json_path, html_path = write_report(data, folder_out)
    if default:
        latest = folder_out.parent / "latest"
        if latest.is_symlink() or latest.is_file():
            latest.unlink()
        elif latest.exists():
            shutil.rmtree(latest)
        shutil.copytree(folder_out, latest)
    tick()
    return EvaluationReport(data=data, out_dir=folder_out, json_path=json_path, html_path=html_path)
