"""The report in plain words.

- :func:`summary`: the first screen — is the student better than the teacher (by how much, how sure), where
  the AI is wrong, whether the experts follow the teacher, what the experts cost in money and time, how fast
  the student is — each answer naming the section that shows the details;
- :func:`findings`: the headline (does the student beat its teacher, and at what expert cost), then what the
  numbers say about the teacher, the slices, the experts, speed, cost and the learning curve.

The words for a speed ratio (:func:`speed_words`) and for the expert time (:func:`expert_time_words`) are
written once here, and every place that shows them reads them from here.
"""

from __future__ import annotations

from terakoya.evaluation.sections import ErrorBreakdown, ExpertTime, Report, SummaryLine
from terakoya.evaluation.slices import WHO, slice_name

__all__ = ["duration", "expert_time_words", "findings", "headline", "money", "rate", "speed_words", "summary"]

#: recorded time per answer below this is quicker than anyone reads an item
PLAUSIBLE_SECONDS = 3.0


def money(x: float) -> str:
    """Dollars: cents from one cent up, two significant digits below."""
    return f"${x:,.2f}" if x >= 0.01 or x == 0 else f"${x:.2g}"


def rate(x: float) -> str:
    """Items per second as the report shows them: no decimals from 100 up, two from 1, three digits below."""
    return f"{x:,.0f}" if x >= 100 else f"{x:,.2f}" if x >= 1 else f"{x:.3g}"


def _times(x: float) -> str:
    return f"{x:,.0f}x" if x >= 10 else f"{x:.1f}x"


def speed_words(report: Report) -> str:
    """The one sentence on student vs teacher speed ("" when either is unknown): the table's items per second,
    and their ratio, said as "N times the items per second" or "N times slower" so it never reads 0x."""
    t, s = report.teacher.speed.items_per_second, report.student.speed.items_per_second
    ratio = report.economics.speedup
    if not ratio or not t or not s:
        return ""
    rates = f"({rate(s)} vs {rate(t)} items per second)"
    if 0.95 <= ratio < 1.05:
        return f"The student is about as fast as the teacher {rates}."
    if ratio >= 1:
        return f"The student handles {_times(ratio)} the items per second of the teacher {rates}."
    return f"The student is {_times(1 / ratio)} slower than the teacher {rates}."


def duration(minutes: float) -> str:
    """A span of time in the unit that reads best: seconds under a minute and a half, then minutes, then hours."""
    if minutes * 60 < 90:
        return f"{minutes * 60:.0f} s"
    if minutes < 90:
        return f"{minutes:.1f} minutes"
    return f"{minutes / 60:.1f} hours"


def expert_time_words(t: ExpertTime) -> str:
    """Where the expert time comes from: recorded by people (and how much per answer), estimated for people's
    answers that recorded none, assumed for simulated ones."""
    parts = []
    if t.timed:
        per_answer = 60 * t.recorded_minutes / t.timed
        line = (
            f"{duration(t.recorded_minutes)} of active time recorded on {t.timed} answers by people "
            f"({per_answer:.0f} s each)"
        )
        if per_answer < PLAUSIBLE_SECONDS:
            line += (
                f" — under {PLAUSIBLE_SECONDS:.0f} s an answer is quicker than anyone reads an item, so the recorded "
                "time looks incomplete"
            )
        parts.append(line)
    if t.untimed:
        parts.append(
            f"{t.untimed} answers by people recorded no time"
            + (f" (about {duration(t.estimated_minutes)} at the median recorded time)" if t.estimated_minutes else "")
        )
    if t.simulated:
        parts.append(
            f"{duration(t.simulated_minutes)} assumed for {t.simulated} simulated answers (routing.seconds_per_item "
            "each)"
            if t.simulated_minutes
            else f"no time for {t.simulated} simulated answers"
        )
    return "; ".join(parts)


def headline(report: Report) -> list[str]:
    """The report's first lines, in plain words: does the student beat the teacher, and at what expert cost."""
    t, s, alone = report.teacher, report.student, report.experts_alone
    out: list[str] = []
    if s.accuracy is not None and t.accuracy is not None:
        diff = 100 * (s.accuracy - t.accuracy)
        p = report.paired.mcnemar_p if report.paired else None
        sure = "" if p is None else (" — a difference this large is unlikely to be chance" if p < 0.05 else
                                     f" — but with p = {p:.2g} it may be chance")  # fmt: skip
        verdict = "beats" if diff > 0 else ("matches" if diff == 0 else "does NOT beat")
        out.append(
            f"The student {verdict} its teacher: {100 * s.accuracy:.1f}% vs {100 * t.accuracy:.1f}% on "
            f"{report.test_items} expert-checked test items ({diff:+.1f} points{sure})."
        )
    if alone.accuracy is not None and s.accuracy is not None:
        diff = 100 * (s.accuracy - alone.accuracy)
        out.append(
            f"The experts' {alone.expert_items} answers alone (no teacher) would give a student of "
            f"{100 * alone.accuracy:.1f}%: the teacher adds {diff:+.1f} points."
        )
    out.append(_expert_cost_line(report))
    if report.teacher_trust.sentence:
        out.append(report.teacher_trust.sentence)
    if s.mean_confidence is not None and s.accuracy is not None and s.mean_confidence - s.accuracy > 0.1:
        out.append(
            f"Warning: the student is over-confident — mean confidence {100 * s.mean_confidence:.0f}% but "
            f"{100 * s.accuracy:.0f}% accurate; treat its confidences with care."
        )
    return out


def _cost_words(report: Report) -> str:
    """What the experts cost, in money and time, and where the time comes from."""
    cost, t = report.expert_cost, report.expert_time
    money_ = f"{cost.amount:,.2f} {cost.currency} at {cost.rule}" if cost.amount is not None else "an unknown amount"
    if t is None:  # a report.json written before the time was told apart
        minutes = report.expert_minutes or 0.0
        line = f"{report.expert_answers} answers, {minutes:.1f} minutes of expert time, {money_}"
        if report.simulated_answers:
            line += f" ({report.simulated_answers} answers simulated from recorded labels)"
        return line
    if not t.answers:
        return "nothing yet: no expert has answered"
    words = expert_time_words(t)
    return f"{money_} and about {duration(t.total_minutes)} of expert time for {t.answers} answers" + (
        f" — {words}" if words else ""
    )


def _expert_cost_line(report: Report) -> str:
    return f"Expert cost: {_cost_words(report)}."


def findings(report: Report) -> list[str]:
    """The headline, then one line for each thing worth knowing that the numbers show."""
    lines = [
        *headline(report),
        _paired_line(report),
        _few_items_line(report),
        _experts_line(report),
        _teacher_errors_line(report),
        *_slice_lines(report),
        *(report.verify_vs_blind.sentences[:1] if report.verify_vs_blind else []),
        _overrides_line(report),
        *_economics_lines(report),
        *_curve_lines(report),
    ]
    if report.simulated_answers:
        lines.append(
            f"{report.simulated_answers} of {report.expert_answers} expert answers are simulated from recorded "
            "labels, not given by people."
        )
    return [line for line in lines if line]


def _paired_line(report: Report) -> str:
    paired = report.paired
    if paired is None or not paired.items or paired.student_accuracy is None or paired.teacher_accuracy is None:
        return ""
    student, teacher = paired.student_accuracy, paired.teacher_accuracy
    diff = 100 * (student - teacher)
    where = f"On the {paired.items} gold test items both labelled"
    if abs(diff) >= 0.05:
        line = (
            f"{where}, the student is {abs(diff):.1f} points {'more' if diff > 0 else 'less'} accurate than the "
            f"teacher ({100 * student:.1f}% vs {100 * teacher:.1f}%)"
        )
    else:
        line = f"{where}, the student and the teacher are equally accurate ({100 * student:.1f}%)"
    line += (
        f"; only the student is right on {paired.student_only_right}, only the teacher on {paired.teacher_only_right}"
    )
    if paired.mcnemar_p is not None:
        line += f" (exact McNemar p = {paired.mcnemar_p:.2g})"
    return line + "."


def _few_items_line(report: Report) -> str:
    if report.test_items < 200 and (report.teacher.accuracy is not None or report.student.accuracy is not None):
        return (
            f"Only {report.test_items} gold test items: the 95% intervals are wide, so differences of a few points "
            "may be noise."
        )
    return ""


def _experts_line(report: Report) -> str:
    e = report.experts
    if e.accuracy is None:
        return ""
    return (
        f"Experts (one label per item) score {100 * e.accuracy:.1f}% against gold on the {e.items} test items they "
        "answered"
        + (f" ({e.simulated_answers} of {e.test_answers} answers simulated)." if e.simulated_answers else ".")
    )


def _teacher_errors_line(report: Report) -> str:
    errors = report.teacher_errors
    if errors is None or not errors.by_class or not errors.by_class[0].errors:
        return ""
    worst = errors.by_class[0]
    line = (
        f"The teacher is most often wrong on gold '{worst.label}' ({100 * worst.error_rate:.0f}% of "
        f"{worst.items} items)"
    )
    if errors.confusions:
        c = errors.confusions[0]
        line += f"; its most common confusion is {c.true} → {c.predicted} ({c.count} items)"
    return line + "."


def _overrides_line(report: Report) -> str:
    ov = report.overrides
    if not ov.compared:
        return ""
    line = (
        f"Experts changed the teacher's label on {ov.overridden} of {ov.compared} pool items they answered "
        f"({100 * (ov.rate or 0):.0f}%)"
    )
    if ov.by_pair:
        p = ov.by_pair[0]
        line += f", most often teacher '{p.teacher}' → expert '{p.expert}' ({p.count})"
    return line + "."


def _economics_lines(report: Report) -> list[str]:
    out: list[str] = []
    t, s = report.teacher.speed, report.student.speed
    if speed := speed_words(report):
        out.append(speed)
    if s.cost_per_million_usd is not None and t.cost_per_million_usd is not None:
        out.append(
            f"A million predictions cost about {money(s.cost_per_million_usd)} with the student and "
            f"{money(t.cost_per_million_usd)} with the teacher."
        )
    return out


def _curve_lines(report: Report) -> list[str]:
    curve = report.learning_curve
    if len(curve.points) < 2:
        return []
    first, last = curve.points[0], curve.points[-1]
    out = [
        f"Learning curve ({curve.label}): {100 * first.accuracy:.1f}% with {first.expert_items} expert "
        f"items, {100 * last.accuracy:.1f}% with {last.expert_items}."
    ]
    random = curve.random.points if curve.random else []
    if random:
        out.append(
            f"With the same {random[-1].expert_items} expert labels drawn at random from the pool (simulated from "
            f"recorded labels) the student reaches {100 * random[-1].accuracy:.1f}%."
        )
    return out


def _slice_lines(report: Report) -> list[str]:
    """Where a model is measurably worse on a slice, else the sentence that says none is (or too few to tell)."""
    if report.slices is None:
        return []
    claims = [line for line in report.slices.sentences if " is measurably worse on " in line]
    return claims or report.slices.sentences[:1]


# ----------------------------------------------------------------------------- the first screen


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _student_vs_teacher(report: Report) -> str:
    t, s, paired = report.teacher, report.student, report.paired
    if not s.available:
        alone = f"the teacher scores {_pct(t.accuracy)} on {t.items} gold test items" if t.available else ""
        return f"Not known: {s.reason}" + (f"; {alone}." if alone else ".")
    if paired is None or not paired.items or paired.student_accuracy is None or paired.teacher_accuracy is None:
        return (
            f"Not known: the teacher labelled no gold test item, so the two cannot be compared; the student scores "
            f"{_pct(s.accuracy)} on {s.items} gold test items."
        )
    diff = 100 * (paired.student_accuracy - paired.teacher_accuracy)
    both = (
        f"{_pct(paired.student_accuracy)} vs {_pct(paired.teacher_accuracy)} on the same {paired.items} gold test "
        f"items; the student is right where the teacher is wrong on {paired.student_only_right}, the reverse on "
        f"{paired.teacher_only_right}"
    )
    if abs(diff) < 0.05:
        return f"No: the student and the teacher are equally accurate ({both})."
    p = paired.mcnemar_p
    sure = p is not None and p < 0.05
    if p is None:
        how_sure = ""
    elif sure:
        how_sure = f"; McNemar's exact test gives p = {p:.2g}: a gap this large is unlikely to be chance"
    else:
        how_sure = f"; McNemar's exact test gives p = {p:.2g}: a gap this small could well be chance"
    if diff > 0:
        answer = "Yes" if sure else "Not shown"
        return f"{answer}: the student is {diff:.1f} points more accurate than the teacher ({both}){how_sure}."
    answer = "No" if sure else "No, though not measurably worse"
    return f"{answer}: the student is {-diff:.1f} points less accurate than the teacher ({both}){how_sure}."


def _worst(who: str, errors: ErrorBreakdown | None) -> str:
    if errors is None or not errors.by_class:
        return ""
    worst = errors.by_class[0]
    if not worst.errors:
        return f"{who} is right on every gold test item"
    line = f"{who} is most often wrong on gold '{worst.label}' ({100 * worst.error_rate:.0f}% of {worst.items} items)"
    top = next((c for c in errors.confusions if c.true == worst.label), None)
    return line + (f", mostly saying '{top.predicted}'" if top else "")


def _where_wrong(report: Report) -> str:
    parts = [
        p for p in (_worst("the teacher", report.teacher_errors), _worst("the student", report.student_errors)) if p
    ]
    if not parts:
        return "Not known: neither the teacher nor the student has been scored on gold test items."
    line = "; ".join(parts)
    return line[0].upper() + line[1:] + "."


def _where_biased(report: Report) -> str:
    slices = report.slices
    if slices is None:
        return ""
    worse = slices.worse()
    if not worse:
        return slices.sentences[0] if slices.sentences else ""
    names = dict(WHO)
    shown = [
        f"{names[who]} on {slice_name(column, row)} ({100 * s.accuracy:.0f}% vs "
        f"{100 * (s.rest_accuracy or 0.0):.0f}% on the rest)"
        for who, column, row, s in worse[:3]
    ]
    more = f", and {len(worse) - 3} more" if len(worse) > 3 else ""
    return f"Measurably worse on a slice of the data: {'; '.join(shown)}{more}."


def summary(report: Report) -> list[SummaryLine]:
    """The first screen: each question a reader asks first, answered in plain words, with the section to read next."""
    lines = [
        SummaryLine("Is the student better than the teacher?", _student_vs_teacher(report), "comparison"),
        SummaryLine("Where is the AI wrong?", _where_wrong(report), "errors"),
    ]
    if biased := _where_biased(report):
        lines.append(SummaryLine("Is it worse on some part of the data?", biased, "slices"))
    if report.verify_vs_blind is not None and report.verify_vs_blind.sentences:
        anchoring = report.verify_vs_blind.sentences[0]
        lines.append(
            SummaryLine("Do the experts follow the teacher when they see its label?", anchoring, "verify-blind")
        )
    cost = _cost_words(report)
    lines.append(SummaryLine("What did the experts cost?", cost[0].upper() + cost[1:] + ".", "experts"))
    if speed := speed_words(report):
        lines.append(SummaryLine("How fast is the student?", speed, "comparison"))
    return lines
