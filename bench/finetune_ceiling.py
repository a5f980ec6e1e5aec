"""How far can the fine-tuned student go on Financial PhraseBank? A measurement for the strong-teacher targets.

    python -m bench.finetune_ceiling                 # on a GPU: about 2 minutes; on 2 CPU cores: hours
    python -m bench.finetune_ceiling --epochs 3 --seeds 3

Arms, each fitting the `finetune` student (packaged all-MiniLM-L6-v2, fine-tuned end to end on soft targets)
on the 80 % pool of a seeded, stratified 80/20 split of the 50 %-agreement file and scoring it on the 20 %:

- every pool item's gold label (the student's ceiling);
- the simulated 85 % teacher's soft labels on every pool item (``bench.simteacher``: mistakes on hard items);
- that teacher with a random 10 % of the pool answered by experts (gold, weight 3, as Terakoya weighs them);
- the same 10 % expert labels alone.

Writes bench/results/finetune_ceiling.json. Simulated teachers are named as such.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.datasets import load_fpb
from bench.simteacher import simulate

RESULTS = Path(__file__).resolve().parent / "results"
CLASSES = ["negative", "neutral", "positive"]


def split_fpb(seed: int = 0, limit: int | None = None) -> tuple[list[Any], list[Any]]:
    """A seeded, stratified 80/20 split of FPB's rows (pool, test); ``limit``: a seeded sample first."""
    by_label: dict[str, list[Any]] = defaultdict(list)
    for row in load_fpb(limit).rows:
        by_label[row.label].append(row)
    rng = random.Random(seed)
    pool, test = [], []
    for _, rows in sorted(by_label.items()):
        rng.shuffle(rows)
        cut = int(0.8 * len(rows))
        pool += rows[:cut]
        test += rows[cut:]
    return pool, test


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--expert-share", type=float, default=0.10)
    parser.add_argument("--limit", type=int, help="a seeded sample of this many sentences (a quick look)")
    parser.add_argument("--base-model", help="a Hugging Face model folder (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch

    from terakoya.students import FinetuneStudent

    pool, test = split_fpb(limit=args.limit)
    rows = pool + test
    y_test = np.array([CLASSES.index(r.label) for r in test])
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    print(f"FPB 50 %: pool {len(pool)}, test {len(test)}; finetune, {args.epochs} epochs, on {device}", flush=True)

    def score(texts: list[str], targets: list[list[float]], weights: list[float], seed: int) -> tuple[float, float]:
        student = FinetuneStudent(classes=CLASSES, base_model=args.base_model, epochs=args.epochs, seed=seed)
        start = time.perf_counter()
        student.fit(texts, np.asarray(targets), sample_weight=np.asarray(weights, dtype=float))
        seconds = time.perf_counter() - start
        predicted = student.predict_proba([r.text for r in test]).argmax(1)
        return float((predicted == y_test).mean()), seconds

    def onehot(label: str) -> list[float]:
        return [1.0 if c == label else 0.0 for c in CLASSES]

    arms: dict[str, list[float]] = defaultdict(list)
    seconds: dict[str, list[float]] = defaultdict(list)
    for seed in range(args.seeds):
        sim = simulate([r.label for r in rows], [r.difficulty for r in rows], CLASSES, accuracy=0.85, seed=1000 + seed)
        probs = {r.text: p for r, p in zip(rows, sim.probabilities, strict=True)}
        arms["simulated 85 % teacher, on test"].append(
            float(np.mean([max(probs[r.text], key=probs[r.text].__getitem__) == r.label for r in test]))
        )
        soft = [[probs[r.text][c] for c in CLASSES] for r in pool]
        rng = np.random.default_rng(seed)
        experts = set(rng.choice(len(pool), size=max(1, int(args.expert_share * len(pool))), replace=False).tolist())
        texts = [r.text for r in pool]
        share = f"{100 * args.expert_share:g} %"
        fits = {
            "every gold label (ceiling)": (texts, [onehot(r.label) for r in pool], [1.0] * len(pool)),
            "teacher alone, distilled": (texts, soft, [1.0] * len(pool)),
            f"teacher + {share} experts": (
                texts,
                [onehot(r.label) if i in experts else soft[i] for i, r in enumerate(pool)],
                [3.0 if i in experts else 1.0 for i in range(len(pool))],
            ),
            f"{share} experts alone": (
                [pool[i].text for i in sorted(experts)],
                [onehot(pool[i].label) for i in sorted(experts)],
                [1.0] * len(experts),
            ),
        }
        for name, (x, targets, weights) in fits.items():
            accuracy, took = score(x, targets, weights, seed)
            arms[name].append(accuracy)
            seconds[name].append(took)
            print(f"  seed {seed}: {name:<32} {100 * accuracy:5.1f} %  ({took:.0f} s)", flush=True)

    print(f"\n{'arm':<34} {'accuracy (mean ± std)':>22} {'fit seconds':>12}")
    for name, values in arms.items():
        took = f"{np.mean(seconds[name]):.0f}" if name in seconds else ""
        print(f"{name:<34} {100 * np.mean(values):>14.1f} ± {100 * np.std(values):.1f} {took:>12}")
    target = 0.86
    best = max(np.mean(v) for k, v in arms.items() if "teacher +" in k)
    verdict = "met" if best >= target else f"MISSED ({100 * best:.1f} %)"
    print(f"\ntarget: FPB ≥ {100 * target:.0f} % with ≤ 10 % expert labels and the 85 % teacher: {verdict}")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "device": device,
        "epochs": args.epochs,
        "pool": len(pool),
        "test": len(test),
        "teacher": "simulated 85 % (bench.simteacher)",
        "accuracy": {k: v for k, v in arms.items()},
        "fit_seconds": {k: v for k, v in seconds.items()},
        "target_86": verdict,
    }
    (args.out / "finetune_ceiling.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out / 'finetune_ceiling.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
