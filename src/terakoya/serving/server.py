"""A saved student over HTTP, for any OpenAI client: ``terakoya serve-model PATH``.

- ``GET /v1/models``: the one model served (its run id, or the folder's name);
- ``POST /v1/classify`` ``{"input": "text" | ["text", ...]}``: one result per text, in the columns the
  student's task kind shows (``classify.v1``: ``predicted_label``, ``confidence``, ``p_<label>``);
- ``POST /v1/chat/completions``: the OpenAI chat shape; a classifier answers the last user message with its
  label (``stream: true`` sends it as server-sent events, ending with ``[DONE]``), so a client switches
  from a big model to the student by changing its base URL.

The student is loaded once and shared; predictions run in FastAPI's thread pool. Errors have the OpenAI
shape (``{"error": {"message", "type", "code"}}``) and say what to fix.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from terakoya.errors import DataError

__all__ = ["create_model_app", "serve_model"]

MAX_TEXTS = 2048
MAX_CHARS = 100_000


class ClassifyIn(BaseModel):
    input: str | list[str] = Field(description="a text, or a list of texts")


class Message(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None


class ChatIn(BaseModel):
    model: str | None = None
    messages: list[Message]
    stream: bool = False


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


class _Model:
    """The loaded student and how its task kind shows a prediction."""

    def __init__(self, path: Path) -> None:
        from terakoya.kinds import get_kind
        from terakoya.students import load

        self.student = load(path)
        self.classes = list(self.student.classes_)
        self.kind = get_kind(str(self.student.metadata.get("task_kind") or "classify.v1"))
        self.name = str(self.student.metadata.get("run_id") or Path(path).name)
        self.created = int(time.time())

    def classify(self, texts: list[str]) -> list[dict[str, Any]]:
        _check(texts)
        proba = self.student.predict_proba(texts)
        return [self.kind.present(self.classes, row) for row in proba.tolist()]

    def answer(self, text: str) -> str:
        """The student's answer to a chat message: the first column its kind shows (classify.v1: the label)."""
        shown = self.classify([text])[0]
        return str(next(iter(shown.values())))


def _error(status: int, message: str, code: str) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "code": code}}, status)


def _completion(model: _Model, content: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model.name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def _chunks(model: _Model, content: str) -> Iterator[str]:
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model.name}  # fmt: skip
    for delta, finish in (({"role": "assistant", "content": content}, None), ({}, "stop")):
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"


def create_model_app(path: Path) -> Any:
    """The FastAPI app that serves the student saved at ``path``."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import StreamingResponse

    model = _Model(Path(path))
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
        return {"object": "list", "data": [entry]}

    @app.post("/v1/classify")
    def classify(body: ClassifyIn) -> dict[str, Any]:
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        return {"model": model.name, "classes": model.classes, "data": model.classify(texts)}

    @app.post("/v1/chat/completions", response_model=None)
    def chat(body: ChatIn) -> Any:
        users = [m for m in body.messages if m.role == "user"]
        if not users:
            raise DataError("the messages hold no user message; put the text to classify in a user message")
        content = model.answer(_text_of(users[-1]))
        if body.stream:
            return StreamingResponse(_chunks(model, content), media_type="text/event-stream")
        return _completion(model, content)

    return app


def serve_model(path: Path, *, host: str = "127.0.0.1", port: int = 8001) -> None:
    """Serve the student at ``path`` until stopped."""
    import uvicorn

    uvicorn.run(create_model_app(path), host=host, port=port, log_level="info")
