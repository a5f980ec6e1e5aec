"""Classification, calibration and agreement metrics on plain arrays (JSON-safe dicts out).

Every function is pure: labels in, numbers out. Probabilities are an ``(n, k)`` array whose columns
follow ``classes``; a row of NaN means "probabilities unknown for this item" and leaves it out of the
calibration numbers (ECE, Brier, NLL) while it still counts for accuracy and F1.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "ECE_BINS",
    "agreement",
    "classification_metrics",
    "cohen_kappa",
    "confidence_and_correct",
    "confusions",
    "expected_calibration_error",
    "holm",
    "paired_within",
    "probabilities_ece",
    "proportions_p",
    "reliability_bins",
    "wilson_interval",
]

#: equal-width confidence bins for the expected calibration error and the reliability diagram
ECE_BINS = 15


def _float(x: float | np.floating[Any]) -> float | None:
    """A JSON-safe float: NaN and infinities become None."""
    value = float(x)
    return value if math.isfinite(value) else None


def agreement(a: Sequence[str], b: Sequence[str]) -> float:
    """Share of positions where ``a`` and ``b`` hold the same label."""
    if len(a) != len(b):
        raise ValueError(f"agreement needs two sequences of the same length, got {len(a)} and {len(b)}")
    if not a:
        return float("nan")
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters; None when it is undefined (no items, or both always say one label)."""
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa needs two sequences of the same length, got {len(a)} and {len(b)}")
    if not a:
        return None
    if len(set(a) | set(b)) < 2:
        return None  # chance agreement is 1: kappa is 0/0
    from sklearn.metrics import cohen_kappa_score

    return _float(cohen_kappa_score(list(a), list(b)))


def _bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    # bins are (lo, hi]; a confidence of exactly 0 falls in the first bin
    inner = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    return np.searchsorted(inner, confidence, side="left")


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """Per equal-width bin: its edges, how many items fell in, their mean confidence and accuracy."""
    conf = np.asarray(confidence, dtype=float)
    hit = np.asarray(correct, dtype=float)
    index = _bin_index(conf, n_bins)
    out = []
    for b in range(n_bins):
        mask = index == b
        count = int(mask.sum())
        out.append(
            {
                "lo": b / n_bins,
                "hi": (b + 1) / n_bins,
                "count": count,
                "confidence": _float(conf[mask].mean()) if count else None,
                "accuracy": _float(hit[mask].mean()) if count else None,
            }
        )
    return out


def paired_within(diff: Sequence[float] | np.ndarray[Any, Any], standard_errors: float) -> bool:
    """Whether the mean of paired per-item differences (one candidate's score minus another's on the same items)
    is at most ``standard_errors`` standard errors of that mean — a gap that small may be chance. The one rule
    that the teacher's re-calibration, the training recipe's teacher weight and the example-set advice compare
    candidates by."""
    d = np.asarray(diff, dtype=np.float64)
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0
    return float(d.mean()) <= standard_errors * se


def wilson_interval(correct: float, n: int, *, z: float | None = None) -> list[float] | None:
    """The Wilson interval of ``correct`` successes in ``n`` trials (95 %, or the normal quantile ``z``);
    None when ``n`` is 0. ``correct`` may be fractional (a tie counted as half a win)."""
    if n == 0:
        return None
    # the closed form (as scipy's binomtest(...).proportion_ci(method="wilson") computes it, without building a
    # test object: the pause rule evaluates it after every answer on a check item)
    z = _Z95 if z is None else z
    p = correct / n
    denominator = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return [max(0.0, center - half), min(1.0, center + half)]


#: the two-sided 95 % quantile of the standard normal distribution
_Z95 = 1.959963984540054


def proportions_p(a_hits: int, a_n: int, b_hits: int, b_n: int) -> float | None:
    """Two-sided p-value of Fisher's exact test that ``a_hits / a_n`` and ``b_hits / b_n`` are the same share;
    None when either side has no trials. Exact, so it stays honest on small counts (no normal approximation)."""
    if a_n <= 0 or b_n <= 0:
        return None
    from scipy.stats import fisher_exact

    table = [[a_hits, a_n - a_hits], [b_hits, b_n - b_hits]]
    return float(fisher_exact(table, alternative="two-sided").pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down correction: each p-value adjusted for all ``len(p_values)`` comparisons, in their order.

    Compared with 0.05, the adjusted values keep the chance of even one false "measurably different" among
    them under 5 %.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    out = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> float | None:
    """ECE: the count-weighted mean gap |accuracy - confidence| over equal-width confidence bins."""
    conf = np.asarray(confidence, dtype=float)
    if conf.size == 0:
        return None
    total = 0.0
    for row in reliability_bins(conf, correct, n_bins):
        if row["count"]:
            total += row["count"] * abs(row["accuracy"] - row["confidence"])
    return total / conf.size


def confidence_and_correct(proba: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From ``(n, k)`` probabilities and true class indices: each row's confidence (its top probability) and
    whether its top class is the truth, the two arrays the ECE and the reliability bins are computed on."""
    p = np.asarray(proba, dtype=float)
    return p.max(axis=1), p.argmax(axis=1) == np.asarray(truth)


def probabilities_ece(proba: np.ndarray, truth: np.ndarray, n_bins: int = ECE_BINS) -> float | None:
    """:func:`expected_calibration_error` of ``(n, k)`` probabilities against true class indices (None: no rows).

    Training reports its students' calibration with this, so its numbers and the evaluation's are one ECE.
    """
    if len(truth) == 0:
        return None
    return expected_calibration_error(*confidence_and_correct(proba, truth), n_bins)


def confusions(y_true: Sequence[str], y_pred: Sequence[str], top: int | None = None) -> list[dict[str, Any]]:
    """The off-diagonal (gold, predicted) pairs, most common first."""
    counts = Counter((t, p) for t, p in zip(y_true, y_pred, strict=True) if t != p)
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{"true": t, "predicted": p, "count": n} for (t, p), n in ordered[:top]]


def _calibration(y_true: Sequence[str], proba: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    p = np.asarray(proba, dtype=float)
    if p.ndim != 2 or p.shape != (len(y_true), len(classes)):
        raise ValueError(f"proba must have shape ({len(y_true)}, {len(classes)}), got {p.shape}")
    column = {c: i for i, c in enumerate(classes)}
    known = ~np.isnan(p).any(axis=1)
    in_classes = np.array([t in column for t in y_true], dtype=bool)
    use = known & in_classes
    out: dict[str, Any] = {
        "calibration_items": int(use.sum()),
        "probabilities_unknown": int((~known).sum()),
        "gold_outside_classes": int((known & ~in_classes).sum()),
    }
    if not use.any():
        out.update(ece=None, brier=None, nll=None, reliability=reliability_bins(np.array([]), np.array([])))
        return out
    pu = p[use]
    pu = pu / np.clip(pu.sum(axis=1, keepdims=True), 1e-12, None)
    truth = [t for t, u in zip(y_true, use, strict=True) if u]
    truth_idx = np.array([column[t] for t in truth])
    confidence, correct = confidence_and_correct(pu, truth_idx)
    out["ece"] = expected_calibration_error(confidence, correct)
    out["reliability"] = reliability_bins(confidence, correct)
    out["mean_confidence"] = _float(confidence.mean())
    if len(classes) >= 2:
        # by hand: sklearn's losses assume the columns follow the sorted label order, ours follow `classes`
        onehot = np.zeros_like(pu)
        onehot[np.arange(len(truth_idx)), truth_idx] = 1.0
        out["brier"] = _float(np.mean(np.sum((pu - onehot) ** 2, axis=1)))
        out["nll"] = _float(-np.mean(np.log(np.clip(pu[np.arange(len(truth_idx)), truth_idx], 1e-15, 1.0))))
    else:
        out["brier"] = out["nll"] = None
    return out


def classification_metrics(
    y_true: Sequence[str], proba: np.ndarray | None, y_pred: Sequence[str], classes: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1, the confusion matrix and, with ``proba``, calibration.

    Macro-F1 averages over the labels that occur in ``y_true`` or ``y_pred`` (a label nobody used
    would add an F1 of 0 that measures nothing); ``per_class`` lists every label in ``classes``.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    truth, pred = list(y_true), list(y_pred)
    if len(truth) != len(pred):
        raise ValueError(f"y_true and y_pred differ in length: {len(truth)} and {len(pred)}")
    labels = list(classes) + sorted((set(truth) | set(pred)) - set(classes))
    out: dict[str, Any] = {"items": len(truth)}
    if not truth:
        out.update(accuracy=None, macro_f1=None, per_class={}, confusion={"labels": labels, "matrix": []})
        out.update(ece=None, brier=None, nll=None, reliability=[])
        return out
    out["accuracy"] = float(np.mean([t == p for t, p in zip(truth, pred, strict=True)]))
    used = [c for c in labels if c in set(truth) | set(pred)]
    _, _, f1_used, _ = precision_recall_fscore_support(truth, pred, labels=used, zero_division=0)
    out["macro_f1"] = float(np.mean(f1_used))
    precision, recall, f1, support = precision_recall_fscore_support(truth, pred, labels=labels, zero_division=0)
    out["per_class"] = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }
    matrix = confusion_matrix(truth, pred, labels=labels)
    out["confusion"] = {"labels": labels, "matrix": matrix.astype(int).tolist()}
    if proba is None:
        out.update(ece=None, brier=None, nll=None, reliability=[])
    else:
        out.update(_calibration(truth, proba, list(classes)))
    return out
