"""The report's findings in plain words: the headline (does the student beat its teacher, and at what
expert cost), then what the numbers say about the teacher, the experts, speed, cost and the learning curve."""

from __future__ import annotations

from terakoya.evaluation.sections import Report

__all__ = ["findings", "headline", "money"]


def money(x: float) -> str:
    """Dollars: cents from one cent up, two significant digits below."""
    return f"${x:,.2f}" if x >= 0.01 or x == 0 else f"${x:.2g}"


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


def _expert_cost_line(report: Report) -> str:
    minutes = report.expert_minutes or 0.0
    cost = report.expert_cost
    line = f"Expert cost: {report.expert_answers} answers, {minutes:.1f} minutes of expert time"
    if cost.amount is not None:
        line += f", {cost.amount:,.2f} {cost.currency} at {cost.rule}"
    if report.simulated_answers:
        line += f" ({report.simulated_answers} answers simulated from recorded labels)"
    return line + "."


def findings(report: Report) -> list[str]:
    """The headline, then one line for each thing worth knowing that the numbers show."""
    lines = [
        *headline(report),
        _paired_line(report),
        _few_items_line(report),
        _experts_line(report),
        _teacher_errors_line(report),
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
    speedup = report.economics.speedup
    if speedup and s.items_per_second is not None and t.items_per_second is not None:
        out.append(
            f"The student handles {speedup:,.0f}x the items per second of the teacher "
            f"({s.items_per_second:,.0f} vs {t.items_per_second:,.2f})."
        )
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
