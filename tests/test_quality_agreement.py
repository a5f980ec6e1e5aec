"""Inter-annotator agreement against published and hand-computed values."""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pytest

from terakoya.quality import agreement as agreement_module
from terakoya.quality.agreement import (
    NOTE_TOO_FEW,
    annotator_agreement,
    fleiss_kappa,
    krippendorff_alpha,
    pairwise_cohen,
    per_label,
)

Ratings = dict[int, dict[str, str]]


def from_counts(rows: list[list[int]], labels: list[str]) -> Ratings:
    """Ratings whose item i has ``rows[i][c]`` answers of ``labels[c]`` (people p0, p1, ... in label order)."""
    out: Ratings = {}
    for item, row in enumerate(rows):
        given = [label for label, n in zip(labels, row, strict=True) for _ in range(n)]
        out[item] = {f"p{j}": label for j, label in enumerate(given)}
    return out


def from_columns(coders: dict[str, str]) -> Ratings:
    """Ratings from one string per coder, one character per unit, '.' for no answer."""
    units = len(next(iter(coders.values())))
    return {u: {c: v[u] for c, v in coders.items() if v[u] != "."} for u in range(units)}


# Wikipedia, "Fleiss' kappa", worked example: 10 items, 14 raters, 5 categories; kappa = 0.210
WIKIPEDIA_ROWS = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]
FIVE = ["1", "2", "3", "4", "5"]

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 coders, 12 units, values 1-5,
# missing answers; nominal alpha = 0.743. Unit 12 has one answer and is not pairable.
KRIPPENDORFF_2011 = from_columns(
    {
        # unit: 123456789012
        "A": "123321412...",
        "B": "1233224125.3",
        "C": ".3332342251.",
        "D": "12332441251.",
    }
)


def random_ratings(items: int, raters: int, labels: list[str], seed: int) -> Ratings:
    rng = np.random.default_rng(seed)
    return {i: {f"r{j}": labels[rng.integers(len(labels))] for j in range(raters)} for i in range(items)}


def test_fleiss_matches_the_wikipedia_example() -> None:
    ratings = from_counts(WIKIPEDIA_ROWS, FIVE)
    # P = 0.378, P_e = 0.213 -> kappa = 0.20993
    assert fleiss_kappa(ratings, FIVE) == pytest.approx(0.20993, abs=1e-5)


def test_alpha_matches_krippendorff_2011_with_missing_answers() -> None:
    assert krippendorff_alpha(KRIPPENDORFF_2011, FIVE) == pytest.approx(0.743, abs=5e-4)
    result = annotator_agreement(KRIPPENDORFF_2011, FIVE, n_boot=0)
    assert result.items == 11  # unit 12 has a single answer
    assert result.raters == 4
    assert result.alpha == krippendorff_alpha(KRIPPENDORFF_2011, FIVE)


def test_binary_two_coder_example_alpha_and_cohen() -> None:
    # Krippendorff (2011), section A: two coders, ten units, binary; alpha = 0.095
    ratings = from_columns({"A": "0100000010", "B": "1110010000"})
    assert krippendorff_alpha(ratings, ["0", "1"]) == pytest.approx(0.095, abs=5e-4)
    # by hand: observed 6/10; A says 1 twice, B four times: chance 0.2*0.4 + 0.8*0.6 = 0.56; kappa = 0.04/0.44
    (pair,) = pairwise_cohen(ratings, ["0", "1"], n_boot=0)
    assert (pair.person_a, pair.person_b, pair.items) == ("A", "B", 10)
    assert pair.observed == pytest.approx(0.6)
    assert pair.kappa == pytest.approx(1 / 11)
    assert pair.ci95 is None


def test_alpha_agrees_with_nltk_on_ragged_random_ratings() -> None:
    nltk_agreement = pytest.importorskip("nltk.metrics.agreement")
    rng = np.random.default_rng(7)
    ratings: Ratings = {}
    for item in range(60):
        people = rng.choice(5, size=int(rng.integers(2, 6)), replace=False)
        truth = int(rng.integers(3))
        ratings[item] = {f"p{p}": "abc"[truth if rng.random() < 0.6 else int(rng.integers(3))] for p in people}
    task = nltk_agreement.AnnotationTask([(p, i, label) for i, row in ratings.items() for p, label in row.items()])
    assert krippendorff_alpha(ratings, ["a", "b", "c"]) == pytest.approx(task.alpha(), abs=1e-9)


def test_perfect_agreement_is_one() -> None:
    labels = ["cat", "dog", "bird"]
    ratings = {i: {"ann": labels[i % 3], "ben": labels[i % 3], "cho": labels[i % 3]} for i in range(30)}
    result = annotator_agreement(ratings, labels, n_boot=200)
    assert result.fleiss == 1.0 and result.alpha == 1.0
    assert result.fleiss_ci95 == (1.0, 1.0) and result.alpha_ci95 == (1.0, 1.0)
    assert all(la.fleiss == 1.0 and la.alpha == 1.0 for la in result.per_label.values())
    assert [p.kappa for p in result.pairs] == [1.0, 1.0, 1.0]
    assert result.note is None


def test_independent_random_raters_are_about_zero() -> None:
    labels = ["a", "b", "c"]
    result = annotator_agreement(random_ratings(2000, 3, labels, seed=3), labels)
    for value, interval in [(result.fleiss, result.fleiss_ci95), (result.alpha, result.alpha_ci95)]:
        assert value is not None and interval is not None
        assert abs(value) < 0.03
        assert interval[0] < 0 < interval[1]
    assert all(p.kappa is not None and abs(p.kappa) < 0.05 for p in result.pairs)


def test_raters_who_agree_more_score_higher() -> None:
    labels = ["a", "b", "c"]
    rng = np.random.default_rng(0)
    ratings: Ratings = {}
    for item in range(500):
        truth = labels[item % 3]
        ratings[item] = {f"r{j}": truth if rng.random() < 0.8 else labels[rng.integers(3)] for j in range(3)}
    # each answer is the truth with probability 0.8 + 0.2/3; expected kappa about (0.8)^2 = 0.64
    fleiss = fleiss_kappa(ratings, labels)
    alpha = krippendorff_alpha(ratings, labels)
    assert fleiss is not None and alpha is not None
    assert 0.55 < fleiss < 0.73 and 0.55 < alpha < 0.73


def test_constant_label_project_is_undefined_with_a_note() -> None:
    ratings = {i: {"ann": "spam", "ben": "spam"} for i in range(10)}
    result = annotator_agreement(ratings, ["spam", "ham"], n_boot=100)
    assert result.fleiss is None and result.alpha is None
    assert result.fleiss_ci95 is None and result.alpha_ci95 is None
    assert result.note == "every answer is 'spam': chance agreement is 1, so kappa and alpha are undefined"
    assert result.per_label["spam"].fleiss is None and result.per_label["ham"].alpha is None
    assert result.per_label["spam"].answers == 20 and result.per_label["ham"].answers == 0
    (pair,) = result.pairs
    assert pair.observed == 1.0 and pair.kappa is None and pair.ci95 is None


def test_fewer_than_two_pairable_items_is_unknown() -> None:
    ratings = {1: {"ann": "a", "ben": "b", "cho": "a"}, 2: {"ann": "b"}, 3: {"ben": "a"}}
    result = annotator_agreement(ratings, ["a", "b"])
    assert result.items == 1 and result.raters == 3
    assert result.fleiss is None and result.alpha is None
    assert result.note == NOTE_TOO_FEW == "fewer than 2 items with two or more answers: agreement is unknown"
    assert all(la.fleiss is None and la.alpha is None for la in result.per_label.values())
    assert result.pairs == []  # no pair shares two items
    assert fleiss_kappa({}, ["a", "b"]) is None and krippendorff_alpha({}, ["a", "b"]) is None


def test_per_label_hand_computed() -> None:
    ratings = {1: {"p": "x", "q": "x"}, 2: {"p": "x", "q": "y"}, 3: {"p": "z", "q": "z"}, 4: {"p": "y", "q": "y"}}
    out = per_label(ratings, ["x", "y", "z", "w"], n_boot=0)
    # "x or not": items (1,1), (1,0), (0,0), (0,0)
    #   Fleiss: P = (1 + 0 + 1 + 1)/4 = 0.75; pi_x = (1 + .5 + 0 + 0)/4 = 0.375; P_e = 0.375^2 + 0.625^2 = 0.53125
    #           kappa = (0.75 - 0.53125)/(1 - 0.53125) = 7/15
    #   alpha:  n = 8, n_x = 3; disagreement sum = 2 (item 2: 2 ordered pairs / (2 - 1))
    #           alpha = 1 - 7 * 2 / (64 - 9 - 25) = 8/15
    assert out["x"].fleiss == pytest.approx(7 / 15) and out["x"].alpha == pytest.approx(8 / 15)
    assert out["y"].fleiss == pytest.approx(7 / 15) and out["y"].alpha == pytest.approx(8 / 15)  # the mirror case
    assert out["z"].fleiss == pytest.approx(1.0) and out["z"].alpha == pytest.approx(1.0)
    assert out["w"].fleiss is None and out["w"].alpha is None  # nobody said w
    assert [out[label].answers for label in "xyzw"] == [3, 3, 2, 0]
    assert list(out) == ["x", "y", "z", "w"]


def test_with_two_labels_per_label_equals_overall() -> None:
    labels = ["yes", "no"]
    ratings = random_ratings(80, 4, labels, seed=5)
    for i in range(0, 80, 2):  # some agreement, so the values are not near 0
        ratings[i] = dict.fromkeys(ratings[i], labels[i % 4 // 2])
    result = annotator_agreement(ratings, labels, n_boot=300, seed=1)
    for label in labels:
        assert result.per_label[label].fleiss == pytest.approx(result.fleiss)
        assert result.per_label[label].alpha == pytest.approx(result.alpha)
        assert result.per_label[label].alpha_ci95 == pytest.approx(result.alpha_ci95)


def test_varying_numbers_of_raters_hand_computed() -> None:
    ratings = {
        1: {"a1": "a", "a2": "a", "a3": "a"},
        2: {"a1": "a", "a4": "b"},
        3: {"a2": "b", "a3": "b", "a4": "b", "a5": "b"},
    }
    # Fleiss (Gwet's generalisation): P_i = 1, 0, 1 -> P = 2/3; pi_a = (1 + 1/2 + 0)/3 = 1/2 -> P_e = 1/2
    #   kappa = (2/3 - 1/2)/(1/2) = 1/3
    assert fleiss_kappa(ratings, ["a", "b"]) == pytest.approx(1 / 3)
    # alpha: n = 9, n_a = 4, n_b = 5; disagreement sum = 2 (item 2) -> alpha = 1 - 8 * 2/(81 - 16 - 25) = 0.6
    assert krippendorff_alpha(ratings, ["a", "b"]) == pytest.approx(0.6)
    # an item with a single answer changes nothing
    with_single = ratings | {4: {"a5": "a"}}
    assert fleiss_kappa(with_single, ["a", "b"]) == pytest.approx(1 / 3)
    assert krippendorff_alpha(with_single, ["a", "b"]) == pytest.approx(0.6)
    assert annotator_agreement(with_single, ["a", "b"], n_boot=0).items == 3


def test_bootstrap_intervals_contain_the_estimate_and_are_reproducible() -> None:
    labels = ["a", "b", "c"]
    ratings = random_ratings(300, 3, labels, seed=11)
    for i in range(0, 300, 3):
        ratings[i] = dict.fromkeys(ratings[i], labels[i % 9 // 3])
    first = annotator_agreement(ratings, labels, n_boot=500, seed=42)
    again = annotator_agreement(ratings, labels, n_boot=500, seed=42)
    other = annotator_agreement(ratings, labels, n_boot=500, seed=43)
    assert first == again
    assert first.alpha_ci95 != other.alpha_ci95 and first.fleiss == other.fleiss
    estimates = [(first.fleiss, first.fleiss_ci95), (first.alpha, first.alpha_ci95)]
    estimates += [(la.fleiss, la.fleiss_ci95) for la in first.per_label.values()]
    estimates += [(la.alpha, la.alpha_ci95) for la in first.per_label.values()]
    estimates += [(p.kappa, p.ci95) for p in first.pairs]
    for value, interval in estimates:
        assert value is not None and interval is not None
        low, high = interval
        assert low < value < high
        assert high - low < 0.4  # informative, not the whole range


def test_no_resamples_no_intervals() -> None:
    ratings = random_ratings(50, 3, ["a", "b"], seed=2)
    result = annotator_agreement(ratings, ["a", "b"], n_boot=0)
    assert result.fleiss is not None and result.fleiss_ci95 is None and result.alpha_ci95 is None
    assert all(p.ci95 is None for p in result.pairs)
    with pytest.raises(ValueError, match="n_boot must be 0 \\(no intervals\\) or more, got -1"):
        annotator_agreement(ratings, ["a", "b"], n_boot=-1)


def test_pairs_need_two_shared_items_and_come_in_name_order() -> None:
    ratings = {
        1: {"zoe": "a", "amy": "a", "bob": "b"},
        2: {"zoe": "b", "amy": "b"},
        3: {"zoe": "a", "amy": "b"},
    }
    pairs = pairwise_cohen(ratings, ["a", "b"], n_boot=0)
    assert [(p.person_a, p.person_b, p.items) for p in pairs] == [("amy", "zoe", 3)]  # bob shares one item
    assert pairs[0].observed == pytest.approx(2 / 3)
    # by hand: amy a,b,b and zoe a,b,a: chance = (1/3)(2/3) + (2/3)(1/3) = 4/9; kappa = (2/3 - 4/9)/(5/9) = 0.4
    assert pairs[0].kappa == pytest.approx(0.4)


def test_labels_outside_the_declared_set_are_refused() -> None:
    ratings = {1: {"ann": "a", "ben": "maybe"}, 2: {"ann": "a", "ben": "b"}}
    with pytest.raises(ValueError, match="item 1: ben answered 'maybe', which is not one of the labels a, b"):
        annotator_agreement(ratings, ["a", "b"])
    with pytest.raises(ValueError, match="labels must be distinct"):
        fleiss_kappa(ratings, ["a", "b", "a", "maybe"])


def test_results_are_frozen_and_json_safe() -> None:
    result = annotator_agreement(KRIPPENDORFF_2011, FIVE, n_boot=100)
    text = json.dumps(dataclasses.asdict(result))
    assert json.loads(text)["alpha"] == pytest.approx(0.743, abs=5e-4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.alpha = 0.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.pairs[0].kappa = 0.0  # type: ignore[misc]


def test_public_names_exist() -> None:
    for name in agreement_module.__all__:
        assert hasattr(agreement_module, name), name


def test_a_2000_by_3_project_is_fast() -> None:
    labels = ["a", "b", "c", "d"]
    ratings = random_ratings(2000, 3, labels, seed=0)
    annotator_agreement(ratings, labels, n_boot=10)  # warm up the lazy imports
    start = time.perf_counter()
    result = annotator_agreement(ratings, labels, n_boot=1000)
    assert time.perf_counter() - start < 2.0
    assert result.items == 2000 and len(result.pairs) == 3
