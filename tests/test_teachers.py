"""Teacher adapters: the OpenAI-compatible one over real HTTP to a fake server, the Python one, prompts."""

from __future__ import annotations

import asyncio
import math
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fakes.openai_server import FakeOpenAI
from terakoya.errors import ConfigError, TeacherError
from terakoya.settings import Settings, TeacherSettings
from terakoya.teachers import make_teacher
from terakoya.teachers.base import TeacherRequest, parse_label
from terakoya.teachers.openai import OpenAITeacher, probabilities_from_logprobs
from terakoya.teachers.prompts import build_prompt
from terakoya.teachers.python import PythonTeacher

LABELS = ("positive", "negative", "neutral")
TEXTS = ["Profit rose 20 %.", "Net loss widened.", "The office is in Espoo."]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def settings_for(server: FakeOpenAI, **teacher: object) -> TeacherSettings:
    values: dict[str, object] = {
        "kind": "openai",
        "model": "fake-model",
        "base_url": server.base_url,
        "backoff_s": 0.001,
        "timeout_s": 5.0,
    }
    values.update(teacher)
    return TeacherSettings.model_validate(values)


def requests(texts: list[str] = TEXTS) -> list[TeacherRequest]:
    return [
        TeacherRequest(key=str(i), text=t, messages=({"role": "user", "content": t},), labels=LABELS)
        for i, t in enumerate(texts)
    ]


# ----------------------------------------------------------------------------- OpenAI-compatible, real HTTP


def test_logprobs_become_label_probabilities(fake: FakeOpenAI) -> None:
    teacher = OpenAITeacher(settings_for(fake), env={"OPENAI_API_KEY": "sk-test"})
    answers = teacher.label(requests())
    assert [a.label for a in answers] == ["positive", "negative", "neutral"]
    # "positive" 0.7 + " Positive" 0.1 (variants summed); "Nega" and "Neut" prefixes 0.05 each; "The" ignored
    first = answers[0]
    assert first.confidence_known and first.error is None
    assert first.probabilities == pytest.approx({"positive": 0.8 / 0.9, "negative": 0.05 / 0.9, "neutral": 0.05 / 0.9})
    assert math.isclose(sum(first.probabilities.values()), 1.0)
    assert first.completion_tokens == 1 and first.prompt_tokens == len(TEXTS[0]) // 4
    body = fake.requests[0]
    assert (body["model"], body["logprobs"], body["top_logprobs"], body["temperature"]) == ("fake-model", True, 20, 0.0)
    assert fake.headers[0]["authorization"] == "Bearer sk-test"
    assert fake.calls == 3


def test_labels_missing_from_top_logprobs_get_a_floor(fake: FakeOpenAI) -> None:
    teacher = OpenAITeacher(settings_for(fake, top_logprobs=2), env={})
    answer = teacher.label(requests(["Profit rose."]))[0]
    # only "positive" and " Positive" are listed; the other labels get the floor
    floor = 1e-3
    assert answer.probabilities["negative"] == pytest.approx(floor / (0.8 + 2 * floor))
    assert answer.label == "positive"
    assert "authorization" not in fake.headers[0]  # no key in the environment: none sent (local servers)


def test_token_matching_rules() -> None:
    content = [
        {"token": "\n", "logprob": 0.0, "top_logprobs": [{"token": "\n", "logprob": 0.0}]},
        {
            "token": "Ne",
            "logprob": math.log(0.5),
            "top_logprobs": [
                {"token": "Ne", "logprob": math.log(0.5)},  # starts negative *and* neutral: ignored
                {"token": " NEGATIVE.", "logprob": math.log(0.2)},
                {"token": "neu", "logprob": math.log(0.1)},
                {"token": "pos", "logprob": math.log(0.1)},
            ],
        },
    ]
    probs = probabilities_from_logprobs(content, LABELS)
    assert probs == pytest.approx({"negative": 0.5, "neutral": 0.25, "positive": 0.25})
    assert probabilities_from_logprobs([{"token": "The", "logprob": 0.0, "top_logprobs": []}], LABELS) is None


def test_without_logprobs_the_label_is_read_from_text(fake: FakeOpenAI) -> None:
    fake.mode = "text"
    answers = OpenAITeacher(settings_for(fake), env={}).label(requests())
    assert [a.label for a in answers] == ["positive", "negative", "neutral"]
    assert answers[0].probabilities == {"positive": 1.0, "negative": 0.0, "neutral": 0.0}
    assert not any(a.confidence_known for a in answers)


def test_parse_label_exact_fuzzy_and_garbage() -> None:
    assert parse_label(" Positive.", LABELS) == "positive"
    assert parse_label("The answer is: negative", LABELS) == "negative"
    assert parse_label("Neutrl", LABELS) == "neutral"
    assert parse_label("I cannot say", LABELS) is None


def test_garbage_text_is_an_error_with_uniform_probabilities(fake: FakeOpenAI) -> None:
    fake.mode = "garbage"
    answer = OpenAITeacher(settings_for(fake), env={}).label(requests(["Profit rose."]))[0]
    assert answer.error == (
        "no label found in the answer 'I am not sure what you mean.'; expected one of: positive, negative, neutral"
    )
    assert answer.probabilities == pytest.approx(dict.fromkeys(LABELS, 1 / 3))
    assert answer.label is None and answer.answered and not answer.confidence_known


def test_429_is_retried_after_retry_after(fake: FakeOpenAI) -> None:
    fake.fail_first, fake.fail_status, fake.retry_after = 2, 429, "0.3"
    start = time.perf_counter()
    answer = OpenAITeacher(settings_for(fake), env={}).label(requests(["Profit rose."]))[0]
    assert time.perf_counter() - start >= 0.6  # two waits of Retry-After, not the 1 ms backoff
    assert answer.label == "positive" and answer.error is None
    assert fake.calls == 3


def test_500_until_retries_run_out_is_an_error_on_the_item(fake: FakeOpenAI) -> None:
    fake.always_status = 500
    teacher = OpenAITeacher(settings_for(fake, max_retries=2), env={})
    answer = teacher.label(requests(["Profit rose."]))[0]
    assert answer.error == (
        f"{fake.base_url}/chat/completions failed after 3 tries: HTTP 500: scripted 500; retry later, "
        "or raise teacher.max_retries / teacher.timeout_s"
    )
    assert not answer.answered and answer.label is None
    assert fake.calls == 3


def test_slow_answers_time_out_and_are_retried(fake: FakeOpenAI) -> None:
    fake.delay_s = 1.0
    teacher = OpenAITeacher(settings_for(fake, timeout_s=0.2, max_retries=1), env={})
    start = time.perf_counter()
    answer = teacher.label(requests(["Profit rose."]))[0]
    assert time.perf_counter() - start < 0.9
    assert answer.error is not None and "no answer within 0.2 s (teacher.timeout_s)" in answer.error
    assert not answer.answered
    assert fake.calls == 2


def test_concurrency_limit_is_respected(fake: FakeOpenAI) -> None:
    fake.delay_s = 0.15
    answers = OpenAITeacher(settings_for(fake, concurrency=2), env={}).label(requests(TEXTS * 2))
    assert all(a.error is None for a in answers)
    assert fake.max_in_flight == 2
    fake.max_in_flight = 0
    OpenAITeacher(settings_for(fake, concurrency=6), env={}).label(requests(TEXTS * 2))
    assert fake.max_in_flight > 2


def test_wrong_api_key_names_the_variable(fake: FakeOpenAI) -> None:
    fake.require_key = "sk-right"
    teacher = OpenAITeacher(settings_for(fake, max_retries=3), env={"OPENAI_API_KEY": "sk-wrong"})
    with pytest.raises(TeacherError) as caught:
        teacher.label(requests())
    assert str(caught.value) == (
        f"{fake.base_url}/chat/completions answered HTTP 401: Incorrect API key provided; "
        "set OPENAI_API_KEY to a valid API key (teacher.api_key_env names the variable)"
    )
    assert fake.calls <= 3  # not retried
    assert OpenAITeacher(settings_for(fake), env={"OPENAI_API_KEY": "sk-right"}).label(requests())[0].error is None


def test_wrong_path_says_check_base_url(fake: FakeOpenAI) -> None:
    teacher = OpenAITeacher(settings_for(fake, base_url=fake.base_url.removesuffix("/v1")), env={})
    with pytest.raises(TeacherError, match=r"answered HTTP 404: no route /chat/completions; check teacher.base_url"):
        teacher.label(requests())


def test_server_not_running_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = TeacherSettings(
        kind="openai", model="m", base_url=f"http://127.0.0.1:{port}/v1", backoff_s=0.001, max_retries=1
    )
    with pytest.raises(TeacherError) as caught:
        OpenAITeacher(settings, env={}).label(requests())
    assert str(caught.value).startswith(
        f"cannot reach http://127.0.0.1:{port}/v1/chat/completions: is the server running? check teacher.base_url ("
    )


def test_transport_is_injectable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"choices": [{"message": {"content": "neutral"}}]})

    settings = TeacherSettings(kind="openai", model="m")
    teacher = OpenAITeacher(settings, transport=httpx.MockTransport(handler), env={})
    assert teacher.label(requests(["x"]))[0].probabilities["neutral"] == 1.0


def test_label_works_inside_a_running_event_loop(fake: FakeOpenAI) -> None:
    teacher = OpenAITeacher(settings_for(fake), env={})

    async def handler() -> str | None:
        return teacher.label(requests(["Profit rose."]))[0].label

    assert asyncio.run(handler()) == "positive"


def test_make_teacher_picks_the_adapter(fake: FakeOpenAI) -> None:
    teacher = make_teacher(settings_for(fake))
    assert isinstance(teacher, OpenAITeacher) and teacher.name == "fake-model"
    assert teacher.params["logprobs"] is True


# ----------------------------------------------------------------------------- Python function


def keyword_teacher(texts: list[str], labels: list[str]) -> list[object]:
    out: list[object] = []
    for text in texts:
        if "rose" in text:
            out.append({"positive": 3.0, "negative": 1.0})  # unnormalised; neutral missing -> 0
        elif "loss" in text:
            out.append("Negative")
        else:
            out.append(42)
    return out


def test_python_teacher_dicts_strings_and_bad_values() -> None:
    teacher = PythonTeacher(keyword_teacher)
    pos, neg, bad = teacher.label(requests())
    assert pos.probabilities == {"positive": 0.75, "negative": 0.25, "neutral": 0.0} and pos.confidence_known
    assert neg.label == "negative" and not neg.confidence_known
    assert bad.error == "the teacher function returned a int; return a dict or a label string"


def test_python_teacher_spec_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = 'teacher.function = "my_package.labeling:label_batch"'
    with pytest.raises(ConfigError) as caught:
        make_teacher(TeacherSettings(kind="python"))
    assert (
        str(caught.value)
        == f"teacher.kind is 'python' but teacher.function is not set; set it in terakoya.toml: {example}"
    )
    with pytest.raises(ConfigError) as caught:
        PythonTeacher("labeling.label_batch")
    assert (
        str(caught.value) == f"teacher.function 'labeling.label_batch' is not 'module:function'; write it as: {example}"
    )
    with pytest.raises(ConfigError) as caught:
        PythonTeacher("no_such_module_xyz:f")
    assert str(caught.value) == (
        "teacher.function 'no_such_module_xyz:f': cannot import module 'no_such_module_xyz' "
        "(No module named 'no_such_module_xyz'); check the name and that its folder is on PYTHONPATH"
    )
    (tmp_path / "my_labels.py").write_text("def ok(texts, labels):\n    return [labels[0] for _ in texts]\nx = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        PythonTeacher("my_labels:missing")
    assert (
        str(caught.value) == "teacher.function 'my_labels:missing': module 'my_labels' has no 'missing'; check the name"
    )
    with pytest.raises(ConfigError, match="'x' is not callable; point it at a function"):
        PythonTeacher("my_labels:x")
    teacher = make_teacher(TeacherSettings(kind="python", function="my_labels:ok"))
    assert teacher.name == "python:my_labels:ok"
    assert [a.label for a in teacher.label(requests())] == ["positive"] * 3
    sys.modules.pop("my_labels", None)


def test_python_teacher_that_raises_or_miscounts() -> None:
    def broken(texts: list[str], labels: list[str]) -> list[str]:
        raise ValueError("model file missing")

    with pytest.raises(TeacherError) as caught:
        PythonTeacher(broken, name="python:mod:broken").label(requests())
    assert (
        str(caught.value) == "the teacher function mod:broken raised ValueError: model file missing; fix the function"
    )
    with pytest.raises(TeacherError, match="returned 1 answers for 3 texts; return one dict"):
        PythonTeacher(lambda texts, labels: ["positive"], name="python:mod:short").label(requests())


# ----------------------------------------------------------------------------- prompts


def make_settings(**extra: object) -> Settings:
    return Settings.model_validate(
        {
            "labels": [
                {"name": "positive", "description": "good news"},
                {"name": "negative", "description": "bad news"},
                {"name": "neutral"},
            ],
            **extra,
        }
    )


def test_prompt_renders_labels_guidelines_glossary_and_examples() -> None:
    settings = make_settings(guidelines="Judge as an investor.")
    prompt = build_prompt(settings, glossary={"EBIT": "operating profit"}, examples=[("Sales grew.", "positive")])
    assert prompt.version.startswith("cls-v1-") and len(prompt.version) == len("cls-v1-") + 8
    assert "- positive: good news\n- negative: bad news\n- neutral" in prompt.system
    assert "Guidelines:\nJudge as an investor." in prompt.system
    assert "Glossary:\n- EBIT: operating profit" in prompt.system
    assert prompt.system.endswith("Answer with one word, the label, and nothing else: positive or negative or neutral.")
    assert prompt.messages("Profit fell.") == (
        {"role": "system", "content": prompt.system},
        {"role": "user", "content": "Sales grew."},
        {"role": "assistant", "content": "positive"},
        {"role": "user", "content": "Profit fell."},
    )


def test_prompt_version_follows_its_content() -> None:
    settings = make_settings(guidelines="A")
    base = build_prompt(settings, glossary={}, examples=[])
    assert build_prompt(make_settings(guidelines="A"), glossary={}, examples=[]).version == base.version
    assert build_prompt(make_settings(guidelines="B"), glossary={}, examples=[]).version != base.version
    assert build_prompt(settings, glossary={"t": "d"}, examples=[]).version != base.version
    assert build_prompt(settings, glossary={}, examples=[("x", "positive")]).version != base.version


def test_prompt_without_labels_says_how_to_fix() -> None:
    with pytest.raises(ConfigError) as caught:
        build_prompt(Settings(), glossary={}, examples=[])
    assert str(caught.value) == ("no labels are declared; add [[labels]] entries (name, description) to terakoya.toml")
