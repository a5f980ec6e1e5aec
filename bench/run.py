"""The distillation benchmark: does Terakoya's loop pay, against the teacher alone and the experts alone?

    python -m bench.run [--datasets fpb,chabsa] [--teachers real,sim40,sim60,sim75,sim85]
                        [--budgets 1,2,5,10,20] [--seeds 3] [--kind K] [--rounds 2] [--limit N] [--quick]

For each dataset (bench/datasets.py) and teacher, a base project is imported and taught once: the real
local teacher as the project defaults configure it (its calls are cached in the base project's database,
so a rerun is free), or a *simulated* teacher of known accuracy whose mistakes fall mostly on hard items
(bench/simteacher.py). At each expert budget (a share of the pool) and seed (the random expert sample,
the routing seed and the student seed) every arm runs: experts alone, experts alone + semi-supervised
training, Terakoya with random routing and Terakoya with its routing, each from a copy of the base
database (bench/arms.py), and the thirty-line MiniLM + logistic-regression recipe (bench/recipe.py, a
reference, not Terakoya). Experts are simulated from the datasets' recorded labels.

Prints, per dataset and teacher, a table of every arm (mean ± std over seeds) with the targets met or
MISSED (bench/report.py), and writes bench/results/distill.json (every number, each seed) and
bench/results/distill_<dataset>_<teacher>.png. ``--quick`` is a small harness check (FPB sample,
simulated 60 % and 85 % teachers, budgets 2 and 10 %, 2 seeds) that writes distill_quick.json and
distill_quick_*.png instead, so it never overwrites a full run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench import datasets
from bench.arms import ARM_NAMES, ARMS, TEACHERS, Base, prepare_base, run_project_arm
from bench.recipe import MiniLM, run_recipe
from bench.report import checks, plot, print_overview, print_table, summarise

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
WORK = RESULTS / "work"

QUICK = {"datasets": "fpb", "teachers": "sim60,sim85", "budgets": "2,10", "seeds": 2, "limit": 1000}


def log(message: str) -> None:
    print(message, flush=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    return str(value)


class Results:
    """The JSON file, rewritten after every arm so that a killed run keeps what it measured."""

    def __init__(self, path: Path, *, fresh: bool, args: dict[str, Any]) -> None:
        self.path = path
        old = json.loads(path.read_text()) if path.exists() and not fresh else {}
        if old.get("format") != 2:
            old = {}
        self.data: dict[str, Any] = {**old, "format": 2, "args": args, "started_at": _now(), "datasets": {}}
        self.data["datasets"] = old.get("datasets", {})

    def entry(self, dataset: str, teacher: str) -> dict[str, Any]:
        ds = self.data["datasets"].setdefault(dataset, {"teachers": {}})
        return ds["teachers"].setdefault(teacher, {})

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=_json_default, ensure_ascii=False))
        tmp.replace(self.path)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run_teacher(
    ds: datasets.Dataset, teacher: str, args: argparse.Namespace, work: Path, results: Results, embed: MiniLM
) -> dict[str, Any]:
    spec = TEACHERS[teacher]
    entry = results.entry(ds.key, teacher)
    entry.clear()
    entry.update(teacher=teacher, teacher_name=spec.name, simulated=spec.simulated, target_accuracy=spec.accuracy)
    started = time.perf_counter()
    try:
        base = prepare_base(ds, spec, work, log=log)
    except Exception as exc:
        entry["error"] = f"base project: {type(exc).__name__}: {exc}"
        log(f"  {ds.key}/{spec.name}: {entry['error']}")
        traceback.print_exc()
        results.save()
        return entry
    _describe_teacher(ds, base, time.perf_counter() - started)
    entry.update(
        teacher_name=base.teacher_name,
        base={"teach": base.teach, "evaluation": base.evaluation, "measured": base.measured},
        pool_items=len(base.pool),
        test_items=len(base.test),
        student_kind=args.kind or "project default",
        seeds=args.seeds,
        rounds=args.rounds,
        limit=args.limit,
        runs=[],
    )
    for pct in args.budget_list:
        n = max(1, round(len(base.pool) * pct / 100))
        for seed in range(args.seeds):
            for arm in ARMS:
                entry["runs"].append(_run_arm(base, arm, pct=pct, n=n, seed=seed, args=args, work=work, embed=embed))
                results.save()
    kinds = sorted({str(r["student_kind"]) for r in entry["runs"] if r.get("student_kind")})
    entry["student_kind"] = ", ".join(kinds) or entry["student_kind"]
    entry["summary"] = summarise(entry)
    entry["checks"] = checks(entry, ds.key)
    entry["elapsed_s"] = time.perf_counter() - started
    results.save()
    return entry


def _describe_teacher(ds: datasets.Dataset, base: Base, seconds: float) -> None:
    t, m = base.teach, base.measured
    log(f"\n{ds.key}: {base.teacher_name} — {t['labeled']} items labelled, {t['calls']} calls, {t['cached']} cached, "
        f"teach {t['seconds']:.1f} s (base project ready in {seconds:.1f} s)")  # fmt: skip
    line = (
        f"  {base.teacher_name} on the test split ({m['test_items_labelled']} items, current suggestions): "
        f"accuracy {100 * (m['accuracy'] or 0):.1f} %, macro-F1 {100 * (m['macro_f1'] or 0):.1f} %, "
        f"AUROC of confidence for correctness {m['auroc']:.3f}"
    )
    if base.teacher.simulated:
        by = ", ".join(
            f"{datasets.DIFFICULTY_NAMES.get(int(k), k) if ds.key == 'fpb' else 'uniform'} {100 * v:.0f} %"
            for k, v in m["drawn_accuracy_by_difficulty"].items()
        )
        line += (
            f"\n  as drawn: target {100 * m['target_accuracy']:.0f} %, "
            f"all items {100 * m['drawn_accuracy_all']:.1f} %, "
            f"test {100 * m['drawn_accuracy_test']:.1f} % (AUROC {m['drawn_auroc_test']:.3f}); by difficulty: {by}"
        )
        if len(base.classes) == 2 and (base.teacher.accuracy or 1) < 0.5:
            line += "\n  (below chance on a two-label task: an adversarial teacher)"
    log(line)


def _run_arm(
    base: Base, arm: str, *, pct: float, n: int, seed: int, args: argparse.Namespace, work: Path, embed: MiniLM
) -> dict[str, Any]:
    started = time.perf_counter()
    record: dict[str, Any] = {"arm": arm, "budget_pct": pct, "expert_budget": n, "seed": seed}
    try:
        if arm == "recipe":
            record.update(run_recipe(base, n=n, seed=seed, embed=embed))
        else:
            record.update(
                run_project_arm(
                    base,
                    arm,
                    n=n,
                    seed=seed,
                    rounds=args.rounds,
                    kind=args.kind,
                    arms_dir=work / base.teacher.key / "arms",
                    # the speed measurement: Terakoya's arm, seed 0, every budget (--quick: the first budget only)
                    timing=arm == "terakoya" and seed == 0 and (not args.quick or pct == args.budget_list[0]),
                )
            )
    except Exception as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc(limit=8)
    record["seconds"] = time.perf_counter() - started
    what = (
        f"error: {record['error'][:160]}"
        if "error" in record
        else f"accuracy {100 * record['accuracy']:.1f} %, macro-F1 {100 * record['macro_f1']:.1f} %"
    )
    steps = ", ".join(f"{k[:-2]} {record[k]:.1f}" for k in ("route_s", "train_s", "evaluate_s") if k in record)
    log(f"  {base.dataset.key}/{base.teacher_name} @ {pct:g} % ({n} expert items), seed {seed}: "
        f"{ARM_NAMES[arm]}: {what} ({record['seconds']:.1f} s{'; ' + steps if steps else ''})")  # fmt: skip
    return record


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=None, help="comma-separated: fpb, chabsa (default: both)")
    parser.add_argument("--teachers", default=None, help=f"comma-separated: {', '.join(TEACHERS)} (default: all)")
    parser.add_argument("--budgets", default=None, help="expert budgets, %% of the pool (default: 1,2,5,10,20)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per budget (default: 3)")
    parser.add_argument("--kind", default=None, help="student kind (default: the project default)")
    parser.add_argument("--rounds", type=int, default=2, help="route/answer/train rounds per budget (default: 2)")
    parser.add_argument("--limit", type=int, default=None, help="a seeded sample of at most N rows per dataset")
    parser.add_argument("--quick", action="store_true", help="a small harness check in under 10 minutes")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else {"datasets": "fpb,chabsa", "teachers": ",".join(TEACHERS),
                                         "budgets": "1,2,5,10,20", "seeds": 3, "limit": None}  # fmt: skip
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.dataset_list = [d.strip() for d in args.datasets.split(",") if d.strip()]
    args.teacher_list = [t.strip() for t in args.teachers.split(",") if t.strip()]
    args.budget_list = [float(b) for b in args.budgets.split(",") if b.strip()]
    unknown = [t for t in args.teacher_list if t not in TEACHERS] + [
        d for d in args.dataset_list if d not in datasets.LOADERS
    ]
    if unknown:
        parser.error(f"unknown teacher or dataset: {', '.join(unknown)}")
    if args.seeds < 1 or args.rounds < 1:
        parser.error("--seeds and --rounds must be 1 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter()
    suffix = "_quick" if args.quick else ""
    results = Results(
        RESULTS / f"distill{suffix}.json",
        fresh=args.quick,
        args={k: v for k, v in vars(args).items() if not k.endswith("_list")},
    )
    if args.quick:
        log(f"QUICK RUN (a harness check, not the benchmark): {QUICK}")
    log(f"datasets {args.dataset_list}, teachers {args.teacher_list}, budgets {args.budget_list} %, "
        f"{args.seeds} seed(s), {args.rounds} round(s), student {args.kind or 'project default'}")  # fmt: skip
    for key in args.dataset_list:
        try:
            ds = datasets.load(key, args.limit)
        except datasets.DataMissing as exc:
            log(f"skipping {key}: data not found at {exc} (../shared/data is not part of the project)")
            continue
        work = WORK / (f"{key}-limit{args.limit}" if args.limit else key)
        meta = results.data["datasets"].setdefault(key, {"teachers": {}})
        meta.update(
            title=ds.title, rows=len(ds.rows), sample=ds.sample_note, difficulty=ds.difficulty_note,
            difficulty_counts=ds.difficulty_counts(),
        )  # fmt: skip
        log(f"\n== {ds.title}: {len(ds.rows)} sentences {ds.sample_note}; difficulty: {ds.difficulty_note} "
            f"{ds.difficulty_counts()}")  # fmt: skip
        embed = MiniLM(work / "minilm")
        for teacher in args.teacher_list:
            entry = run_teacher(ds, teacher, args, work, results, embed)
            if "summary" not in entry:
                continue
            print_table(ds.title + (f" [{ds.sample_note}]" if ds.sample_note else ""), entry)
            out = plot(entry, ds.title, RESULTS / f"distill{suffix}_{key}_{teacher}.png")
            log(f"  plot: {out}; {teacher} took {entry['elapsed_s'] / 60:.1f} min")
    results.data["elapsed_s"] = time.perf_counter() - began
    results.data["finished_at"] = _now()
    results.save()
    print_overview(results.data)
    log(f"numbers: {results.path}; elapsed {results.data['elapsed_s'] / 60:.1f} min"
        + (" (QUICK RUN: a harness check on a sample, not the benchmark)" if args.quick else ""))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
