"""A saved student over HTTP, for any OpenAI client: ``terakoya serve-model PATH``.

- ``GET /v1/models``: the one model served (its run id, or the folder's name);
- ``POST /v1/classify`` ``{"input": "text" | ["text", ...]}``: one result per text, in the columns the
  student's task kind shows (``classify.v1``: ``predicted_label``, ``confidence``, ``p_<label>``);
- ``POST /v1/chat/completions``: the OpenAI chat shape; a classifier answers the last user message with its
  label, a generative student (``GenerativeStudent``) writes its answer to the whole conversation, honouring
  ``max_completion_tokens``/``max_tokens`` and ``temperature`` (default 0: greedy, so the same request gets
  the same answer). ``stream: true`` sends the answer as server-sent events in OpenAI's chunk format, ending
  with ``[DONE]`` (the whole text in one chunk: the answer is written before it is sent). A client switches
  from a big model to the student by changing its base URL.

Which wrapper serves the folder is decided once, by what the folder holds (:func:`load_served`). The student
is loaded once and shared; predictions run in FastAPI's thread pool. Errors have the OpenAI shape
(``{"error": {"message", "type", "code"}}``) and say what to fix.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from terakoya.errors import DataError

__all__ = ["Reply", "ServedModel", "create_model_app", "load_served", "serve_model"]

MAX_TEXTS = 2048
MAX_CHARS = 100_000


class ClassifyIn(BaseModel):
    input: str | list[str] = Field(description="a text, or a list of texts")


class Message(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatIn(BaseModel):
    model: str | None = None
    messages: list[Message]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1, description="tokens to write at most (older name)")
    max_completion_tokens: int | None = Field(None, ge=1, description="tokens to write at most")
    temperature: float | None = Field(None, ge=0, le=2, description="0 or absent: greedy")


def _text_of(message: Message) -> str:
    if isinstance(message.content, str):
        return message.content
    parts = message.content or []
    return "".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")


def _check(texts: list[str]) -> None:
    if not texts:
        raise DataError('no text to classify; send {"input": "a text"} or a list of texts')
    if len(texts) > MAX_TEXTS:
        raise DataError(f"{len(texts)} texts in one request; send at most {MAX_TEXTS} at a time")
    long = next((i for i, t in enumerate(texts) if len(t) > MAX_CHARS), None)
    if long is not None:
        raise DataError(f"text {long} is {len(texts[long]):,} characters long; send at most {MAX_CHARS:,}")


@dataclass(frozen=True)
class Reply:
    """A chat answer and what it cost."""

    content: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"


class ServedModel(Protocol):
    """What the app needs of a loaded student: its name and kind, classifying, and answering a chat."""

    name: str
    kind: str
    task_kind: str
    created: int

    def classify(self, texts: list[str]) -> dict[str, Any]: ...

    def chat(self, body: ChatIn) -> Reply: ...


def _last_user_text(body: ChatIn) -> str:
    users = [m for m in body.messages if m.role == "user"]
    if not users:
        raise DataError("the messages hold no user message; put the text to answer in a user message")
    return _text_of(users[-1])


class _Classifier:
    """A classifier student and how its task kind shows a prediction."""

    def __init__(self, path: Path) -> None:
        from terakoya.kinds import get_kind
        from terakoya.students import load

        self.student = load(path)
        self.classes = list(self.student.classes_)
        self.task_kind = str(self.student.metadata.get("task_kind") or "classify.v1")
        self.presenter = get_kind(self.task_kind)
        self.kind = self.student.kind
        self.name = str(self.student.metadata.get("run_id") or Path(path).name)
        self.created = int(time.time())

    def classify(self, texts: list[str]) -> dict[str, Any]:
        _check(texts)
        proba = self.student.predict_proba(texts)
        data = [self.presenter.present(self.classes, row) for row in proba.tolist()]
        return {"model": self.name, "classes": self.classes, "data": data}

    def chat(self, body: ChatIn) -> Reply:
        """The first column the kind shows for the last user message (classify.v1: the label)."""
        shown = self.classify([_last_user_text(body)])["data"][0]
        return Reply(str(next(iter(shown.values()))))


class _Generator:
    """A generative student: it answers the whole conversation."""

    def __init__(self, path: Path) -> None:
        from terakoya.students.generative import GenerativeStudent

        self.student = GenerativeStudent.load(path)
        self.kind = GenerativeStudent.name
        self.task_kind = GenerativeStudent.task_kind
        self.name = str(self.student.metadata_.get("run_id") or Path(path).name)
        self.created = int(time.time())
        self._lock = threading.Lock()  # one answer at a time: parallel ones only fight over the CPU cores

    def classify(self, texts: list[str]) -> dict[str, Any]:
        raise DataError("this student generates text; use /v1/chat/completions")

    def chat(self, body: ChatIn) -> Reply:
        _last_user_text(body)
        messages = []
        for m in body.messages:
            if m.role == "tool":
                raise DataError("this student reads system, user and assistant messages; leave out tool messages")
            messages.append({"role": "system" if m.role == "developer" else m.role, "content": _text_of(m)})
        with self._lock:
            (answer,) = self.student.generate(
                [messages],
                max_new_tokens=body.max_completion_tokens or body.max_tokens,
                temperature=body.temperature or 0.0,
            )
        return Reply(answer.text, answer.prompt_tokens, answer.tokens, answer.finish_reason)


def load_served(path: Path) -> ServedModel:
    """The student saved in ``path``, wrapped by what the folder holds (generative or classifier)."""
    from terakoya.students.generative import is_generative_folder

    return _Generator(path) if is_generative_folder(path) else _Classifier(path)


def _error(status: int, message: str, code: str) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "code": code}}, status)


def _usage(reply: Reply) -> dict[str, int]:
    total = reply.prompt_tokens + reply.completion_tokens
    return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens, "total_tokens": total}


def _completion(model: ServedModel, reply: Reply) -> dict[str, Any]:
    message = {"role": "assistant", "content": reply.content}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model.name,
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
        "usage": _usage(reply),
    }


def _chunks(model: ServedModel, reply: Reply, *, include_usage: bool) -> Iterator[str]:
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model.name}  # fmt: skip
    chunks = [
        {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        for delta, finish in (({"role": "assistant", "content": reply.content}, None), ({}, reply.finish_reason))
    ]
    if include_usage:  # OpenAI's last chunk: no choices, the usage of the whole answer
        chunks.append({**base, "choices": [], "usage": _usage(reply)})
    for chunk in chunks:
        yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"


def create_model_app(path: Path) -> Any:
    """The FastAPI app that serves the student saved at ``path``."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import StreamingResponse

    model = load_served(Path(path))
    app = FastAPI(title=f"Terakoya student {model.name}", docs_url=None, redoc_url=None)

    @app.exception_handler(DataError)
    def _data_error(request: Request, exc: DataError) -> Any:
        return _error(400, exc.message, "invalid_input")

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> Any:
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors())
        return _error(422, f"the request does not fit: {where}", "invalid_request")

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        entry = {"id": model.name, "object": "model", "created": model.created, "owned_by": "terakoya"}
        entry |= {"kind": model.kind, "task_kind": model.task_kind}
        return {"object": "list", "data": [entry]}

    @app.post("/v1/classify")
    def classify(body: ClassifyIn) -> dict[str, Any]:
        return model.classify([body.input] if isinstance(body.input, str) else list(body.input))

    @app.post("/v1/chat/completions", response_model=None)
    def chat(body: ChatIn) -> Any:
        reply = model.chat(body)
        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(_chunks(model, reply, include_usage=include_usage), media_type="text/event-stream")
        return _completion(model, reply)

    return app


def serve_model(path: Path, *, host: str = "127.0.0.1", port: int = 8001) -> None:
    """Serve the student at ``path`` until stopped."""
    import uvicorn

    uvicorn.run(create_model_app(path), host=host, port=port, log_level="info")
