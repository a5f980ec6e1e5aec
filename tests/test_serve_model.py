"""``terakoya serve-model``: a saved student over real HTTP on 127.0.0.1, called with the ``openai`` client."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import uvicorn

    student = LinearStudent().fit(TEXTS, LABELS)
    student.metadata = {"run_id": "run-42", "task_kind": "classify.v1"}
    folder = student.save(tmp_path_factory.mktemp("m") / "model")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_model_app(folder), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the model server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(timeout=10)


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
