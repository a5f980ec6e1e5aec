"""Simulated teachers of known accuracy, plugged into Terakoya as its ``python`` teacher.

A simulated teacher is a table text -> label probabilities, drawn once per (teacher, dataset) with a seed:

- **correctness**: item i is right with probability ``sigmoid(alpha - slope * difficulty_i)``, so mistakes
  fall mostly on hard items; ``alpha`` is solved (bisection, on the drawn uniforms) so that the share of
  right items is the target accuracy;
- **wrong answers** pick another label, weighted towards a plausible confusion (neutral <-> positive is the
  common one in financial news; with two labels there is only one other);
- **confidence** is informative but imperfect: ``s = a * correct + noise`` with standard normal noise and
  ``a = sqrt(2) * Phi^-1(auroc)``, so the AUROC of the confidence for correctness is ``auroc`` in
  expectation; ``confidence = floor + (1 - floor) * sigmoid(s + b)`` with ``b`` solved so that the mean
  confidence equals the accuracy (calibrated on average, not per item); ``confidence`` goes on the chosen
  label and the rest is spread evenly over the others.

Terakoya calls :func:`label` (``[teacher] kind = "python"``, ``function = "bench.simteacher:label"``); it
looks the answers up in the table that :func:`use` installed (the bench runs in-process), or in the JSON
file named by ``BENCH_SIMTEACHER_TABLE`` (for a ``terakoya teach`` in another process).
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

ENV_TABLE = "BENCH_SIMTEACHER_TABLE"
FUNCTION = "bench.simteacher:label"

#: where a wrong answer goes, by the right label (unlisted labels: evenly)
CONFUSION = {
    "neutral": {"positive": 0.65, "negative": 0.35},
    "positive": {"neutral": 0.8, "negative": 0.2},
    "negative": {"neutral": 0.75, "positive": 0.25},
}

_TABLE: dict[str, dict[str, float]] = {}


def key(text: str) -> str:
    """Table key: whitespace collapsed, so an importer that trims a text still finds it."""
    return " ".join(text.split())


def use(table: dict[str, dict[str, float]]) -> None:
    """Install ``table`` (text key -> probabilities) as the answers :func:`label` gives."""
    _TABLE.clear()
    _TABLE.update(table)


def label(texts: Sequence[str], labels: Sequence[str]) -> list[dict[str, float]]:
    """The python-teacher function: one probability dict per text, looked up in the installed table."""
    table = _TABLE
    if not table and os.environ.get(ENV_TABLE):
        table = json.loads(Path(os.environ[ENV_TABLE]).read_text(encoding="utf-8"))
    out = []
    for text in texts:
        answer = table.get(key(text))
        if answer is None:
            raise KeyError(f"the simulated teacher has no answer for {text[:60]!r}: install its table first (use())")
        out.append({lab: answer.get(lab, 0.0) for lab in labels})
    return out


@dataclass
class Simulated:
    """One drawn teacher: per item its answer, correctness, confidence and probabilities."""

    answers: list[str]
    correct: np.ndarray
    confidence: np.ndarray
    probabilities: list[dict[str, float]]
    alpha: float
    bias: float

    def table(self, texts: Sequence[str]) -> dict[str, dict[str, float]]:
        return {key(t): p for t, p in zip(texts, self.probabilities, strict=True)}

    def accuracy(self, mask: np.ndarray | None = None) -> float:
        c = self.correct if mask is None else self.correct[mask]
        return float(c.mean()) if len(c) else math.nan


def seed_for(teacher: str, dataset: str) -> int:
    return zlib.crc32(f"{teacher}/{dataset}".encode())


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _bisect(fn: Callable[[float], float], target: float, lo: float = -40.0, hi: float = 40.0) -> float:
    """x in [lo, hi] where the increasing function fn(x) is closest to target."""
    for _ in range(80):
        mid = (lo + hi) / 2
        if fn(mid) < target:
            lo = mid
        else:
            hi = mid
    return lo if abs(fn(lo) - target) <= abs(fn(hi) - target) else hi


def simulate(
    golds: Sequence[str],
    difficulty: Sequence[float],
    labels: Sequence[str],
    *,
    accuracy: float,
    seed: int,
    auroc: float = 0.75,
    slope: float = 1.0,
) -> Simulated:
    """Draw a teacher of ``accuracy`` for items with recorded labels ``golds`` (see the module docstring)."""
    n, k = len(golds), len(labels)
    rng = np.random.default_rng(seed)
    d = np.asarray(difficulty, dtype=float)
    u = rng.random(n)
    noise = rng.standard_normal(n)
    picks = rng.random(n)

    alpha = _bisect(lambda a: float((u < _sigmoid(a - slope * d)).mean()), accuracy)
    correct = u < _sigmoid(alpha - slope * d)

    answers = []
    for i, gold in enumerate(golds):
        if correct[i]:
            answers.append(gold)
            continue
        others = [lab for lab in labels if lab != gold]
        weights = np.asarray([CONFUSION.get(gold, {}).get(lab, 1.0) for lab in others], dtype=float)
        cumulative = np.cumsum(weights / weights.sum())
        answers.append(others[min(int(np.searchsorted(cumulative, picks[i])), len(others) - 1)])

    a = math.sqrt(2) * NormalDist().inv_cdf(auroc)
    score = a * correct + noise
    floor = 1.0 / k + 0.01
    goal = max(accuracy, floor + 0.05)
    bias = _bisect(lambda b: float((floor + (1 - floor) * _sigmoid(score + b)).mean()), goal)
    confidence = floor + (1 - floor) * _sigmoid(score + bias)
    probabilities = []
    for answer, conf in zip(answers, confidence, strict=True):
        rest = (1.0 - float(conf)) / (k - 1)
        probabilities.append({lab: float(conf) if lab == answer else rest for lab in labels})
    return Simulated(answers, correct, confidence, probabilities, alpha, bias)


def auroc(scores: Sequence[float] | np.ndarray, positive: Sequence[bool] | np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for ``positive`` (Mann-Whitney, ties count half); NaN if one class."""
    s = np.asarray(scores, dtype=float)
    p = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(p.sum()), int((~p).sum())
    if not n_pos or not n_neg:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[p].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
