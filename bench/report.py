"""Summaries, target checks, tables and plots for the distillation benchmark.

The targets (accuracy on the test split, mean over seeds; "Terakoya" is its default loop, its routing):

- A: at every budget >= 2 %, Terakoya >= max(teacher alone, experts alone) - 1 point;
- B: with teachers >= 75 %, Terakoya >= experts alone + 5 points at budgets 2-10 %;
- C: Terakoya's routing >= random routing at every budget;
- D: the student >= its teacher at every budget >= 5 %, for teachers <= 85 %;
- E: Financial PhraseBank >= 86 % accuracy with <= 10 % expert labels and the 85 % teacher;
- F: Terakoya's default >= the thirty-line recipe at every budget.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.arms import ARM_NAMES, ARMS

TARGETS = {
    "A": "Terakoya >= max(teacher alone, experts alone) - 1 point (budgets >= 2 %)",
    "B": "Terakoya >= experts alone + 5 points (teachers >= 75 %, budgets 2-10 %)",
    "C": "its routing >= random routing (every budget)",
    "D": "student >= its teacher (budgets >= 5 %, teachers <= 85 %)",
    "E": "FPB >= 86 % accuracy with <= 10 % expert labels and the 85 % teacher",
    "F": "Terakoya's default >= the thirty-line recipe (every budget)",
}
EPS = 1e-9


def _stats(values: Sequence[float | None]) -> dict[str, Any]:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "n": len(vals)}


def summarise(entry: dict[str, Any]) -> dict[str, Any]:
    """Per arm and budget: accuracy, macro-F1, speed and training mix as mean/std over seeds, and the errors."""
    runs = entry["runs"]
    budgets = sorted({r["budget_pct"] for r in runs})
    base_eval = entry["base"]["evaluation"]
    out: dict[str, Any] = {}
    for pct in budgets:
        at = [r for r in runs if r["budget_pct"] == pct]
        row: dict[str, Any] = {"expert_budget": at[0]["expert_budget"] if at else None}
        for arm in ARMS:
            mine = [r for r in at if r["arm"] == arm]
            ok = [r for r in mine if not r.get("error")]
            row[arm] = {
                "accuracy": _stats([r.get("accuracy") for r in ok]),
                "macro_f1": _stats([r.get("macro_f1") for r in ok]),
                "items_per_second": _stats([r.get("items_per_second") for r in ok])["mean"],
                "trained_expert_items": _stats([r.get("trained_expert_items") for r in ok])["mean"],
                "trained_teacher_items": _stats([r.get("trained_teacher_items") for r in ok])["mean"],
                "teacher_scale": _stats([r.get("teacher_scale") for r in ok])["mean"],
                "pseudo_labels": _stats([r.get("pseudo_labels") for r in ok])["mean"],
                "seconds": _stats([r.get("seconds") for r in mine])["mean"],
                "errors": [f"seed {r['seed']}: {r['error']}" for r in mine if r.get("error")],
                "warnings": sorted({r["warning"] for r in ok if r.get("warning")}),
            }
        # the teacher alone, as Terakoya's evaluation reports its current suggestion in the default arm
        measured = [r for r in at if r.get("teacher_accuracy") is not None]
        # the Terakoya arm's own teacher (its audits re-calibrate it); random routing's only when it has none
        arm = next((a for a in ("terakoya", "random_routing") if any(r["arm"] == a for r in measured)), None)
        source = [r for r in measured if r["arm"] == arm]
        if source:
            acc = _stats([r["teacher_accuracy"] for r in source])
            f1 = _stats([r["teacher_macro_f1"] for r in source])
            speed = _stats([r.get("teacher_items_per_second") for r in source])["mean"]
        else:
            acc, f1 = _stats([base_eval.get("accuracy")]), _stats([base_eval.get("macro_f1")])
            speed = base_eval.get("items_per_second")
        row["teacher"] = {"accuracy": acc, "macro_f1": f1, "items_per_second": speed}
        out[f"{pct:g}"] = row
    return out


def _mean(summary: dict[str, Any], pct: str, arm: str) -> float | None:
    value = summary[pct][arm]["accuracy"]["mean"]
    return None if value is None else float(value)


def _pts(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def checks(entry: dict[str, Any], dataset: str) -> list[dict[str, Any]]:
    """Every target that applies to this dataset and teacher, at every budget: met, MISSED or n/a, with numbers."""
    summary = entry["summary"]
    nominal = entry.get("target_accuracy") or entry["base"]["measured"].get("accuracy") or 0.0
    out: list[dict[str, Any]] = []

    def add(target: str, pct: str | None, ok: bool | None, text: str) -> None:
        status = "n/a" if ok is None else ("met" if ok else "MISSED")
        out.append({"target": target, "budget_pct": pct, "status": status, "text": text})

    for pct in summary:
        b = float(pct)
        ours = _mean(summary, pct, "terakoya")
        teacher = summary[pct]["teacher"]["accuracy"]["mean"]
        experts, rnd, recipe = (_mean(summary, pct, a) for a in ("experts_alone", "random_routing", "recipe"))
        where = f"@ {pct} %"
        if b >= 2:
            if ours is None or teacher is None or experts is None:
                add("A", pct, None, f"A {where}: a number is missing (see errors)")
            else:
                ref = max(teacher, experts)
                add("A", pct, ours >= ref - 0.01 - EPS, f"A {where}: Terakoya {_pts(ours)} vs max(teacher "
                    f"{_pts(teacher)}, experts alone {_pts(experts)}) - 1 = {_pts(ref - 0.01)}")  # fmt: skip
        if nominal >= 0.75 - EPS and 2 <= b <= 10:
            if ours is None or experts is None:
                add("B", pct, None, f"B {where}: a number is missing (see errors)")
            else:
                add("B", pct, ours >= experts + 0.05 - EPS, f"B {where}: Terakoya {_pts(ours)} vs experts alone "
                    f"{_pts(experts)} + 5 = {_pts(experts + 0.05)}")  # fmt: skip
        if ours is None or rnd is None:
            add("C", pct, None, f"C {where}: a number is missing (see errors)")
        else:
            add("C", pct, ours >= rnd - EPS, f"C {where}: its routing {_pts(ours)} vs random routing {_pts(rnd)}")
        if b >= 5 and nominal <= 0.85 + EPS:
            if ours is None or teacher is None:
                add("D", pct, None, f"D {where}: a number is missing (see errors)")
            else:
                add("D", pct, ours >= teacher - EPS, f"D {where}: student {_pts(ours)} vs teacher {_pts(teacher)}")
        if ours is None or recipe is None:
            add("F", pct, None, f"F {where}: a number is missing (see errors)")
        else:
            add(
                "F", pct, ours >= recipe - EPS, f"F {where}: Terakoya {_pts(ours)} vs thirty-line recipe {_pts(recipe)}"
            )
    if dataset == "fpb" and entry["teacher"] == "sim85":
        small = {p: _mean(summary, p, "terakoya") for p in summary if float(p) <= 10}
        small = {p: v for p, v in small.items() if v is not None}
        if not small:
            add("E", None, None, "E: no budget <= 10 % ran")
        else:
            best = max(small, key=lambda p: small[p])
            text = f"E: best Terakoya accuracy with <= 10 % experts {_pts(small[best])} (at {best} %) vs 86.0"
            add("E", best, small[best] >= 0.86 - EPS, text)
    return out


def _cell(stats: dict[str, Any]) -> str:
    if stats["mean"] is None:
        return "—"
    return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}"


MIX = "trained on: expert / teacher ×weight / self"
CAPTION = (
    "teacher alone (current suggestion) = the teacher's current, calibrated suggestion as Terakoya's evaluation "
    "reports it in the Terakoya arm at that budget (re-calibrated on its expert answers); trained on = items in "
    "the last training set, the teacher's weight chosen by cross-validation, and self-training pseudo-labels"
)


def _mix(r: dict[str, Any]) -> str:
    if r["trained_expert_items"] is None:
        return "—"
    out = f"{r['trained_expert_items']:.0f}"
    if r["trained_teacher_items"] is not None:
        out += f" / {r['trained_teacher_items']:.0f}"
        if r["teacher_scale"] is not None:
            out += f" ×{r['teacher_scale']:.2g}"
    if r["pseudo_labels"]:
        out += f" / +{r['pseudo_labels']:.0f}"
    return out


def _speed(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}" if v >= 10 else f"{v:.2f}"


def print_table(dataset_title: str, entry: dict[str, Any], console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=200)
    summary, checked = entry["summary"], entry.get("checks", [])
    measured = entry["base"]["measured"]
    title = (
        f"{dataset_title} — teacher: {entry['teacher_name']} (measured on the test split: accuracy "
        f"{_pts(measured.get('accuracy'))} %, AUROC of confidence {measured.get('auroc') or float('nan'):.3f}); "
        f"pool {entry['pool_items']}, test {entry['test_items']}; student: {entry['student_kind']}; "
        f"{entry['seeds']} seed(s), mean ± std"
    )
    table = Table(title=title, title_justify="left", caption=CAPTION, caption_justify="left")
    for col in ("budget", "expert items", "arm", "accuracy %", "macro-F1 %", MIX, "items/s", "s/run", "verdict"):
        table.add_column(col, justify="left" if col in {"arm", "verdict", MIX} else "right")
    teacher_speed = "look-up (simulated)" if entry["simulated"] else None
    before = entry["base"]["evaluation"]
    speed = teacher_speed or _speed(before.get("items_per_second"))
    table.add_row("0 %", "0", "teacher alone, before any expert answer", _pts(before.get("accuracy")),
                  _pts(before.get("macro_f1")), "—", speed, "—", "")  # fmt: skip
    table.add_section()
    for pct, row in summary.items():
        t = row["teacher"]
        t_speed = teacher_speed or _speed(t["items_per_second"])
        table.add_row(f"{pct} %", "—", ARM_NAMES["teacher"] + " (current suggestion)", _cell(t["accuracy"]),
                      _cell(t["macro_f1"]), "—", t_speed, "—", "")  # fmt: skip
        for arm in ARMS:
            r = row[arm]
            if r["accuracy"]["mean"] is None and r["errors"]:
                first = r["errors"][0]
                table.add_row("", str(row["expert_budget"]), ARM_NAMES[arm], f"error: {first[:70]}", "", "", "", "", "")
                continue
            mix = _mix(r)
            verdict = ""
            if arm == "terakoya":
                mine = [c for c in checked if c["budget_pct"] == pct]
                met = " ".join(c["target"] for c in mine if c["status"] == "met")
                missed = " ".join(c["target"] for c in mine if c["status"] == "MISSED")
                verdict = "; ".join(p for p in (f"met {met}" if met else "", f"MISSED {missed}" if missed else "") if p)
            note = f" ({len(r['errors'])} error(s))" if r["errors"] else ""
            note += " [!]" if r["warnings"] else ""
            table.add_row("", str(row["expert_budget"]), ARM_NAMES[arm] + note, _cell(r["accuracy"]),
                          _cell(r["macro_f1"]), mix, _speed(r["items_per_second"]),
                          f"{r['seconds']:.1f}" if r["seconds"] is not None else "—", verdict)  # fmt: skip
        table.add_section()
    console.print(table)
    for c in checked:
        console.print(f"  {c['status']:>6}  {c['text']}", highlight=False)
    for pct, row in summary.items():
        for arm in ARMS:
            for err in row[arm]["errors"]:
                console.print(f"  error   {ARM_NAMES[arm]} @ {pct} %, {err}", highlight=False, markup=False)
            for warn in row[arm]["warnings"]:
                console.print(f"  [!]     {ARM_NAMES[arm]} @ {pct} %: {warn}", highlight=False, markup=False)
    speeds = [
        (row["terakoya"]["items_per_second"], row["teacher"]["items_per_second"])
        for row in summary.values()
        if row["terakoya"]["items_per_second"]
    ]
    if speeds:
        student = statistics.fmean(s for s, _ in speeds)
        if entry["simulated"]:
            console.print(f"  speed: student {student:,.0f} items/s (the simulated teacher is a table look-up)")
        else:
            teacher = [t for _, t in speeds if t]
            ratio = f" — {student / statistics.fmean(teacher):,.0f}x faster" if teacher else ""
            t_text = f"{statistics.fmean(teacher):.2f}" if teacher else "—"
            console.print(f"  speed (Terakoya's evaluation): student {student:,.0f} items/s vs teacher {t_text}{ratio}")


def plot(entry: dict[str, Any], title: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = entry["summary"]
    budgets = [float(b) for b in summary]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    for ax, metric, label in zip(axes, ("accuracy", "macro_f1"), ("accuracy", "macro-F1"), strict=True):
        for arm in ("teacher", *ARMS):
            means = [summary[b][arm][metric]["mean"] for b in summary]
            stds = [summary[b][arm][metric]["std"] or 0.0 for b in summary]
            ys = [float("nan") if m is None else 100 * m for m in means]
            ax.errorbar(budgets, ys, yerr=[100 * s for s in stds], marker="o", capsize=3, label=ARM_NAMES[arm],
                        linestyle="--" if arm in ("teacher", "recipe") else "-")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xticks(budgets, [f"{b:g} %" for b in budgets])
        ax.minorticks_off()
        ax.set_xlabel("expert budget (share of the pool)")
        ax.set_ylabel(f"{label} on the test split (%)")
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"{title}\nteacher: {entry['teacher_name']}; mean ± std over {entry['seeds']} seed(s)", fontsize=9)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def print_overview(results: dict[str, Any], console: Any = None) -> None:
    """One line per dataset and teacher: targets met / missed / not evaluated."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=200)
    table = Table(title="Targets, every dataset and teacher", title_justify="left")
    for col in ("dataset", "teacher", "run", "met", "MISSED", "n/a", "missed targets"):
        table.add_column(col)
    for key, ds in results.get("datasets", {}).items():
        for entry in ds.get("teachers", {}).values():
            if "checks" not in entry:
                error = entry.get("error", "incomplete (stopped before the end)")
                table.add_row(key, entry.get("teacher_name", "?"), "", "", "", "", f"error: {error[:80]}")
                continue
            c = entry["checks"]
            missed = sorted({x["target"] for x in c if x["status"] == "MISSED"})
            budgets = ", ".join(entry["summary"])
            run = f"{'sample of ' + str(entry['limit']) if entry.get('limit') else 'full'}; {budgets} %; "
            run += f"{entry['seeds']} seed(s); {entry.get('student_kind', '?')}"
            table.add_row(key, entry["teacher_name"], run, str(sum(x["status"] == "met" for x in c)),
                          str(sum(x["status"] == "MISSED" for x in c)), str(sum(x["status"] == "n/a" for x in c)),
                          " ".join(missed))  # fmt: skip
    console.print(table)
    for target, text in TARGETS.items():
        console.print(f"  {target}: {text}", highlight=False)
