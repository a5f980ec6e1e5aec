"""The scrutiny report as typed data: what ``evaluate`` builds and what the renderers read.

:class:`Report` holds one section per part of the page: the four columns of the comparison
(:class:`TeacherSummary`, :class:`StudentSummary`, :class:`ExpertsAloneSummary` — a student trained on the
experts' answers alone — and :class:`ExpertsSummary`), each with its :class:`Scores` and its speed and cost;
where the teacher and the student go wrong (:class:`ErrorBreakdown`); what the experts overrode
(:class:`Overrides`); the :class:`Paired` comparison, the :class:`StudentTeacherAgreement`, the teacher's
trust (:class:`terakoya.routing.trust.TeacherTrust`), the :class:`ExpertCost`, the :class:`Economics`, the
:class:`LearningCurve`; the first screen's answers in plain words (:class:`SummaryLine`, with the
:class:`ExpertTime` behind the cost), accuracy by slice of the test items
(:class:`terakoya.evaluation.slices.Slices`), verify vs blind expert answers
(:class:`terakoya.evaluation.anchoring.VerifyVsBlind`), and the findings and notes in plain words.

Every section's ``to_json()`` gives the dict report.json holds — the same keys, in the same order, with
the same values as ever, and the newer sections (``summary``, ``slices``, ``verify_vs_blind``,
``expert_time``) as new keys; a key report.json leaves out is ``None`` here — and ``from_json()`` reads such a
dict back, so a saved report.json renders the same way as the report that wrote it, an older one too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from terakoya.evaluation.anchoring import VerifyVsBlind
from terakoya.evaluation.records import OPTIONAL as _OPTIONAL
from terakoya.evaluation.records import Json, json_safe
from terakoya.evaluation.records import Record as _Record
from terakoya.evaluation.slices import Slices
from terakoya.routing.trust import TeacherTrust

__all__ = [
    "AgreementRow",
    "Calibration",
    "ClassErrors",
    "ClassScore",
    "Confusion",
    "ConfusionPair",
    "CurvePoint",
    "Economics",
    "ErrorBreakdown",
    "Example",
    "ExpertAgreement",
    "ExpertCost",
    "ExpertEconomics",
    "ExpertScore",
    "ExpertTime",
    "ExpertsAloneSummary",
    "ExpertsSummary",
    "LearningCurve",
    "ModelSummary",
    "OverridePair",
    "Overrides",
    "PairAgreement",
    "Paired",
    "RandomCurve",
    "ReliabilityBin",
    "Report",
    "Scores",
    "Speed",
    "StudentSummary",
    "StudentTeacherAgreement",
    "StudentTiming",
    "SummaryLine",
    "TeacherEconomics",
    "TeacherSummary",
    "json_safe",
]


# ----------------------------------------------------------------------------- scores


@dataclass(frozen=True)
class ReliabilityBin(_Record):
    """One equal-width confidence bin of the reliability diagram (bins are (lo, hi])."""

    lo: float
    hi: float
    count: int
    confidence: float | None
    accuracy: float | None


@dataclass(frozen=True)
class ClassScore(_Record):
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Confusion(_Record):
    """Rows: the gold label, columns: the predicted label, both in ``labels`` order."""

    labels: list[str]
    matrix: list[list[int]]


@dataclass(frozen=True)
class Calibration:
    """Which items the calibration numbers (ECE, Brier, NLL) cover, for a model that gives probabilities."""

    items: int
    probabilities_unknown: int
    gold_outside_classes: int
    #: mean top probability over those items (None when no item could be checked)
    mean_confidence: float | None = None


@dataclass(frozen=True)
class Scores:
    """One model on the gold test items: :func:`terakoya.evaluation.metrics.classification_metrics`, typed,
    with the number of right answers and the 95 % interval of the accuracy."""

    items: int
    accuracy: float | None
    macro_f1: float | None
    per_class: dict[str, ClassScore]
    confusion: Confusion
    ece: float | None
    brier: float | None
    nll: float | None
    reliability: list[ReliabilityBin]
    correct: int
    accuracy_ci95: list[float] | None
    #: None when the model gave no probabilities (the experts)
    calibration: Calibration | None = None

    def to_json(self) -> Json:
        out: Json = {
            "items": self.items,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_class": {label: score.to_json() for label, score in self.per_class.items()},
            "confusion": self.confusion.to_json(),
        }
        bins = [b.to_json() for b in self.reliability]
        cal = self.calibration
        if cal is not None:
            out["calibration_items"] = cal.items
            out["probabilities_unknown"] = cal.probabilities_unknown
            out["gold_outside_classes"] = cal.gold_outside_classes
        if cal is not None and cal.items:
            out.update(ece=self.ece, reliability=bins, mean_confidence=cal.mean_confidence)
            out.update(brier=self.brier, nll=self.nll)
        else:
            out.update(ece=self.ece, brier=self.brier, nll=self.nll, reliability=bins)
        out.update(correct=self.correct, accuracy_ci95=self.accuracy_ci95)
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Scores:
        """From report.json, or from ``classification_metrics(...)`` plus ``correct`` and ``accuracy_ci95``."""
        calibration = None
        if "calibration_items" in d:
            calibration = Calibration(
                d["calibration_items"], d["probabilities_unknown"], d["gold_outside_classes"], d.get("mean_confidence")
            )
        return cls(
            items=d["items"],
            accuracy=d["accuracy"],
            macro_f1=d["macro_f1"],
            per_class={str(label): ClassScore.from_json(score) for label, score in d["per_class"].items()},
            confusion=Confusion.from_json(d["confusion"]),
            ece=d["ece"],
            brier=d["brier"],
            nll=d["nll"],
            reliability=[ReliabilityBin.from_json(b) for b in d["reliability"]],
            correct=d["correct"],
            accuracy_ci95=d["accuracy_ci95"],
            calibration=calibration,
        )


# ----------------------------------------------------------------------------- the four columns


@dataclass(frozen=True)
class Speed:
    """The economics rows of the comparison table (None: not known for this column)."""

    items_per_second: float | None = None
    p50_latency_ms: float | None = None
    size_bytes: int | None = None
    cost_per_million_usd: float | None = None


@dataclass(kw_only=True)
class ModelSummary:
    """One column of the comparison: ``scores`` is None when it could not be scored, and ``reason`` says why."""

    scores: Scores | None = None
    reason: str | None = None

    #: the "test items scored" of a column that could not be scored
    UNSCORED_ITEMS: ClassVar[int | None] = None

    @property
    def available(self) -> bool:
        return self.scores is not None

    @property
    def items(self) -> int | None:
        return self.scores.items if self.scores else self.UNSCORED_ITEMS

    @property
    def accuracy(self) -> float | None:
        return self.scores.accuracy if self.scores else None

    @property
    def accuracy_ci95(self) -> list[float] | None:
        return self.scores.accuracy_ci95 if self.scores else None

    @property
    def macro_f1(self) -> float | None:
        return self.scores.macro_f1 if self.scores else None

    @property
    def ece(self) -> float | None:
        return self.scores.ece if self.scores else None

    @property
    def mean_confidence(self) -> float | None:
        calibration = self.scores.calibration if self.scores else None
        return calibration.mean_confidence if calibration else None

    @property
    def speed(self) -> Speed:
        return Speed()


@dataclass(frozen=True, kw_only=True)
class TeacherEconomics(_Record):
    """The teacher's size, speed and cost (:func:`terakoya.evaluation.timing.teacher_economics`)."""

    size_bytes: int | None
    size_note: str
    recorded_calls: int
    items_per_second: float | None
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    timing_note: str
    #: only for a teacher priced by the CPU time of its recorded calls
    cpu_seconds_per_item: float | None = field(default=None, metadata=_OPTIONAL)
    cost_per_million_usd: float | None
    cost_note: str


@dataclass(kw_only=True)
class TeacherSummary(ModelSummary):
    """The teacher on the gold test items it labelled."""

    models: list[str]
    labelled: int
    unlabelled: int
    failed: int
    coverage: float
    economics: TeacherEconomics
    accuracy_counting_unlabelled_as_wrong: float | None = None

    UNSCORED_ITEMS: ClassVar[int | None] = 0

    @property
    def speed(self) -> Speed:
        e = self.economics
        return Speed(e.items_per_second, e.p50_latency_ms, e.size_bytes, e.cost_per_million_usd)

    def to_json(self) -> Json:
        out: Json = {"models": self.models, "labelled": self.labelled, "unlabelled": self.unlabelled}
        out.update(failed=self.failed, coverage=self.coverage, available=self.available)
        if self.scores is not None:
            out.update(self.scores.to_json())
            out["accuracy_counting_unlabelled_as_wrong"] = self.accuracy_counting_unlabelled_as_wrong
        else:
            out.update(items=0, accuracy=None, macro_f1=None, ece=None, reason=self.reason)
        return out | self.economics.to_json()

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TeacherSummary:
        return cls(
            scores=Scores.from_json(d) if d["available"] else None,
            reason=d.get("reason"),
            models=d["models"],
            labelled=d["labelled"],
            unlabelled=d["unlabelled"],
            failed=d["failed"],
            coverage=d["coverage"],
            economics=TeacherEconomics.from_json(d),
            accuracy_counting_unlabelled_as_wrong=d.get("accuracy_counting_unlabelled_as_wrong"),
        )


@dataclass(frozen=True, kw_only=True)
class StudentTiming(_Record):
    """The student timed now (:func:`terakoya.evaluation.timing.student_economics`); with nothing to time it
    on, only ``items_per_second`` (None) and the note."""

    timing_items: int | None = field(default=None, metadata=_OPTIONAL)
    items_per_second: float | None
    p50_latency_ms: float | None = field(default=None, metadata=_OPTIONAL)
    p95_latency_ms: float | None = field(default=None, metadata=_OPTIONAL)
    cpu_seconds_per_item: float | None = field(default=None, metadata=_OPTIONAL)
    cost_per_million_usd: float | None = field(default=None, metadata=_OPTIONAL)
    cost_note: str | None = field(default=None, metadata=_OPTIONAL)
    timing_note: str


@dataclass(kw_only=True)
class StudentSummary(ModelSummary):
    """The student (the newest run, or the one saved at ``--model``) on every gold test item."""

    run_id: str | None = None
    kind: str | None = None
    path: str | None = None
    classes: list[str] = field(default_factory=list)
    timing: StudentTiming | None = None
    size_bytes: int | None = None
    size_note: str | None = None

    @property
    def speed(self) -> Speed:
        t = self.timing
        if t is None:
            return Speed(size_bytes=self.size_bytes)
        return Speed(t.items_per_second, t.p50_latency_ms, self.size_bytes, t.cost_per_million_usd)

    def to_json(self) -> Json:
        if self.scores is None:
            out: Json = {"available": False, "reason": self.reason}
            return out | {"items": None, "accuracy": None, "macro_f1": None, "ece": None, "items_per_second": None}
        out = {"available": True, "run_id": self.run_id, "kind": self.kind, "path": self.path}
        out.update(classes=self.classes, **self.scores.to_json())
        if self.timing is not None:
            out.update(self.timing.to_json())
        return out | {"size_bytes": self.size_bytes, "size_note": self.size_note}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> StudentSummary:
        if not d["available"]:
            return cls(reason=d.get("reason"))
        return cls(
            scores=Scores.from_json(d),
            run_id=d["run_id"],
            kind=d["kind"],
            path=d["path"],
            classes=d["classes"],
            timing=StudentTiming.from_json(d) if "timing_note" in d else None,
            size_bytes=d.get("size_bytes"),
            size_note=d.get("size_note"),
        )


@dataclass(frozen=True)
class ExpertScore(_Record):
    person: str
    answers: int
    accuracy: float
    simulated: bool


@dataclass(frozen=True)
class PairAgreement(_Record):
    """Two experts on the test items they both answered."""

    a: str
    b: str
    items: int
    agreement: float
    kappa: float | None


@dataclass(frozen=True)
class ExpertAgreement(_Record):
    """Test items answered by two or more experts; with none, ``items`` is 0 and ``reason`` says so."""

    items: int
    reason: str | None = field(default=None, metadata=_OPTIONAL)
    pairwise_agreement: float | None = field(default=None, metadata=_OPTIONAL)
    pairs: list[PairAgreement] | None = field(default=None, metadata={**_OPTIONAL, "of": PairAgreement})
    majority_items: int | None = field(default=None, metadata=_OPTIONAL)
    ties: int | None = field(default=None, metadata=_OPTIONAL)
    majority_accuracy: float | None = field(default=None, metadata=_OPTIONAL)
    majority_accuracy_ci95: list[float] | None = field(default=None, metadata=_OPTIONAL)


@dataclass(frozen=True)
class LabelQuality(_Record):
    """Agreement on one label against all the others."""

    label: str
    answers: int
    fleiss: float | None
    alpha: float | None


@dataclass(frozen=True)
class PersonReliability(_Record):
    """One person's answers, accuracy on check items and estimated accuracy (for the owner only)."""

    person: str
    answers: int
    items: int
    gold_answers: int
    gold_accuracy: float | None
    gold_ci95: list[float] | None
    estimated_accuracy: float | None
    paused: bool


@dataclass(frozen=True, kw_only=True)
class QualitySection(_Record):
    """Quality control (:func:`terakoya.quality.summary.quality_summary`): agreement among the people, each
    person's reliability, the answers spent per item, who is paused, and the aggregation rule training uses."""

    items: int
    raters: int
    fleiss: float | None
    fleiss_ci95: list[float] | None
    alpha: float | None
    alpha_ci95: list[float] | None
    note: str | None
    per_label: list[LabelQuality] = field(default_factory=list, metadata={"of": LabelQuality})
    people: list[PersonReliability] = field(default_factory=list, metadata={"of": PersonReliability})
    answered_items: int = 0
    answers: int = 0
    items_by_answers: dict[str, int] = field(default_factory=dict)
    paused: list[str] = field(default_factory=list)
    aggregator: str = "majority"
    estimate_note: str | None = None

    @classmethod
    def from_summary(cls, q: Any) -> QualitySection:
        """From a :class:`terakoya.quality.summary.QualitySummary`."""
        a = q.agreement
        return cls(
            items=a.items,
            raters=a.raters,
            fleiss=a.fleiss,
            fleiss_ci95=list(a.fleiss_ci95) if a.fleiss_ci95 else None,
            alpha=a.alpha,
            alpha_ci95=list(a.alpha_ci95) if a.alpha_ci95 else None,
            note=a.note,
            per_label=[LabelQuality(x.label, x.answers, x.fleiss, x.alpha) for x in a.per_label.values()],
            people=[
                PersonReliability(
                    p.person,
                    p.answers,
                    p.items,
                    p.gold_answers,
                    p.gold_accuracy,
                    p.gold_ci95,
                    p.estimated_accuracy,
                    p.paused,
                )
                for p in q.people
            ],
            answered_items=q.answered_items,
            answers=q.answers,
            items_by_answers={str(k): v for k, v in q.items_by_answers.items()},
            paused=[f"{p.person}: {p.reason}" for p in q.pauses],
            aggregator=q.aggregator,
            estimate_note=q.estimate_note,
        )


@dataclass(frozen=True, kw_only=True)
class ExpertEconomics(_Record):
    """The experts' speed and cost, from the active seconds people recorded and the pay settings."""

    items_per_second: float | None
    p50_latency_ms: float | None
    cost_per_million_usd: float | None
    #: experts have no size on disk
    size_bytes: None = None
    cost_note: str


@dataclass(kw_only=True)
class ExpertsSummary(ModelSummary):
    """The experts against gold, one label per test item they answered."""

    test_answers: int
    economics: ExpertEconomics
    per_expert: list[ExpertScore] = field(default_factory=list)
    note: str | None = None
    multi: ExpertAgreement | None = None
    #: answers on test items that are recorded labels, not a person's (None: none)
    simulated_answers: int | None = None
    simulated_note: str | None = None

    UNSCORED_ITEMS: ClassVar[int | None] = 0

    @property
    def speed(self) -> Speed:
        e = self.economics
        return Speed(e.items_per_second, e.p50_latency_ms, None, e.cost_per_million_usd)

    def to_json(self) -> Json:
        out: Json = {"test_answers": self.test_answers}
        if self.scores is None:
            out.update(available=False, items=0, accuracy=None, macro_f1=None, reason=self.reason)
        else:
            out.update(per_expert=[p.to_json() for p in self.per_expert], available=True, **self.scores.to_json())
            out.update(note=self.note, multi=self.multi.to_json() if self.multi else None)
            if self.simulated_answers:
                out.update(simulated_answers=self.simulated_answers, simulated_note=self.simulated_note)
        return out | self.economics.to_json()

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ExpertsSummary:
        return cls(
            scores=Scores.from_json(d) if d["available"] else None,
            reason=d.get("reason"),
            test_answers=d["test_answers"],
            economics=ExpertEconomics.from_json(d),
            per_expert=[ExpertScore.from_json(p) for p in d.get("per_expert", [])],
            note=d.get("note"),
            multi=ExpertAgreement.from_json(d["multi"]) if d.get("multi") is not None else None,
            simulated_answers=d.get("simulated_answers"),
            simulated_note=d.get("simulated_note"),
        )


@dataclass(kw_only=True)
class ExpertsAloneSummary(ModelSummary):
    """A student of the same kind trained on the experts' answers alone (no teacher)."""

    kind: str | None = None
    expert_items: int | None = None

    def to_json(self) -> Json:
        if self.scores is None:
            out: Json = {"available": False, "items": None, "accuracy": None, "macro_f1": None, "ece": None}
            return out | {"reason": self.reason}
        return {"available": True, "kind": self.kind, "expert_items": self.expert_items, **self.scores.to_json()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ExpertsAloneSummary:
        if not d["available"]:
            return cls(reason=d.get("reason"))
        return cls(scores=Scores.from_json(d), kind=d["kind"], expert_items=d["expert_items"])


# ----------------------------------------------------------------------------- errors and overrides


@dataclass(frozen=True)
class Example(_Record):
    """An item shown as an example: its external id, its database id and its text (cut short)."""

    id: str
    item_id: int
    text: str


@dataclass(frozen=True)
class ClassErrors(_Record):
    label: str
    items: int
    errors: int
    error_rate: float


@dataclass(frozen=True)
class ConfusionPair(_Record):
    """A (gold, predicted) pair off the diagonal, how often it happens, and a few of its items."""

    true: str
    predicted: str
    count: int
    examples: list[Example] = field(metadata={"of": Example})


@dataclass(frozen=True)
class ErrorBreakdown(_Record):
    """Error rate per gold label (worst first) and the most common confusions."""

    by_class: list[ClassErrors] = field(metadata={"of": ClassErrors})
    confusions: list[ConfusionPair] = field(metadata={"of": ConfusionPair})


@dataclass(frozen=True)
class OverridePair(_Record):
    """The teacher said ``teacher``, the experts ``expert``: how often, and a few of those items."""

    teacher: str
    expert: str
    count: int
    examples: list[Example] = field(metadata={"of": Example})


@dataclass(frozen=True, kw_only=True)
class Overrides(_Record):
    """Pool items where the experts' label differs from the teacher's current label."""

    pool_items_answered: int
    compared: int
    #: answered pool items the teacher has not labelled (None when no pool item was answered)
    not_teacher_labelled: int | None = field(default=None, metadata=_OPTIONAL)
    overridden: int
    rate: float | None
    by_pair: list[OverridePair] = field(metadata={"of": OverridePair})
    reason: str | None = field(default=None, metadata=_OPTIONAL)


# ----------------------------------------------------------------------------- student vs teacher


@dataclass(frozen=True)
class Paired(_Record):
    """Student vs teacher on the same gold items (those the teacher labelled); ``items`` 0: there are none."""

    items: int
    teacher_accuracy: float | None = None
    student_accuracy: float | None = None
    teacher_only_right: int | None = None
    student_only_right: int | None = None
    #: the exact McNemar test (None: the two are never right on different items)
    mcnemar_p: float | None = None
    note: str | None = None

    def to_json(self) -> Json:
        return super().to_json() if self.items else {"items": self.items}


@dataclass(frozen=True)
class AgreementRow(_Record):
    items: int
    agreement: float | None
    kappa: float | None
    #: where the student's labels come from
    source: str


@dataclass(frozen=True)
class StudentTeacherAgreement(_Record):
    """How often the student and the teacher give the same label, on the test split and on the pool."""

    test: AgreementRow = field(metadata={"of": AgreementRow})
    pool: AgreementRow = field(metadata={"of": AgreementRow})


# ----------------------------------------------------------------------------- cost, economics, curve


@dataclass(frozen=True)
class ExpertCost(_Record):
    """What the expert answers cost under the pay settings."""

    amount: float | None
    currency: str
    rule: str


@dataclass(frozen=True)
class Economics(_Record):
    """Student vs teacher: speed-up (items/s) and latency ratio (p50), when both are known."""

    speedup: float | None
    latency_ratio: float | None
    note: str


@dataclass(frozen=True)
class CurvePoint(_Record):
    """A student retrained with ``expert_items`` expert labels, scored on the test split."""

    expert_items: int
    accuracy: float
    macro_f1: float
    train_items: int


@dataclass
class RandomCurve(_Record):
    """The random-routing baseline: as many expert labels, drawn at random from the pool's recorded labels.

    ``label`` is None when there is no chosen-routing curve to compare with; ``seed`` is None when the
    baseline could not be simulated (``reason`` says why).
    """

    available: bool
    reason: str | None = None
    label: str | None = None
    points: list[CurvePoint] = field(default_factory=list, metadata={"of": CurvePoint})
    skipped: list[str] | None = None
    seed: int | None = None
    note: str | None = None

    def to_json(self) -> Json:
        if self.label is None:
            return {"available": self.available, "reason": self.reason}
        out: Json = {"label": self.label, "points": [p.to_json() for p in self.points]}
        if self.seed is None:
            return out | {"available": self.available, "reason": self.reason}
        if self.skipped is not None:
            out["skipped"] = self.skipped
        out["available"] = self.available
        if self.reason is not None:
            out["reason"] = self.reason
        return out | {"seed": self.seed, "note": self.note}


@dataclass
class LearningCurve(_Record):
    """Student quality against the number of expert items it was trained with, and the random baseline.

    ``label`` is None when the curve was skipped (``--no-curve``); ``student_kind`` is None when there was
    no expert item to add along it.
    """

    available: bool
    reason: str | None = None
    label: str | None = None
    points: list[CurvePoint] = field(default_factory=list, metadata={"of": CurvePoint})
    expert_items: int | None = None
    student_kind: str | None = None
    skipped: list[str] | None = None
    note: str | None = None
    random: RandomCurve | None = field(default=None, metadata={"of": RandomCurve})

    def to_json(self) -> Json:
        points = [p.to_json() for p in self.points]
        if self.label is None:
            return {"available": self.available, "reason": self.reason, "points": points}
        random = self.random.to_json() if self.random is not None else None
        out: Json = {"label": self.label, "points": points, "expert_items": self.expert_items}
        if self.student_kind is None:
            return out | {"available": self.available, "random": random, "reason": self.reason}
        out.update(student_kind=self.student_kind, available=self.available)
        if self.skipped is not None:
            out["skipped"] = self.skipped
        if self.available:
            return out | {"note": self.note, "random": random}
        return out | {"reason": self.reason, "random": random}


# ----------------------------------------------------------------------------- the first screen


@dataclass(frozen=True, kw_only=True)
class ExpertTime(_Record):
    """The expert time behind the answers, in minutes: what people recorded, an estimate for people's answers
    that recorded none, and what simulated answers assume (``routing.seconds_per_item`` each)."""

    answers: int
    #: people's answers with recorded active seconds, and those seconds in minutes
    timed: int
    recorded_minutes: float
    #: people's answers that recorded no time, and them at the median recorded time (None: nothing to estimate)
    untimed: int
    estimated_minutes: float | None
    #: simulated answers, and the time they were given
    simulated: int
    simulated_minutes: float

    @property
    def total_minutes(self) -> float:
        return self.recorded_minutes + (self.estimated_minutes or 0.0) + self.simulated_minutes


@dataclass(frozen=True)
class SummaryLine(_Record):
    """One plain-words answer of the first screen: ``topic`` the question it answers, ``text`` the answer and
    ``see`` the id of the section that shows the details (None: none)."""

    topic: str
    text: str
    see: str | None = None


# ----------------------------------------------------------------------------- the report


@dataclass(kw_only=True)
class Report:
    """The whole scrutiny report; ``to_json()`` is report.json."""

    project: str
    created_at: str
    classes: list[str]
    #: gold test items scored, and all items in the test split
    test_items: int
    test_items_total: int
    pool_items: int
    #: items with an expert answer, and those of them whose answers are all simulated
    expert_items: int
    expert_items_simulated: int
    expert_answers: int
    simulated_answers: int
    expert_people: int
    expert_minutes: float
    expert_minutes_simulated: float
    expert_minutes_note: str
    teacher: TeacherSummary
    experts: ExpertsSummary
    overrides: Overrides
    student: StudentSummary
    teacher_trust: TeacherTrust
    experts_alone: ExpertsAloneSummary
    expert_cost: ExpertCost
    economics: Economics
    learning_curve: LearningCurve
    #: None when the teacher labelled no gold test item
    teacher_errors: ErrorBreakdown | None = None
    #: these three are None when there is no student
    student_errors: ErrorBreakdown | None = None
    paired: Paired | None = None
    agreement: StudentTeacherAgreement | None = None
    #: the first screen: the answers in plain words (empty in a report.json written before it)
    summary: list[SummaryLine] = field(default_factory=list)
    #: accuracy by slice of the test items (None in a report.json written before it)
    slices: Slices | None = None
    #: expert accuracy and agreement with the teacher on verify and blind tasks (None: as above)
    verify_vs_blind: VerifyVsBlind | None = None
    #: the expert time behind the answers (None: as above)
    expert_time: ExpertTime | None = None
    #: the key findings in plain words, the headline first
    findings: list[str] = field(default_factory=list)
    #: what could not be computed, and why
    notes: list[str] = field(default_factory=list)
    #: quality control: agreement, reliability, overlap, pauses (None in a report.json written before it)
    quality: QualitySection | None = None
    #: the sections the task kind shows, by their id on the page, in order (empty: every section, as in a
    #: report.json written before kinds chose them)
    sections: list[str] = field(default_factory=list)
    format: int = 1

    def shows(self, section: str) -> bool:
        """Whether the report shows ``section`` (the task kind's choice)."""
        return not self.sections or section in self.sections

    def columns(self) -> list[tuple[str, ModelSummary]]:
        """The comparison's columns with their titles, in the order the report shows them."""
        return [
            ("Teacher", self.teacher),
            ("Student", self.student),
            ("Experts alone", self.experts_alone),
            ("Experts", self.experts),
        ]

    def to_json(self) -> Json:
        """report.json: plain JSON values (numpy scalars to Python, NaN to null), its keys in their usual order."""
        out: Json = {"format": self.format, "project": self.project, "created_at": self.created_at}
        for name in _COUNTS:
            out[name] = getattr(self, name)
        out["teacher"] = self.teacher.to_json()
        if self.teacher_errors is not None:
            out["teacher_errors"] = self.teacher_errors.to_json()
        out.update(experts=self.experts.to_json(), overrides=self.overrides.to_json(), student=self.student.to_json())
        if self.student_errors is not None:
            out["student_errors"] = self.student_errors.to_json()
        if self.paired is not None:
            out["paired"] = self.paired.to_json()
        out["agreement"] = self.agreement.to_json() if self.agreement is not None else {}
        out.update(
            teacher_trust=self.teacher_trust.to_json(),
            experts_alone=self.experts_alone.to_json(),
            expert_cost=self.expert_cost.to_json(),
            economics=self.economics.to_json(),
            learning_curve=self.learning_curve.to_json(),
            summary=[line.to_json() for line in self.summary],
        )
        for name in ("slices", "verify_vs_blind", "expert_time", "quality"):
            section = getattr(self, name)
            if section is not None:
                out[name] = section.to_json()
        out.update(findings=self.findings, notes=self.notes, sections=self.sections)
        safe: Json = json_safe(out)
        return safe

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Report:
        """The report a report.json holds."""
        return cls(
            format=d["format"],
            project=d["project"],
            created_at=d["created_at"],
            **{name: d[name] for name in _COUNTS},
            teacher=TeacherSummary.from_json(d["teacher"]),
            teacher_errors=ErrorBreakdown.from_json(d["teacher_errors"]) if "teacher_errors" in d else None,
            experts=ExpertsSummary.from_json(d["experts"]),
            overrides=Overrides.from_json(d["overrides"]),
            student=StudentSummary.from_json(d["student"]),
            student_errors=ErrorBreakdown.from_json(d["student_errors"]) if "student_errors" in d else None,
            paired=Paired.from_json(d["paired"]) if "paired" in d else None,
            agreement=StudentTeacherAgreement.from_json(d["agreement"]) if d["agreement"] else None,
            teacher_trust=TeacherTrust.from_json(d["teacher_trust"]),
            experts_alone=ExpertsAloneSummary.from_json(d["experts_alone"]),
            expert_cost=ExpertCost.from_json(d["expert_cost"]),
            economics=Economics.from_json(d["economics"]),
            learning_curve=LearningCurve.from_json(d["learning_curve"]),
            summary=[SummaryLine.from_json(line) for line in d.get("summary", [])],
            slices=Slices.from_json(d["slices"]) if d.get("slices") else None,
            verify_vs_blind=VerifyVsBlind.from_json(d["verify_vs_blind"]) if d.get("verify_vs_blind") else None,
            expert_time=ExpertTime.from_json(d["expert_time"]) if d.get("expert_time") else None,
            quality=QualitySection.from_json(d["quality"]) if d.get("quality") else None,
            findings=d["findings"],
            notes=d["notes"],
            sections=list(d.get("sections", [])),
        )


#: the report's counts, in report.json's order (after format, project and created_at)
_COUNTS = (
    "classes",
    "test_items",
    "test_items_total",
    "pool_items",
    "expert_items",
    "expert_items_simulated",
    "expert_answers",
    "simulated_answers",
    "expert_people",
    "expert_minutes",
    "expert_minutes_simulated",
    "expert_minutes_note",
)
