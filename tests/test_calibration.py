"""Calibration maths: batch calibration by hand, vector/matrix scaling on synthetic teachers, the keep rule."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from terakoya.teachers.calibration import (
    MIN_ITEMS_PER_LABEL,
    Calibrator,
    batch_calibrate,
    fit_recalibration,
    log_loss,
    log_softmax,
    softmax,
    teacher_logprobs,
)


def test_batch_calibration_by_hand() -> None:
    # three items, two labels; the teacher's probabilities are (.9, .1), (.6, .4), (.5, .5)
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.5, 0.5]])
    # given as unnormalised scores (each row shifted by a constant): normalising must undo that
    scores = np.log(probs) + np.array([[3.0], [-1.0], [0.5]])
    offsets, calibrated = batch_calibrate(scores)
    # offsets: the mean log-probability of each label over the rows
    # label 0: (ln .9 + ln .6 + ln .5) / 3 = ln(.27) / 3 = -0.43644; label 1: ln(.02) / 3 = -1.30401
    assert offsets == pytest.approx([-0.43644, -1.30401], abs=1e-5)
    # each row divided by exp(offsets) = (.27^(1/3), .02^(1/3)) = (.64633, .27144), renormalised:
    # row 0: .9/.64633 = 1.39248, .1/.27144 = .36840 -> .79083
    # row 1: .6/.64633 = .92832, .4/.27144 = 1.47362 -> .38650
    # row 2: .5/.64633 = .77360, .5/.27144 = 1.84203 -> .29575
    assert calibrated[:, 0] == pytest.approx([0.79083, 0.38650, 0.29575], abs=1e-4)
    assert calibrated.sum(axis=1) == pytest.approx([1.0, 1.0, 1.0])
    # the batch calibrator applies the same offsets to new rows
    calibrator = Calibrator.batch(offsets, n_rows=3)
    assert calibrator.apply(scores) == pytest.approx(calibrated)
    assert calibrator.apply(np.log([[0.5, 0.5]]))[0, 0] == pytest.approx(0.77360 / (0.77360 + 1.84203), abs=1e-4)


def test_minus_infinity_is_floored_and_nan_refused() -> None:
    offsets, calibrated = batch_calibrate([[0.0, -math.inf], [-1.0, -2.0]])
    assert np.isfinite(offsets).all() and np.isfinite(calibrated).all()
    assert softmax([[-math.inf, -math.inf]]) == pytest.approx(np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="NaN"):
        batch_calibrate([[0.0, math.nan]])


def _synthetic(rng: np.random.Generator, n: int, k: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
    """True logits and labels drawn from them (a perfectly calibrated source)."""
    truth = rng.normal(0.0, spread, (n, k))
    y = np.array([rng.choice(k, p=row) for row in softmax(truth)])
    return truth, y


def test_matrix_scaling_unpermutes_a_teacher_that_mixes_labels_up() -> None:
    rng = np.random.default_rng(0)
    k, n = 3, 600
    y = rng.integers(0, k, 2 * n)
    truth = 4.0 * np.eye(k)[y] + rng.normal(0.0, 1.0, (2 * n, k))
    # the teacher calls label 0 "1", 1 "2" and 2 "0", and likes label 2
    teacher = truth[:, [2, 0, 1]] + np.array([0.0, 0.0, 2.0])
    fit, test = np.arange(n), np.arange(n, 2 * n)
    assert (teacher[test].argmax(axis=1) == y[test]).mean() < 0.05
    calibrator = fit_recalibration(teacher, fit, y[fit])
    assert calibrator.name == "matrix"
    assert calibrator.cv_log_loss["matrix"] < calibrator.cv_log_loss["batch"]
    accuracy = (calibrator.apply(teacher[test]).argmax(axis=1) == y[test]).mean()
    assert accuracy > 0.95


def test_vector_scaling_recovers_a_temperature_and_biases() -> None:
    rng = np.random.default_rng(1)
    k, n = 3, 1500
    truth, y = _synthetic(rng, 2 * n, k, spread=1.5)
    # an over-confident teacher (temperature 1/3) with a taste for label 0
    teacher = 3.0 * truth + np.array([2.0, 0.0, -1.0])
    fit, test = np.arange(n), np.arange(n, 2 * n)
    calibrator = fit_recalibration(teacher, fit, y[fit], candidates=("vector",))
    assert calibrator.name == "vector"
    assert np.diag(calibrator.weights) == pytest.approx([1 / 3] * 3, rel=0.15)
    recovered = calibrator.apply(teacher[test])
    assert np.abs(recovered - softmax(truth[test])).mean() < 0.03
    oracle = log_loss(softmax(truth[test]), y[test])
    batch_only = log_loss(Calibrator.batch(calibrator.offsets).apply(teacher[test]), y[test])
    assert log_loss(recovered, y[test]) < oracle + 0.02 < batch_only


def test_a_bias_gives_back_the_label_mix_batch_calibration_evened_out() -> None:
    rng = np.random.default_rng(3)
    k, n = 3, 400
    prior = np.array([0.7, 0.2, 0.1])
    y = rng.choice(k, 2 * n, p=prior)
    # the teacher's scores are the evidence (log-likelihoods of x = 1.5 e_y + unit noise, up to a constant)
    # without how common each label is
    teacher = 1.5 * (1.5 * np.eye(k)[y] + rng.normal(0.0, 1.0, (2 * n, k)))
    fit, test = np.arange(n), np.arange(n, 2 * n)
    batch_accuracy = (batch_calibrate(teacher)[1][test].argmax(axis=1) == y[test]).mean()
    calibrator = fit_recalibration(teacher, fit, y[fit])
    # the fewest parameters that do the job: a bias, not a full scaling
    assert calibrator.name == "bias"
    assert calibrator.weights == ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    assert calibrator.bias[0] > calibrator.bias[1] > calibrator.bias[2]
    accuracy = (calibrator.apply(teacher[test]).argmax(axis=1) == y[test]).mean()
    assert accuracy > batch_accuracy + 0.05


def test_recalibration_is_kept_only_where_it_lowers_held_out_log_loss() -> None:
    rng = np.random.default_rng(0)
    truth, y = _synthetic(rng, 300, 3, spread=2.0)
    calibrator = fit_recalibration(truth, np.arange(300), y)
    assert calibrator.name == "batch"
    assert set(calibrator.cv_log_loss) == {"batch", "bias", "vector", "matrix"}
    assert calibrator.weights == ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)) and calibrator.bias == (0.0,) * 3


def test_too_few_labelled_items_give_the_batch_calibrator_with_offsets_from_all_rows() -> None:
    rng = np.random.default_rng(2)
    scores = rng.normal(0.0, 1.0, (200, 4))
    labelled = np.zeros(200, dtype=bool)
    labelled[: MIN_ITEMS_PER_LABEL * 4 - 1] = True
    calibrator = fit_recalibration(scores, labelled, rng.integers(0, 4, int(labelled.sum())))
    assert calibrator.name == "batch" and calibrator.cv_log_loss == {}
    assert calibrator.n == MIN_ITEMS_PER_LABEL * 4 - 1 and calibrator.n_rows == 200
    assert calibrator.offsets == pytest.approx(log_softmax(scores).mean(axis=0))
    assert calibrator.apply(scores) == pytest.approx(batch_calibrate(scores)[1])


def test_calibrator_round_trips_through_json() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    teacher = 3.0 * np.eye(3)[y][:, [1, 2, 0]] + rng.normal(0.0, 1.0, (300, 3))
    calibrator = fit_recalibration(teacher, np.arange(300), y)
    again = Calibrator.from_json(json.loads(json.dumps(calibrator.to_json())))
    assert again == calibrator
    assert again.apply(teacher) == pytest.approx(calibrator.apply(teacher))
    with pytest.raises(ValueError, match="unknown calibrator 'platt'"):
        Calibrator.from_json({**calibrator.to_json(), "name": "platt"})


def test_mismatched_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="2 labelled rows but 1 labels"):
        fit_recalibration(np.zeros((5, 2)), [0, 1], [0])
    with pytest.raises(ValueError, match=r"label indices must lie in \[0, 2\)"):
        fit_recalibration(np.zeros((5, 2)), [0], [2])
    with pytest.raises(ValueError, match="the calibrator is for 2 labels; got scores for 3"):
        Calibrator.batch([0.0, 0.0]).apply(np.zeros((1, 3)))


def test_teacher_logprobs_prefer_the_stored_label_logprobs() -> None:
    raw = json.dumps({"label_logprobs": {"a": -0.5, "b": -2.0}})
    assert teacher_logprobs(raw, {"a": 0.9, "b": 0.1}, ["b", "a"]) == [-2.0, -0.5]
    # another teacher (or a label missing from raw): the log of its probabilities
    assert teacher_logprobs("positive", {"a": 0.5, "b": 0.5}, ["a", "b"]) == pytest.approx([math.log(0.5)] * 2)
    assert teacher_logprobs(raw, {"a": 1.0}, ["a", "c"]) == [0.0, -math.inf]
