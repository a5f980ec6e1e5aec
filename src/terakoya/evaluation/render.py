"""Show a report: a Rich table for the terminal, a self-contained HTML page, PNG plots (matplotlib, Agg).

Everything here reads the typed :class:`terakoya.evaluation.sections.Report`; given the dict of a saved
report.json instead, it reads the report back from it first, so that file renders the same way.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from terakoya.evaluation.findings import money
from terakoya.evaluation.sections import (
    ErrorBreakdown,
    Example,
    ExpertsSummary,
    LearningCurve,
    ModelSummary,
    Overrides,
    Paired,
    Report,
    Scores,
)

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["plots", "render_html", "render_terminal"]


def _report(report: Report | Mapping[str, Any]) -> Report:
    return report if isinstance(report, Report) else Report.from_json(report)


# ----------------------------------------------------------------------------- formatting


def _pct(x: Any) -> str:
    return "—" if x is None else f"{100 * float(x):.1f}%"


def _num(x: Any, digits: int = 3) -> str:
    return "—" if x is None else f"{float(x):.{digits}f}"


def _rate(x: Any) -> str:
    if x is None:
        return "—"
    x = float(x)
    return f"{x:,.0f}" if x >= 100 else f"{x:,.2f}" if x >= 1 else f"{x:.3g}"


def _ms(x: Any) -> str:
    if x is None:
        return "—"
    x = float(x)
    return f"{x / 1000:,.1f} s" if x >= 1000 else f"{x:,.1f} ms" if x >= 1 else f"{x:.3f} ms"


def _bytes(x: Any) -> str:
    if x is None:
        return "—"
    size = float(x)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GB"


def _usd(x: Any) -> str:
    return "—" if x is None else money(float(x))


def _ci(ci: list[float] | None) -> str:
    return f" ({_pct(ci[0])}–{_pct(ci[1])})" if ci else ""


ROWS: list[tuple[str, Callable[[ModelSummary], str]]] = [
    ("test items scored", lambda b: "—" if b.items is None else f"{b.items:,}"),
    ("accuracy (95% CI)", lambda b: _pct(b.accuracy) + _ci(b.accuracy_ci95)),
    ("macro-F1", lambda b: _num(b.macro_f1)),
    ("calibration error (ECE)", lambda b: _num(b.ece)),
    ("items / second", lambda b: _rate(b.speed.items_per_second)),
    ("p50 latency, one item", lambda b: _ms(b.speed.p50_latency_ms)),
    ("size on disk", lambda b: _bytes(b.speed.size_bytes)),
    ("cost / million predictions", lambda b: _usd(b.speed.cost_per_million_usd)),
]


def _table_rows(report: Report) -> list[tuple[str, list[str]]]:
    return [(name, [fmt(block) for _, block in report.columns()]) for name, fmt in ROWS]


def render_terminal(report: Report | Mapping[str, Any], console: Console) -> None:
    """The comparison table, then the key findings and what could not be computed."""
    from rich.table import Table

    r = _report(report)
    table = Table(title=f"{r.project}: {r.test_items:,} gold test items", title_justify="left")
    table.add_column("")
    for title, _ in r.columns():
        table.add_column(title, justify="right")
    for name, cells in _table_rows(r):
        table.add_row(name, *cells)
    console.print(table)
    if r.economics.speedup:
        console.print(f"student vs teacher: [bold]{r.economics.speedup:,.1f}x[/bold] the items per second")
    if r.findings:
        console.print("[bold]Key findings[/bold]")
        for line in r.findings:
            console.print(f" • {line}", markup=False, highlight=False)
    if r.notes:
        console.print("[bold]Not computed, and why[/bold]")
        for line in r.notes:
            console.print(f" • {line}", markup=False, highlight=False)


# ----------------------------------------------------------------------------- plots


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _reliability_plot(blocks: Sequence[tuple[str, Scores]]) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(blocks), figsize=(4.2 * len(blocks), 4), squeeze=False)
    for ax, (title, block) in zip(axes[0], blocks, strict=True):
        bins = block.reliability
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
        filled = [b for b in bins if b.count]
        if filled:
            width = bins[0].hi - bins[0].lo
            ax.bar(
                [b.lo for b in filled],
                [b.accuracy for b in filled],
                width=width,
                align="edge",
                edgecolor="black",
                alpha=0.7,
                label="accuracy in bin",
            )
            ax.plot(
                [b.confidence for b in filled],
                [b.accuracy for b in filled],
                "o",
                color="black",
                markersize=3,
                label="mean confidence",
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{title} (ECE {_num(block.ece)})")
        ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _confusion_plot(blocks: Sequence[tuple[str, Scores]]) -> str:
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(blocks), figsize=(4.4 * len(blocks), 4.2), squeeze=False)
    for ax, (title, block) in zip(axes[0], blocks, strict=True):
        labels = block.confusion.labels
        matrix = np.array(block.confusion.matrix, dtype=float).reshape(len(labels), len(labels))
        ax.imshow(matrix, cmap="Blues")
        top = matrix.max() if matrix.size else 0
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(
                    j,
                    i,
                    f"{int(matrix[i, j])}",
                    ha="center",
                    va="center",
                    color="white" if top and matrix[i, j] > top / 2 else "black",
                    fontsize=8,
                )
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        ax.set_title(title)
    fig.tight_layout()
    return _png(fig)


def _curve_plot(curve: LearningCurve, teacher_accuracy: float | None) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    series = [(_or(curve.label, "chosen routing"), curve.points, "-o")]
    random = curve.random
    if random is not None and random.points:
        series.append((_or(random.label, "random routing"), random.points, "--s"))
    for ax, key, name in ((axes[0], "accuracy", "accuracy"), (axes[1], "macro_f1", "macro-F1")):
        for label, points, style in series:
            ax.plot([p.expert_items for p in points], [getattr(p, key) for p in points], style, label=label)
        if key == "accuracy" and teacher_accuracy is not None:
            ax.axhline(teacher_accuracy, color="grey", linestyle=":", label="teacher")
        ax.set_xlabel("expert items used in training")
        ax.set_ylabel(f"student {name} on the test split")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _or(value: str | None, default: str) -> str:
    return default if value is None else value


def plots(report: Report | Mapping[str, Any]) -> dict[str, str]:
    """Base64 PNGs by name: reliability, confusion, learning_curve (each only when there is data for it)."""
    import matplotlib

    matplotlib.use("Agg")
    r = _report(report)
    out: dict[str, str] = {}
    scored = [(title, b.scores) for title, b in r.columns() if b.scores is not None and b.scores.accuracy is not None]
    calibrated = [(t, s) for t, s in scored if s.ece is not None]
    if calibrated:
        out["reliability"] = _reliability_plot(calibrated)
    matrices = [(t, s) for t, s in scored if s.confusion.matrix]
    if matrices:
        out["confusion"] = _confusion_plot(matrices)
    if r.learning_curve.points:
        out["learning_curve"] = _curve_plot(r.learning_curve, r.teacher.accuracy)
    return out


# ----------------------------------------------------------------------------- HTML

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #1b1b1b; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .92rem; }
th, td { border: 1px solid #ddd; padding: .3rem .6rem; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f4f4f4; }
.note { color: #6a4a00; background: #fff8e6; padding: .4rem .6rem; border-left: 3px solid #e0a800; }
.muted { color: #666; font-size: .88rem; }
img { max-width: 100%; }
blockquote { margin: .2rem 0; color: #333; font-size: .9rem; }
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _table(
    head: Sequence[str], rows: Sequence[Sequence[Any]], numeric_from: int = 1, numeric_to: int | None = None
) -> str:
    out = ["<table><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr>"]
    last = len(head) if numeric_to is None else numeric_to
    for row in rows:
        cells = (
            f'<td class="n">{_e(c)}</td>' if numeric_from <= i < last else f"<td>{_e(c)}</td>"
            for i, c in enumerate(row)
        )
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _list(lines: Sequence[str], css: str = "") -> str:
    if not lines:
        return ""
    cls = f' class="{css}"' if css else ""
    return f"<ul{cls}>" + "".join(f"<li>{_e(line)}</li>" for line in lines) + "</ul>"


def _img(plots_: dict[str, str], name: str, alt: str) -> str:
    if name not in plots_:
        return ""
    return f'<p><img alt="{_e(alt)}" src="data:image/png;base64,{plots_[name]}"></p>'


def _examples(examples: Sequence[Example]) -> str:
    return "".join(f"<blockquote>[{_e(x.id)}] {_e(x.text)}</blockquote>" for x in examples)


def _per_class(report: Report) -> str:
    rows = []
    for title, block in report.columns():
        for label, m in (block.scores.per_class if block.scores else {}).items():
            rows.append([title, label, _pct(m.precision), _pct(m.recall), _num(m.f1), m.support])
    if not rows:
        return ""
    return _table(["who", "gold label", "precision", "recall", "F1", "support"], rows, numeric_from=2)


def _errors(block: ErrorBreakdown | None, who: str) -> str:
    if block is None:
        return ""
    parts = [f"<h3>{_e(who)}: error rate by gold label</h3>"]
    parts.append(
        _table(
            ["gold label", "items", "wrong", "error rate"],
            [[r.label, r.items, r.errors, _pct(r.error_rate)] for r in block.by_class],
        )
    )
    if block.confusions:
        parts.append(f"<h3>{_e(who)}: most common confusions</h3>")
        for c in block.confusions:
            parts.append(f"<p><b>{_e(c.true)} → {_e(c.predicted)}</b>: {_e(c.count)} items</p>")
            parts.append(_examples(c.examples))
    return "".join(parts)


def _paired(p: Paired | None) -> str:
    if p is None or not p.items:
        return ""
    return (
        f"<p>On the same {_e(p.items)} items (the gold test items the teacher labelled): student "
        f"{_e(_pct(p.student_accuracy))}, teacher {_e(_pct(p.teacher_accuracy))}; only the student is right on "
        f"{_e(p.student_only_right)}, only the teacher on {_e(p.teacher_only_right)}"
        + (f" (exact McNemar p = {_e(_num(p.mcnemar_p, 3))})" if p.mcnemar_p is not None else "")
        + ".</p>"
    )


def _experts(ex: ExpertsSummary) -> str:
    if not ex.available:
        return f'<p class="note">{_e(ex.reason)}</p>'
    parts = [
        _table(
            ["expert", "test answers", "accuracy vs gold", "simulated"],
            [[p.person, p.answers, _pct(p.accuracy), "yes" if p.simulated else "no"] for p in ex.per_expert],
        )
    ]
    multi = ex.multi
    if multi is None or not multi.items:
        parts.append(f'<p class="muted">{_e(multi.reason if multi else "")}</p>')
        return "".join(parts)
    parts.append(
        f"<p>{_e(multi.items)} test items were answered by two or more experts: observed agreement "
        f"{_e(_pct(multi.pairwise_agreement))}; majority vote vs gold {_e(_pct(multi.majority_accuracy))} "
        f"over {_e(multi.majority_items)} items ({_e(multi.ties)} ties, each decided by the newest answer).</p>"
    )
    if multi.pairs:
        parts.append(
            _table(
                ["expert A", "expert B", "shared items", "agreement", "Cohen's kappa"],
                [[p.a, p.b, p.items, _pct(p.agreement), _num(p.kappa)] for p in multi.pairs],
                numeric_from=2,
            )
        )
    return "".join(parts)


def _overrides(ov: Overrides) -> str:
    if not ov.compared:
        return f'<p class="note">{_e(_or(ov.reason, "no pool items answered by experts"))}</p>'
    parts = [
        f"<p>Experts answered {_e(ov.pool_items_answered)} pool items; {_e(ov.compared)} had a teacher label; "
        f"the expert differs from the teacher on <b>{_e(ov.overridden)}</b> ({_e(_pct(ov.rate))}).</p>"
    ]
    for pair in ov.by_pair:
        parts.append(f"<p><b>teacher {_e(pair.teacher)} → expert {_e(pair.expert)}</b>: {_e(pair.count)} items</p>")
        parts.append(_examples(pair.examples))
    return "".join(parts)


def _curve(curve: LearningCurve, plots_: dict[str, str]) -> str:
    if not curve.available:
        return f'<p class="note">{_e(curve.reason)}</p>'
    random = curve.random
    rows = [[_or(curve.label, ""), p.expert_items, _pct(p.accuracy), _num(p.macro_f1)] for p in curve.points]
    if random is not None:
        rows += [[_or(random.label, ""), p.expert_items, _pct(p.accuracy), _num(p.macro_f1)] for p in random.points]
    parts = [
        _img(plots_, "learning_curve", "learning curve"),
        _table(["routing", "expert items", "accuracy", "macro-F1"], rows, numeric_from=1),
    ]
    if random is None or not random.available:
        parts.append(f'<p class="muted">Random routing: {_e(random.reason if random else None)}</p>')
    elif random.note:
        parts.append(f'<p class="muted">Random routing: {_e(random.note)}</p>')
    if curve.note:
        parts.append(f'<p class="muted">{_e(curve.note)}</p>')
    return "".join(parts)


def _header(r: Report) -> str:
    return (
        f'<p class="muted">{_e(r.created_at)} · {_e(r.test_items)} gold test items of '
        f"{_e(r.test_items_total)} in the test split · {_e(r.pool_items)} pool items · "
        f"{_e(r.expert_items)} items answered by experts ({_e(r.simulated_answers)} of "
        f"{_e(r.expert_answers)} answers simulated) · {_num(r.expert_minutes, 1)} expert minutes</p>"
    )


def _agreement(r: Report) -> str:
    if r.agreement is None:
        return "<p class='muted'>no student to compare</p>"
    rows = [
        [where, a.items, _pct(a.agreement), _num(a.kappa), a.source]
        for where, a in (("test", r.agreement.test), ("pool", r.agreement.pool))
    ]
    return _table(["split", "items", "agreement", "Cohen's kappa", "student labels from"], rows, numeric_to=4)


def _economics_notes(r: Report) -> list[str]:
    """How speed, cost and size were measured, for each column that has them."""
    teacher, student = r.teacher.economics, r.student
    timing = student.timing
    notes = [
        ("Teacher speed", teacher.timing_note),
        ("Teacher cost", teacher.cost_note),
        ("Teacher size", teacher.size_note),
        ("Student speed", timing.timing_note if timing else None),
        ("Student cost", timing.cost_note if timing else None),
        ("Student size", student.size_note),
        ("Experts", r.experts.economics.cost_note),
    ]
    return [f"{what}: {note}" for what, note in notes if note]


def render_html(report: Report | Mapping[str, Any], images: dict[str, str] | None = None) -> str:
    """A self-contained page: inline CSS, plots (from ``plots(report)`` unless given) as data: URIs, texts escaped."""
    r = _report(report)
    if images is None:
        images = plots(r)
    speedup = r.economics.speedup
    body = [
        f"<h1>Terakoya evaluation: {_e(r.project)}</h1>",
        _header(r),
        "<h2>Student vs teacher vs experts</h2>",
        _table(["", *(title for title, _ in r.columns())], [[name, *cells] for name, cells in _table_rows(r)]),
        f"<p>Speed-up, student vs teacher: <b>{_e(_num(speedup, 1))}x</b></p>" if speedup else "",
        _paired(r.paired),
        "<h2>Key findings</h2>",
        _list(r.findings),
        "<h2>Not computed, and why</h2>" if r.notes else "",
        _list(r.notes, "note"),
        "<h2>Per-class precision and recall</h2>",
        _per_class(r),
        "<h2>Confusion matrices</h2>",
        _img(images, "confusion", "confusion matrices"),
        "<h2>Calibration</h2>",
        _img(images, "reliability", "reliability diagrams"),
        "<h2>Where the teacher is wrong</h2>",
        _errors(r.teacher_errors, "Teacher"),
        _errors(r.student_errors, "Student"),
        "<h2>What the experts overrode</h2>",
        _overrides(r.overrides),
        "<h2>The experts</h2>",
        _experts(r.experts),
        "<h2>Student–teacher agreement</h2>",
        _agreement(r),
        "<h2>Learning curve</h2>",
        _curve(r.learning_curve, images),
        "<h2>How the economics were measured</h2>",
        _list(_economics_notes(r), "muted"),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Terakoya evaluation: {_e(r.project)}</title><style>{CSS}</style></head><body>"
        + "\n".join(part for part in body if part)
        + "</body></html>\n"
    )
