"""The distillation benchmark's simulated teachers and target checks (bench/simteacher.py, bench/report.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import simteacher  # noqa: E402
from bench.datasets import ascii_key  # noqa: E402
from bench.report import checks  # noqa: E402

LABELS = ["negative", "neutral", "positive"]


def _items(n: int = 4000, seed: int = 1) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    golds = list(rng.choice(LABELS, size=n, p=[0.15, 0.6, 0.25]))
    return golds, rng.integers(0, 4, size=n)


@pytest.mark.parametrize("target", [0.4, 0.6, 0.75, 0.85])
def test_simulated_teacher_hits_its_accuracy_with_mistakes_on_hard_items(target: float) -> None:
    golds, difficulty = _items()
    sim = simteacher.simulate(golds, difficulty, LABELS, accuracy=target, seed=7)
    assert sim.accuracy() == pytest.approx(target, abs=1 / len(golds) + 1e-9)
    by_level = [sim.accuracy(difficulty == level) for level in range(4)]
    assert by_level == sorted(by_level, reverse=True)
    assert by_level[0] - by_level[3] > 0.2
    assert [a == g for a, g in zip(sim.answers, golds, strict=True)] == list(sim.correct)
    assert simteacher.auroc(sim.confidence, sim.correct) == pytest.approx(0.75, abs=0.04)
    assert float(sim.confidence.mean()) == pytest.approx(target, abs=0.01)
    for answer, probs in zip(sim.answers, sim.probabilities, strict=True):
        assert sum(probs.values()) == pytest.approx(1.0)
        assert max(probs, key=lambda k: probs[k]) == answer


def test_simulated_teacher_is_seeded_and_confuses_neutral_with_positive() -> None:
    golds, difficulty = _items()
    a = simteacher.simulate(golds, difficulty, LABELS, accuracy=0.6, seed=3)
    b = simteacher.simulate(golds, difficulty, LABELS, accuracy=0.6, seed=3)
    c = simteacher.simulate(golds, difficulty, LABELS, accuracy=0.6, seed=4)
    assert a.probabilities == b.probabilities
    assert a.answers != c.answers
    wrong = [(g, s) for g, s in zip(golds, a.answers, strict=True) if g != s]
    assert wrong.count(("neutral", "positive")) > 1.4 * wrong.count(("neutral", "negative"))


def test_uniform_difficulty_and_two_labels() -> None:
    golds = ["positive", "negative"] * 1000
    sim = simteacher.simulate(golds, [0] * len(golds), ["negative", "positive"], accuracy=0.75, seed=0)
    assert sim.accuracy() == pytest.approx(0.75, abs=1e-3)
    assert all(min(p.values()) < 0.5 for p in sim.probabilities)


def test_the_python_teacher_reads_the_installed_table() -> None:
    from terakoya.teachers.base import TeacherRequest
    from terakoya.teachers.python import PythonTeacher

    simteacher.use({"Profit rose.": {"positive": 0.8, "neutral": 0.1, "negative": 0.1}})
    teacher = PythonTeacher(simteacher.FUNCTION)
    request = TeacherRequest(key="1", text="Profit  rose. ", messages=[], labels=tuple(LABELS))
    (answer,) = teacher.label([request])
    assert answer.label == "positive"
    assert answer.probabilities["positive"] == pytest.approx(0.8)
    with pytest.raises(KeyError, match="no answer"):
        simteacher.label(["Not in the table."], LABELS)
    simteacher.use({})


def test_auroc_matches_scikit_learn() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    truth = rng.random(300) < 0.6
    scores = np.round(truth * 0.5 + rng.random(300), 1)  # with ties
    assert simteacher.auroc(scores, truth) == pytest.approx(roc_auc_score(truth, scores))


def test_phrasebank_files_match_across_encodings() -> None:
    latin1 = "Clothing retail chain Sepp\u00e4l\u00e4 's  sales rose ."
    utf8_with_replacement = "Clothing retail chain Sepp\ufffdl\ufffd 's sales rose ."
    assert ascii_key(latin1) == ascii_key(utf8_with_replacement)


def test_target_checks_report_met_and_missed_with_numbers() -> None:
    def arm(acc: float) -> dict[str, object]:
        return {"accuracy": {"mean": acc, "std": 0.0, "n": 3}}

    summary = {
        "5": {
            "teacher": arm(0.80),
            "experts_alone": arm(0.70),
            "experts_semi": arm(0.71),
            "random_routing": arm(0.84),
            "terakoya": arm(0.82),
            "recipe": arm(0.81),
        }
    }
    entry = {"summary": summary, "teacher": "sim85", "target_accuracy": 0.85, "base": {"measured": {}}}
    got = {c["target"]: c for c in checks(entry, "fpb")}
    assert got["A"]["status"] == "met"
    assert got["B"]["status"] == "met"
    assert got["C"]["status"] == "MISSED"
    assert "its routing 82.0 vs random routing 84.0" in got["C"]["text"]
    assert got["D"]["status"] == "met"
    assert got["E"]["status"] == "MISSED"
    assert got["F"]["status"] == "met"
