"""Teacher trust: how good the teacher is, measured on the experts' blind answers.

Each route run reserves ``routing.audit_share`` of its pool batch for items drawn uniformly at random
and shown to experts *blind* (reason ``audit``; the expert does not see the teacher's answer). Those
answers, and the experts' answers on gold items, on randomly routed items and imported from a file, are
the teacher's blind sample (:func:`terakoya.quality.aggregate.blind_answers`, the same rule that
re-calibration and routing's audit fill-up count with): on them the teacher's accuracy, Cohen's kappa
and confusion matrix against the experts are measured, with bootstrap intervals.

The gate: a teacher that is not measurably better than chance (the lower end of kappa's interval is at
or below 0), or that is less accurate than a student trained on the experts' answers alone
(cross-validated on them, at the latest ``train``), is *not trusted*: routing stops using its signals.
Training leaves its labels out only in the first case (they tell nothing); in the second a student may
still gain from them — the benchmark showed a 60 % teacher lifting a student above both — so the
cross-validated teacher weight decides. With fewer than :data:`MIN_BLIND` blind answers trust is *unknown*.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from terakoya.quality.aggregate import blind_answers, majority
from terakoya.settings import Settings
from terakoya.storage.db import Database
from terakoya.storage.models import StudentRun, Suggestion
from terakoya.storage.queries import current_suggestion_ids

__all__ = ["MIN_BLIND", "TeacherTrust", "cohen_kappa", "measure_trust", "trust_from_pairs"]

#: fewer blind answers than this: trust is unknown
MIN_BLIND = 30
#: weight of teacher signals in routing while trust is unknown
UNKNOWN_WEIGHT = 0.5
#: a teacher whose kappa is at most this even at the top of its 95 % interval tells nothing: its labels are dropped
CHANCE_KAPPA = 0.1


@dataclass
class TeacherTrust:
    """The teacher against the experts' blind answers."""

    n: int
    labels: list[str]
    accuracy: float | None = None
    accuracy_ci: tuple[float, float] | None = None
    kappa: float | None = None
    kappa_ci: tuple[float, float] | None = None
    #: rows: the experts' label, columns: the teacher's label (in ``labels`` order)
    confusion: list[list[int]] = field(default_factory=list)
    #: True / False, or None while there are too few blind answers
    trusted: bool | None = None
    #: cross-validated accuracy on the expert answers of a student trained on them alone (latest run), when known
    student_cv_accuracy: float | None = None
    sentence: str = ""
    #: set by ``routing.trust_teacher = "always"``: the owner vouches for the teacher, whatever was measured
    vouched: bool = False
    #: not measurably better than chance (or ``routing.trust_teacher = "never"``): its labels tell nothing
    chance_level: bool = False

    @property
    def weight(self) -> float:
        """How much routing leans on the teacher's signals: 0 untrusted, kappa when trusted, 0.5 unknown."""
        if self.vouched:
            return 1.0
        if self.trusted is None:
            return UNKNOWN_WEIGHT
        if not self.trusted or self.kappa is None:
            return 0.0
        return float(min(1.0, max(0.0, self.kappa)))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["weight"] = self.weight
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TeacherTrust:
        """The trust :meth:`to_json` wrote (``weight`` follows from the rest)."""
        values = {k: v for k, v in data.items() if k != "weight"}
        for key in ("accuracy_ci", "kappa_ci"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


def cohen_kappa(truth: NDArray[np.intp], said: NDArray[np.intp], k: int) -> float:
    """Cohen's kappa of two label sequences over ``k`` classes (1: perfect, 0: chance); NaN when undefined."""
    n = len(truth)
    if n == 0:
        return math.nan
    observed = float((truth == said).mean())
    p_truth = np.bincount(truth, minlength=k) / n
    p_said = np.bincount(said, minlength=k) / n
    expected = float((p_truth * p_said).sum())
    if expected >= 1.0:
        return 1.0 if observed >= 1.0 else 0.0
    return (observed - expected) / (1.0 - expected)


def _interval(values: NDArray[np.float64]) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return (math.nan, math.nan)
    return (float(np.quantile(finite, 0.025)), float(np.quantile(finite, 0.975)))


def trust_from_pairs(
    truth: Sequence[int],
    said: Sequence[int],
    labels: Sequence[str],
    *,
    student_cv_accuracy: float | None = None,
    boot: int = 1000,
    seed: int = 0,
) -> TeacherTrust:
    """Trust from (expert label, teacher label) index pairs: accuracy, kappa, confusion, bootstrap intervals."""
    k = len(labels)
    t = np.asarray(truth, dtype=np.intp)
    s = np.asarray(said, dtype=np.intp)
    n = len(t)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (t, s), 1)
    out = TeacherTrust(n=n, labels=list(labels), confusion=confusion.tolist(), student_cv_accuracy=student_cv_accuracy)
    if n == 0:
        out.sentence = "The teacher has not been checked yet: no expert has answered a blind (audit or gold) item."
        return out
    out.accuracy = float((t == s).mean())
    out.kappa = float(cohen_kappa(t, s, k))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(boot, n))
    accs = (t[draws] == s[draws]).mean(axis=1)
    kappas = np.array([cohen_kappa(t[d], s[d], k) for d in draws])
    out.accuracy_ci = _interval(accs.astype(np.float64))
    out.kappa_ci = _interval(kappas.astype(np.float64))
    acc = f"{out.accuracy:.0%} (95 % CI {out.accuracy_ci[0]:.0%}–{out.accuracy_ci[1]:.0%})"
    if n < MIN_BLIND:
        out.sentence = (
            f"The teacher agreed with the experts on {acc} of {n} blind items — too few to judge it "
            f"(at least {MIN_BLIND} needed); its signals count half until then."
        )
        return out
    low, high = out.kappa_ci
    if not math.isfinite(low) or low <= 0.0:
        out.trusted = False
        # labels are dropped only when the teacher is measurably near chance, not merely "not yet shown better":
        # a weak teacher (60 % on a binary task, kappa ~0.2) measured on ~40 blind items has a lower bound
        # below 0, yet its labels lifted the student by 12 points (bench, chABSA at 10 %) once weighed by
        # cross-validation
        out.chance_level = not math.isfinite(high) or high <= CHANCE_KAPPA
        out.sentence = (
            f"The teacher is not measurably better than chance (agreement with experts {acc} on {n} blind items, "
            f"kappa {out.kappa:.2f}, 95 % CI {low:.2f} to {high:.2f}): routing ignores it"
            + (
                " and the student does not learn from its labels."
                if out.chance_level
                else "; how much the student learns from its labels is left to cross-validation."
            )
        )
    elif student_cv_accuracy is not None and out.accuracy < student_cv_accuracy:
        out.trusted = False
        out.sentence = (
            f"The teacher ({acc} on {n} blind items) is less accurate than a student trained on the experts' answers "
            f"alone ({student_cv_accuracy:.0%}, cross-validated): routing ignores its signals; how much the student "
            "learns from its labels is left to cross-validation."
        )
    else:
        out.trusted = True
        out.sentence = (
            f"The teacher agrees with the experts on {acc} of {n} blind items (kappa {out.kappa:.2f}): "
            "its labels are used, corrected by what the experts said."
        )
    return out


def _student_cv_accuracy(db: Database, project_id: int) -> float | None:
    with db.session() as s:
        metrics = s.scalars(
            select(StudentRun.metrics).where(StudentRun.project_id == project_id).order_by(StudentRun.id.desc())
        ).first()
    if not metrics:
        return None
    value = metrics.get("cv_accuracy_experts_only")
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def blind_pairs(db: Database, project_id: int, labels: Sequence[str]) -> tuple[list[int], list[int], list[int]]:
    """(item ids, expert label index, teacher label index) on items the experts answered blind."""
    index = {c: i for i, c in enumerate(labels)}
    answers = blind_answers(db, project_id, labels, split=None)
    with db.session() as s:
        newest = current_suggestion_ids(project_id, "teacher").subquery()
        teacher = dict(
            s.execute(select(Suggestion.item_id, Suggestion.label).join(newest, Suggestion.id == newest.c.sid)).all()
        )
    items, truth, said = [], [], []
    for item_id, given in answers.items():
        t = teacher.get(item_id)
        if t in index:
            items.append(item_id)
            truth.append(index[majority(given)])
            said.append(index[str(t)])
    return items, truth, said


def measure_trust(db: Database, project_id: int, settings: Settings, *, seed: int = 0) -> TeacherTrust:
    """The teacher's trust in this project now (see the module docstring)."""
    labels = settings.label_names
    _, truth, said = blind_pairs(db, project_id, labels)
    trust = trust_from_pairs(truth, said, labels, student_cv_accuracy=_student_cv_accuracy(db, project_id), seed=seed)
    mode = settings.routing.trust_teacher
    if mode == "always":
        trust.trusted, trust.vouched, trust.chance_level = True, True, False
        trust.sentence += " (routing.trust_teacher = 'always': the teacher is used fully whatever was measured)"
    elif mode == "never":
        trust.trusted, trust.chance_level = False, True
        trust.sentence += " (routing.trust_teacher = 'never': the teacher's labels and signals are not used)"
    return trust
