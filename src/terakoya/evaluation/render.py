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

from terakoya.evaluation.anchoring import TaskKindScore, VerifyVsBlind
from terakoya.evaluation.findings import duration, expert_time_words, money, rate, summary
from terakoya.evaluation.sections import (
    ErrorBreakdown,
    Example,
    ExpertsSummary,
    LearningCurve,
    ModelSummary,
    Overrides,
    Paired,
    QualitySection,
    Report,
    Scores,
    SummaryLine,
)
from terakoya.evaluation.slices import BETTER, WHO, WORSE, Slices, SliceScore

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
    return "—" if x is None else rate(float(x))


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


def _span(ci: Sequence[float] | None) -> str:
    """A 95 % interval of a number that is not a share (kappa, alpha)."""
    return f" (95% CI {ci[0]:.2f} to {ci[1]:.2f})" if ci else ""


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


def _summary(r: Report) -> list[SummaryLine]:
    """The first screen: as the report recorded it, or worked out now for a report.json written before it."""
    return r.summary or summary(r)


def _bullets(console: Console, title: str, lines: Sequence[str]) -> None:
    if lines:
        console.print(f"[bold]{title}[/bold]")
        for line in lines:
            console.print(f" • {line}", markup=False, highlight=False)


def render_terminal(report: Report | Mapping[str, Any], console: Console) -> None:
    """The plain-words answers, the comparison table, the slices, the key findings and what could not be computed."""
    from rich.table import Table

    r = _report(report)
    console.print(f"[bold]{r.project}: in plain words[/bold]", highlight=False)
    for line in _summary(r):
        console.print(f"{line.topic}", style="bold", markup=False, highlight=False)
        console.print(f"   {line.text}", markup=False, highlight=False)
    table = Table(title=f"{r.project}: {r.test_items:,} gold test items", title_justify="left")
    table.add_column("")
    for title, _ in r.columns():
        table.add_column(title, justify="right")
    for name, cells in _table_rows(r):
        table.add_row(name, *cells)
    console.print(table)
    slices = r.slices if r.shows("slices") else None
    if slices is not None and slices.columns:
        console.print(_slices_table(slices))
    _bullets(console, "Where the AI is biased", slices.sentences if slices else [])
    verify = r.verify_vs_blind if r.shows("verify-blind") else None
    _bullets(console, "Verify vs blind", verify.sentences if verify else [])
    quality = r.quality if r.shows("quality") else None
    _bullets(console, "Quality control", quality_lines(quality) if quality else [])
    _bullets(console, "Key findings", r.findings if r.shows("findings") else [])
    _bullets(console, "Not computed, and why", r.notes if r.shows("notes") else [])


def _slice_text(score: SliceScore | None, items: int) -> str:
    """A slice's accuracy for the terminal; ``n=`` where fewer of its items were scored than it has."""
    if score is None:
        return "—"
    mark = {WORSE: " ▼ worse", BETTER: " ▲ better"}.get(score.verdict, " (too few)" if score.p_value is None else "")
    n = f" n={score.items}" if score.items != items else ""
    return f"{_pct(score.accuracy)}{_ci(score.accuracy_ci95)}{n}{mark}"


def _slices_table(slices: Slices) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Accuracy by slice of the test items (95% CI)", title_justify="left")
    for name in ("column", "slice", "items", "teacher", "student", "experts"):
        table.add_column(name, justify="left" if name in ("column", "slice") else "right")
    for column in slices.columns:
        for row in column.rows:
            cells = [_slice_text(row.score(who), row.items) for who, _ in WHO]
            table.add_row(Text(column.name), Text(row.value), str(row.items), *cells)
    return table


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


def _ink(rgba: Sequence[float]) -> str:
    """Black or white, whichever reads better on a cell of colour ``rgba``."""
    luminance = 0.2126 * rgba[0] + 0.7152 * rgba[1] + 0.0722 * rgba[2]
    return "black" if luminance > 0.5 else "white"


def _confusion_plot(blocks: Sequence[tuple[str, Scores]]) -> str:
    """Agreement (the diagonal) in greens, errors in reds, each shaded by its share of the gold row; every cell
    shows its count and that share, in black or white by the cell's brightness."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib import colormaps

    agree, error = colormaps["Greens"], colormaps["Reds"]
    across = min(2, len(blocks))  # two a row: at four a row the numbers shrink past reading
    down = -(-len(blocks) // across)
    fig, axes = plt.subplots(down, across, figsize=(5.2 * across, 4.8 * down), squeeze=False)
    for ax in axes.flat[len(blocks) :]:
        ax.set_visible(False)
    for ax, (title, block) in zip(axes.flat, blocks, strict=False):
        labels = block.confusion.labels
        k = len(labels)
        matrix = np.array(block.confusion.matrix, dtype=float).reshape(k, k)
        totals = matrix.sum(axis=1, keepdims=True)
        share = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
        colours = np.ones((k, k, 4))
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    colours[i, j] = (agree if i == j else error)(0.25 + 0.7 * share[i, j])
        ax.imshow(colours)
        size = 11 if k <= 4 else 9 if k <= 8 else 7
        for i in range(k):
            for j in range(k):
                text = f"{int(matrix[i, j])}\n{share[i, j]:.0%}" if matrix[i, j] else "0"
                weight = "bold" if i == j else "normal"
                ax.text(j, i, text, ha="center", va="center", color=_ink(colours[i, j]), fontsize=size,
                        fontweight=weight)  # fmt: skip
        ax.set_xticks(np.arange(k + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(k + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="white", linewidth=2)
        ax.tick_params(which="minor", length=0)
        ax.set_xticks(range(k), labels, rotation=45, ha="right", fontsize=9)
        ax.set_yticks(range(k), labels, fontsize=9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        right = int(np.trace(matrix))
        ax.set_title(f"{title}: {right} of {int(matrix.sum())} right")
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
dl.summary { margin: .5rem 0 1rem; } dl.summary dt { font-weight: 600; margin-top: .6rem; }
dl.summary dd { margin: .1rem 0 0 1.2rem; }
td.worse { background: #fde2e1; } td.better { background: #e3f4e1; }
details > summary { cursor: pointer; color: #1a4f8b; }
.table-wrap { overflow-x: auto; }
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


#: a wide table scrolls on its own; a keyboard can reach and scroll it, and a screen reader names it
_TABLE_WRAP = '<div class="table-wrap" tabindex="0" role="region" aria-label="table (scrolls sideways)">'


def _table(
    head: Sequence[str], rows: Sequence[Sequence[Any]], numeric_from: int = 1, numeric_to: int | None = None
) -> str:
    out = [_TABLE_WRAP + "<table><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr>"]
    last = len(head) if numeric_to is None else numeric_to
    for row in rows:
        cells = (
            f'<td class="n">{_e(c)}</td>' if numeric_from <= i < last else f"<td>{_e(c)}</td>"
            for i, c in enumerate(row)
        )
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table></div>")  # a wide table scrolls on its own, and the page keeps to a phone's width
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


def quality_lines(q: QualitySection) -> list[str]:
    """The quality section in sentences (the terminal, and the page's first lines)."""
    lines = []
    if q.fleiss is not None:
        lines.append(
            f"Agreement among {q.raters} people on {q.items} items answered by two or more: Fleiss' kappa "
            f"{_num(q.fleiss, 2)}{_span(q.fleiss_ci95)}, Krippendorff's alpha {_num(q.alpha, 2)}{_span(q.alpha_ci95)}."
        )
    else:
        lines.append(f"Agreement: {q.note or 'unknown'}.")
    if q.answered_items:
        spread = ", ".join(f"{n} with {k}" for k, n in q.items_by_answers.items())
        lines.append(
            f"{q.answers} answers on {q.answered_items} items: {q.answers / q.answered_items:.2f} per item ({spread})."
        )
    lines.append(f"Training aggregates answers by {q.aggregator} (setting quality.aggregator).")
    lines += [f"Paused: {p}" for p in q.paused]
    return lines


def _quality(q: QualitySection | None) -> str:
    if q is None:
        return '<p class="muted">This report was written before quality control was measured.</p>'
    parts = [_list(quality_lines(q))]
    if q.per_label and q.fleiss is not None:
        parts.append(
            _table(
                ["label", "answers", "Fleiss' kappa", "Krippendorff's alpha"],
                [[x.label, x.answers, _num(x.fleiss, 2), _num(x.alpha, 2)] for x in q.per_label],
            )
        )
    if q.people:
        rows = [
            [
                p.person,
                p.answers,
                p.items,
                p.gold_answers,
                _pct(p.gold_accuracy) + _ci(p.gold_ci95) if p.gold_accuracy is not None else "—",
                _pct(p.estimated_accuracy) if p.estimated_accuracy is not None else "—",
                "yes" if p.paused else "no",
            ]
            for p in q.people
        ]
        head = ["person", "answers", "items", "check items", "accuracy on checks", "estimated accuracy", "paused"]
        parts.append(_table(head, rows))
        parts.append(
            '<p class="muted">Estimated accuracy: a Dawid–Skene model of everyone\'s answers on items two or more '
            "people answered, the teacher answering as a worker"
            + (f" — {_e(q.estimate_note)}" if q.estimate_note else "")
            + ". Shown to the owner only.</p>"
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
    if r.expert_time is not None:
        t = r.expert_time
        time = f"about {duration(t.total_minutes)} of expert time" + (f" ({expert_time_words(t)})" if t.answers else "")
    else:  # a report.json written before the time was told apart
        time = f"{_num(r.expert_minutes, 1)} expert minutes"
    return (
        f'<p class="muted">{_e(r.created_at)} · {_e(r.test_items)} gold test items of '
        f"{_e(r.test_items_total)} in the test split · {_e(r.pool_items)} pool items · "
        f"{_e(r.expert_items)} items answered by experts ({_e(r.simulated_answers)} of "
        f"{_e(r.expert_answers)} answers simulated)" + (f" · {_e(time)}" if time else "") + "</p>"
    )


#: the sections a first-screen answer can point to, by their id on the page
SECTIONS = {
    "comparison": "Student vs teacher vs experts",
    "errors": "Where the teacher and the student are wrong",
    "slices": "Where the AI is biased: accuracy by slice",
    "verify-blind": "Verify vs blind: do the experts follow the teacher?",
    "experts": "The experts",
    "quality": "Quality control: agreement and reliability",
}


def _h2(anchor: str, title: str | None = None) -> str:
    return f'<h2 id="{_e(anchor)}">{_e(title or SECTIONS[anchor])}</h2>'


def _summary_html(r: Report) -> str:
    parts = ['<dl class="summary">']
    for line in _summary(r):
        title = SECTIONS.get(line.see or "") if r.shows(line.see or "") else None
        see = f' <a href="#{_e(line.see)}">→ {_e(title)}</a>' if title else ""
        parts.append(f"<dt>{_e(line.topic)}</dt><dd>{_e(line.text)}{see}</dd>")
    return "".join(parts) + "</dl>"


def _slice_cell(score: SliceScore | None) -> str:
    if score is None:
        return '<td class="n">—</td>'
    verdict = score.verdict
    if score.p_value is not None:
        verdict += f" (p = {score.p_value:.2g})"
    css = {WORSE: "n worse", BETTER: "n better"}.get(score.verdict, "n")
    return (
        f'<td class="{css}">{_e(_pct(score.accuracy))}{_e(_ci(score.accuracy_ci95))}<br>'
        f'<span class="muted">{_e(score.correct)} of {_e(score.items)} · {_e(verdict)}</span></td>'
    )


def _slices(slices: Slices | None) -> str:
    if slices is None:
        return '<p class="muted">This report was written before accuracy by slice was part of it.</p>'
    parts = [_list(slices.sentences)]
    for column in slices.columns:
        parts.append(f"<h3>{_e(column.name)}</h3>")
        if column.note:
            parts.append(f'<p class="muted">{_e(column.note)}</p>')
        head = "".join(f"<th>{_e(h)}</th>" for h in ("slice", "items", "teacher", "student", "experts"))
        rows = [
            f'<tr><td>{_e(row.value)}</td><td class="n">{_e(row.items)}</td>'
            + "".join(_slice_cell(row.score(who)) for who, _ in WHO)
            + "</tr>"
            for row in column.rows
        ]
        parts.append(f"{_TABLE_WRAP}<table><tr>{head}</tr>{''.join(rows)}</table></div>")
    parts.append(f'<p class="muted">How: {_e(slices.method)}.</p>')
    if slices.skipped:
        parts.append('<p class="muted">Not sliced: ' + _e("; ".join(slices.skipped)) + ".</p>")
    return "".join(parts)


def _kind_row(title: str, k: TaskKindScore) -> list[str]:
    return [
        title,
        str(k.answers),
        f"{_pct(k.accuracy)}{_ci(k.accuracy_ci95)} of {k.with_gold}",
        f"{_pct(k.teacher_agreement)}{_ci(k.teacher_agreement_ci95)} of {k.with_teacher}",
        f"{k.followed_wrong} of {k.teacher_wrong}",
        "—" if k.median_seconds is None else f"{k.median_seconds:.1f} s ({k.timed} timed)",
    ]


def _verify_blind(v: VerifyVsBlind | None) -> str:
    if v is None:
        return '<p class="muted">This report was written before verify and blind answers were told apart.</p>'
    head = ["task", "answers by people", "right vs recorded label", "gave the teacher's label",
            "repeated a wrong teacher label", "median time per decision"]  # fmt: skip
    rows = [
        _kind_row("verify (teacher's label shown)", v.verify),
        _kind_row("blind label (gold, audit, random)", v.blind),
    ]
    left = []
    if v.simulated_left_out:
        left.append(f"{v.simulated_left_out} simulated answers (they copy recorded labels)")
    if v.other_left_out:
        left.append(f"{v.other_left_out} answers on routed label tasks or on no task (neither kind)")
    if not v.verify.answers and not v.blind.answers:
        return _list(v.sentences)
    return (
        _list(v.sentences)
        + _table(head, rows)
        + f'<p class="muted">{_e(v.note)}</p>'
        + (f'<p class="muted">Left out: {_e("; ".join(left))}.</p>' if left else "")
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


CONFUSION_HELP = (
    "Rows: the gold label; columns: what was predicted. Green cells (the diagonal) are right answers, red cells "
    "errors; the shade is the cell's share of its row, and each cell shows its count and that share."
)
CALIBRATION_HELP = (
    "Can a model's confidence be taken at its word? Each bar is how often it was right on the items it gave that "
    "confidence: on the dashed diagonal, 80% sure means right 80% of the time; below it, the model is "
    "over-confident. The table's calibration error (ECE) is the average gap."
)


def _comparison_table(r: Report) -> str:
    return _table(["", *(title for title, _ in r.columns())], [[name, *cells] for name, cells in _table_rows(r)])


def _details(summary_text: str, inner: str) -> str:
    return f"<details><summary>{_e(summary_text)}</summary>{inner}</details>" if inner else ""


def render_html(report: Report | Mapping[str, Any], images: dict[str, str] | None = None) -> str:
    """A self-contained page: inline CSS, plots (from ``plots(report)`` unless given) as data: URIs, texts escaped."""
    r = _report(report)
    if images is None:
        images = plots(r)
    sections: list[tuple[str, list[str]]] = [
        ("summary", [_h2("summary", "In plain words"), _summary_html(r)]),
        ("comparison", [_h2("comparison"), _comparison_table(r), _paired(r.paired)]),
        ("findings", [_h2("findings", "Key findings"), _list(r.findings)]),
        ("notes", [_h2("notes", "Not computed, and why") if r.notes else "", _list(r.notes, "note")]),
        ("per-class", [_h2("per-class", "Per-class precision and recall"), _per_class(r)]),
        ("confusion", [
            _h2("confusion", "Confusion matrices"),
            f'<p class="muted">{_e(CONFUSION_HELP)}</p>' if "confusion" in images else "",
            _img(images, "confusion", "confusion matrices"),
        ]),
        ("calibration", [
            _h2("calibration", "Calibration"),
            f"<p>{_e(CALIBRATION_HELP)}</p>" if "reliability" in images else "",
            _details("Show the reliability diagrams", _img(images, "reliability", "reliability diagrams")),
        ]),
        ("errors", [_h2("errors"), _errors(r.teacher_errors, "Teacher"), _errors(r.student_errors, "Student")]),
        ("slices", [_h2("slices"), _slices(r.slices)]),
        ("verify-blind", [_h2("verify-blind"), _verify_blind(r.verify_vs_blind)]),
        ("overrides", [_h2("overrides", "What the experts overrode"), _overrides(r.overrides)]),
        ("experts", [_h2("experts"), _experts(r.experts)]),
        ("quality", [_h2("quality"), _quality(r.quality)]),
        ("agreement", [_h2("agreement", "Student–teacher agreement"), _agreement(r)]),
        ("curve", [_h2("curve", "Learning curve"), _curve(r.learning_curve, images)]),
        ("economics", [_h2("economics", "How the economics were measured"), _list(_economics_notes(r), "muted")]),
    ]  # fmt: skip
    body = [f"<h1>Terakoya evaluation: {_e(r.project)}</h1>", _header(r)]
    body += [part for section, parts in sections if r.shows(section) for part in parts]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Terakoya evaluation: {_e(r.project)}</title><style>{CSS}</style></head><body><main>"
        + "\n".join(part for part in body if part)
        + "</main></body></html>\n"
    )
