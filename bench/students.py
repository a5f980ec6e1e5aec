"""Speed of the students: train seconds, batch items per second, single-item latency, size on disk.

    python -m bench.students                          # linear on 100,000 sentences, embed on 2,000
    python -m bench.students --n 20000 --kinds linear

The sentences are Financial PhraseBank's (../shared/data/financial_phrasebank/Sentences_50Agree.txt),
80 % of them repeated and perturbed (a word dropped, two neighbours swapped, a number appended) up to
``--n``, with soft targets like a teacher's (0.7 on the recorded label); the other 20 %, untouched, are
the accuracy check. Without the file, synthetic sentences stand in. Writes bench/results/students.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHRASEBANK = ROOT.parent / "shared" / "data" / "financial_phrasebank" / "Sentences_50Agree.txt"
RESULTS = ROOT / "bench" / "results" / "students.json"
LABELS = ["negative", "neutral", "positive"]


def _sentences() -> tuple[list[tuple[str, str]], str]:
    if PHRASEBANK.is_file():
        rows = []
        for line in PHRASEBANK.read_text(encoding="utf-8").splitlines():
            text, _, label = line.rpartition("@")
            if text and label in LABELS:
                rows.append((text.strip(), label))
        return rows, PHRASEBANK.name
    rng = random.Random(0)
    words = {
        "positive": "profit rose grew gain record strong improved beat",
        "negative": "loss fell weak cut dropped decline missed lower",
        "neutral": "meeting office held board listed report published company",
    }
    filler = ["the", "of", "in", "and", "a", "to", "for", "on", "with", "said", "shares", "year", "quarter"]
    rows = []
    for i in range(5000):
        label = LABELS[i % 3]
        picked = rng.sample(words[label].split(), 2) + rng.sample(filler, 6)
        rng.shuffle(picked)
        rows.append((" ".join(picked), label))
    return rows, "synthetic"


def _perturb(text: str, rng: random.Random) -> str:
    words = text.split()
    choice = rng.random()
    if len(words) > 4 and choice < 0.4:
        del words[rng.randrange(len(words))]
    elif len(words) > 4 and choice < 0.8:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    if rng.random() < 0.5:
        words.append(str(rng.randrange(100_000)))
    return " ".join(words)


def dataset(n: int, seed: int = 0) -> dict[str, Any]:
    rows, source = _sentences()
    rng = random.Random(seed)
    rng.shuffle(rows)
    cut = int(len(rows) * 0.8)
    train_rows, test_rows = rows[:cut], rows[cut:]
    texts, targets = [], np.zeros((n, len(LABELS)))
    for i in range(n):
        text, label = train_rows[i % len(train_rows)]
        texts.append(text if i < len(train_rows) else _perturb(text, rng))
        targets[i] = 0.15
        targets[i, LABELS.index(label)] = 0.7
    return {
        "texts": texts,
        "targets": targets,
        "test_texts": [t for t, _ in test_rows],
        "test_labels": [lab for _, lab in test_rows],
        "source": source,
    }


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def measure(kind: str, data: dict[str, Any], n: int, latency_items: int) -> dict[str, Any]:
    from terakoya.students import load, make_student
    from terakoya.training import train_arrays

    texts, targets = data["texts"][:n], data["targets"][:n]
    student = make_student(kind, classes=LABELS)
    if kind.startswith("embed"):
        student.embed(texts[:8])  # load the encoder outside the timing
    started, cpu = time.perf_counter(), time.process_time()
    student.fit(texts, targets)
    train_s, train_cpu_s = time.perf_counter() - started, time.process_time() - cpu

    started = time.perf_counter()
    calibrated = train_arrays(texts, targets, None, LABELS, kind=kind)
    recipe_s = time.perf_counter() - started

    batch = texts if not kind.startswith("embed") else [f"{t} ." for t in texts]  # embed: not from its cache
    started, cpu = time.perf_counter(), time.process_time()
    student.predict_proba(batch)
    batch_s, batch_cpu_s = time.perf_counter() - started, time.process_time() - cpu

    singles = data["test_texts"][:latency_items]
    for text in singles[:5]:
        student.predict_proba([text])
    times = []
    for text in singles:
        t0 = time.perf_counter()
        student.predict_proba([text])
        times.append(time.perf_counter() - t0)

    folder = Path(tempfile.mkdtemp(prefix="terakoya-bench-"))
    try:
        student.save(folder / "model")
        size = _size(folder / "model")
        started = time.perf_counter()
        loaded = load(folder / "model")
        load_s = time.perf_counter() - started
        same = bool(np.array_equal(loaded.predict_proba(singles[:50]), student.predict_proba(singles[:50])))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    accuracy = student.score(data["test_texts"], data["test_labels"])
    return {
        "kind": student.kind,
        "items": n,
        "train_s": round(train_s, 2),
        "train_cpu_s": round(train_cpu_s, 2),
        "train_and_calibrate_s": round(recipe_s, 2),
        "temperature": round(calibrated.temperature, 3),
        "predict_items_per_s": round(len(batch) / batch_s),
        "predict_items_per_cpu_s": round(len(batch) / batch_cpu_s),
        "p50_single_ms": round(statistics.median(times) * 1000, 3),
        "p95_single_ms": round(float(np.percentile(times, 95)) * 1000, 3),
        "size_bytes": size,
        "load_s": round(load_s, 3),
        "save_load_identical": same,
        "test_accuracy": round(accuracy, 4),
        "iterations": int(getattr(student, "n_iter_", 0)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="training sentences for the linear student")
    parser.add_argument("--embed-n", type=int, default=2_000, help="training sentences for the embed student")
    parser.add_argument("--kinds", default="linear,embed", help="comma-separated student kinds")
    parser.add_argument("--latency-items", type=int, default=200, help="single-item predictions to time")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    data = dataset(max(args.n, args.embed_n))
    results = []
    for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
        n = args.embed_n if kind.startswith("embed") else args.n
        print(f"measuring {kind} on {n:,} sentences ...", file=sys.stderr, flush=True)
        results.append(measure(kind, data, n, args.latency_items))

    head = ["kind", "items", "train_s", "train_cpu_s", "train_and_calibrate_s", "predict_items_per_s", "p50_single_ms"]
    head += ["size_bytes", "test_accuracy"]
    widths = [max(len(h), *(len(f"{r[h]:,}" if isinstance(r[h], int) else str(r[h])) for r in results)) for h in head]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    for r in results:
        cells = [f"{r[h]:,}" if isinstance(r[h], int) and not isinstance(r[h], bool) else str(r[h]) for h in head]
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))

    report = {
        "data": data["source"],
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "platform": platform.platform(),
        },
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
