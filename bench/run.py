"""The distillation benchmark: teacher alone vs experts alone vs Terakoya (random and its own routing).

    python -m bench.run [--datasets fpb,chabsa] [--budgets 1,2,5,10,20] [--kind linear] [--limit N]

For each dataset a base project is imported and taught once (the teacher cache lives in the base
project's database, so a second run makes no teacher calls). For each expert budget (a share of the
pool) every arm starts from a copy of the base database:

- teacher alone: the teacher's own labels on the test split;
- experts alone: a student trained only on the same number of randomly chosen expert labels;
- Terakoya, random routing: `route --strategy random` + simulated experts + `train`, in rounds;
- Terakoya, its routing: `route` + simulated experts + `train`, in rounds (the student's
  disagreement with the teacher feeds the later rounds).

Experts are simulated from the datasets' recorded labels. Prints one table per dataset, writes
bench/results/distill.json (every number) and bench/results/distill_<dataset>.png (learning curves).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"
WORK = RESULTS / "work"

FIN_LABELS = {
    "positive": "good news for the company: growth, higher profit or sales, new orders, upgrades",
    "negative": "bad news for the company: losses, falling sales, layoffs, downgrades, lawsuits",
    "neutral": "no clear good or bad news: facts, announcements, descriptions of the business",
}
FPB_TOML = """
[project]
name = "{name}"
language = "en"
seed = 0

{labels}
[guidelines]
text = \"\"\"
Label the tone of the sentence for the company's investors: positive, negative or neutral.
\"\"\"

[[examples]]
text = "Net sales increased by 18.5 % to EUR 167.8 million compared with the previous year."
label = "positive"

[[examples]]
text = "The company said it will cut 140 jobs after orders fell sharply in the second quarter."
label = "negative"

[[examples]]
text = "The annual general meeting will be held in Helsinki on 24 March."
label = "neutral"

[[examples]]
text = "Operating loss widened to EUR 4.2 million from EUR 1.1 million a year earlier."
label = "negative"

[teacher]
kind = "local"
model = "smollm2-135m-instruct"
few_shot = 4

[routing]
auto_accept_threshold = 0.9
gold_share = 0.0

[student]
kind = "{kind}"
"""
CHABSA_TOML = """
[project]
name = "{name}"
language = "ja"
seed = 0

[[labels]]
name = "negative"
description = "bad for the company: lower sales or profit, losses, worse conditions"

[[labels]]
name = "positive"
description = "good for the company: higher sales or profit, growth, improvement"

[guidelines]
text = \"\"\"
有価証券報告書の文が会社にとって良い内容 (positive) か悪い内容 (negative) かを判断する。
\"\"\"

[[examples]]
text = "売上高は前年同期比12.3％増の450億円となりました"
label = "positive"

[[examples]]
text = "営業利益は原材料価格の高騰により前年同期比25.1％減となりました"
label = "negative"

[[examples]]
text = "海外事業の受注が好調に推移し、経常利益は過去最高を更新しました"
label = "positive"

[[examples]]
text = "個人消費の低迷により、販売数量は減少しました"
label = "negative"

[teacher]
kind = "local"
model = "smollm2-135m-instruct"
few_shot = 4

[routing]
auto_accept_threshold = 0.9
gold_share = 0.0

[student]
kind = "{kind}"
"""


def _labels_toml(labels: dict[str, str]) -> str:
    return "".join(f'[[labels]]\nname = "{n}"\ndescription = "{d}"\n\n' for n, d in labels.items())


def prepare_fpb(folder: Path, limit: int | None) -> dict[str, Any]:
    src = SHARED / "financial_phrasebank" / "Sentences_50Agree.txt"
    if not src.exists():
        raise FileNotFoundError(src)
    lines = src.read_text(encoding="utf-8").splitlines()
    if limit:
        lines = random.Random(0).sample(lines, min(limit, len(lines)))
    path = folder / "fpb.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "sentence", "label"])
        for i, line in enumerate(lines, start=1):
            sentence, _, label = line.rpartition("@")
            writer.writerow([f"fpb-{i}", sentence, label])
    return {"imports": [dict(path=path, split="test", fraction=0.2)], "text_column": "sentence"}


def prepare_chabsa(folder: Path, limit: int | None) -> dict[str, Any]:
    base = SHARED / "chabsa" / "sentence_binary_derived"
    if not base.exists():
        raise FileNotFoundError(base)
    imports = []
    for split, name in (("pool", "train.tsv"), ("test", "test.tsv")):
        rows = [line.split("\t") for line in (base / name).read_text(encoding="utf-8").splitlines() if line.strip()]
        if limit:
            rows = random.Random(0).sample(rows, min(limit if split == "pool" else limit // 3, len(rows)))
        path = folder / f"chabsa_{split}.csv"
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id", "sentence", "label"])
            for i, row in enumerate(rows, start=1):
                writer.writerow([f"{split}-{i}", row[0], "positive" if row[1].strip() == "1" else "negative"])
        imports.append(dict(path=path, split=split, fraction=1.0))
    return {"imports": imports, "text_column": "sentence"}


DATASETS = {
    "fpb": ("Financial PhraseBank (50 % agreement, seeded 80/20 stratified split)", prepare_fpb, FPB_TOML, FIN_LABELS),
    "chabsa": ("chABSA (Japanese securities reports, binary sentences)", prepare_chabsa, CHABSA_TOML, None),
}


def _macro(report: dict[str, Any], who: str) -> dict[str, float | None]:
    part = report.get(who) or {}
    return {
        "accuracy": part.get("accuracy"),
        "macro_f1": part.get("macro_f1"),
        "items_per_second": part.get("items_per_second"),
    }


def _write_project(folder: Path, toml: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "terakoya.toml").write_text(toml, encoding="utf-8")


def run_dataset(key: str, budgets: list[float], kind: str, rounds: int, limit: int | None) -> dict[str, Any]:
    from terakoya.evaluation.metrics import classification_metrics
    from terakoya.project import Project
    from terakoya.students import make_student
    from terakoya.training import build_training_set

    title, prepare, toml_template, labels = DATASETS[key]
    work = WORK / (f"{key}-limit{limit}" if limit else key)
    work.mkdir(parents=True, exist_ok=True)
    spec = prepare(work, limit)
    name = f"bench-{key}"
    toml = toml_template.format(name=name, kind=kind, labels=_labels_toml(labels or {}))
    base_dir = work / "base"
    fresh = not (base_dir / "terakoya.db").exists() or (base_dir / "terakoya.toml").read_text() != toml
    if fresh:
        shutil.rmtree(base_dir, ignore_errors=True)
        _write_project(base_dir, toml)
    base = Project.open(base_dir, env={})
    if fresh:
        for imp in spec["imports"]:
            base.import_file(
                imp["path"], text_column=spec["text_column"], id_column="id", label_column="label",
                split=imp["split"], fraction=imp["fraction"],
            )  # fmt: skip
    started = time.perf_counter()
    taught = base.teach(progress=_ticker(f"{key}: teacher"))
    teach_seconds = time.perf_counter() - started
    print(f"\n{key}: teacher {taught.model} labelled {taught.labeled} items, {taught.calls} calls, "
          f"{taught.cached} cached, {teach_seconds:.1f} s")  # fmt: skip
    status = base.status()
    pool_n = int(status["pool"])
    teacher_report = base.evaluate(out_dir=work / "reports" / "teacher", learning_curve=False).data

    # the recorded labels of the pool (the simulated experts) and the test split
    from sqlalchemy import select

    from terakoya.storage.models import Item

    with base.db.session() as s:
        pool = [
            (t, g)
            for t, g in s.execute(select(Item.text, Item.gold_label).where(Item.split == "pool").order_by(Item.id))
        ]
        test = [
            (t, g)
            for t, g in s.execute(select(Item.text, Item.gold_label).where(Item.split == "test").order_by(Item.id))
        ]
    classes = sorted({g for _, g in test if g})

    rows: dict[str, Any] = {"teacher": _macro(teacher_report, "teacher"), "budgets": {}}
    for pct in budgets:
        n = max(1, round(pool_n * pct / 100))
        entry: dict[str, Any] = {"expert_items": n}
        # experts alone: a student on n randomly chosen expert labels, nothing else
        picked = random.Random(int(pct * 100)).sample(pool, n)
        texts, gold = [t for t, _ in picked], [g for _, g in picked]
        if len(set(gold)) >= 2:
            student = make_student(kind).fit(texts, gold)
            test_texts = [t for t, _ in test]
            t0 = time.perf_counter()
            proba = student.predict_proba(test_texts)
            elapsed = time.perf_counter() - t0
            full = proba if len(student.classes_) == len(classes) else None
            pred = list(student.predict(test_texts))
            m = classification_metrics([g for _, g in test], full, pred, classes)
            speed = len(test) / max(elapsed, 1e-9)
            entry["experts_alone"] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "items_per_second": speed}
        else:
            entry["experts_alone"] = {"accuracy": None, "macro_f1": None, "items_per_second": None,
                                      "note": "fewer than two labels among the random expert items"}  # fmt: skip
        for arm, strategy in (("random_routing", "random"), ("terakoya_routing", "terakoya")):
            arm_dir = work / f"{arm}-{pct:g}"
            shutil.rmtree(arm_dir, ignore_errors=True)
            _write_project(arm_dir, toml)
            shutil.copyfile(base_dir / "terakoya.db", arm_dir / "terakoya.db")
            project = Project.open(arm_dir, env={})
            share = [n // rounds + (1 if r < n % rounds else 0) for r in range(rounds)]
            for part in share:
                if part:
                    project.route(budget_items=part, strategy=strategy)
                    project.simulate("label")
                    project.train()
            report = project.evaluate(out_dir=arm_dir / "report", learning_curve=False).data
            training = build_training_set(project.db, project.project_id, project.settings)
            entry[arm] = {
                **_macro(report, "student"),
                "expert_items": int(sum(s == "expert" for s in training.sources)),
            }
            project.close()
        rows["budgets"][f"{pct:g}"] = entry
        _print_progress(key, pct, entry)
    rows.update(
        title=title, teacher_model=taught.model, prompt_version=taught.prompt_version, pool_items=pool_n,
        test_items=len(test), teach_seconds=teach_seconds, teacher_calls=taught.calls, student_kind=kind,
    )  # fmt: skip
    return rows


def _ticker(label: str) -> Any:
    last = [0.0]

    def tick(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 10 or done == total:
            last[0] = now
            print(f"  {label}: {done}/{total}", flush=True)

    return tick


def _print_progress(key: str, pct: float, entry: dict[str, Any]) -> None:
    parts = ", ".join(f"{arm} {entry[arm].get('accuracy') or float('nan'):.3f}" for arm in
                      ("experts_alone", "random_routing", "terakoya_routing"))  # fmt: skip
    print(f"  {key} @ {pct:g} % ({entry['expert_items']} expert items): {parts}", flush=True)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float) and v > 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def print_table(key: str, rows: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{rows['title']} — teacher: {rows['teacher_model']} ({rows['prompt_version']}); "
                  f"pool {rows['pool_items']}, test {rows['test_items']}; student: {rows['student_kind']}")  # fmt: skip
    for col in ("budget", "expert items", "arm", "accuracy", "macro-F1", "items/s"):
        table.add_column(col, justify="right" if col not in {"arm"} else "left")
    t = rows["teacher"]
    table.add_row("—", "0", "teacher alone", _fmt(t["accuracy"]), _fmt(t["macro_f1"]), _fmt(t["items_per_second"], 2))
    names = {"experts_alone": "experts alone", "random_routing": "Terakoya, random routing",
             "terakoya_routing": "Terakoya, its routing"}  # fmt: skip
    for pct, entry in rows["budgets"].items():
        for arm, label in names.items():
            r = entry[arm]
            table.add_row(f"{pct} %", str(entry["expert_items"]), label, _fmt(r["accuracy"]), _fmt(r["macro_f1"]),
                          _fmt(r["items_per_second"], 0))  # fmt: skip
        table.add_section()
    Console(width=140).print(table)


def plot(key: str, rows: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = [float(b) for b in rows["budgets"]]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm, label in (("experts_alone", "experts alone"), ("random_routing", "Terakoya, random routing"),
                       ("terakoya_routing", "Terakoya, its routing")):  # fmt: skip
        ys = [rows["budgets"][b][arm]["accuracy"] for b in rows["budgets"]]
        ax.plot(budgets, [y if y is not None else float("nan") for y in ys], marker="o", label=label)
    ax.axhline(rows["teacher"]["accuracy"] or float("nan"), color="grey", linestyle="--", label="teacher alone")
    ax.set_xscale("log")
    ax.set_xticks(budgets, [f"{b:g} %" for b in budgets])
    ax.set_xlabel("expert budget (share of the pool)")
    ax.set_ylabel("accuracy on the test split")
    ax.set_title(rows["title"], fontsize=9)
    ax.legend()
    fig.tight_layout()
    out = RESULTS / f"distill_{key}.png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def targets(rows: dict[str, Any]) -> list[str]:
    notes = []
    t_acc = rows["teacher"]["accuracy"] or 0.0
    for pct, e in rows["budgets"].items():
        ours, rnd, alone = (e[a]["accuracy"] for a in ("terakoya_routing", "random_routing", "experts_alone"))
        if ours is None:
            continue
        if float(pct) >= 2:
            notes.append(f"{pct} %: vs teacher {ours - t_acc:+.3f}, vs experts alone {ours - (alone or 0):+.3f}")
        notes.append(f"{pct} %: its routing vs random routing {ours - (rnd or 0):+.3f}")
    t_speed, s_speed = rows["teacher"]["items_per_second"], None
    for e in rows["budgets"].values():
        s_speed = e["terakoya_routing"]["items_per_second"] or s_speed
    if t_speed and s_speed:
        notes.append(f"student/teacher speed: {s_speed / t_speed:,.0f}x (target >= 1,000x)")
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="fpb,chabsa")
    parser.add_argument("--budgets", default="1,2,5,10,20")
    parser.add_argument("--kind", default="linear", help="student kind")
    parser.add_argument("--rounds", type=int, default=2, help="route/answer/train rounds per budget")
    parser.add_argument("--limit", type=int, default=None, help="use at most this many rows per dataset (quick runs)")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_json = RESULTS / "distill.json"
    results: dict[str, Any] = json.loads(out_json.read_text()) if out_json.exists() else {}
    budgets = [float(b) for b in args.budgets.split(",")]
    for key in args.datasets.split(","):
        try:
            rows = run_dataset(key, budgets, args.kind, args.rounds, args.limit)
        except FileNotFoundError as exc:
            print(f"skipping {key}: data not found at {exc} (../shared/data is not part of the project)")
            continue
        results[key] = rows
        out_json.write_text(json.dumps(results, indent=2, default=str))
        print_table(key, rows)
        print(f"plot: {plot(key, rows)}")
        for note in targets(rows):
            print(f"  target check — {note}")
    print(f"numbers: {out_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
