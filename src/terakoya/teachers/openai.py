"""A teacher behind any OpenAI-compatible ``/v1/chat/completions`` endpoint (OpenAI, vLLM, llama.cpp server...).

Label probabilities come from the ``top_logprobs`` of the answer's first label token: each alternative
token is mapped to the label it starts (case, spaces and punctuation ignored; variants summed), labels
not among the alternatives get a small floor, and the result is renormalised over the labels. When the
endpoint sends no logprobs, the label is read from the text and its confidence is unknown.

Requests run concurrently (``teacher.concurrency``), each with a timeout, and are retried with
exponential backoff on 429, 5xx, timeouts and connection errors (a ``Retry-After`` header wins).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx

from terakoya.errors import ConfigError, TeacherError
from terakoya.settings import TeacherSettings
from terakoya.teachers.base import TeacherAnswer, TeacherRequest, from_text, normalise, uniform

__all__ = ["OpenAITeacher", "probabilities_from_logprobs"]

T = TypeVar("T")
R = TypeVar("R")

#: probability given to a label that is not among the alternatives (at most the least likely listed one)
FLOOR = 1e-3
#: longest wait taken from a Retry-After header
MAX_RETRY_AFTER_S = 300.0


def _match(token: str, keys: Mapping[str, str]) -> str | None:
    """The label ``token`` starts: exact match first, else the one label it is a prefix of (ambiguous -> None)."""
    flat = normalise(token)
    if not flat:
        return None
    if flat in keys:
        return keys[flat]
    starts = {label for key, label in keys.items() if key.startswith(flat)}
    return starts.pop() if len(starts) == 1 else None


def probabilities_from_logprobs(content: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> dict[str, float] | None:
    """Label probabilities from ``logprobs.content``: the first position whose alternatives name a label."""
    keys = {normalise(label): label for label in labels}
    for position in content:
        alternatives = list(position.get("top_logprobs") or [])
        if not alternatives and "token" in position:
            alternatives = [position]
        mass: dict[str, float] = {}
        least = 1.0
        for alt in alternatives:
            try:
                p = math.exp(float(alt["logprob"]))
            except (KeyError, TypeError, ValueError, OverflowError):
                continue
            least = min(least, p)
            label = _match(str(alt.get("token", "")), keys)
            if label is not None:
                mass[label] = mass.get(label, 0.0) + p
        if not mass:
            continue
        floor = min(FLOOR, least)
        scores = {label: mass.get(label, floor) for label in labels}
        total = sum(scores.values())
        return {label: v / total for label, v in scores.items()}
    return None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion, also when called from inside a running event loop (a web handler)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # asyncio.run refuses to nest: run it on a worker thread with its own loop
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


class _Fatal(Exception):
    """A failure that no retry fixes and that would hit every request: stop the whole batch."""


class OpenAITeacher:
    """Labels through ``POST {base_url}/chat/completions``."""

    def __init__(
        self,
        settings: TeacherSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if settings.model.strip().lower() == "auto":
            raise ConfigError(
                "teacher.model is 'auto', which picks a packaged model for the local teacher only; set teacher.model "
                "to the name of a model the endpoint serves (e.g. gpt-4o-mini, or the model your vLLM/Ollama loaded)"
            )
        self.settings = settings
        self.transport = transport
        self.name = settings.model
        self.endpoint = settings.base_url.rstrip("/") + "/chat/completions"
        environ = os.environ if env is None else env
        self.api_key = environ.get(settings.api_key_env) or None
        self.params: dict[str, Any] = {
            "temperature": settings.temperature,
            "max_tokens": settings.max_tokens,
            "logprobs": settings.logprobs,
            "top_logprobs": settings.top_logprobs if settings.logprobs else None,
        }

    # ------------------------------------------------------------------ public

    def label(self, requests: Sequence[TeacherRequest]) -> list[TeacherAnswer]:
        if not requests:
            return []
        return _run(self._label_all(requests))

    # ------------------------------------------------------------------ internals

    def _body(self, request: TeacherRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": list(request.messages),
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
        }
        if self.settings.logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = self.settings.top_logprobs
        return body

    async def _label_all(self, requests: Sequence[TeacherRequest]) -> list[TeacherAnswer]:
        return await self._each(requests, self._label_one)

    async def _each(self, requests: Sequence[R], one: Callable[[httpx.AsyncClient, R], Awaitable[T]]) -> list[T]:
        """``one(client, request)`` for every request, ``teacher.concurrency`` at a time, answers in order."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        limit = asyncio.Semaphore(self.settings.concurrency)
        timeout = httpx.Timeout(self.settings.timeout_s)
        async with httpx.AsyncClient(
            transport=self.transport,
            headers=headers,
            timeout=timeout,
            limits=httpx.Limits(max_connections=self.settings.concurrency),
        ) as client:

            async def limited(request: R) -> T:
                async with limit:
                    return await one(client, request)

            tasks = [asyncio.ensure_future(limited(r)) for r in requests]
            try:
                return list(await asyncio.gather(*tasks))
            except _Fatal as exc:
                raise TeacherError(str(exc)) from None
            finally:
                for task in tasks:
                    task.cancel()

    async def _post(self, client: httpx.AsyncClient, body: Mapping[str, Any]) -> httpx.Response | str:
        """POST ``body`` with retries: the 200 response, or why every try failed (a failure no retry fixes, or
        an endpoint that cannot be reached at all, stops the whole batch)."""
        s = self.settings
        problem = ""
        connect_failed = False
        for attempt in range(s.max_retries + 1):
            wait = s.backoff_s * (2**attempt)
            try:
                response = await client.post(self.endpoint, json=body)
            except httpx.TimeoutException:
                problem = f"no answer within {s.timeout_s:g} s (teacher.timeout_s)"
                connect_failed = False
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                connect_failed = isinstance(exc, httpx.ConnectError)
            else:
                if response.status_code == 200:
                    return response
                if response.status_code == 429 or response.status_code >= 500:
                    problem = f"HTTP {response.status_code}: {_detail(response)}"
                    connect_failed = False
                    wait = _retry_after(response) or wait
                else:
                    raise _Fatal(self._client_error(response))
            if attempt < s.max_retries:
                await asyncio.sleep(wait)
        tries = s.max_retries + 1
        if connect_failed:
            raise _Fatal(
                f"cannot reach {self.endpoint}: is the server running? check teacher.base_url "
                f"({problem}, {tries} tries)"
            )
        return (
            f"{self.endpoint} failed after {tries} tries: {problem}; retry later, or raise "
            "teacher.max_retries / teacher.timeout_s"
        )

    async def _label_one(self, client: httpx.AsyncClient, request: TeacherRequest) -> TeacherAnswer:
        start = time.perf_counter()
        response = await self._post(client, self._body(request))
        if isinstance(response, str):
            return TeacherAnswer(
                uniform(request.labels), False, "", latency_s=time.perf_counter() - start, error=response,
                answered=False,
            )  # fmt: skip
        return self._read(response, request.labels, time.perf_counter() - start)

    def _client_error(self, response: httpx.Response) -> str:
        status = response.status_code
        detail = _detail(response)
        where = f"{self.endpoint} answered HTTP {status}: {detail}"
        key, model = self.settings.api_key_env, self.settings.model
        if status == 401:
            return f"{where}; set {key} to a valid API key (teacher.api_key_env names the variable)"
        if status == 403:
            return f"{where}; the API key in {key} may not use model {model!r}"
        if status == 404:
            return f"{where}; check teacher.base_url (it usually ends in /v1) and teacher.model ({model!r})"
        if "logprob" in detail.lower():
            return f"{where}; this endpoint may not support logprobs: set teacher.logprobs = false"
        return f"{where}; check teacher.model and the request settings (teacher.max_tokens, teacher.logprobs)"

    def _read(self, response: httpx.Response, labels: Sequence[str], seconds: float) -> TeacherAnswer:
        try:
            data = response.json()
            choice = data["choices"][0]
            raw = choice.get("message", {}).get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            text = response.text[:200]
            return TeacherAnswer(
                uniform(labels),
                False,
                text,
                latency_s=seconds,
                error=f"{self.endpoint} sent a response that is not a chat completion: {text!r}",
            )
        usage = data.get("usage") or {}
        extra: dict[str, Any] = {
            "prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "completion_tokens": int(usage.get("completion_tokens") or 0),
            "latency_s": seconds,
        }
        content = (choice.get("logprobs") or {}).get("content") or []
        probabilities = probabilities_from_logprobs(content, labels) if content else None
        if probabilities is not None:
            return TeacherAnswer(probabilities, True, raw, **extra)
        return from_text(raw, labels, **extra)


def _detail(response: httpx.Response) -> str:
    try:
        data = response.json()
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        if isinstance(error, str):
            return error[:300]
    except ValueError:
        pass
    return response.text.strip()[:300] or response.reason_phrase
