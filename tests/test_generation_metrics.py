"""Scores for generated answers: chrF (English and Japanese), sample disagreement, win/tie/loss, swapped judging."""

from __future__ import annotations

from typing import Literal

import pytest

from terakoya.errors import DataError
from terakoya.generation.metrics import (
    WinTieLoss,
    chrf,
    corpus_chrf,
    sample_disagreement,
    similarity,
    swap_judgement,
    throughput,
    win_tie_loss,
)


def test_chrf_identical_is_100_and_unrelated_is_low() -> None:
    assert chrf("The cat sat on the mat.", "The cat sat on the mat.") == 100.0
    assert chrf("", "") == 100.0
    assert chrf("The cat sat on the mat.", "Quarterly revenue grew by nine percent.") < 20
    close = chrf("The cat sat on a mat.", "The cat sat on the mat.")
    assert 50 < close < 100


def test_chrf_japanese_uses_characters() -> None:
    assert chrf("今日は良い天気です。", "今日は良い天気です。") == 100.0
    near = chrf("今日は良い天気ですね。", "今日は良い天気です。")
    far = chrf("明日は雨が降るでしょう。", "今日は良い天気です。")
    assert near > 70 and far < 20 and near > far


def test_chrf_weighs_recall_so_similarity_averages_both_ways() -> None:
    short, long = "今日は良い天気です", "今日は良い天気ですね"
    assert chrf(short, long) != chrf(long, short)
    assert similarity(short, long) == similarity(long, short)
    assert similarity(short, long) == pytest.approx((chrf(short, long) + chrf(long, short)) / 200)
    assert similarity("same", "same") == 1.0
    assert 0.0 <= similarity("abc", "xyz") < 0.1


def test_corpus_chrf() -> None:
    assert corpus_chrf(["a cat", "a dog"], ["a cat", "a dog"]) == pytest.approx(100.0)
    assert corpus_chrf([], []) is None
    with pytest.raises(ValueError, match="as many references as hypotheses, got 1 and 2"):
        corpus_chrf(["a"], ["a", "b"])


def test_sample_disagreement() -> None:
    assert sample_disagreement([]) == 0.0
    assert sample_disagreement(["only one"]) == 0.0
    assert sample_disagreement(["Paris is the capital.", "Paris is the capital.", "Paris is the capital."]) == 0.0
    agree = sample_disagreement(["Paris is the capital of France.", "The capital of France is Paris."])
    differ = sample_disagreement(["Paris is the capital of France.", "I am not sure; maybe Lyon?"])
    assert 0.0 < agree < differ <= 1.0
    ja = sample_disagreement(["東京は日本の首都です。", "日本の首都は東京です。", "わかりません。"])
    assert 0.3 < ja < 1.0


def test_win_tie_loss_counts_and_rates() -> None:
    outcomes = ["win"] * 6 + ["tie"] * 2 + ["loss"] * 2 + ["both_bad"] * 2
    result = win_tie_loss(outcomes)
    assert (result.wins, result.ties, result.losses, result.both_bad) == (6, 2, 2, 2)
    assert (result.n, result.decided) == (12, 10)
    assert result.win_rate == pytest.approx(0.5) and result.tie_rate == pytest.approx(2 / 12)
    assert result.loss_rate == pytest.approx(2 / 12) and result.both_bad_rate == pytest.approx(2 / 12)
    assert result.win_or_tie_rate == pytest.approx(0.7)  # (6 + 2/2) / 10, both_bad left out
    assert result.method == "wilson" and result.confidence == 0.95
    assert result.interval is not None
    low, high = result.interval
    assert 0.0 <= low < 0.7 < high <= 1.0
    # with no ties the score is binomial: 7 of 10, the interval scipy's Wilson gives
    from scipy.stats import binomtest

    no_ties = win_tie_loss(["win"] * 7 + ["loss"] * 3, confidence=0.8)
    expected = binomtest(7, 10).proportion_ci(confidence_level=0.8, method="wilson")
    assert no_ties.interval == pytest.approx((expected.low, expected.high))
    assert (low, high) == pytest.approx((0.3968, 0.8922), abs=1e-4)  # ties count half: 7 of 10 again


@pytest.mark.parametrize("method", ["wilson", "bootstrap"])
def test_win_tie_loss_interval_contains_estimate_and_narrows(method: Literal["wilson", "bootstrap"]) -> None:
    few = win_tie_loss(["win", "win", "tie", "loss", "win"], method=method)
    many = win_tie_loss(["win", "win", "tie", "loss", "win"] * 40, method=method)
    assert few.win_or_tie_rate == many.win_or_tie_rate == pytest.approx(0.7)
    for result in (few, many):
        assert result.interval is not None and result.win_or_tie_rate is not None
        assert result.interval[0] <= result.win_or_tie_rate <= result.interval[1]
    assert few.interval is not None and many.interval is not None
    assert many.interval[1] - many.interval[0] < (few.interval[1] - few.interval[0]) / 3
    narrower = win_tie_loss(["win", "win", "tie", "loss", "win"] * 40, method=method, confidence=0.8)
    assert narrower.interval is not None
    assert narrower.interval[1] - narrower.interval[0] < many.interval[1] - many.interval[0]


def test_bootstrap_is_seeded_and_wilson_stays_open_on_a_clean_sweep() -> None:
    outcomes = ["win", "loss", "tie", "win"] * 5
    a = win_tie_loss(outcomes, method="bootstrap", seed=3)
    assert a == win_tie_loss(outcomes, method="bootstrap", seed=3)
    sweep = win_tie_loss(["win"] * 8)
    assert sweep.interval is not None and sweep.interval[1] == 1.0 and 0.6 < sweep.interval[0] < 0.7
    assert win_tie_loss(["win"] * 8, method="bootstrap").interval == (1.0, 1.0)  # why Wilson is the default


def test_win_tie_loss_empty_and_all_both_bad() -> None:
    empty = win_tie_loss([])
    assert empty == WinTieLoss(0, 0, 0, 0, None, None, None, None, None, None, 0.95, "wilson")
    all_bad = win_tie_loss(["both_bad", "both_bad"])
    assert all_bad.both_bad_rate == 1.0 and all_bad.win_or_tie_rate is None and all_bad.interval is None


def test_win_tie_loss_bad_outcome_says_which_and_how_to_fix() -> None:
    with pytest.raises(DataError) as info:
        win_tie_loss(["win", "draw", "tie", "WIN"])
    assert str(info.value) == (
        "comparison outcomes must be one of win, tie, loss, both_bad; got 'draw' at position 1, 'WIN' at position 3; "
        "fix the outcome values (the student's point of view: 'win' means the student's answer was better)"
    )
    with pytest.raises(ValueError, match="confidence must be between 0 and 1"):
        win_tie_loss(["win"], confidence=95)


@pytest.mark.parametrize(
    ("first", "second", "outcome"),
    [
        ("a", "b", "win"),  # A better in both orders
        ("b", "a", "loss"),  # B better in both orders
        ("tie", "tie", "tie"),
        ("both_bad", "both_bad", "both_bad"),
        ("a", "a", "tie"),  # the judge picks whatever is shown first: order bias cancels
        ("b", "b", "tie"),  # ... or whatever is shown second
        ("a", "tie", "tie"),
        ("both_bad", "b", "tie"),
    ],
)
def test_swap_judgement(first: str, second: str, outcome: str) -> None:
    assert swap_judgement(first, second) == outcome


def test_swap_judgement_bad_verdict() -> None:
    with pytest.raises(DataError, match=r"the second verdict 'B' is not one of a, b, tie, both_bad; a verdict names"):
        swap_judgement("a", "B")


def test_throughput() -> None:
    assert throughput(500, 2.0) == 250.0
    assert throughput(500, 0.0) is None
    assert throughput(10, -1.0) is None
