"""Metrics against scikit-learn and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, brier_score_loss, cohen_kappa_score, f1_score, log_loss

from terakoya.evaluation.metrics import (
    agreement,
    classification_metrics,
    cohen_kappa,
    confusions,
    expected_calibration_error,
    paired_within,
    probabilities_ece,
    reliability_bins,
)

CLASSES = ["negative", "neutral", "positive"]


def test_accuracy_f1_and_confusion_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    truth = [CLASSES[i] for i in rng.integers(0, 3, 60)]
    pred = [t if rng.random() < 0.7 else CLASSES[rng.integers(0, 3)] for t in truth]
    out = classification_metrics(truth, None, pred, CLASSES)
    assert out["accuracy"] == pytest.approx(accuracy_score(truth, pred))
    assert out["macro_f1"] == pytest.approx(f1_score(truth, pred, average="macro"))
    neg = out["per_class"]["negative"]
    assert neg["support"] == truth.count("negative")
    assert neg["f1"] == pytest.approx(f1_score(truth, pred, labels=["negative"], average="macro"))
    matrix = np.array(out["confusion"]["matrix"])
    assert out["confusion"]["labels"] == CLASSES
    assert matrix.sum() == 60 and np.trace(matrix) == sum(t == p for t, p in zip(truth, pred, strict=True))
    assert out["ece"] is None and out["reliability"] == []


def test_hand_computed_small_case() -> None:
    truth = ["positive", "positive", "negative", "negative"]
    pred = ["positive", "negative", "negative", "negative"]
    out = classification_metrics(truth, None, pred, CLASSES)
    assert out["accuracy"] == 0.75
    # positive: P=1, R=0.5, F1=2/3; negative: P=2/3, R=1, F1=0.8; neutral unused -> not averaged
    assert out["per_class"]["positive"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert out["per_class"]["neutral"]["support"] == 0
    assert out["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert out["confusion"]["matrix"] == [[2, 0, 0], [0, 0, 0], [1, 0, 1]]
    assert confusions(truth, pred) == [{"true": "positive", "predicted": "negative", "count": 1}]


def test_ece_on_a_crafted_example() -> None:
    # bin (0.6, 0.667]: confidences 0.65, 0.65 -> one right: gap |0.5 - 0.65| = 0.15, weight 2/5
    # bin (0.867, 0.933]: confidence 0.9 x3 -> all right: gap |1 - 0.9| = 0.1, weight 3/5
    confidence = np.array([0.65, 0.65, 0.9, 0.9, 0.9])
    correct = np.array([1, 0, 1, 1, 1])
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.4 * 0.15 + 0.6 * 0.1)
    bins = reliability_bins(confidence, correct)
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 5
    assert bins[9]["count"] == 2 and bins[9]["accuracy"] == 0.5 and bins[9]["confidence"] == pytest.approx(0.65)
    assert bins[13]["count"] == 3 and bins[13]["accuracy"] == 1.0


def test_ece_of_probabilities_against_class_indices() -> None:
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    truth = np.array([0, 1, 0, 0])
    # bin 0.9: accuracy 0.5, confidence 0.9; bin 0.6: accuracy 1.0, confidence 0.6
    assert probabilities_ece(proba, truth) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    assert probabilities_ece(proba[:0], truth[:0]) is None


def test_bin_edges_are_right_closed() -> None:
    # 1/15 sits on the edge: it belongs to the first bin (0, 1/15]; 1.0 to the last; 0.0 to the first
    bins = reliability_bins(np.array([1 / 15, 1.0, 0.0]), np.array([1, 1, 0]))
    assert bins[0]["count"] == 2 and bins[14]["count"] == 1


def test_calibration_numbers_match_sklearn_and_skip_unknown_rows() -> None:
    truth = ["negative", "positive", "neutral", "positive"]
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4], [0.2, 0.5, 0.3]])
    pred = [CLASSES[i] for i in proba.argmax(1)]
    out = classification_metrics(truth, proba, pred, CLASSES)
    assert out["brier"] == pytest.approx(brier_score_loss(truth, proba, labels=CLASSES))
    assert out["nll"] == pytest.approx(log_loss(truth, proba, labels=CLASSES))
    # confidences 0.7 (right), 0.8 (right), 0.4 (wrong), 0.5 (wrong): each alone in its bin
    assert out["ece"] == pytest.approx((0.3 + 0.2 + 0.4 + 0.5) / 4)
    unknown = proba.copy()
    unknown[2] = np.nan
    out2 = classification_metrics(truth, unknown, pred, CLASSES)
    assert out2["probabilities_unknown"] == 1 and out2["calibration_items"] == 3
    assert out2["accuracy"] == out["accuracy"]
    assert out2["ece"] == pytest.approx((0.3 + 0.2 + 0.5) / 3)


def test_empty_input_gives_nones_not_errors() -> None:
    out = classification_metrics([], np.zeros((0, 3)), [], CLASSES)
    assert out["accuracy"] is None and out["macro_f1"] is None and out["ece"] is None
    assert expected_calibration_error(np.array([]), np.array([])) is None


def test_wrong_proba_shape_is_refused() -> None:
    with pytest.raises(ValueError, match=r"proba must have shape \(2, 3\), got \(2, 2\)"):
        classification_metrics(["a", "b"], np.ones((2, 2)), ["a", "b"], CLASSES)


def test_agreement_and_kappa() -> None:
    a = ["x", "y", "x", "x", "y", "z"]
    b = ["x", "y", "y", "x", "y", "x"]
    assert agreement(a, b) == pytest.approx(4 / 6)
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert cohen_kappa(["x", "x"], ["x", "x"]) is None
    assert cohen_kappa([], []) is None
    assert math.isnan(agreement([], []))
    with pytest.raises(ValueError, match="same length, got 1 and 2"):
        agreement(["x"], ["x", "y"])


def test_losses_follow_the_given_class_order() -> None:
    """Columns follow `classes` as given, not sorted: permuting both must not change any number."""
    rng = np.random.default_rng(0)
    classes = ["positive", "negative", "neutral"]
    proba = rng.dirichlet(np.ones(3), size=40)
    truth = [classes[i] for i in rng.integers(0, 3, size=40)]
    pred = [classes[i] for i in proba.argmax(axis=1)]
    a = classification_metrics(truth, proba, pred, classes)
    order = [1, 2, 0]  # negative, neutral, positive: the sorted order
    b = classification_metrics(truth, proba[:, order], pred, [classes[i] for i in order])
    for key in ("accuracy", "macro_f1", "ece", "brier", "nll"):
        assert a[key] == pytest.approx(b[key]), key
    from sklearn.metrics import log_loss

    assert b["nll"] == pytest.approx(log_loss(truth, proba[:, order], labels=sorted(classes)))


def test_paired_within_by_hand() -> None:
    # differences 1, 0, 0, 0: mean 0.25, sample std 0.5, standard error 0.25
    diff = [1.0, 0.0, 0.0, 0.0]
    assert paired_within(diff, 1.0) and not paired_within(diff, 0.9)
    assert paired_within([0.0, 0.0], 0.0)  # no difference at all is within any distance
    assert not paired_within([0.5, 0.5, 0.5], 10.0)  # a constant gap has no noise to hide in
    assert paired_within([-0.2], 0.0)  # one item: a gap below zero only
