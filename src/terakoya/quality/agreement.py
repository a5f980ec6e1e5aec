"""Inter-annotator agreement: how far several people who label the same items with nominal labels agree.

The input is ``ratings``, item id -> {person -> label} (each person's one current answer per item), and the
declared ``labels``. Out come Cohen's kappa for every pair of people, Fleiss' kappa and Krippendorff's alpha
(nominal) for the whole project, both again for each label against all the others, and 95 % intervals from
one seeded bootstrap over items.

Which items count. An item with fewer than two answers has nothing to agree with and drops out of every
number ("pairable" items); all the rest count, whatever their number of answers.

Fleiss' kappa with varying numbers of answers per item. Fleiss (1971) assumes every item has the same number
of raters ``n``. We use the generalisation in Gwet, *Handbook of Inter-Rater Reliability* (4th ed., 2014),
which uses each item's own count ``n_i``: observed agreement ``P = mean_i sum_c C_ic (C_ic - 1) / (n_i (n_i - 1))``
and chance agreement ``P_e = sum_c pi_c**2`` with ``pi_c = mean_i C_ic / n_i``, both means over the pairable
items; ``kappa = (P - P_e) / (1 - P_e)``. With equal counts this is exactly Fleiss (1971). Krippendorff's alpha
needs no such choice: it handles missing answers by design (Krippendorff 2011, "Computing Krippendorff's
Alpha-Reliability").

Undefined values are None, never NaN: with fewer than two pairable items, or when everyone always gives one
label (chance agreement is then 1 and both statistics are 0/0). An interval is None when its value is.

Why numpy and not a library. Both statistics are ratios of sums over items of small per-item quantities, so
one matrix product of bootstrap weights with those quantities yields all 1000 resamples of every statistic at
once (a 2,000-item project takes milliseconds). ``krippendorff`` and statsmodels compute one value per call
(the bootstrap would call them thousands of times per label), and statsmodels' ``fleiss_kappa`` needs equal
counts per item; the formulas are a few lines each. The tests check them against published values.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from terakoya.evaluation.metrics import agreement as observed_agreement
from terakoya.evaluation.metrics import cohen_kappa

__all__ = [
    "NOTE_TOO_FEW",
    "N_BOOT",
    "Agreement",
    "LabelAgreement",
    "PairKappa",
    "annotator_agreement",
    "fleiss_kappa",
    "krippendorff_alpha",
    "pairwise_cohen",
    "per_label",
]

Ratings = Mapping[int, Mapping[str, str]]
Interval = tuple[float, float]
FloatArray = np.ndarray[Any, np.dtype[np.float64]]
Statistic = Callable[[FloatArray], FloatArray]

#: bootstrap resamples by default
N_BOOT = 1000
#: a bootstrap works on blocks of at most this many (resample x item) weights, to bound its memory
_BLOCK = 4_000_000
#: a denominator (1 - chance agreement) at or below this is zero: the statistic is undefined
_EPS = 1e-12

NOTE_TOO_FEW = "fewer than 2 items with two or more answers: agreement is unknown"


@dataclass(frozen=True)
class PairKappa:
    """Cohen's kappa of two people over the items both answered (``person_a`` < ``person_b``)."""

    person_a: str
    person_b: str
    items: int
    observed: float
    kappa: float | None
    ci95: Interval | None


@dataclass(frozen=True)
class LabelAgreement:
    """Agreement on one label against all the others (the ratings made binary: this label or not)."""

    label: str
    answers: int  # pairable items' answers that gave this label
    fleiss: float | None
    fleiss_ci95: Interval | None
    alpha: float | None
    alpha_ci95: Interval | None


@dataclass(frozen=True)
class Agreement:
    """Agreement of a whole project; ``note`` says in words why a value is None, when one is."""

    items: int  # pairable items: two or more answers
    raters: int  # people with at least one answer on a pairable item
    fleiss: float | None
    fleiss_ci95: Interval | None
    alpha: float | None
    alpha_ci95: Interval | None
    per_label: dict[str, LabelAgreement] = field(default_factory=dict)
    pairs: list[PairKappa] = field(default_factory=list)
    note: str | None = None


# --- input ---------------------------------------------------------------------------------------------------


def _label_index(labels: Sequence[str]) -> dict[str, int]:
    index = {label: i for i, label in enumerate(labels)}
    if len(index) != len(labels):
        raise ValueError(f"labels must be distinct, got {list(labels)}")
    return index


def _check_labels(ratings: Ratings, index: Mapping[str, int]) -> None:
    for item, answers in ratings.items():
        for person, label in answers.items():
            if label not in index:
                raise ValueError(
                    f"item {item}: {person} answered {label!r}, which is not one of the labels "
                    f"{', '.join(index)}; pass every label that occurs in the answers"
                )


def _counts(ratings: Ratings, labels: Sequence[str]) -> FloatArray:
    """The ``(pairable items, labels)`` matrix of how many people gave each label, items in id order."""
    index = _label_index(labels)
    _check_labels(ratings, index)
    rows = []
    for item in sorted(ratings):
        answers = ratings[item]
        if len(answers) < 2:
            continue
        row = np.zeros(len(labels))
        for label in answers.values():
            row[index[label]] += 1
        rows.append(row)
    return np.array(rows, dtype=float).reshape(len(rows), len(labels))


# --- statistics on weighted sums over items ------------------------------------------------------------------
#
# Every statistic is a function of sums over items of per-item features, ``S = w @ F``. The point estimate
# takes every weight as 1; a bootstrap resample takes each item's weight as how often it was drawn.


def _fleiss(sums: FloatArray, k: int) -> FloatArray:
    """Fleiss' kappa (Gwet's generalisation) from weighted sums of :func:`_fleiss_features`; NaN where
    undefined."""
    items, observed, shares = sums[:, 0], sums[:, 1], sums[:, 2 : 2 + k]
    with np.errstate(divide="ignore", invalid="ignore"):
        p_observed = observed / items
        pi = shares / items[:, None]
        p_chance = (pi**2).sum(axis=1)
        out = (p_observed - p_chance) / (1 - p_chance)
    out[(1 - p_chance) <= _EPS] = np.nan
    return np.asarray(out, dtype=float)


def _fleiss_features(counts: FloatArray) -> FloatArray:
    """Per pairable item: ``[1, P_i, C_i / n_i (k)]`` with ``P_i`` the share of its pairs of answers that agree."""
    n = counts.sum(axis=1, keepdims=True)
    agree = ((counts * (counts - 1)).sum(axis=1, keepdims=True)) / (n * (n - 1))
    return np.hstack([np.ones_like(n), agree, counts / n])


def _alpha(sums: FloatArray, k: int) -> FloatArray:
    """Krippendorff's nominal alpha from weighted sums of ``[n_i, D_i (k), C_i (k)]``; NaN where undefined.

    ``alpha = 1 - (n - 1) sum_i D_i / (n**2 - sum_c n_c**2)`` with ``n`` the pairable answers, ``n_c`` those that
    gave label c and ``D_i = sum_c D_ic`` (Krippendorff 2011, nominal data, written with the item counts).
    """
    n, disagree, per_label = sums[:, 0], sums[:, 1 : 1 + k].sum(axis=1), sums[:, 1 + k : 1 + 2 * k]
    expected = n**2 - (per_label**2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 1 - (n - 1) * disagree / expected
    out[expected <= _EPS] = np.nan
    return np.asarray(out, dtype=float)


def _alpha_features(counts: FloatArray) -> FloatArray:
    """Per pairable item: ``[n_i, D_i (k), C_i (k)]`` for :func:`_alpha`."""
    n = counts.sum(axis=1, keepdims=True)
    disagree = counts * (n - counts) / (n - 1)
    return np.hstack([n, disagree, counts])


def _binary(counts: FloatArray, label: int) -> FloatArray:
    """The counts of "this label" and "any other" per item."""
    n = counts.sum(axis=1)
    return np.column_stack([counts[:, label], n - counts[:, label]])


# --- bootstrap -----------------------------------------------------------------------------------------------


def _resampled_sums(features: FloatArray, n_boot: int, seed: int) -> FloatArray:
    """``(n_boot, d)``: for each bootstrap resample of the rows (items) with replacement, the column sums."""
    n_items, d = features.shape
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, d))
    block = max(1, _BLOCK // max(1, n_items))
    for start in range(0, n_boot, block):
        size = min(block, n_boot - start)
        drawn = rng.integers(0, n_items, size=(size, n_items))
        offsets = (np.arange(size) * n_items)[:, None]
        weights = np.bincount((drawn + offsets).ravel(), minlength=size * n_items).reshape(size, n_items)
        out[start : start + size] = weights @ features
    return out


def _interval(values: FloatArray) -> Interval | None:
    """The 2.5 and 97.5 percentiles of the resamples where the statistic is defined."""
    defined = values[np.isfinite(values)]
    if defined.size == 0:
        return None
    low, high = np.percentile(defined, [2.5, 97.5])
    return (float(low), float(high))


def _point(values: FloatArray) -> float | None:
    value = float(values[0])
    return value if math.isfinite(value) else None


def _check_boot(n_boot: int) -> None:
    if n_boot < 0:
        raise ValueError(f"n_boot must be 0 (no intervals) or more, got {n_boot}")


# --- public --------------------------------------------------------------------------------------------------


def fleiss_kappa(ratings: Ratings, labels: Sequence[str]) -> float | None:
    """Fleiss' kappa of the whole project (Gwet's generalisation when items have different numbers of answers,
    see the module docstring); None with fewer than 2 pairable items or when everyone gives one label."""
    counts = _counts(ratings, labels)
    if counts.shape[0] < 2:
        return None
    return _point(_fleiss(_fleiss_features(counts).sum(axis=0, keepdims=True), len(labels)))


def krippendorff_alpha(ratings: Ratings, labels: Sequence[str]) -> float | None:
    """Krippendorff's nominal alpha of the whole project; items with fewer than two answers drop out. None with
    fewer than 2 pairable items or when everyone gives one label."""
    counts = _counts(ratings, labels)
    if counts.shape[0] < 2:
        return None
    return _point(_alpha(_alpha_features(counts).sum(axis=0, keepdims=True), len(labels)))


def _all_features(counts: FloatArray) -> tuple[FloatArray, list[tuple[slice, Statistic]]]:
    """One feature matrix for the overall and every per-label statistic (so one bootstrap serves them all), and
    for each statistic its columns and function, in the order: Fleiss, alpha, then Fleiss and alpha per label."""
    k = counts.shape[1]
    blocks: list[tuple[FloatArray, Statistic]] = [
        (_fleiss_features(counts), lambda s: _fleiss(s, k)),
        (_alpha_features(counts), lambda s: _alpha(s, k)),
    ]
    for label in range(k):
        binary = _binary(counts, label)
        blocks.append((_fleiss_features(binary), lambda s: _fleiss(s, 2)))
        blocks.append((_alpha_features(binary), lambda s: _alpha(s, 2)))
    columns: list[tuple[slice, Statistic]] = []
    start = 0
    for features, statistic in blocks:
        columns.append((slice(start, start + features.shape[1]), statistic))
        start += features.shape[1]
    return np.hstack([features for features, _ in blocks]), columns


def _estimates(counts: FloatArray, n_boot: int, seed: int) -> list[tuple[float | None, Interval | None]]:
    """Point estimate and interval of every statistic of :func:`_all_features`, on one set of resamples."""
    features, columns = _all_features(counts)
    if counts.shape[0] < 2:
        return [(None, None)] * len(columns)
    total = features.sum(axis=0, keepdims=True)
    resampled = _resampled_sums(features, n_boot, seed) if n_boot else None
    out: list[tuple[float | None, Interval | None]] = []
    for cols, statistic in columns:
        point = _point(statistic(total[:, cols]))
        interval = None
        if point is not None and resampled is not None:
            interval = _interval(statistic(resampled[:, cols]))
        out.append((point, interval))
    return out


def per_label(
    ratings: Ratings, labels: Sequence[str], *, n_boot: int = N_BOOT, seed: int = 0
) -> dict[str, LabelAgreement]:
    """For each declared label, Fleiss' kappa and Krippendorff's alpha of the binary ratings "this label or any
    other", with bootstrap intervals. A label nobody gave, or one everybody always gives, has None."""
    _check_boot(n_boot)
    counts = _counts(ratings, labels)
    return _per_label(counts, labels, _estimates(counts, n_boot, seed))


def _per_label(
    counts: FloatArray, labels: Sequence[str], estimates: list[tuple[float | None, Interval | None]]
) -> dict[str, LabelAgreement]:
    out = {}
    for i, label in enumerate(labels):
        (fleiss, fleiss_ci), (alpha, alpha_ci) = estimates[2 + 2 * i], estimates[3 + 2 * i]
        out[label] = LabelAgreement(label, int(counts[:, i].sum()), fleiss, fleiss_ci, alpha, alpha_ci)
    return out


def _kappa_resamples(a: list[int], b: list[int], k: int, n_boot: int, seed: int) -> FloatArray:
    """Cohen's kappa on ``n_boot`` resamples of the paired label indices ``a``, ``b``; NaN where undefined."""
    m = len(a)
    eye = np.eye(k)
    features = np.hstack([(np.array(a) == np.array(b)).astype(float)[:, None], eye[a], eye[b]])
    sums = _resampled_sums(features, n_boot, seed) / m
    observed, share_a, share_b = sums[:, 0], sums[:, 1 : 1 + k], sums[:, 1 + k :]
    chance = (share_a * share_b).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (observed - chance) / (1 - chance)
    out[(1 - chance) <= _EPS] = np.nan
    return np.asarray(out, dtype=float)


def pairwise_cohen(ratings: Ratings, labels: Sequence[str], *, n_boot: int = N_BOOT, seed: int = 0) -> list[PairKappa]:
    """Cohen's kappa for every pair of people who answered at least 2 items in common, pairs in name order.

    ``kappa`` is :func:`terakoya.evaluation.metrics.cohen_kappa` (None when both always give one label); its
    interval comes from a bootstrap over the pair's shared items.
    """
    _check_boot(n_boot)
    index = _label_index(labels)
    _check_labels(ratings, index)
    by_person: dict[str, dict[int, str]] = {}
    for item in sorted(ratings):
        for person, label in ratings[item].items():
            by_person.setdefault(person, {})[item] = label
    out = []
    for person_a, person_b in itertools.combinations(sorted(by_person), 2):
        shared = [item for item in by_person[person_a] if item in by_person[person_b]]
        if len(shared) < 2:
            continue
        a = [by_person[person_a][item] for item in shared]
        b = [by_person[person_b][item] for item in shared]
        kappa = cohen_kappa(a, b)
        ci95 = None
        if kappa is not None and n_boot:
            ci95 = _interval(_kappa_resamples([index[x] for x in a], [index[x] for x in b], len(labels), n_boot, seed))
        out.append(PairKappa(person_a, person_b, len(shared), observed_agreement(a, b), kappa, ci95))
    return out


def annotator_agreement(ratings: Ratings, labels: Sequence[str], *, n_boot: int = N_BOOT, seed: int = 0) -> Agreement:
    """Everything at once: Fleiss' kappa, Krippendorff's alpha, both per label, and Cohen's kappa per pair, with
    95 % intervals from ``n_boot`` bootstrap resamples of the items drawn with ``seed`` (0: no intervals).

    The overall and per-label values share one set of resamples, so the same seed gives the same intervals.
    """
    _check_boot(n_boot)
    counts = _counts(ratings, labels)
    estimates = _estimates(counts, n_boot, seed)
    (fleiss, fleiss_ci), (alpha, alpha_ci) = estimates[0], estimates[1]
    raters = {person for answers in ratings.values() if len(answers) >= 2 for person in answers}
    note = None
    if counts.shape[0] < 2:
        note = NOTE_TOO_FEW
    elif fleiss is None or alpha is None:
        used = [label for label, total in zip(labels, counts.sum(axis=0), strict=True) if total]
        note = f"every answer is {used[0]!r}: chance agreement is 1, so kappa and alpha are undefined"
    return Agreement(
        items=counts.shape[0],
        raters=len(raters),
        fleiss=fleiss,
        fleiss_ci95=fleiss_ci,
        alpha=alpha,
        alpha_ci95=alpha_ci,
        per_label=_per_label(counts, labels, estimates),
        pairs=pairwise_cohen(ratings, labels, n_boot=n_boot, seed=seed),
        note=note,
    )
