"""Calibrating the teacher: on the project's own items first, then on the experts' answers.

Small models lean towards some label whatever the text says. Their label log-probabilities (kept in
each suggestion's raw output; for teachers that only give probabilities, their logarithm) are
re-used, never asked for again:

1. **batch calibration** (Zhou et al. 2023, "Batch Calibration"): the mean label log-probability over
   the project's own items is subtracted, so no label wins just by being the model's favourite;
2. **re-calibration** on the experts' answers (``student.teacher_correction``): a label prior, vector or
   matrix scaling of the label log-probabilities — a measured model of the teacher's errors, which also
   learns the project's label mix and un-permutes a teacher that systematically confuses two labels —
   chosen by cross-validated log loss (:func:`terakoya.teachers.calibration.fit_recalibration`).

Each calibration is written as a new version of the item's teacher suggestion (same model, prompt
and call, ``calibration`` naming the method), so the current suggestion — the newest one — is the
calibrated one, and the model's own answer stays on record. A re-calibrated version is written after the
batch-calibrated one it starts from, so that training can still choose the teacher's labels before
re-calibration (:func:`uncorrected_suggestion_ids`: a correction fitted on a few dozen answers can
shrink a teacher to the majority label). Nothing is written when the calibration
did not change. Teachers of kind ``python`` (your own model's probabilities) are only re-calibrated,
not batch-calibrated, unless ``teacher.calibrate = "batch"``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Select, insert, or_, select

from terakoya.quality.aggregate import blind_answers, majority
from terakoya.settings import Settings
from terakoya.storage.db import Database
from terakoya.storage.models import Suggestion
from terakoya.storage.queries import current_suggestion_ids

__all__ = [
    "MIN_BATCH_ITEMS",
    "MIN_CORRECTION_PER_LABEL",
    "CalibrationReport",
    "calibrate_teacher",
    "calibration_mode",
    "is_uncorrected",
    "label_logprobs",
    "uncorrected_suggestion_ids",
]

#: fewer items than this under one prompt: their mean says too little, the model's own probabilities stay
MIN_BATCH_ITEMS = 30
#: re-calibration needs this many randomly drawn expert-answered items per label (routing fills its audit
#: share up to that many first)
MIN_CORRECTION_PER_LABEL = 5
_COPY = (
    "item_id", "agent_kind", "agent", "prompt_version", "confidence_known", "raw_output", "prompt_tokens",
    "completion_tokens", "latency_ms", "call_key",
)  # fmt: skip


@dataclass
class CalibrationReport:
    """What one calibration pass did, per (model, prompt version)."""

    groups: list[dict[str, Any]] = field(default_factory=list)
    written: int = 0


def label_logprobs(raw_output: str, probabilities: dict[str, Any], labels: Sequence[str]) -> list[float] | None:
    """The label log-probabilities of one suggestion (:func:`terakoya.teachers.calibration.teacher_logprobs`),
    or None when they give no label any probability."""
    from terakoya.teachers.calibration import teacher_logprobs

    try:
        values = teacher_logprobs(raw_output, probabilities or {}, labels)
    except (TypeError, ValueError):
        return None
    return values if any(math.isfinite(v) for v in values) else None


def _raw_rows(db: Database, project_id: int) -> list[Any]:
    """Per item, its newest teacher suggestion as the model gave it (no calibration, no error, confidence known)."""
    with db.session() as s:
        # the current-suggestion rule over the raw rows only: the newest non-error one among them
        newest = (
            current_suggestion_ids(project_id, "teacher")
            .where(Suggestion.calibration.is_(None), Suggestion.confidence_known.is_(True))
            .subquery()
        )
        return list(s.scalars(select(Suggestion).join(newest, Suggestion.id == newest.c.sid)).all())


def _current_tags(db: Database, project_id: int) -> dict[int, str | None]:
    """Item -> the calibration tag of its current teacher suggestion."""
    with db.session() as s:
        ids = current_suggestion_ids(project_id, "teacher").subquery()
        rows = s.execute(select(Suggestion.item_id, Suggestion.calibration).join(ids, Suggestion.id == ids.c.sid)).all()
    return {int(item_id): tag for item_id, tag in rows}


def _present_tags(db: Database, project_id: int) -> dict[int, set[str]]:
    """Item -> every calibration tag its teacher suggestions carry."""
    from terakoya.storage.models import Item

    with db.session() as s:
        rows = s.execute(
            select(Suggestion.item_id, Suggestion.calibration)
            .join(Item, Item.id == Suggestion.item_id)
            .where(
                Item.project_id == project_id, Suggestion.agent_kind == "teacher", Suggestion.calibration.is_not(None)
            )
        ).all()
    out: dict[int, set[str]] = {}
    for item_id, tag in rows:
        out.setdefault(int(item_id), set()).add(str(tag))
    return out


def is_uncorrected(tag: str | None) -> bool:
    """Whether a suggestion with calibration ``tag`` is the teacher before re-calibration on expert answers
    (the model's own answer, or batch calibration on the project's items)."""
    return tag is None or tag.startswith("batch:")


def uncorrected_suggestion_ids(project_id: int, *, split: str | None = None) -> Select[Any]:
    """Per item, the id (``sid``) of its newest good teacher suggestion from before re-calibration on the
    experts' answers (:func:`is_uncorrected`): the current-suggestion rule, asked of those rows only."""
    return current_suggestion_ids(project_id, "teacher", split=split).where(
        or_(Suggestion.calibration.is_(None), Suggestion.calibration.like("batch:%"))
    )


def calibration_mode(settings: Settings) -> str:
    """``batch`` or ``none``: ``teacher.calibrate`` with ``auto`` resolved (none for python functions)."""
    value = settings.teacher.calibrate
    if value == "auto":
        return "none" if settings.teacher.kind == "python" else "batch"
    return str(value)


def _tag(name: str, params: Any) -> str:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    return f"{name}:{digest}"


_Version = tuple[str, NDArray[np.float64]]


def _calibrated(
    logprobs: NDArray[np.float64], labelled: list[int], truth: list[int], mode: str, settings: Settings
) -> tuple[list[_Version], dict[str, Any]] | None:
    """The versions to keep for one group, oldest first — (tag, probabilities): batch calibration, then the
    re-calibration when one is fitted — with details; None when the model's own probabilities should stay."""
    from terakoya.teachers.calibration import batch_calibrate, fit_recalibration

    k = logprobs.shape[1]
    details: dict[str, Any] = {"items": int(logprobs.shape[0]), "expert_items": len(labelled)}
    versions: list[_Version] = []
    if mode == "batch" and logprobs.shape[0] >= MIN_BATCH_ITEMS:
        offsets, probs = batch_calibrate(logprobs)
        details.update(method="batch", offsets=[round(float(v), 4) for v in offsets])
        versions.append((_tag("batch", [round(float(v), 6) for v in offsets]), probs))
    if settings.student.teacher_correction and len(labelled) >= MIN_CORRECTION_PER_LABEL * k and len(set(truth)) >= 2:
        calibrator = fit_recalibration(
            logprobs, np.asarray(labelled, dtype=np.intp), np.asarray(truth, dtype=np.intp), seed=settings.seed
        )
        details.update(method=calibrator.name, cv_log_loss=dict(calibrator.cv_log_loss))
        if calibrator.name != "batch" or versions:
            params = {k: v for k, v in calibrator.to_json().items() if k in ("name", "offsets", "weights", "bias")}
            rounded = json.loads(json.dumps(params), parse_float=lambda v: round(float(v), 6))
            versions.append((_tag(calibrator.name, rounded), calibrator.apply(logprobs)))
    return (versions, details) if versions else None


def calibrate_teacher(db: Database, project_id: int, settings: Settings) -> CalibrationReport:
    """Calibrate every current teacher suggestion of the project (see the module docstring)."""
    report = CalibrationReport()
    labels = settings.label_names
    mode = calibration_mode(settings)
    if len(labels) < 2 or (mode == "none" and not settings.student.teacher_correction):
        return report
    rows = _raw_rows(db, project_id)
    # only answers on items drawn at random (blind audits, random routing): items routed because the teacher
    # looked unsure over-represent its mistakes, and a correction fitted on them made its labels worse
    answers = blind_answers(db, project_id, labels, split="pool")
    index = {c: i for i, c in enumerate(labels)}
    groups: dict[tuple[str, str], list[tuple[Any, list[float]]]] = {}
    for suggestion in rows:
        values = label_logprobs(suggestion.raw_output, suggestion.probabilities or {}, labels)
        if values is not None:
            groups.setdefault((suggestion.agent, suggestion.prompt_version), []).append((suggestion, values))
    current = _current_tags(db, project_id)
    for (agent, prompt_version), members in groups.items():
        logprobs = np.asarray([v for _, v in members], dtype=np.float64)
        labelled = [i for i, (sg, _) in enumerate(members) if sg.item_id in answers]
        truth = [index[majority(answers[members[i][0].item_id])] for i in labelled]
        result = _calibrated(logprobs, labelled, truth, mode, settings)
        if result is None:
            continue
        versions, details = result
        tag = versions[-1][0]
        report.groups.append({"model": agent, "prompt_version": prompt_version, "calibration": tag, **details})
        stale = [i for i, (sg, _) in enumerate(members) if current.get(sg.item_id) != tag]
        if not stale:
            continue
        present = _present_tags(db, project_id) if len(versions) > 1 else {}
        new_rows = []
        for i in stale:
            sg = members[i][0]
            for position, (version, probs) in enumerate(versions):
                # the newest version always; an earlier one only where the item lacks it
                if position < len(versions) - 1 and version in present.get(sg.item_id, set()):
                    continue
                p = probs[i]
                best = int(p.argmax())
                new_rows.append(
                    {
                        **{name: getattr(sg, name) for name in _COPY},
                        "label": labels[best],
                        "probabilities": {c: float(v) for c, v in zip(labels, p, strict=True)},
                        "confidence": float(p[best]),
                        "cost_usd": 0.0,
                        "cached": True,
                        "calibration": version,
                    }
                )
        with db.session() as s:
            for start in range(0, len(new_rows), 1000):
                s.execute(insert(Suggestion), new_rows[start : start + 1000])
        report.written += len(new_rows)
    return report
