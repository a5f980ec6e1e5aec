"""Where the AI is biased, not only wrong: teacher, student and expert accuracy on slices of the test items.

Slices come from the extra columns the owner imported with the items (``Item.meta``: a language, a source)
and from each text's length:

- a column with at most :data:`MAX_VALUES` distinct values is sliced by value (a missing value is a slice too);
- a numeric column with more is cut into :data:`BUCKETS` buckets of about equal size, at its quantiles;
- the text length, in characters (so that it means the same in every script), is cut the same way;
- any other column (free text, ids, lists) is left out, and ``skipped`` says why.

On every slice each of the three gets its accuracy with the 95 % Wilson interval
(:func:`terakoya.evaluation.metrics.wilson_interval`, the report's one interval for an accuracy), and is
compared with the rest of the items by Fisher's exact test (:func:`terakoya.evaluation.metrics.proportions_p`).
The p-values of all the comparisons in the section are corrected together (Holm), so "measurably worse"
means: worse than on the rest, and unlikely to be chance even after looking at every slice. A slice, or
its rest, with fewer than :data:`MIN_ITEMS` scored items is not tested at all: it is "too few items".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from terakoya.evaluation.gather import TestItem
from terakoya.evaluation.metrics import holm, proportions_p, wilson_interval
from terakoya.evaluation.records import OPTIONAL, Record

__all__ = [
    "BUCKETS",
    "MAX_VALUES",
    "MIN_ITEMS",
    "TEXT_LENGTH",
    "SliceColumn",
    "SliceRow",
    "SliceScore",
    "Slices",
    "slice_report",
]

#: a column with at most this many distinct values is sliced by value
MAX_VALUES = 12
#: a numeric column with more values, and the text length, are cut into this many buckets
BUCKETS = 3
#: a slice (or the rest of its column) with fewer scored items than this is not tested: "too few items"
MIN_ITEMS = 10
#: below this adjusted p-value a difference counts as measurable
ALPHA = 0.05
#: the name of the slicing by text length
TEXT_LENGTH = "text length (characters)"
MISSING = "(missing)"

WORSE, BETTER, SAME, FEW = "worse", "better", "no measurable difference", "too few items"
#: who is scored on the slices, and how the sentences name them
WHO = (("teacher", "the teacher"), ("student", "the student"), ("experts", "the experts"))
METHOD = (
    f"accuracy with its 95% Wilson interval; each slice against the rest of its column by Fisher's exact test, "
    f"the p-values of all comparisons corrected together (Holm); slices or rests under {MIN_ITEMS} items are not "
    "tested"
)


@dataclass(frozen=True, kw_only=True)
class SliceScore(Record):
    """One of the three on one slice, and on the rest of the items of the same column."""

    items: int
    correct: int
    accuracy: float
    accuracy_ci95: list[float] | None
    rest_items: int
    rest_accuracy: float | None
    #: Fisher's exact test against the rest, Holm-corrected over the section (None: not tested)
    p_value: float | None = None
    #: ``worse`` / ``better`` (measurably), ``no measurable difference``, or ``too few items`` to test
    verdict: str


@dataclass(frozen=True, kw_only=True)
class SliceRow(Record):
    """One slice: a value of a column (or a bucket of it) and the test items that have it."""

    value: str
    items: int
    teacher: SliceScore | None = field(default=None, metadata={"of": SliceScore})
    student: SliceScore | None = field(default=None, metadata={"of": SliceScore})
    experts: SliceScore | None = field(default=None, metadata={"of": SliceScore})

    def score(self, who: str) -> SliceScore | None:
        found: SliceScore | None = getattr(self, who)
        return found


@dataclass(frozen=True, kw_only=True)
class SliceColumn(Record):
    """A column the test items were sliced by: ``values`` (one slice per value) or ``buckets`` (numeric ranges)."""

    name: str
    kind: str
    rows: list[SliceRow] = field(metadata={"of": SliceRow})
    #: how a numeric column was cut
    note: str | None = field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True, kw_only=True)
class Slices(Record):
    """Accuracy by slice of the test items, and in plain words where a model is measurably worse."""

    columns: list[SliceColumn] = field(metadata={"of": SliceColumn})
    #: columns not sliced, each with the reason
    skipped: list[str]
    #: how many slice-vs-rest comparisons were tested (the Holm correction's count)
    comparisons: int
    min_items: int
    method: str
    sentences: list[str]

    def worse(self) -> list[tuple[str, SliceColumn, SliceRow, SliceScore]]:
        """(who, column, slice, score) where ``who`` is measurably worse than on the rest, worst gap first."""
        found = [
            (who, column, row, score)
            for column in self.columns
            for row in column.rows
            for who, _ in WHO
            if (score := row.score(who)) is not None and score.verdict == WORSE
        ]
        return sorted(found, key=lambda f: f[3].accuracy - (f[3].rest_accuracy or 0.0))


# ----------------------------------------------------------------------------- what to slice by


@dataclass(frozen=True)
class _Cut:
    """A column's slices: item id -> the slice's name, the slices in the order shown, and how they were cut."""

    name: str
    kind: str
    of_item: dict[int, str]
    order: list[str]
    note: str | None = None


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _number(value: Any) -> float | None:
    """A finite number, from a number or a numeric string; None for anything else (booleans included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        x = float(value)
    elif isinstance(value, str):
        try:
            x = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return x if math.isfinite(x) else None


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:.3g}"


def _buckets(name: str, values: Mapping[int, float], missing: Iterable[int], what: str) -> _Cut | None:
    """Cut ``values`` at their quantiles into at most :data:`BUCKETS` non-empty ranges (None: fewer than two)."""
    ordered = np.sort(np.array(list(values.values()), dtype=float))
    quantiles = [float(np.quantile(ordered, k / BUCKETS, method="lower")) for k in range(1, BUCKETS)]
    edges = sorted(set(quantiles) - {float(ordered[-1])})
    if not edges:
        return None
    labels = [f"≤ {_fmt(edges[0])}"]
    labels += [f"> {_fmt(lo)}, ≤ {_fmt(hi)}" for lo, hi in itertools.pairwise(edges)]
    labels.append(f"> {_fmt(edges[-1])}")
    of_item = {i: labels[int(np.searchsorted(edges, x, side="left"))] for i, x in values.items()}
    of_item.update({i: MISSING for i in missing})
    order = [label for label in [*labels, MISSING] if label in set(of_item.values())]
    cuts = ", ".join(_fmt(e) for e in edges)
    return _Cut(name, "buckets", of_item, order, f"{what} cut at {cuts}, into buckets of about equal size")


def _meta_cut(name: str, items: Sequence[TestItem]) -> tuple[_Cut | None, str | None]:
    """How to slice by the metadata column ``name``, or why not."""
    raw = {t.id: t.meta.get(name) for t in items}
    present = {i: v for i, v in raw.items() if not _missing(v)}
    missing = [i for i in raw if i not in present]
    if any(isinstance(v, dict | list) for v in present.values()):
        return None, f"column {name!r} holds lists or objects, not values to slice by"
    distinct = {str(v).strip() for v in present.values()}
    numbers = {i: n for i, v in present.items() if (n := _number(v)) is not None}
    if len(distinct) > MAX_VALUES and len(numbers) == len(present):
        cut = _buckets(name, numbers, missing, f"numeric column {name!r}")
        return (cut, None) if cut else (None, f"column {name!r} has too few distinct numbers to cut")
    if len(distinct) > MAX_VALUES:
        return None, (
            f"column {name!r} has {len(distinct)} distinct values on the test items — too many to slice by "
            f"(at most {MAX_VALUES}, or numbers)"
        )
    of_item = {i: str(v).strip() for i, v in present.items()} | {i: MISSING for i in missing}
    if len(set(of_item.values())) < 2:
        return None, f"column {name!r} has one value on every test item"
    counts: dict[str, int] = {}
    for value in of_item.values():
        counts[value] = counts.get(value, 0) + 1
    if len(numbers) == len(present):  # a few numbers (a rating, a year): in their order
        order = sorted(counts, key=lambda v: (v == MISSING, _number(v) or 0.0))
    else:
        order = sorted(counts, key=lambda v: (v == MISSING, -counts[v], v))
    return _Cut(name, "values", of_item, order), None


def _cuts(items: Sequence[TestItem]) -> tuple[list[_Cut], list[str]]:
    """The columns to slice by (metadata columns in the order first seen, then text length), and those skipped."""
    names: dict[str, None] = {}
    for t in items:
        names.update(dict.fromkeys(str(k) for k in t.meta))
    cuts: list[_Cut] = []
    skipped: list[str] = []
    if not names:
        skipped.append(
            "the test items carry no metadata columns (import keeps every column other than the text, id and "
            "label as metadata; --meta-column picks them)"
        )
    for name in names:
        cut, why = _meta_cut(name, items)
        if cut is not None:
            cuts.append(cut)
        elif why:
            skipped.append(why)
    lengths = {t.id: float(len(t.text)) for t in items}
    by_length = _buckets(TEXT_LENGTH, lengths, [], "text length in characters") if lengths else None
    if by_length is not None:
        cuts.append(by_length)
    else:
        skipped.append("text length: the test texts are too alike in length to cut")
    return cuts, skipped


# ----------------------------------------------------------------------------- scoring and testing


@dataclass
class _Tally:
    """A raw score of one of the three on one slice, before the section's correction."""

    items: int
    correct: int
    rest_items: int
    rest_correct: int
    p: float | None = None


def _tally(ids: set[int], all_ids: set[int], right: Mapping[int, bool]) -> _Tally | None:
    inside = [right[i] for i in ids if i in right]
    if not inside:
        return None
    rest = [right[i] for i in all_ids - ids if i in right]
    return _Tally(len(inside), sum(inside), len(rest), sum(rest))


def _testable(t: _Tally) -> bool:
    return t.items >= MIN_ITEMS and t.rest_items >= MIN_ITEMS


def _score(t: _Tally) -> SliceScore:
    p = t.p
    accuracy = t.correct / t.items
    rest = t.rest_correct / t.rest_items if t.rest_items else None
    if not _testable(t):
        verdict = FEW
    elif p is not None and p < ALPHA and rest is not None and accuracy != rest:
        verdict = WORSE if accuracy < rest else BETTER
    else:
        verdict = SAME
    return SliceScore(
        items=t.items,
        correct=t.correct,
        accuracy=accuracy,
        accuracy_ci95=wilson_interval(t.correct, t.items),
        rest_items=t.rest_items,
        rest_accuracy=rest,
        p_value=p,
        verdict=verdict,
    )


def slice_report(items: Sequence[TestItem], right: Mapping[str, Mapping[int, bool]]) -> Slices:
    """Accuracy by slice: ``right`` maps ``teacher``, ``student`` and ``experts`` to item id -> right or not,
    for the items each was scored on (an item missing from one is not counted for it)."""
    cuts, skipped = _cuts(items)
    all_ids = {t.id for t in items}
    tallies: list[list[dict[str, _Tally]]] = []
    tested: list[_Tally] = []
    #: in a column of two slices each is the other's rest: one comparison, whose p the second slice shares
    mirrors: list[tuple[_Tally, _Tally]] = []
    for cut in cuts:
        rows = []
        for value in cut.order:
            ids = {i for i, v in cut.of_item.items() if v == value}
            rows.append({who: t for who, _ in WHO if (t := _tally(ids, all_ids, right.get(who, {}))) is not None})
        for who, _ in WHO:
            testable = [row[who] for row in rows if who in row and _testable(row[who])]
            if len(rows) == 2 and len(testable) == 2:
                mirrors.append((testable[0], testable[1]))
                testable = testable[:1]
            for t in testable:
                t.p = proportions_p(t.correct, t.items, t.rest_correct, t.rest_items)
                tested.append(t)
        tallies.append(rows)
    for t, adjusted in zip(tested, holm([1.0 if t.p is None else t.p for t in tested]), strict=True):
        t.p = adjusted
    for first, second in mirrors:
        second.p = first.p
    columns = [
        SliceColumn(
            name=cut.name,
            kind=cut.kind,
            rows=[
                SliceRow(
                    value=value,
                    items=sum(1 for v in cut.of_item.values() if v == value),
                    **{who: _score(t) for who, t in row.items()},
                )
                for value, row in zip(cut.order, rows, strict=True)
            ],
            note=cut.note,
        )
        for cut, rows in zip(cuts, tallies, strict=True)
    ]
    out = Slices(columns=columns, skipped=skipped, comparisons=len(tested), min_items=MIN_ITEMS, method=METHOD,
                 sentences=[])  # fmt: skip
    return replace(out, sentences=_sentences(out, right))


# ----------------------------------------------------------------------------- plain words


def slice_name(column: SliceColumn, row: SliceRow) -> str:
    """How a sentence names a slice: ``lang = ja``, ``text length (characters) ≤ 40``."""
    if column.kind == "buckets" and row.value != MISSING:
        return f"{column.name} {row.value}"
    return f"{column.name} = {row.value}"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _interval(ci: list[float] | None) -> str:
    return f" (95% CI {_pct(ci[0])}–{_pct(ci[1])})" if ci else ""


def _worse_sentence(who: str, column: SliceColumn, row: SliceRow, s: SliceScore, comparisons: int) -> str:
    gap = 100 * ((s.rest_accuracy or 0.0) - s.accuracy)
    p = "" if s.p_value is None else f"p = {s.p_value:.2g}"
    corrected = f" after correcting for {comparisons} comparisons" if comparisons > 1 else ""
    return (
        f"{who.capitalize()} is measurably worse on {slice_name(column, row)}: {_pct(s.accuracy)}"
        f"{_interval(s.accuracy_ci95)} on {s.items} items vs {_pct(s.rest_accuracy or 0.0)} on the other "
        f"{s.rest_items} — {gap:.0f} points lower (Fisher's exact test, {p}{corrected})."
    )


def _sentences(slices: Slices, right: Mapping[str, Mapping[int, bool]]) -> list[str]:
    if not slices.columns:
        return ["No column to slice the test items by: " + "; ".join(slices.skipped) + "."]
    names = {who: name for who, name in WHO}
    out = [_worse_sentence(names[w], c, r, s, slices.comparisons) for w, c, r, s in slices.worse()]
    worse_for = {w for w, *_ in slices.worse()}
    tested = {
        who
        for column in slices.columns
        for row in column.rows
        for who, _ in WHO
        if (s := row.score(who)) is not None and s.verdict != FEW
    }
    fine = [who for who, _ in WHO if who in tested and who not in worse_for]
    if fine:
        line = (
            f"No slice is measurably worse than the rest for {' or '.join(names[w] for w in fine)} "
            f"({slices.comparisons} comparisons by metadata column and text length, Fisher's exact test, "
            "Holm-corrected)"
        )
        gaps = [gap for who in fine if (gap := _largest_gap(slices, who, names[who]))]
        out.append(line + (f"; the largest gaps — {'; '.join(gaps)} — could be chance." if gaps else "."))
    for who, name in WHO:
        scored = len(right.get(who, {}))
        if scored and who not in tested:
            out.append(
                f"Too few items to tell for {name}: {scored} scored test items, and no slice and its rest both "
                f"reach {MIN_ITEMS}."
            )
    few = _few(slices)
    if few:
        out.append(f"Too few items to tell (under {MIN_ITEMS} in the slice), so not claimed: {few}.")
    return out


def _largest_gap(slices: Slices, who: str, name: str) -> str:
    """The tested slice where ``who`` is furthest below its rest, in words ("" when it is nowhere below)."""
    tested = [
        (column, row, s)
        for column in slices.columns
        for row in column.rows
        if (s := row.score(who)) is not None and s.verdict != FEW and s.rest_accuracy is not None
    ]
    if not tested:
        return ""
    column, row, s = max(tested, key=lambda t: (t[2].rest_accuracy or 0.0) - t[2].accuracy)
    if s.rest_accuracy is None or s.accuracy >= s.rest_accuracy:
        return ""
    p = f", p = {s.p_value:.2g}" if s.p_value is not None else ""
    return f"{name} on {slice_name(column, row)} ({_pct(s.accuracy)} vs {_pct(s.rest_accuracy)}{p})"


def _few(slices: Slices, show: int = 5) -> str:
    """Slices too small to test that look clearly worse for the teacher or the student than their (large enough)
    rest, by 15 points or more: named, not claimed."""
    found = []
    for column in slices.columns:
        for row in column.rows:
            for who, name in WHO[:2]:
                s = row.score(who)
                if s is None or s.items >= MIN_ITEMS or s.rest_accuracy is None or s.rest_items < MIN_ITEMS:
                    continue
                gap = 100 * (s.rest_accuracy - s.accuracy)
                if gap >= 15:
                    found.append(
                        f"{slice_name(column, row)} looks {gap:.0f} points worse for {name} "
                        f"({s.correct} of {s.items} right)"
                    )
    if len(found) > show:
        return "; ".join(found[:show]) + f"; and {len(found) - show} more"
    return "; ".join(found)
