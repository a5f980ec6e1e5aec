"""``terakoya serve-model``: a saved student over real HTTP on 127.0.0.1, called with the ``openai`` client."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from terakoya.serving.server import create_model_app
from terakoya.students import LinearStudent

TEXTS = [f"profits rose strongly in quarter {i}" for i in range(20)] + [
    f"losses widened badly in quarter {i}" for i in range(20)
]
LABELS = ["positive"] * 20 + ["negative"] * 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _serving(folder: Path) -> Iterator[str]:
    """The student in ``folder`` served over real HTTP on 127.0.0.1; yields the base URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_model_app(folder), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the model server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    student = LinearStudent().fit(TEXTS, LABELS)
    student.metadata = {"run_id": "run-42", "task_kind": "classify.v1"}
    with _serving(student.save(tmp_path_factory.mktemp("m") / "model")) as url:
        yield url


def test_an_openai_client_gets_the_students_label(served: str) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=served, api_key="not-needed")
    assert [m.id for m in client.models.list()] == ["run-42"]
    reply = client.chat.completions.create(
        model="run-42",
        messages=[{"role": "system", "content": "Label the sentiment."},
                  {"role": "user", "content": "profits rose strongly this year"}],
    )  # fmt: skip
    assert reply.choices[0].message.content == "positive" and reply.model == "run-42"
    stream = client.chat.completions.create(
        model="run-42", messages=[{"role": "user", "content": "losses widened badly"}], stream=True
    )
    parts = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert "".join(parts) == "negative"


def test_classify_returns_the_kinds_columns_and_errors_say_what_to_fix(served: str) -> None:
    one = httpx.post(f"{served}/classify", json={"input": "profits rose strongly"}).json()
    assert one["classes"] == ["negative", "positive"]
    (row,) = one["data"]
    assert row["predicted_label"] == "positive" and row["confidence"] == max(row["p_negative"], row["p_positive"])
    many = httpx.post(f"{served}/classify", json={"input": ["losses widened badly", "profits rose"]}).json()
    assert [r["predicted_label"] for r in many["data"]] == ["negative", "positive"]

    empty = httpx.post(f"{served}/classify", json={"input": []})
    assert empty.status_code == 400 and "no text to classify" in empty.json()["error"]["message"]
    wrong = httpx.post(f"{served}/classify", json={"text": "x"})
    assert wrong.status_code == 422 and "input: Field required" in wrong.json()["error"]["message"]
    no_user = httpx.post(f"{served}/chat/completions", json={"messages": [{"role": "system", "content": "x"}]})
    assert no_user.status_code == 400 and "no user message" in no_user.json()["error"]["message"]


def test_serve_model_refuses_a_folder_that_is_not_a_student(tmp_path: Path) -> None:
    from test_cli import run

    out = run("serve-model", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr and out.stderr.startswith("error:")


# ----------------------------------------------------------------------------- a generative student

CHATS = [
    [{"role": "user", "content": "Greet me."}, {"role": "assistant", "content": "Hello! How can I help?"}],
    [{"role": "user", "content": "挨拶して。"}, {"role": "assistant", "content": "こんにちは！ご用件は？"}],
    [{"role": "user", "content": "Say goodbye."}, {"role": "assistant", "content": "Goodbye, see you soon."}],
] * 4


@pytest.fixture(scope="module")
def generative(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    pytest.importorskip("trl")
    from terakoya.students.generative import GenerativeStudent

    student = GenerativeStudent(vocab_size=300, n_layer=1, n_embd=32, n_head=2, max_length=48, sft_epochs=15,
                                learning_rate=5e-3, max_new_tokens=16)  # fmt: skip
    student.fit([{"messages": chat} for chat in CHATS])
    student.metadata_["run_id"] = "gen-7"
    with _serving(student.save(tmp_path_factory.mktemp("g") / "model")) as url:
        yield url, student


def test_an_openai_client_gets_the_generative_students_answer(generative: tuple[str, Any]) -> None:
    from openai import OpenAI

    url, student = generative
    client = OpenAI(base_url=url, api_key="not-needed")
    (listed,) = client.models.list()
    assert listed.id == "gen-7" and listed.model_extra == {"kind": "generative.v1", "task_kind": "generate.v1"}
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "挨拶して。"}]
    (expected,) = student.generate([messages])
    assert expected.text

    reply = client.chat.completions.create(model="gen-7", messages=messages)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == expected.text and reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (expected.prompt_tokens, expected.tokens)

    stream = client.chat.completions.create(
        model="gen-7",
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected.text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == expected.tokens

    short = client.chat.completions.create(model="gen-7", messages=messages, max_tokens=2)  # type: ignore[arg-type]
    assert short.usage is not None and short.usage.completion_tokens == 2
    assert short.choices[0].finish_reason == "length"
    assert short.choices[0].message.content == student.generate([messages], max_new_tokens=2)[0].text


def test_a_generative_student_refuses_to_classify(generative: tuple[str, Any]) -> None:
    url, _ = generative
    refused = httpx.post(f"{url}/classify", json={"input": "hello"})
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == "this student generates text; use /v1/chat/completions"
    tool = httpx.post(f"{url}/chat/completions", json={"messages": [{"role": "user", "content": "hi"},
                                                                      {"role": "tool", "content": "42"}]})  # fmt: skip
    assert tool.status_code == 400 and "leave out tool messages" in tool.json()["error"]["message"]
    hot = httpx.post(
        f"{url}/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "temperature": 5}
    )
    assert hot.status_code == 422 and "temperature" in hot.json()["error"]["message"]
