"""A fake OpenAI-compatible server: real HTTP on 127.0.0.1, run in a thread, with scripted behaviours.

    with FakeOpenAI() as server:
        settings.teacher.base_url = server.base_url
        ...
        assert server.calls == 3

Answers come from keywords in the last user message (``keywords``: word -> label, else ``default``).
Behaviours, set as attributes at any time:

- ``mode``: "logprobs" (answer plus top_logprobs), "text" (no logprobs), "garbage" (text naming no label),
  "write" (a written answer per choice, ``n`` of them; sampled ones differ; token logprobs low when the prompt
  says "hard")
- ``fail_first`` / ``fail_status``: the first N calls answer that status (429 with ``Retry-After``)
- ``always_status``: every call answers this status (e.g. 500, 401)
- ``delay_s``: seconds to wait before answering (slower than the client timeout -> timeouts)
- ``require_key``: answer 401 unless ``Authorization: Bearer <require_key>``
- ``fail_when``: answer 500 when the text contains this word (one item failing among others)
- ``needs_example``: answer by keyword only when this text is among the prompt's few-shot turns, else
  ``default`` (a model that examples teach)
"""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeOpenAI"]

DEFAULT_KEYWORDS = {
    "rose": "positive",
    "growth": "positive",
    "record": "positive",
    "fell": "negative",
    "loss": "negative",
    "layoffs": "negative",
}


class FakeOpenAI:
    def __init__(self, keywords: dict[str, str] | None = None, default: str = "neutral") -> None:
        self.keywords = dict(DEFAULT_KEYWORDS if keywords is None else keywords)
        self.default = default
        self.mode = "logprobs"
        self.fail_first = 0
        self.fail_status = 429
        self.retry_after: str | None = "0"
        self.always_status: int | None = None
        self.delay_s = 0.0
        self.require_key: str | None = None
        self.fail_when: str | None = None
        self.needs_example: str | None = None
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def calls(self) -> int:
        """Requests received (every attempt counts, retries included)."""
        with self._lock:
            return len(self.requests)

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ answers

    def label_for(self, text: str) -> str:
        lowered = text.lower()
        for word, label in self.keywords.items():
            if word in lowered:
                return label
        return self.default

    @staticmethod
    def text_of(body: dict[str, Any]) -> str:
        """The last user message: the item's text."""
        messages = body.get("messages") or []
        return str(next((m["content"] for m in reversed(messages) if m.get("role") == "user"), ""))

    def written(self, body: dict[str, Any]) -> dict[str, Any]:
        """Written answers: ``n`` choices, the same at temperature 0, different when sampled."""
        text = self.text_of(body)
        sampled = float(body.get("temperature") or 0) > 0
        p = 0.2 if "hard" in text.lower() else 0.9
        choices = []
        for i in range(int(body.get("n") or 1)):
            content = f"The answer to '{text}' is here" + (f", take {i + 2} with other words" if sampled else ".")
            choice: dict[str, Any] = {"index": i, "message": {"role": "assistant", "content": content},
                                      "finish_reason": "stop"}  # fmt: skip
            if body.get("logprobs"):
                choice["logprobs"] = {"content": [{"token": w, "logprob": math.log(p)} for w in content.split()]}
            choices.append(choice)
        words = sum(len(c["message"]["content"].split()) for c in choices)
        return {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "model": body.get("model", "fake"),
                "choices": choices, "usage": {"prompt_tokens": len(text) // 4, "completion_tokens": words,
                                              "total_tokens": len(text) // 4 + words}}  # fmt: skip

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.mode == "write":
            return self.written(body)
        messages = body.get("messages") or []
        text = self.text_of(body)
        label = self.label_for(text)
        if self.needs_example is not None and not any(
            self.needs_example in str(m.get("content", "")) for m in messages[:-1] if m.get("role") == "user"
        ):
            label = self.default
        content = "I am not sure what you mean." if self.mode == "garbage" else label
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
        }
        if self.mode == "logprobs" and body.get("logprobs"):
            others = sorted((set(self.keywords.values()) | {self.default}) - {label})
            # the answer split the way a BPE tokenizer would: a variant, a prefix, plus noise
            top = [
                {"token": label, "logprob": math.log(0.7)},
                {"token": " " + label.capitalize(), "logprob": math.log(0.1)},
                {"token": "The", "logprob": math.log(0.05)},
            ]
            for other in others:
                top.append({"token": other[:4].capitalize(), "logprob": math.log(0.05)})
            n = int(body.get("top_logprobs") or len(top))
            choice["logprobs"] = {"content": [{"token": label, "logprob": math.log(0.7), "top_logprobs": top[:n]}]}
        prompt_chars = sum(len(m.get("content", "")) for m in messages)
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "model": body.get("model", "fake"),
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt_chars // 4,
                "completion_tokens": 1,
                "total_tokens": prompt_chars // 4 + 1,
            },
        }

    # ------------------------------------------------------------------ HTTP

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    number = len(fake.requests)
                    fake.requests.append(body)
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    if self.path != "/v1/chat/completions":
                        self._send(404, {"error": {"message": f"no route {self.path}"}})
                        return
                    if fake.delay_s:
                        time.sleep(fake.delay_s)
                    if fake.require_key and self.headers.get("Authorization") != f"Bearer {fake.require_key}":
                        self._send(401, {"error": {"message": "Incorrect API key provided"}})
                        return
                    if fake.always_status is not None:
                        self._send(fake.always_status, {"error": {"message": f"scripted {fake.always_status}"}})
                        return
                    text = fake.text_of(body)
                    if fake.fail_when and fake.fail_when in text:
                        self._send(500, {"error": {"message": f"scripted failure on {fake.fail_when!r}"}})
                        return
                    if number < fake.fail_first:
                        headers = {"Retry-After": fake.retry_after} if fake.retry_after is not None else {}
                        self._send(fake.fail_status, {"error": {"message": "Rate limit reached"}}, headers)
                        return
                    self._send(200, fake.completion(body))
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

        return Handler
