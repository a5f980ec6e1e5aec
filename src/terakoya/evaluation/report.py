"""The scrutiny report: student vs teacher vs experts on the expert-checked test split.

``evaluate`` reads the project once (``gather``), scores each of the three on the gold test items,
looks at where the teacher is wrong and what the experts overrode, times the student, prices both,
retrains the student along a learning curve, and writes ``report.json`` and a self-contained
``report.html``. The report is typed data (:class:`terakoya.evaluation.sections.Report`); a number that
cannot be computed is ``null`` in the JSON, with the reason in ``notes``.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import InitVar, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from terakoya.errors import StudentError
from terakoya.evaluation.anchoring import verify_vs_blind
from terakoya.evaluation.findings import findings, summary
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
from terakoya.evaluation.sections import (
    AgreementRow,
    ClassErrors,
    ConfusionPair,
    Economics,
    ErrorBreakdown,
    Example,
    ExpertAgreement,
    ExpertCost,
    ExpertEconomics,
    ExpertsAloneSummary,
    ExpertScore,
    ExpertsSummary,
    ExpertTime,
    LearningCurve,
    OverridePair,
    Overrides,
    PairAgreement,
    Paired,
    QualitySection,
    Report,
    Scores,
    StudentSummary,
    StudentTeacherAgreement,
    StudentTiming,
    TeacherEconomics,
    TeacherSummary,
)
from terakoya.evaluation.slices import Slices, slice_report
from terakoya.kinds import get_kind
from terakoya.quality.aggregate import top_labels
from terakoya.settings import Settings
from terakoya.storage import Database

__all__ = ["EvaluationReport", "Report", "evaluate", "write_report"]

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
    """What :func:`evaluate` returns: the typed ``report``, and where its files were written.

    ``data`` is ``report.to_json()``, the dict in report.json, for callers that read it by key. ``report``
    is not a dataclass field, so a background job records ``data`` and the paths as its result, as before;
    built from a dict alone, ``report`` is read from ``data``.
    """

    data: dict[str, Any]
    out_dir: Path
    json_path: Path
    html_path: Path
    typed: InitVar[Report | None] = None

    def __post_init__(self, typed: Report | None) -> None:
        self.report = typed if typed is not None else Report.from_json(self.data)


# ----------------------------------------------------------------------------- helpers


def _example(item_id: int, external_id: str, text: str) -> Example:
    short = text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1] + "…"
    return Example(external_id, item_id, short)


def _scored(gold: Sequence[str], proba: np.ndarray | None, pred: Sequence[str], classes: Sequence[str]) -> Scores:
    out = classification_metrics(gold, proba, pred, classes)
    correct = sum(g == p for g, p in zip(gold, pred, strict=True))
    out["correct"] = correct
    out["accuracy_ci95"] = wilson_interval(correct, len(gold))
    return Scores.from_json(out)


def _errors(items: Sequence[TestItem], pred: Sequence[str]) -> ErrorBreakdown:
    """Error rate per gold label and the most common confusions, with example texts."""
    by_gold: dict[str, list[bool]] = defaultdict(list)
    for item, p in zip(items, pred, strict=True):
        by_gold[item.gold].append(item.gold != p)
    by_class = [ClassErrors(g, len(w), sum(w), sum(w) / len(w)) for g, w in by_gold.items()]
    by_class.sort(key=lambda r: (-r.error_rate, -r.items, r.label))
    top = [
        ConfusionPair(
            conf["true"],
            conf["predicted"],
            conf["count"],
            [
                _example(i.id, i.external_id, i.text)
                for i, p in zip(items, pred, strict=True)
                if i.gold == conf["true"] and p == conf["predicted"]
            ][:EXAMPLES],
        )
        for conf in confusions([i.gold for i in items], pred, top=TOP_PAIRS)
    ]
    return ErrorBreakdown(by_class, top)


def _proba_matrix(rows: Sequence[ModelRow], classes: Sequence[str]) -> np.ndarray:
    out = np.full((len(rows), len(classes)), np.nan)
    for i, row in enumerate(rows):
        if row.probabilities is not None:
            out[i] = [row.probabilities.get(c, 0.0) for c in classes]
    return out


def _align(proba: Any, student_classes: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    raw = np.asarray(proba, dtype=float)
    out = np.zeros((raw.shape[0], len(classes)))
    where = {c: i for i, c in enumerate(student_classes)}
    for j, c in enumerate(classes):
        if c in where:
            out[:, j] = raw[:, where[c]]
    return out


# ----------------------------------------------------------------------------- the teacher


def _teacher(g: Gathered, settings: Settings, notes: list[str]) -> TeacherSummary:
    from terakoya.evaluation.timing import teacher_economics

    labelled = [t for t in g.test if t.id in g.teacher_test]
    unlabelled = len(g.test) - len(labelled)
    out = TeacherSummary(
        models=g.teacher_models,
        labelled=len(labelled),
        unlabelled=unlabelled,
        failed=g.teacher_test_failed,
        coverage=len(labelled) / len(g.test),
        economics=TeacherEconomics.from_json(teacher_economics(g.teacher_calls, settings)),
    )
    if not labelled:
        out.reason = "the teacher has not labelled any gold test item: run `terakoya teach`"
        notes.append(f"teacher quality: {out.reason}")
    else:
        rows = [g.teacher_test[t.id] for t in labelled]
        scores = _scored([t.gold for t in labelled], _proba_matrix(rows, g.classes), [r.label for r in rows], g.classes)
        out.scores = scores
        out.accuracy_counting_unlabelled_as_wrong = scores.correct / len(g.test)
        if unlabelled:
            failed = f", {g.teacher_test_failed} of them after failed calls" if g.teacher_test_failed else ""
            notes.append(
                f"the teacher has not labelled {unlabelled} of {len(g.test)} gold test items{failed}; its scores "
                f"cover the {len(labelled)} it labelled (counting the rest as wrong: "
                f"{100 * out.accuracy_counting_unlabelled_as_wrong:.1f}%) — run `terakoya teach` to label them"
            )
        unknown = scores.calibration.probabilities_unknown if scores.calibration else 0
        if unknown:
            notes.append(
                f"the teacher gave no probabilities for {unknown} test items; calibration (ECE, Brier, NLL) covers "
                "the others"
            )
    _teacher_economics_notes(g, settings, out.economics, notes)
    return out


def _teacher_economics_notes(g: Gathered, settings: Settings, economics: TeacherEconomics, notes: list[str]) -> None:
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
    if economics.items_per_second is None:
        notes.append(f"teacher speed: {economics.timing_note}")
    if economics.cost_per_million_usd is None:
        notes.append(f"teacher cost: {economics.cost_note}")


# ----------------------------------------------------------------------------- the student


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


def _student(student: Any, g: Gathered, run: RunRow | None, folder: Path) -> tuple[StudentSummary, list[str]]:
    """The student scored on every gold test item, and its label for each."""
    student_classes = [str(c) for c in student.classes_]
    raw = np.asarray(student.predict_proba([t.text for t in g.test]), dtype=float)
    pred = [student_classes[i] for i in raw.argmax(axis=1)]
    summary = StudentSummary(
        scores=_scored([t.gold for t in g.test], _align(raw, student_classes, g.classes), pred, g.classes),
        run_id=run.run_id if run else None,
        kind=run.kind if run else getattr(student, "kind", None),
        path=str(folder),
        classes=student_classes,
    )
    return summary, pred


@dataclass
class _StudentPart:
    """The student's column and what compares it with the teacher; only ``summary`` without a student."""

    summary: StudentSummary
    errors: ErrorBreakdown | None = None
    paired: Paired | None = None
    agreement: StudentTeacherAgreement | None = None
    model: Any = None
    #: the student's label for each gold test item, in ``Gathered.test`` order
    pred: list[str] | None = None


def _student_part(
    db: Database,
    project_id: int,
    g: Gathered,
    settings: Settings,
    model_path: Path | None,
    run: RunRow | None,
    notes: list[str],
    tick: _Ticker,
) -> _StudentPart:
    from terakoya.evaluation.timing import student_economics, student_size

    if model_path is None and run is None:
        notes.append(f"student: no student yet: {TRAIN_HINT}")
        tick(2)
        return _StudentPart(StudentSummary(reason=f"no student yet: {TRAIN_HINT}"))
    student, folder = _load_student(model_path, run, settings)
    summary, pred = _student(student, g, run, folder)
    part = _StudentPart(summary, _errors(g.test, pred), _paired(g, pred), None, student, pred)
    part.agreement = _agreement(db, project_id, g, student, pred, run, settings.seed)
    tick()
    from terakoya.students import load

    summary.timing = StudentTiming.from_json(
        student_economics(lambda: load(folder), [t.text for t in g.test], settings)
    )
    summary.size_bytes, summary.size_note = student_size(folder, student)
    tick()
    return part


def _paired(g: Gathered, student_pred: Sequence[str]) -> Paired:
    """Student vs teacher on the same gold items (those the teacher labelled), with an exact McNemar test."""
    from scipy.stats import binomtest

    rows = [(t.gold, g.teacher_test[t.id].label, p) for t, p in zip(g.test, student_pred, strict=True)
            if t.id in g.teacher_test]  # fmt: skip
    if not rows:
        return Paired(0)
    teacher_only = sum(tl == gold and sp != gold for gold, tl, sp in rows)
    student_only = sum(sp == gold and tl != gold for gold, tl, sp in rows)
    discordant = teacher_only + student_only
    return Paired(
        items=len(rows),
        teacher_accuracy=sum(tl == gold for gold, tl, _ in rows) / len(rows),
        student_accuracy=sum(sp == gold for gold, _, sp in rows) / len(rows),
        teacher_only_right=teacher_only,
        student_only_right=student_only,
        mcnemar_p=float(binomtest(student_only, discordant).pvalue) if discordant else None,
        note="same items for both: the gold test items the teacher labelled",
    )


def _agreement(
    db: Database, project_id: int, g: Gathered, student: Any, student_pred: Sequence[str], run: RunRow | None, seed: int
) -> StudentTeacherAgreement:
    test_ids = [t.id for t in g.test if t.id in g.teacher_test]
    index = {t.id: i for i, t in enumerate(g.test)}
    a = [g.teacher_test[i].label for i in test_ids]
    b = [student_pred[index[i]] for i in test_ids]
    test = AgreementRow(len(a), agreement(a, b) if a else None, cohen_kappa(a, b), "predicted now")
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
    return StudentTeacherAgreement(
        test, AgreementRow(len(a), agreement(a, b) if a else None, cohen_kappa(a, b), source)
    )


# ----------------------------------------------------------------------------- the experts


def _experts(g: Gathered, settings: Settings, notes: list[str]) -> ExpertsSummary:
    gold = {t.id: t.gold for t in g.test}
    test_answers = [a for a in g.answers if a.item_id in gold]
    economics = _expert_economics(g.answers, settings)
    if not test_answers:
        reason = (
            "no expert answered a gold test item, so the experts cannot be scored; routing sends a share of "
            "test items to experts (routing.gold_share) — answer some routed items"
        )
        notes.append(f"experts: {reason}")
        return ExpertsSummary(test_answers=0, economics=economics, reason=reason)
    by_person: dict[str, list[AnswerRow]] = defaultdict(list)
    by_item: dict[int, list[AnswerRow]] = defaultdict(list)
    for a in test_answers:
        by_person[a.person].append(a)
        by_item[a.item_id].append(a)
    per_expert = [
        ExpertScore(
            person, len(rows), sum(a.label == gold[a.item_id] for a in rows) / len(rows), all(a.simulated for a in rows)
        )
        for person, rows in by_person.items()
    ]
    ids = sorted(by_item)
    out = ExpertsSummary(
        scores=_scored([gold[i] for i in ids], None, [label_of(by_item[i]) for i in ids], g.classes),
        test_answers=len(test_answers),
        economics=economics,
        per_expert=sorted(per_expert, key=lambda r: (-r.answers, r.person)),
        note="one label per item: the most common of its expert answers (ties to the newest)",
        multi=_multi(by_item, gold),
    )
    if any(a.simulated for a in test_answers):
        out.simulated_answers = sims = sum(a.simulated for a in test_answers)
        out.simulated_note = (
            f"{sims} of {len(test_answers)} expert answers on test items are simulated (recorded labels, not a "
            "person): their accuracy says nothing about people"
        )
    return out


def _multi(by_item: dict[int, list[AnswerRow]], gold: dict[int, str]) -> ExpertAgreement:
    """Items answered by two or more people: agreement between them, and their aggregate label vs gold.

    Agreement compares each person's newest answer; the aggregate label is :func:`label_of` over all the
    item's live answers (the label training uses), a tie going to the newest answer: ``ties`` counts those.
    """
    multi = {i: rows for i, rows in by_item.items() if len({a.person for a in rows}) >= 2}
    if not multi:
        return ExpertAgreement(0, "no test item was answered by two or more experts, so agreement is unknown")
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
    people = sorted({p for answers in latest.values() for p in answers})
    pairs = []
    for a, b in itertools.combinations(people, 2):
        shared = [i for i, answers in latest.items() if a in answers and b in answers]
        if shared:
            la, lb = [latest[i][a] for i in shared], [latest[i][b] for i in shared]
            pairs.append(PairAgreement(a, b, len(shared), agreement(la, lb), cohen_kappa(la, lb)))
    return ExpertAgreement(
        items=len(multi),
        pairwise_agreement=same / total,
        pairs=pairs,
        majority_items=len(multi),
        ties=ties,
        majority_accuracy=majority_right / len(multi),
        majority_accuracy_ci95=wilson_interval(majority_right, len(multi)),
    )


def _expert_economics(answers: Sequence[AnswerRow], settings: Settings) -> ExpertEconomics:
    seconds = [a.active_seconds for a in answers if a.active_seconds and a.active_seconds > 0 and not a.simulated]
    if not seconds:
        return ExpertEconomics(
            items_per_second=None,
            p50_latency_ms=None,
            cost_per_million_usd=None,
            cost_note="no recorded active seconds from people (simulated answers are left out)",
        )
    mean_s = float(np.mean(seconds))
    pay = settings.pay
    per_item = pay.per_item if pay.mode == "per_item" else pay.per_hour * mean_s / 3600
    return ExpertEconomics(
        items_per_second=1 / mean_s,
        p50_latency_ms=float(np.median(seconds)) * 1000,
        cost_per_million_usd=per_item * 1_000_000 if pay.currency.upper() == "USD" else None,
        cost_note=(
            f"from {len(seconds)} answers with active seconds; pay {pay.mode} "
            f"({pay.per_item if pay.mode == 'per_item' else pay.per_hour} {pay.currency})"
            + ("" if pay.currency.upper() == "USD" else f"; not shown in USD because pay.currency is {pay.currency}")
        ),
    )


def _overrides(g: Gathered) -> Overrides:
    """Pool items where the expert's label differs from the teacher's current label."""
    by_item: dict[int, list[AnswerRow]] = defaultdict(list)
    for a in g.answers:
        if a.split == "pool":
            by_item[a.item_id].append(a)
    if not by_item:
        return Overrides(
            pool_items_answered=0, compared=0, overridden=0, rate=None, by_pair=[],
            reason="no pool item has an expert answer yet: run `terakoya route`, then answer the routed items",
        )  # fmt: skip
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
    return Overrides(
        pool_items_answered=len(by_item),
        compared=compared,
        not_teacher_labelled=len(by_item) - compared,
        overridden=overridden,
        rate=overridden / compared if compared else None,
        by_pair=[
            OverridePair(
                t, e, len(ids), [_example(i, g.external_ids.get(i, str(i)), g.texts.get(i, "")) for i in ids[:EXAMPLES]]
            )
            for (t, e), ids in ordered
        ],
    )


def _experts_alone(
    db: Database, project_id: int, settings: Settings, g: Gathered, run: RunRow | None, notes: list[str]
) -> ExpertsAloneSummary:
    """A student of the same kind trained on the experts' answers alone (no teacher), scored on the test split."""
    from terakoya.training import build_training_set, student_params, train_arrays

    kind = run.kind if run else settings.student.kind
    if kind.startswith("finetune"):
        reason = "not computed for fine-tuned students (minutes of CPU per fit)"
        notes.append(f"experts alone: {reason}")
        return ExpertsAloneSummary(reason=reason)
    alone = settings.model_copy(update={"student": settings.student.model_copy(update={"use_teacher": False})})
    data = build_training_set(db, project_id, alone)
    if data.expert_items < 2 or len(set(data.targets.argmax(axis=1).tolist())) < 2:
        reason = "fewer than two labels among the expert answers"
        notes.append(f"experts alone: {reason}")
        return ExpertsAloneSummary(reason=reason)
    params = student_params(kind, settings)
    fitted = train_arrays(data.texts, data.targets, data.weights, data.classes, kind=kind, params=params,
                          calibrate=False, seed=settings.student.seed)  # fmt: skip
    names = [str(c) for c in fitted.student.classes_]
    raw = np.asarray(fitted.student.predict_proba([t.text for t in g.test]), dtype=float)
    pred = [names[i] for i in raw.argmax(axis=1)]
    scores = _scored([t.gold for t in g.test], _align(raw, names, g.classes), pred, g.classes)
    return ExpertsAloneSummary(scores=scores, kind=kind, expert_items=data.expert_items)


# ----------------------------------------------------------------------------- the whole report


class _Ticker:
    """Progress in ``steps`` ticks, never past the last."""

    def __init__(self, progress: Progress | None, steps: int) -> None:
        self.progress, self.steps, self.done = progress, steps, 0

    def __call__(self, n: int = 1) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(min(self.done, self.steps), self.steps)


def _expert_time(g: Gathered) -> ExpertTime:
    """The time behind the answers: people's recorded seconds, their untimed answers at the median recorded
    time, and the seconds simulated answers were given."""
    people = [a for a in g.answers if not a.simulated]
    timed = [float(a.active_seconds) for a in people if a.active_seconds and a.active_seconds > 0]
    untimed = len(people) - len(timed)
    simulated = [a for a in g.answers if a.simulated]
    return ExpertTime(
        answers=len(g.answers),
        timed=len(timed),
        recorded_minutes=sum(timed) / 60,
        untimed=untimed,
        estimated_minutes=untimed * float(np.median(timed)) / 60 if untimed and timed else None,
        simulated=len(simulated),
        simulated_minutes=sum(a.active_seconds or 0.0 for a in simulated) / 60,
    )


def _expert_cost(g: Gathered, settings: Settings, time: ExpertTime) -> ExpertCost:
    """What the answers cost: per answer, or per hour of the expert time (untimed answers at the median)."""
    pay = settings.pay
    if pay.mode == "per_item":
        return ExpertCost(pay.per_item * len(g.answers), pay.currency, f"{pay.per_item:g} per item")
    rule = f"{pay.per_hour:g} per hour"
    if time.estimated_minutes:
        rule += f" ({time.untimed} answers without recorded time counted at the median)"
    return ExpertCost(pay.per_hour * time.total_minutes / 60, pay.currency, rule)


def _slices(g: Gathered, experts: ExpertsSummary, student_pred: Sequence[str] | None) -> Slices:
    """Accuracy by slice of the gold test items, for the teacher, the student and the experts (one label per item)."""
    gold = {t.id: t.gold for t in g.test}
    by_item: dict[int, list[AnswerRow]] = defaultdict(list)
    for a in g.answers:
        if a.item_id in gold:
            by_item[a.item_id].append(a)
    right = {
        "teacher": {i: row.label == gold[i] for i, row in g.teacher_test.items() if i in gold},
        "student": {t.id: p == t.gold for t, p in zip(g.test, student_pred, strict=True)} if student_pred else {},
        "experts": {i: label_of(rows) == gold[i] for i, rows in by_item.items()} if experts.available else {},
    }
    return slice_report(g.test, right)


def _teacher_label(g: Gathered) -> Callable[[int], str | None]:
    """An item's current teacher label, in either split (None: the teacher has not labelled it)."""

    def label(item_id: int) -> str | None:
        row = g.teacher_test.get(item_id)
        return row.label if row is not None else g.teacher_pool.get(item_id)

    return label


def _quality(db: Database, project_id: int, settings: Settings) -> QualitySection:
    from terakoya.quality.summary import quality_summary  # quality reads evaluation's metrics: import it late

    return QualitySection.from_summary(quality_summary(db, project_id, settings))


def _economics(teacher: TeacherSummary, student: StudentSummary) -> Economics:
    t, s = teacher.speed, student.speed
    return Economics(
        speedup=s.items_per_second / t.items_per_second if s.items_per_second and t.items_per_second else None,
        latency_ratio=t.p50_latency_ms / s.p50_latency_ms if t.p50_latency_ms and s.p50_latency_ms else None,
        note="speed-up = student items/s / teacher items/s; latency ratio = teacher p50 / student p50",
    )


def _learning_curve(
    db: Database,
    project_id: int,
    settings: Settings,
    g: Gathered,
    part: _StudentPart,
    run: RunRow | None,
    points: int | None,
    tick: _Ticker,
    notes: list[str],
) -> LearningCurve:
    """The learning curve (``points`` None: skipped), and a note when it or its baseline is missing."""
    from terakoya.evaluation.curve import learning_curve_data

    if points is None:
        curve = LearningCurve(available=False, reason="skipped (--no-curve)")
    else:
        curve = learning_curve_data(db, project_id, settings, g, run=run, student=part.model, points=points, tick=tick)
    if not curve.available:
        notes.append(f"learning curve: {curve.reason}")
    elif curve.random is not None and not curve.random.available:
        notes.append(f"random-routing baseline: {curve.random.reason}")
    return curve


def _expert_counts(g: Gathered) -> dict[str, Any]:
    """The report's counts of expert work, by field name."""
    simulated_only: dict[int, bool] = {}
    for a in g.answers:
        simulated_only[a.item_id] = simulated_only.get(a.item_id, True) and a.simulated
    seconds = [a.active_seconds for a in g.answers if a.active_seconds]
    simulated_seconds = sum(a.active_seconds for a in g.answers if a.active_seconds and a.simulated)
    return {
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


def report_dir(settings: Settings, out_dir: Path | None) -> tuple[Path, bool]:
    """Where a report goes: ``out_dir``, or a new folder under reports/ (then True: publish it as latest)."""
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


def write_report(report: Report | Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write report.json and report.html into ``out_dir``."""
    from terakoya.evaluation.render import render_html

    data = report.to_json() if isinstance(report, Report) else dict(report)
    json_path = out_dir / "report.json"
    html_path = out_dir / "report.html"
    json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return json_path, html_path


def _write(report: Report, settings: Settings, out_dir: Path | None) -> EvaluationReport:
    """Write the report into ``out_dir``, or a new folder under reports/ copied to reports/latest."""
    folder, default = report_dir(settings, out_dir)
    json_path, html_path = write_report(report, folder)
    if default:
        publish_latest(folder)
    return EvaluationReport(report.to_json(), folder, json_path, html_path, report)


def publish_latest(folder: Path) -> None:
    """Copy a report folder to reports/latest (what the web app's /report shows)."""
    latest = folder.parent / "latest"
    if latest.is_symlink() or latest.is_file():
        latest.unlink()
    elif latest.exists():
        shutil.rmtree(latest)
    shutil.copytree(folder, latest)


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
    from terakoya.evaluation.curve import curve_steps
    from terakoya.routing.trust import measure_trust

    tick = _Ticker(progress, 5 + (curve_steps(curve_points) if learning_curve else 0))
    g = gather(db, project_id, settings)
    tick()
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    counts = _expert_counts(g)
    notes: list[str] = []
    if g.test_total > len(g.test):
        notes.append(f"{g.test_total - len(g.test)} test items have no gold label and are left out of every score")
    teacher = _teacher(g, settings, notes)
    labelled = [t for t in g.test if t.id in g.teacher_test]
    teacher_errors = _errors(labelled, [g.teacher_test[t.id].label for t in labelled]) if teacher.available else None
    experts = _experts(g, settings, notes)
    overrides = _overrides(g)
    if not overrides.compared:
        notes.append(f"expert overrides: {overrides.reason or 'no answered pool item has a teacher label'}")
    tick()
    run = find_run(g, model_path, settings.project_dir)
    part = _student_part(db, project_id, g, settings, model_path, run, notes, tick)
    trust = measure_trust(db, project_id, settings)
    experts_alone = _experts_alone(db, project_id, settings, g, run, notes)
    points = curve_points if learning_curve else None
    curve = _learning_curve(db, project_id, settings, g, part, run, points, tick, notes)
    expert_time = _expert_time(g)
    report = Report(
        project=settings.name,
        created_at=created_at,
        classes=g.classes,
        test_items=len(g.test),
        test_items_total=g.test_total,
        pool_items=g.pool_total,
        **counts,
        teacher=teacher,
        teacher_errors=teacher_errors,
        experts=experts,
        overrides=overrides,
        student=part.summary,
        student_errors=part.errors,
        paired=part.paired,
        agreement=part.agreement,
        teacher_trust=trust,
        experts_alone=experts_alone,
        expert_cost=_expert_cost(g, settings, expert_time),
        economics=_economics(teacher, part.summary),
        learning_curve=curve,
        slices=_slices(g, experts, part.pred),
        verify_vs_blind=verify_vs_blind(g.answers, _teacher_label(g)),
        expert_time=expert_time,
        notes=notes,
        quality=_quality(db, project_id, settings),
        sections=list(get_kind(settings.task.kind).report_sections),
    )
    report.findings = findings(report)
    report.summary = summary(report)
    result = _write(report, settings, out_dir)
    tick()
    return result
