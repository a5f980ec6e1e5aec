"""Verify vs blind: do the experts follow the teacher when they see its label?

A *verify* task shows the expert the teacher's label (routed items, with ``routing.verify_routed``); a
*blind* label task — a gold check, a blind audit, a random pick (:data:`terakoya.quality.aggregate.BLIND_REASONS`)
— does not. On each, over the answers people gave:

- accuracy against the item's recorded (gold) label, where it has one, with its 95 % Wilson interval;
- how often the expert gave the teacher's label (on a verify answer, the label it was shown);
- where the teacher's label was wrong, how often the expert repeated it;
- the median time per decision (active seconds), which shows what checking a suggestion saves.

Anchoring shows as more agreement with the teacher on verify tasks, most plainly where the teacher was
wrong. Verify and blind are compared by Fisher's exact test; with fewer than :data:`MIN_ANSWERS` answers on
either side the report says it cannot tell. Simulated answers copy recorded labels, so they show nothing
here and are left out; so are label answers on routed tasks and answers given on no task (from a file),
which are neither kind.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from terakoya.evaluation.gather import AnswerRow
from terakoya.evaluation.metrics import proportions_p, wilson_interval
from terakoya.evaluation.records import Record
from terakoya.quality.aggregate import BLIND_REASONS

__all__ = ["MIN_ANSWERS", "TaskKindScore", "VerifyVsBlind", "verify_vs_blind"]

#: fewer answers than this on either side (verify, blind): too few to tell
MIN_ANSWERS = 10
ALPHA = 0.05
NOTE = (
    "Verify tasks are routed items (picked as hard or uncertain), blind ones are drawn at random, so accuracy can "
    "differ for that reason alone; agreement with the teacher where it was wrong is the plainest sign of anchoring."
)


@dataclass(frozen=True, kw_only=True)
class TaskKindScore(Record):
    """The people's answers on one kind of task."""

    answers: int
    #: answers on items with a recorded (gold) label, and how many of them give it
    with_gold: int
    correct: int
    accuracy: float | None
    accuracy_ci95: list[float] | None
    #: answers on items the teacher labelled, and how many give the teacher's label
    with_teacher: int
    agree: int
    teacher_agreement: float | None
    teacher_agreement_ci95: list[float] | None
    #: answers where the teacher's label is known to be wrong (gold known), and how many repeat it
    teacher_wrong: int
    followed_wrong: int
    #: median active seconds per decision, over the answers that recorded a time (None: none did)
    median_seconds: float | None = None
    timed: int = 0


@dataclass(frozen=True, kw_only=True)
class VerifyVsBlind(Record):
    """Expert accuracy and agreement with the teacher on verify tasks (the teacher's label shown) and blind ones."""

    verify: TaskKindScore = field(metadata={"of": TaskKindScore})
    blind: TaskKindScore = field(metadata={"of": TaskKindScore})
    #: Fisher's exact test, verify vs blind (None: too few answers to test)
    accuracy_p: float | None
    agreement_p: float | None
    #: simulated answers, and people's answers that are neither verify nor blind, left out
    simulated_left_out: int
    other_left_out: int
    min_answers: int
    note: str
    sentences: list[str]


def _score(rows: Sequence[AnswerRow], teacher_of: Callable[[AnswerRow], str | None]) -> TaskKindScore:
    gold = [a for a in rows if a.gold is not None]
    correct = sum(a.label == a.gold for a in gold)
    said = [(a, t) for a in rows if (t := teacher_of(a)) is not None]
    agree = sum(a.label == t for a, t in said)
    wrong = [(a, t) for a, t in said if a.gold is not None and t != a.gold]
    timed = [a.active_seconds for a in rows if a.active_seconds is not None and a.active_seconds > 0]
    return TaskKindScore(
        answers=len(rows),
        with_gold=len(gold),
        correct=correct,
        accuracy=correct / len(gold) if gold else None,
        accuracy_ci95=wilson_interval(correct, len(gold)),
        with_teacher=len(said),
        agree=agree,
        teacher_agreement=agree / len(said) if said else None,
        teacher_agreement_ci95=wilson_interval(agree, len(said)),
        teacher_wrong=len(wrong),
        followed_wrong=sum(a.label == t for a, t in wrong),
        median_seconds=statistics.median(timed) if timed else None,
        timed=len(timed),
    )


def verify_vs_blind(answers: Sequence[AnswerRow], teacher: Callable[[int], str | None]) -> VerifyVsBlind:
    """The section from the live expert answers; ``teacher`` gives an item's current teacher label (None: none).

    A verify answer is compared with the label it was shown where it recorded one, else with the current one.
    """
    people = [a for a in answers if not a.simulated]
    verify = [a for a in people if a.kind == "verify"]
    blind = [a for a in people if a.kind == "label" and a.task_reason in BLIND_REASONS]

    def teacher_of(a: AnswerRow) -> str | None:
        return a.teacher_shown if a.kind == "verify" and a.teacher_shown is not None else teacher(a.item_id)

    v, b = _score(verify, teacher_of), _score(blind, teacher_of)
    enough = min(v.with_gold, b.with_gold) >= MIN_ANSWERS
    accuracy_p = proportions_p(v.correct, v.with_gold, b.correct, b.with_gold) if enough else None
    enough = min(v.with_teacher, b.with_teacher) >= MIN_ANSWERS
    agreement_p = proportions_p(v.agree, v.with_teacher, b.agree, b.with_teacher) if enough else None
    simulated = len(answers) - len(people)
    out = VerifyVsBlind(
        verify=v,
        blind=b,
        accuracy_p=accuracy_p,
        agreement_p=agreement_p,
        simulated_left_out=simulated,
        other_left_out=len(people) - len(verify) - len(blind),
        min_answers=MIN_ANSWERS,
        note=NOTE,
        sentences=[],
    )
    return replace(out, sentences=_sentences(out))


# ----------------------------------------------------------------------------- plain words


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def _ci(ci: list[float] | None) -> str:
    return f" (95% CI {_pct(ci[0])}–{_pct(ci[1])})" if ci else ""


def _compared(p: float | None, verify: float | None, blind: float | None, more: str, less: str) -> str:
    if p is None or verify is None or blind is None:
        return ""
    if p < ALPHA and verify != blind:
        return f" — measurably {more if verify > blind else less} (Fisher's exact test, p = {p:.2g})"
    return f" — no measurable difference (p = {p:.2g})"


def _sentences(s: VerifyVsBlind) -> list[str]:
    v, b = s.verify, s.blind
    if not v.answers and not b.answers:
        simulated = (
            f"; the {s.simulated_left_out} simulated answers copy recorded labels and show nothing about it"
            if s.simulated_left_out
            else ""
        )
        other = (
            f"; {s.other_left_out} answers were given on routed label tasks or on no task, which are neither"
            if s.other_left_out
            else ""
        )
        return [f"No verify or blind answers by people yet, so anchoring cannot be measured{simulated}{other}."]
    out: list[str] = []
    if s.agreement_p is None:
        out.append(
            f"Too few answers to tell whether seeing the teacher's label sways the experts: {v.with_teacher} verify "
            f"and {b.with_teacher} blind answers on items the teacher labelled (at least {MIN_ANSWERS} of each needed)."
        )
    else:
        line = (
            f"Experts gave the teacher's label on {_pct(v.teacher_agreement)}{_ci(v.teacher_agreement_ci95)} of "
            f"{v.with_teacher} verify answers (its label shown) and on {_pct(b.teacher_agreement)}"
            f"{_ci(b.teacher_agreement_ci95)} of {b.with_teacher} blind ones"
        )
        line += _compared(s.agreement_p, v.teacher_agreement, b.teacher_agreement, "more often when shown it",
                          "less often when shown it")  # fmt: skip
        anchored = (
            s.agreement_p < ALPHA
            and v.teacher_agreement is not None
            and b.teacher_agreement is not None
            and v.teacher_agreement > b.teacher_agreement
        )
        out.append(line + (": its suggestion may be anchoring them." if anchored else "."))
    if s.accuracy_p is None:
        out.append(
            f"Too few answers on items with a recorded label to compare the experts' accuracy: {v.with_gold} verify "
            f"and {b.with_gold} blind (at least {MIN_ANSWERS} of each needed)."
        )
    else:
        line = (
            f"Against the recorded labels the experts are right on {_pct(v.accuracy)}{_ci(v.accuracy_ci95)} of "
            f"{v.with_gold} verify answers and {_pct(b.accuracy)}{_ci(b.accuracy_ci95)} of {b.with_gold} blind ones"
        )
        out.append(line + _compared(s.accuracy_p, v.accuracy, b.accuracy, "higher on verify", "lower on verify") + ".")
    if v.teacher_wrong or b.teacher_wrong:
        out.append(
            f"Where the teacher's label was wrong, the experts repeated it on {v.followed_wrong} of {v.teacher_wrong} "
            f"verify answers and {b.followed_wrong} of {b.teacher_wrong} blind ones."
        )
    return out
