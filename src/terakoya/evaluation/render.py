"""Show a report: a Rich table for the terminal, a self-contained HTML page, PNG plots (matplotlib, Agg).

Everything here reads only the report's JSON-safe dict, so a saved report.json renders the same way.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["plots", "render_html", "render_terminal"]

COLUMNS = (
    ("teacher", "Teacher"),
    ("student", "Student"),
    ("experts_alone", "Experts alone"),
    ("experts", "Experts"),
)


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
    if x is None:
        return "—"
    x = float(x)
    return f"${x:,.2f}" if x >= 0.01 or x == 0 else f"${x:.2g}"


def _ci(block: dict[str, Any]) -> str:
    ci = block.get("accuracy_ci95")
    return f" ({_pct(ci[0])}–{_pct(ci[1])})" if ci else ""


ROWS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("test items scored", lambda b: "—" if b.get("items") is None else f"{b['items']:,}"),
    ("accuracy (95% CI)", lambda b: _pct(b.get("accuracy")) + _ci(b)),
    ("macro-F1", lambda b: _num(b.get("macro_f1"))),
    ("calibration error (ECE)", lambda b: _num(b.get("ece"))),
    ("items / second", lambda b: _rate(b.get("items_per_second"))),
    ("p50 latency, one item", lambda b: _ms(b.get("p50_latency_ms"))),
    ("size on disk", lambda b: _bytes(b.get("size_bytes"))),
    ("cost / million predictions", lambda b: _usd(b.get("cost_per_million_usd"))),
]


def _table_rows(data: dict[str, Any]) -> list[tuple[str, list[str]]]:
    return [(name, [fmt(data.get(key) or {}) for key, _ in COLUMNS]) for name, fmt in ROWS]


def render_terminal(report_data: dict[str, Any], console: Console) -> None:
    """The comparison table, then the key findings and what could not be computed."""
    from rich.table import Table

    data = report_data
    table = Table(
        title=f"{data.get('project', '')}: {data.get('test_items', 0):,} gold test items", title_justify="left"
    )
    table.add_column("")
    for _, title in COLUMNS:
        table.add_column(title, justify="right")
    for name, cells in _table_rows(data):
        table.add_row(name, *cells)
    console.print(table)
    speed = (data.get("economics") or {}).get("speedup")
    if speed:
        console.print(f"student vs teacher: [bold]{speed:,.1f}x[/bold] the items per second")
    findings = data.get("findings") or []
    if findings:
        console.print("[bold]Key findings[/bold]")
        for line in findings:
            console.print(f" • {line}", markup=False, highlight=False)
    notes = data.get("notes") or []
    if notes:
        console.print("[bold]Not computed, and why[/bold]")
        for line in notes:
            console.print(f" • {line}", markup=False, highlight=False)


# ----------------------------------------------------------------------------- plots


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _reliability_plot(blocks: Sequence[tuple[str, dict[str, Any]]]) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(blocks), figsize=(4.2 * len(blocks), 4), squeeze=False)
    for ax, (title, block) in zip(axes[0], blocks, strict=True):
        bins = block.get("reliability") or []
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
        filled = [b for b in bins if b["count"]]
        if filled:
            width = bins[0]["hi"] - bins[0]["lo"]
            ax.bar(
                [b["lo"] for b in filled],
                [b["accuracy"] for b in filled],
                width=width,
                align="edge",
                edgecolor="black",
                alpha=0.7,
                label="accuracy in bin",
            )
            ax.plot(
                [b["confidence"] for b in filled],
                [b["accuracy"] for b in filled],
                "o",
                color="black",
                markersize=3,
                label="mean confidence",
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{title} (ECE {_num(block.get('ece'))})")
        ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _confusion_plot(blocks: Sequence[tuple[str, dict[str, Any]]]) -> str:
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(blocks), figsize=(4.4 * len(blocks), 4.2), squeeze=False)
    for ax, (title, block) in zip(axes[0], blocks, strict=True):
        labels = block["confusion"]["labels"]
        matrix = np.array(block["confusion"]["matrix"], dtype=float).reshape(len(labels), len(labels))
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


def _curve_plot(curve: dict[str, Any], teacher_accuracy: float | None) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    series = [(curve.get("label", "chosen routing"), curve.get("points") or [], "-o")]
    random = curve.get("random") or {}
    if random.get("points"):
        series.append((random.get("label", "random routing"), random["points"], "--s"))
    for ax, key, name in ((axes[0], "accuracy", "accuracy"), (axes[1], "macro_f1", "macro-F1")):
        for label, points, style in series:
            ax.plot([p["expert_items"] for p in points], [p[key] for p in points], style, label=label)
        if key == "accuracy" and teacher_accuracy is not None:
            ax.axhline(teacher_accuracy, color="grey", linestyle=":", label="teacher")
        ax.set_xlabel("expert items used in training")
        ax.set_ylabel(f"student {name} on the test split")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def plots(data: dict[str, Any]) -> dict[str, str]:
    """Base64 PNGs by name: reliability, confusion, learning_curve (each only when there is data for it)."""
    import matplotlib

    matplotlib.use("Agg")
    out: dict[str, str] = {}
    scored = [(title, data[key]) for key, title in COLUMNS if (data.get(key) or {}).get("accuracy") is not None]
    calibrated = [(t, b) for t, b in scored if b.get("ece") is not None]
    if calibrated:
        out["reliability"] = _reliability_plot(calibrated)
    matrices = [(t, b) for t, b in scored if (b.get("confusion") or {}).get("matrix")]
    if matrices:
        out["confusion"] = _confusion_plot(matrices)
    curve = data.get("learning_curve") or {}
    if curve.get("points"):
        out["learning_curve"] = _curve_plot(curve, (data.get("teacher") or {}).get("accuracy"))
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


def _examples(examples: Sequence[dict[str, Any]]) -> str:
    return "".join(f"<blockquote>[{_e(x.get('id'))}] {_e(x.get('text'))}</blockquote>" for x in examples)


def _per_class(data: dict[str, Any]) -> str:
    rows = []
    for key, title in COLUMNS:
        block = data.get(key) or {}
        for label, m in (block.get("per_class") or {}).items():
            rows.append([title, label, _pct(m["precision"]), _pct(m["recall"]), _num(m["f1"]), m["support"]])
    if not rows:
        return ""
    return _table(["who", "gold label", "precision", "recall", "F1", "support"], rows, numeric_from=2)


def _errors(block: dict[str, Any], who: str) -> str:
    if not block:
        return ""
    parts = [f"<h3>{_e(who)}: error rate by gold label</h3>"]
    parts.append(
        _table(
            ["gold label", "items", "wrong", "error rate"],
            [[r["label"], r["items"], r["errors"], _pct(r["error_rate"])] for r in block.get("by_class", [])],
        )
    )
    confs = block.get("confusions") or []
    if confs:
        parts.append(f"<h3>{_e(who)}: most common confusions</h3>")
        for c in confs:
            parts.append(f"<p><b>{_e(c['true'])} → {_e(c['predicted'])}</b>: {_e(c['count'])} items</p>")
            parts.append(_examples(c.get("examples") or []))
    return "".join(parts)


def _paired(p: dict[str, Any]) -> str:
    if not p.get("items"):
        return ""
    return (
        f"<p>On the same {_e(p['items'])} items (the gold test items the teacher labelled): student "
        f"{_e(_pct(p['student_accuracy']))}, teacher {_e(_pct(p['teacher_accuracy']))}; only the student is right on "
        f"{_e(p['student_only_right'])}, only the teacher on {_e(p['teacher_only_right'])}"
        + (f" (exact McNemar p = {_e(_num(p['mcnemar_p'], 3))})" if p.get("mcnemar_p") is not None else "")
        + ".</p>"
    )


def _experts(ex: dict[str, Any]) -> str:
    if not ex.get("available"):
        return f'<p class="note">{_e(ex.get("reason"))}</p>'
    parts = [
        _table(
            ["expert", "test answers", "accuracy vs gold", "simulated"],
            [
                [p["person"], p["answers"], _pct(p["accuracy"]), "yes" if p["simulated"] else "no"]
                for p in ex.get("per_expert", [])
            ],
        )
    ]
    multi = ex.get("multi") or {}
    if multi.get("items"):
        parts.append(
            f"<p>{_e(multi['items'])} test items were answered by two or more experts: observed agreement "
            f"{_e(_pct(multi.get('pairwise_agreement')))}; majority vote vs gold "
            f"{_e(_pct(multi.get('majority_accuracy')))} "
            f"over {_e(multi.get('majority_items'))} items "
            f"({_e(multi.get('ties'))} ties, each decided by the newest answer).</p>"
        )
        pairs = multi.get("pairs") or []
        if pairs:
            parts.append(
                _table(
                    ["expert A", "expert B", "shared items", "agreement", "Cohen's kappa"],
                    [[p["a"], p["b"], p["items"], _pct(p["agreement"]), _num(p["kappa"])] for p in pairs],
                    numeric_from=2,
                )
            )
    else:
        parts.append(f'<p class="muted">{_e(multi.get("reason", ""))}</p>')
    return "".join(parts)


def _overrides(ov: dict[str, Any]) -> str:
    if not ov.get("compared"):
        return f'<p class="note">{_e(ov.get("reason", "no pool items answered by experts"))}</p>'
    parts = [
        f"<p>Experts answered {_e(ov['pool_items_answered'])} pool items; {_e(ov['compared'])} had a teacher label; "
        f"the expert differs from the teacher on <b>{_e(ov['overridden'])}</b> ({_e(_pct(ov.get('rate')))}).</p>"
    ]
    for pair in ov.get("by_pair") or []:
        parts.append(
            f"<p><b>teacher {_e(pair['teacher'])} → expert {_e(pair['expert'])}</b>: {_e(pair['count'])} items</p>"
        )
        parts.append(_examples(pair.get("examples") or []))
    return "".join(parts)


def _curve(curve: dict[str, Any], plots_: dict[str, str]) -> str:
    if not curve.get("available"):
        return f'<p class="note">{_e(curve.get("reason"))}</p>'
    rows = [
        [curve.get("label", ""), p["expert_items"], _pct(p["accuracy"]), _num(p["macro_f1"])]
        for p in curve.get("points", [])
    ]
    random = curve.get("random") or {}
    rows += [
        [random.get("label", ""), p["expert_items"], _pct(p["accuracy"]), _num(p["macro_f1"])]
        for p in random.get("points", [])
    ]
    parts = [
        _img(plots_, "learning_curve", "learning curve"),
        _table(["routing", "expert items", "accuracy", "macro-F1"], rows, numeric_from=1),
    ]
    if not random.get("available"):
        parts.append(f'<p class="muted">Random routing: {_e(random.get("reason"))}</p>')
    elif random.get("note"):
        parts.append(f'<p class="muted">Random routing: {_e(random["note"])}</p>')
    if curve.get("note"):
        parts.append(f'<p class="muted">{_e(curve["note"])}</p>')
    return "".join(parts)


def render_html(data: dict[str, Any], images: dict[str, str] | None = None) -> str:
    """A self-contained page: inline CSS, plots (from ``plots(data)`` unless given) as data: URIs, texts escaped."""
    if images is None:
        images = plots(data)
    econ = data.get("economics") or {}
    teacher = data.get("teacher") or {}
    student = data.get("student") or {}
    agreement = data.get("agreement") or {}
    head = ["", *(title for _, title in COLUMNS)]
    table_rows = [[name, *cells] for name, cells in _table_rows(data)]
    notes_econ = [
        f"Teacher speed: {teacher.get('timing_note')}" if teacher.get("timing_note") else "",
        f"Teacher cost: {teacher.get('cost_note')}" if teacher.get("cost_note") else "",
        f"Teacher size: {teacher.get('size_note')}" if teacher.get("size_note") else "",
        f"Student speed: {student.get('timing_note')}" if student.get("timing_note") else "",
        f"Student cost: {student.get('cost_note')}" if student.get("cost_note") else "",
        f"Student size: {student.get('size_note')}" if student.get("size_note") else "",
        f"Experts: {data.get('experts', {}).get('cost_note')}" if data.get("experts", {}).get("cost_note") else "",
    ]
    agree_rows = [
        [where, a.get("items"), _pct(a.get("agreement")), _num(a.get("kappa")), a.get("source", "")]
        for where, a in (("test", agreement.get("test") or {}), ("pool", agreement.get("pool") or {}))
        if a
    ]
    body = [
        f"<h1>Terakoya evaluation: {_e(data.get('project'))}</h1>",
        f'<p class="muted">{_e(data.get("created_at"))} · {_e(data.get("test_items"))} gold test items of '
        f"{_e(data.get('test_items_total'))} in the test split · {_e(data.get('pool_items'))} pool items · "
        f"{_e(data.get('expert_items'))} items answered by experts ({_e(data.get('simulated_answers'))} of "
        f"{_e(data.get('expert_answers'))} answers simulated) · "
        f"{_num(data.get('expert_minutes'), 1)} expert minutes</p>",
        "<h2>Student vs teacher vs experts</h2>",
        _table(head, table_rows),
        f"<p>Speed-up, student vs teacher: <b>{_e(_num(econ.get('speedup'), 1))}x</b></p>"
        if econ.get("speedup")
        else "",
        _paired(data.get("paired") or {}),
        "<h2>Key findings</h2>",
        _list(data.get("findings") or []),
        "<h2>Not computed, and why</h2>" if data.get("notes") else "",
        _list(data.get("notes") or [], "note"),
        "<h2>Per-class precision and recall</h2>",
        _per_class(data),
        "<h2>Confusion matrices</h2>",
        _img(images, "confusion", "confusion matrices"),
        "<h2>Calibration</h2>",
        _img(images, "reliability", "reliability diagrams"),
        "<h2>Where the teacher is wrong</h2>",
        _errors(data.get("teacher_errors") or {}, "Teacher"),
        _errors(data.get("student_errors") or {}, "Student"),
        "<h2>What the experts overrode</h2>",
        _overrides(data.get("overrides") or {}),
        "<h2>The experts</h2>",
        _experts(data.get("experts") or {}),
        "<h2>Student–teacher agreement</h2>",
        _table(["split", "items", "agreement", "Cohen's kappa", "student labels from"], agree_rows, numeric_to=4)
        if agree_rows
        else "<p class='muted'>no student to compare</p>",
        "<h2>Learning curve</h2>",
        _curve(data.get("learning_curve") or {}, images),
        "<h2>How the economics were measured</h2>",
        _list([n for n in notes_econ if n], "muted"),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Terakoya evaluation: {_e(data.get('project'))}</title><style>{CSS}</style></head><body>"
        + "\n".join(part for part in body if part)
        + "</body></html>\n"
    )
