"""The generation benchmark: a small language model distilled from a recorded teacher, with simulated experts.

    python -m bench.generate [--quick] [--seeds N] [--judge] [--out bench/results/generate]

Data: ../shared/data/dolly_15k_ja (Japanese instructions with answers; CC BY-SA 3.0; read from there, never
copied: without it the benchmark says so and exits 0). Prompts are the instruction (and its context, when there
is one); only short ones are used (prompt ≤ 200 characters, answer ≤ 100), so that a tiny model on two CPU cores
has a chance. Each seed draws ``--train`` pool prompts and ``--test`` test prompts.

The loop is the project's own (terakoya.project.Project, a SQLite file in a temporary folder):

1. **Import** the prompts (pool and test), with dolly's answer as the reference answer.
2. **Teach** with the recorded teacher (``teacher.kind = "recorded"``): two samples per prompt, dolly's answer
   first and, as the second sample, the answer to another prompt of the same category (a fluent, wrong answer:
   what a weak sample looks like).
3. **Route** ``--budget`` prompts (all as blind comparisons of the two samples, ``generate.compare_share = 1``)
   and let a simulated expert answer them in the work queue: right (dolly's answer is better) with probability
   ``--expert-accuracy`` (default 0.9), else the other way.
4. **Train** two students from the same project: SFT only (``generate.dpo_epochs = 0``), and SFT then DPO
   (3 epochs, at a tenth of SFT's learning rate) on the comparisons' preference pairs. Both learn from every
   pool prompt's answer: the teacher's where nobody looked (plain distillation), the preferred sample where an
   expert compared.
5. **Measure** on the test prompts: chrF of each student's answer against the reference, beside two baselines
   from the same run: the teacher (its answer *is* the reference: 100 by construction, the ceiling) and the
   "wrong answer" floor (each test prompt answered with another prompt's answer of the same category). With
   ``--judge``, the local teacher model (teacher.model, SmolLM2-135M by default) compares the SFT+DPO student
   with the SFT student on every test prompt, in both orders (a verdict that flips with the order is a tie).
   Speed (tokens/s, seconds per answer, one prompt at a time), size and CPU minutes of each student.
6. **The preference path on real pairs**: ``--hh`` pairs of ../shared/data/hh_rlhf_harmless_test (English
   red-team dialogues, chosen/rejected), 80 % to train (SFT on the chosen answers, then DPO on the pairs), 20 %
   held out; for each student, the share of pairs where it gives the chosen answer the higher log-probability.

Output: tables (mean ± std over seeds) on stdout, and ``generate.json``, ``generate.md``, ``generate.png`` in
``--out`` (``--quick``: bench/results/generate_quick, 600 train / 50 test prompts, a 1-layer model, 200
comparisons, 300 hh-rlhf pairs, 2 seeds, about 8 minutes on two cores; the full run, 2,000 / 200 prompts, a
2-layer model, 600 comparisons, 1,000 hh-rlhf pairs and 3 seeds, about an hour; ``--judge`` adds about ten
minutes).

Honest about the tiny model: a 1-2-layer model trained for minutes on a few thousand Japanese answers writes
fluent-looking fragments, not answers. The point is that every step runs and is measured.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOLLY = ROOT.parent / "shared" / "data" / "dolly_15k_ja" / "databricks-dolly-15k-ja.jsonl"
HH = ROOT.parent / "shared" / "data" / "hh_rlhf_harmless_test" / "harmless-base-test.jsonl.gz"

TOML = """
[project]
name = "bench-generate"
seed = {seed}
language = "ja"
[task]
kind = "generate.v1"
[teacher]
kind = "recorded"
[routing]
gold_share = 0.0
audit_share = 0.0
answers_per_item = 1
[generate]
compare_share = 1.0
student_layers = {layers}
student_width = {width}
student_vocab = {vocab}
max_length = {max_length}
sft_epochs = {epochs}
dpo_epochs = {dpo_epochs}
learning_rate = 0.003
student_max_new_tokens = 48
student_answers = 0
"""


def say(message: str) -> None:
    print(message, flush=True)


def load_dolly(path: Path = DOLLY) -> list[dict[str, str]]:
    """The short prompts, each once (dolly repeats some instructions; the import would keep only the first)."""
    from terakoya.importers import normalize_text

    rows, seen = [], set()
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        prompt = r["instruction"].strip() + (f"\n\n{r['input'].strip()}" if r["input"].strip() else "")
        key = normalize_text(prompt)
        if key in seen:
            continue
        seen.add(key)
        if len(prompt) <= 200 and 0 < len(r["output"].strip()) <= 100:
            rows.append(
                {
                    "id": f"dolly-{r['index']}",
                    "prompt": prompt,
                    "answer": r["output"].strip(),
                    "category": r["category"],
                }
            )
    return rows


def _wrong(rows: list[dict[str, str]], pool: list[dict[str, str]], rng: random.Random) -> dict[str, str]:
    """Each row's "wrong answer": the answer to another prompt of the same category."""
    by_cat: dict[str, list[str]] = {}
    for r in pool:
        by_cat.setdefault(r["category"], []).append(r["answer"])
    out = {}
    for r in rows:
        others = [a for a in by_cat.get(r["category"], []) if a != r["answer"]] or [p["answer"] for p in pool]
        out[r["id"]] = rng.choice(others)
    return out


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def run_seed(rows: list[dict[str, str]], seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import select

    from terakoya import workqueue
    from terakoya.generation.metrics import chrf, throughput
    from terakoya.kinds.generate import messages_of
    from terakoya.project import Project
    from terakoya.storage.models import Person, Task
    from terakoya.storage.web_models import Membership
    from terakoya.students.generative import GenerativeStudent

    rng = random.Random(seed)
    sample = rng.sample(rows, args.train + args.test)
    pool, test = sample[: args.train], sample[args.train :]
    wrong = _wrong(sample, rows, rng)
    result: dict[str, Any] = {"seed": seed, "train": len(pool), "test": len(test)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "terakoya.toml").write_text(
            TOML.format(
                seed=seed,
                layers=args.layers,
                width=args.width,
                vocab=args.vocab,
                max_length=args.max_length,
                epochs=args.epochs,
                dpo_epochs=args.dpo_epochs,
            ),
            encoding="utf-8",
        )
        with Project.open(folder, env={}) as project:
            for split, part in (("pool", pool), ("test", test)):
                data = [
                    {
                        "id": r["id"],
                        "prompt": r["prompt"],
                        "reference": r["answer"],
                        "response": [r["answer"], wrong[r["id"]]],
                    }
                    for r in part
                ]
                project.import_file(
                    _write(folder / f"{split}.jsonl", data),
                    text_column="prompt",
                    id_column="id",
                    label_column="reference",
                    split=split,
                )
            project.teach()
            routed = project.route(budget_items=args.budget)
            with project.db.session() as s:
                person = Person(name="simulated expert", role="trainer", simulated=True)
                s.add(person)
                s.flush()
                s.add(Membership(project_id=project.project_id, person_id=person.id, role="trainer"))
                expert = person.id
            right = answered = 0
            while (view := workqueue.lease_next(project.db, project.project_id, project.settings, expert)) is not None:
                with project.db.session() as s:
                    task = s.get(Task, view.task_id)
                    assert task is not None
                    shown = [task.components["pair"][i] for i in task.components["order"]]
                good = "a" if shown[0] == "teacher:0" else "b"
                correct = rng.random() < args.expert_accuracy
                choice = good if correct else ("b" if good == "a" else "a")
                workqueue.submit_answer(
                    project.db,
                    project.project_id,
                    project.settings,
                    expert,
                    view.task_id,
                    value={"choice": choice},
                    active_seconds=20.0,
                )
                right += correct
                answered += 1
            result["expert"] = {"routed": routed.routed, "answered": answered, "right": right}
            arms: dict[str, Any] = {}
            students: dict[str, Any] = {}
            for arm, dpo in (("SFT", 0.0), ("SFT+DPO", args.dpo_epochs)):
                project.settings.generate.dpo_epochs = dpo
                started = time.process_time()
                wall = time.perf_counter()
                report = project.train(out_dir=folder / "runs" / arm)
                cpu = time.process_time() - started
                student = GenerativeStudent.load(report.path)
                students[arm] = student
                with project.db.session() as s:
                    from terakoya.storage.models import Item

                    texts = dict(s.execute(select(Item.external_id, Item.text).where(Item.split == "test")).all())
                answers, tokens, seconds = [], 0, 0.0
                for r in test:
                    t0 = time.perf_counter()
                    out = student.generate([messages_of(texts[r["id"]])])[0]
                    seconds += time.perf_counter() - t0
                    tokens += out.tokens
                    answers.append(out.text)
                meta = student.describe().get("metadata", {})
                arms[arm] = {
                    "chrf": statistics.fmean(chrf(a, r["answer"]) for a, r in zip(answers, test, strict=True)),
                    "tokens_per_s": throughput(tokens, seconds),
                    "seconds_per_answer": seconds / len(test),
                    "parameters": meta.get("parameters"),
                    "size_mb": sum(p.stat().st_size for p in report.path.rglob("*") if p.is_file()) / 1e6,
                    "cpu_minutes": cpu / 60,
                    "wall_minutes": (time.perf_counter() - wall) / 60,
                    "sft_rows": report.recipe.get("sft"),
                    "preference_pairs": report.recipe.get("preferences"),
                    "losses": meta.get("losses"),
                    "examples": [
                        {"prompt": r["prompt"], "reference": r["answer"], "student": a}
                        for r, a in list(zip(test, answers, strict=True))[:3]
                    ],
                    "answers": answers,
                }
                say(
                    f"  seed {seed} {arm}: chrF {arms[arm]['chrf']:.1f}, "
                    f"{arms[arm]['tokens_per_s'] or 0:.0f} tokens/s, {arms[arm]['wall_minutes']:.1f} min"
                )
            arms["teacher (= reference)"] = {"chrf": statistics.fmean(chrf(r["answer"], r["answer"]) for r in test)}
            arms["wrong-answer floor"] = {"chrf": statistics.fmean(chrf(wrong[r["id"]], r["answer"]) for r in test)}
            if args.judge:
                arms["judge"] = _judge(project, test, arms["SFT+DPO"]["answers"], arms["SFT"]["answers"])
            for arm in ("SFT", "SFT+DPO"):
                arms[arm].pop("answers")
            result["arms"] = arms
    return result


def _judge(project: Any, test: list[dict[str, str]], first: list[str], second: list[str]) -> dict[str, Any]:
    """The local teacher model compares SFT+DPO (first) with SFT (second), both orders; outcomes for the first."""
    from terakoya.generation.evaluate import _judge as judge

    settings = project.settings.model_copy(deep=True)
    settings.teacher.kind = "local"
    settings.generate.judge = "teacher"
    settings.generate.max_tokens = 2
    started = time.perf_counter()
    rows = [{"prompt": r["prompt"], "student": a, "teacher": b} for r, a, b in zip(test, first, second, strict=True)]
    out = judge(settings, rows) or {}
    out["minutes"] = (time.perf_counter() - started) / 60
    return out


def preference_path(seed: int, args: argparse.Namespace) -> dict[str, Any] | None:
    """The preference path on real pairs (hh_rlhf_harmless_test, English red-team dialogues): SFT on the chosen
    answers, then DPO on the pairs; how often the student gives the chosen answer the higher log-probability, on
    the training pairs and on held-out ones, without and with DPO (same tokenizer, same SFT)."""
    from terakoya.generation.datasets import SFTExample, preference_rows, read_hh_rlhf, sft_rows
    from terakoya.students.generative import GenerativeStudent

    if not HH.is_file() or args.hh <= 0:
        return None
    pairs = read_hh_rlhf(HH).pairs
    rng = random.Random(seed)
    picked = rng.sample(pairs, min(len(pairs), args.hh))
    cut = int(0.8 * len(picked))
    train, held = picked[:cut], picked[cut:]
    sft = sft_rows(
        [SFTExample(p.item_id, p.external_id, p.messages, p.chosen, "reference") for p in train], provenance=False
    )
    prefs = preference_rows(train, provenance=False)
    out: dict[str, Any] = {"train_pairs": len(train), "held_out_pairs": len(held)}
    for arm, dpo in (("SFT", 0.0), ("SFT+DPO", args.dpo_epochs)):
        started = time.perf_counter()
        student = GenerativeStudent(
            n_layer=args.layers,
            n_embd=args.width,
            vocab_size=args.vocab,
            max_length=args.max_length,
            sft_epochs=args.hh_epochs,
            dpo_epochs=dpo,
            learning_rate=0.003,
            seed=seed,
        ).fit(sft, prefs)
        row: dict[str, Any] = {"minutes": (time.perf_counter() - started) / 60}
        for name, part in (("train", train), ("held_out", held)):
            prompts = [list(p.messages) for p in part]
            up = student.log_likelihood(prompts, [p.chosen for p in part])
            down = student.log_likelihood(prompts, [p.rejected for p in part])
            row[f"{name}_accuracy"] = sum(u > d for u, d in zip(up, down, strict=True)) / len(part)
            row[f"{name}_margin"] = statistics.fmean(u - d for u, d in zip(up, down, strict=True))
        row["losses"] = student.describe().get("metadata", {}).get("losses")
        out[arm] = row
        say(
            f"  seed {seed} hh-rlhf {arm}: chosen preferred on {100 * row['train_accuracy']:.1f} % of training pairs, "
            f"{100 * row['held_out_accuracy']:.1f} % held out"
        )
    return out


def _ms(values: Sequence[float | None], digits: int = 1) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "—"
    if len(vals) == 1:
        return f"{vals[0]:,.{digits}f}"
    return f"{statistics.fmean(vals):,.{digits}f} ± {statistics.stdev(vals):,.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    seeds = results["seeds"]
    lines = [
        f"## Generation benchmark ({results['mode']}): dolly_15k_ja, {seeds[0]['train']} train / {seeds[0]['test']} "
        f"test prompts, {len(seeds)} seeds",
        "",
        f"Simulated expert: {results['budget']} blind comparisons per seed at {results['expert_accuracy']:.0%} "
        "accuracy; student: " + results["student"],
        "",
        "| arm | chrF vs reference | tokens/s | s per answer | parameters | MB | CPU min (train) |",
        "|---|---|---|---|---|---|---|",
    ]
    names = [k for k in seeds[0]["arms"] if k != "judge"]
    for arm in names:
        rows = [s["arms"][arm] for s in seeds]
        lines.append(
            f"| {arm} | {_ms([r['chrf'] for r in rows])} | {_ms([r.get('tokens_per_s') for r in rows])} | "
            f"{_ms([r.get('seconds_per_answer') for r in rows], 3)} | "
            f"{_ms([r.get('parameters') for r in rows], 0) if rows[0].get('parameters') else '—'} | "
            f"{_ms([r.get('size_mb') for r in rows])} | {_ms([r.get('cpu_minutes') for r in rows])} |"
        )
    dpo = [s["arms"]["SFT+DPO"]["chrf"] - s["arms"]["SFT"]["chrf"] for s in seeds]
    lines += ["", f"SFT+DPO minus SFT, chrF: {_ms(dpo)} (per seed: {', '.join(f'{d:+.1f}' for d in dpo)})"]
    floor = [s["arms"]["SFT"]["chrf"] - s["arms"]["wrong-answer floor"]["chrf"] for s in seeds]
    lines.append(f"SFT minus the wrong-answer floor, chrF: {_ms(floor)}")
    if "judge" in seeds[0]["arms"]:
        j = [s["arms"]["judge"] for s in seeds]
        lines.append(
            "Local judge ("
            + str(j[0].get("judge"))
            + ", both orders), SFT+DPO vs SFT: "
            + "; ".join(
                f"won {x['wins']}, tied {x['ties']}, lost {x['losses']} (its answers: {x.get('verdicts')})" for x in j
            )
        )
    hh = [s.get("hh_rlhf") for s in seeds if s.get("hh_rlhf")]
    if hh:
        lines += [
            "",
            f"Preference path on hh_rlhf_harmless_test ({hh[0]['train_pairs']} training / {hh[0]['held_out_pairs']} "
            "held-out pairs per seed): share of pairs where the student gives the chosen answer the higher "
            "log-probability",
            "",
            "| arm | training pairs | held-out pairs | mean margin (held out, nats) |",
            "|---|---|---|---|",
        ]
        for arm in ("SFT", "SFT+DPO"):
            lines.append(
                f"| {arm} | {_ms([100 * h[arm]['train_accuracy'] for h in hh])} % | "
                f"{_ms([100 * h[arm]['held_out_accuracy'] for h in hh])} % | "
                f"{_ms([h[arm]['held_out_margin'] for h in hh], 2)} |"
            )
    lines += ["", "Targets:"]
    met_dpo = all(d > 0 for d in dpo)
    lines.append(f"- SFT+DPO beats SFT alone on chrF in every seed: {'MET' if met_dpo else 'MISSED'}")
    met_floor = all(f > 0 for f in floor)
    lines.append(f"- the student beats the wrong-answer floor in every seed: {'MET' if met_floor else 'MISSED'}")
    lines.append("- the student beats the teacher: MISSED by construction (the recorded teacher is the reference)")
    if hh:
        up = all(h["SFT+DPO"]["train_accuracy"] > h["SFT"]["train_accuracy"] for h in hh)
        lines.append(
            f"- DPO raises the chosen answers on the pairs it trained on, every seed: {'MET' if up else 'MISSED'}"
        )
        gen = all(h["SFT+DPO"]["held_out_accuracy"] > h["SFT"]["held_out_accuracy"] for h in hh)
        lines.append(f"- ... and on held-out pairs, every seed: {'MET' if gen else 'MISSED'}")
    return "\n".join(lines)


def plot(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = results["seeds"]
    names = [k for k in seeds[0]["arms"] if k != "judge"]
    means = [statistics.fmean(s["arms"][n]["chrf"] for s in seeds) for n in names]
    errs = [statistics.stdev([s["arms"][n]["chrf"] for s in seeds]) if len(seeds) > 1 else 0.0 for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(names, means, yerr=errs, color=["#3b5bdb", "#1f7a35", "#adb5bd", "#c92a2a"][: len(names)], capsize=4)
    ax.set_ylabel("chrF vs reference")
    ax.set_title("dolly_15k_ja test prompts (mean ± std over seeds)")
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a harness check (600/50 prompts, 2 seeds)")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--train", type=int, default=None)
    parser.add_argument("--test", type=int, default=None)
    parser.add_argument("--budget", type=int, default=None, help="blind comparisons answered per seed")
    parser.add_argument("--expert-accuracy", type=float, default=0.9)
    parser.add_argument("--judge", action="store_true", help="the local teacher model judges SFT+DPO vs SFT")
    parser.add_argument("--hh", type=int, default=None, help="hh-rlhf pairs for the preference path (0: skip)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    quick = args.quick
    args.seeds = args.seeds or (2 if quick else 3)
    args.train = args.train or (600 if quick else 2000)
    args.test = args.test or (50 if quick else 200)
    args.budget = args.budget or (200 if quick else 600)
    args.layers, args.width, args.vocab = (1, 64, 1000) if quick else (2, 128, 2000)
    args.max_length, args.epochs, args.dpo_epochs = 192, (20.0 if quick else 5.0), 3.0
    args.hh = (300 if quick else 1000) if args.hh is None else args.hh
    args.hh_epochs = 10.0 if quick else 3.0
    out = args.out or ROOT / "bench" / "results" / ("generate_quick" if quick else "generate")
    if not DOLLY.is_file():
        say(f"dolly_15k_ja not found at {DOLLY}: nothing to measure (the benchmark reads it from ../shared/data)")
        return 0
    rows = load_dolly()
    say(f"dolly_15k_ja: {len(rows):,} short prompts; {args.seeds} seeds of {args.train}/{args.test}")
    started = time.perf_counter()
    seeds = [run_seed(rows, seed, args) for seed in range(args.seeds)]
    for seed, result in enumerate(seeds):
        result["hh_rlhf"] = preference_path(seed, args)
    results = {
        "mode": "quick" if quick else "full",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "budget": args.budget,
        "expert_accuracy": args.expert_accuracy,
        "student": f"{args.layers} layer(s), width {args.width}, own {args.vocab}-token vocabulary, "
        f"{args.epochs:g} SFT epochs, {args.dpo_epochs:g} DPO epoch",
        "minutes": (time.perf_counter() - started) / 60,
        "seeds": seeds,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "generate.json").write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    text = markdown(results)
    (out / "generate.md").write_text(text + "\n", encoding="utf-8")
    plot(results, out / "generate.png")
    say("")
    say(text)
    say(f"\n{results['minutes']:.1f} minutes; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
