"""Teachers that write: one or more answers per prompt, with token log-probabilities where the model gives them.

A writer has a ``name`` (the model identity, in cache keys and as ``Suggestion.agent``), ``params`` (what changes
its answers: samples, temperatures, max tokens) and one method, :meth:`Writer.write`. The adapters follow
``teacher.kind``:

- ``openai``: any OpenAI-compatible ``/v1/chat/completions`` endpoint; the first answer at ``teacher.temperature``,
  the other ``generate.samples - 1`` in one more call (``n``) at ``generate.sample_temperature``; the mean token
  log-probability of each answer when the endpoint sends ``logprobs``; token counts and cost from ``usage``;
- ``local``: the local teacher's model on this machine (transformers ``generate``);
- ``python``: ``function(conversations, n) -> one answer or a list of answers per conversation``;
- ``recorded``: replays the answers of an imported column (``generate.recorded_column``), for benchmarks and
  for users who already have a big model's outputs: its answers carry no log-probabilities.

:class:`CachedWriter` stores every call in ``teacher_calls`` (the key adds the samples asked for), as the label
teachers' cache does.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from terakoya.errors import ConfigError, TeacherError
from terakoya.settings import Settings
from terakoya.teachers.base import TeacherRequest
from terakoya.teachers.cache import call_key
from terakoya.teachers.openai import OpenAITeacher, _run

__all__ = [
    "CachedWriter",
    "OpenAIWriter",
    "PythonWriter",
    "RecordedWriter",
    "Sample",
    "Writer",
    "Written",
    "make_writer",
]


@dataclass(frozen=True)
class Sample:
    """One answer: its text, the mean log-probability of its tokens (None: not measured) and its length."""

    text: str
    mean_logprob: float | None = None
    tokens: int = 0
    finish_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "mean_logprob": self.mean_logprob,
            "tokens": self.tokens,
            "finish_reason": self.finish_reason,
        }


@dataclass
class Written:
    """What a writer said to one prompt: its samples (the first is its answer), usage, and any error."""

    samples: list[Sample] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    error: str | None = None
    #: False when no answer came back at all: never cached, tried again on the next run
    answered: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "samples": [s.to_json() for s in self.samples],
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency_s": self.latency_s,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Written:
        return cls(
            [
                Sample(str(s["text"]), s.get("mean_logprob"), int(s.get("tokens") or 0), s.get("finish_reason"))
                for s in data.get("samples", [])
            ],
            int(data.get("prompt_tokens") or 0),
            int(data.get("completion_tokens") or 0),
            float(data.get("latency_s") or 0.0),
            data.get("error"),
        )


class Writer(Protocol):
    name: str
    params: dict[str, Any]

    def write(self, requests: Sequence[TeacherRequest]) -> list[Written]: ...


def _mean_logprob(content: Sequence[Mapping[str, Any]]) -> float | None:
    values = []
    for position in content:
        try:
            values.append(float(position["logprob"]))
        except (KeyError, TypeError, ValueError):
            continue
    values = [v for v in values if math.isfinite(v)]
    return sum(values) / len(values) if values else None


class OpenAIWriter(OpenAITeacher):
    """Writes through ``POST {base_url}/chat/completions`` (retries, concurrency and errors as the label teacher)."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(settings.teacher, transport=transport, env=env)
        g = settings.generate
        self.samples, self.sample_temperature, self.max_tokens = g.samples, g.sample_temperature, g.max_tokens
        self.params = {
            "samples": g.samples,
            "temperature": settings.teacher.temperature,
            "sample_temperature": g.sample_temperature if g.samples > 1 else None,
            "max_tokens": g.max_tokens,
            "logprobs": settings.teacher.logprobs,
        }

    def write(self, requests: Sequence[TeacherRequest]) -> list[Written]:
        if not requests:
            return []
        return _run(self._each(requests, self._write_one))

    def _gen_body(self, request: TeacherRequest, n: int, temperature: float) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": list(request.messages),
            "temperature": temperature,
            "max_tokens": self.max_tokens,
        }
        if n > 1:
            body["n"] = n
        if self.settings.logprobs:
            body["logprobs"] = True
        return body

    async def _write_one(self, client: httpx.AsyncClient, request: TeacherRequest) -> Written:
        start = time.perf_counter()
        calls = [(1, self.settings.temperature)]
        if self.samples > 1:
            calls.append((self.samples - 1, self.sample_temperature))
        out = Written()
        for n, temperature in calls:
            response = await self._post(client, self._gen_body(request, n, temperature))
            if isinstance(response, str):
                if not out.samples:
                    return Written(latency_s=time.perf_counter() - start, error=response, answered=False)
                break  # the main answer came back; the extra samples are missing, said in the error
            try:
                data = response.json()
                choices = list(data["choices"])
                usage = data.get("usage") or {}
            except (ValueError, KeyError, TypeError):
                text = response.text[:200]
                return Written(
                    latency_s=time.perf_counter() - start,
                    error=f"{self.endpoint} sent a response that is not a chat completion: {text!r}",
                )
            for choice in choices[:n]:
                message = choice.get("message") or {}
                content = (choice.get("logprobs") or {}).get("content") or []
                out.samples.append(
                    Sample(
                        str(message.get("content") or ""),
                        _mean_logprob(content),
                        len(content) or 0,
                        choice.get("finish_reason"),
                    )
                )
            out.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            out.completion_tokens += int(usage.get("completion_tokens") or 0)
        out.latency_s = time.perf_counter() - start
        if not out.samples:
            out.error = f"{self.endpoint} sent no choices; check teacher.model"
        return out


class PythonWriter:
    """Calls ``function(conversations, n)`` once per batch; each result is a text or a list of texts."""

    def __init__(self, function: str | Callable[..., Any], samples: int = 1, *, name: str | None = None) -> None:
        from terakoya.teachers.python import resolve_function

        self.function = resolve_function(function) if isinstance(function, str) else function
        default = (
            f"python:{function}" if isinstance(function, str) else f"python:{getattr(function, '__qualname__', '?')}"
        )
        self.name = name or default
        self.samples = samples
        self.params: dict[str, Any] = {"samples": samples}

    def write(self, requests: Sequence[TeacherRequest]) -> list[Written]:
        if not requests:
            return []
        start = time.perf_counter()
        try:
            results = list(self.function([list(r.messages) for r in requests], self.samples))
        except Exception as exc:
            raise TeacherError(f"teacher function {self.name} failed: {type(exc).__name__}: {exc}") from exc
        if len(results) != len(requests):
            raise TeacherError(
                f"teacher function {self.name} returned {len(results)} answers for {len(requests)} prompts; "
                "return one answer (or one list of answers) per prompt"
            )
        seconds = (time.perf_counter() - start) / len(requests)
        out = []
        for result in results:
            texts = [result] if isinstance(result, str) else [str(t) for t in result]
            out.append(Written([Sample(t) for t in texts[: self.samples]], latency_s=seconds))
        return out


class RecordedWriter:
    """Replays answers written before: ``answers`` maps a request's key (the item id) to its answer(s)."""

    def __init__(self, column: str, answers: Mapping[str, Any]) -> None:
        self.name = f"recorded:{column}"
        self.column = column
        self.answers = answers
        self.params: dict[str, Any] = {"column": column}

    def write(self, requests: Sequence[TeacherRequest]) -> list[Written]:
        out = []
        for r in requests:
            value = self.answers.get(r.key)
            given = value if isinstance(value, list) else [value]
            texts = [str(t) for t in given if t is not None and str(t).strip()]
            if not texts:
                out.append(Written(error=f"no recorded answer in column {self.column!r}", answered=False))
            else:
                out.append(Written([Sample(t) for t in texts]))
        return out


class LocalWriter:
    """The local teacher's model writing answers on this machine (greedy first, sampled extras)."""

    def __init__(self, settings: Settings) -> None:
        from terakoya.teachers import make_teacher
        from terakoya.teachers.local import LocalTeacher

        teacher = make_teacher(settings.teacher)
        assert isinstance(teacher, LocalTeacher)
        self.teacher = teacher
        g = settings.generate
        self.name = teacher.name
        self.samples, self.temperature, self.sample_temperature = (
            g.samples,
            settings.teacher.temperature,
            g.sample_temperature,
        )
        self.max_tokens = g.max_tokens
        self.params = {
            "samples": g.samples,
            "temperature": self.temperature,
            "sample_temperature": g.sample_temperature if g.samples > 1 else None,
            "max_tokens": g.max_tokens,
        }

    def write(self, requests: Sequence[TeacherRequest]) -> list[Written]:
        import torch

        model, tokenizer = self.teacher.load().model_and_tokenizer()
        out = []
        for r in requests:
            start = time.perf_counter()
            prompt = self.teacher.render(list(r.messages), generation=True)
            ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
            samples = []
            for i in range(self.samples):
                temperature = self.temperature if i == 0 else self.sample_temperature
                torch.manual_seed(i)
                kwargs: dict[str, Any] = {"do_sample": temperature > 0}
                if temperature > 0:
                    kwargs["temperature"] = temperature
                with torch.no_grad():
                    gen = model.generate(
                        **ids,
                        max_new_tokens=self.max_tokens,
                        output_scores=True,
                        return_dict_in_generate=True,
                        pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
                        **kwargs,
                    )
                new = gen.sequences[0, ids["input_ids"].shape[1] :]
                scores = model.compute_transition_scores(gen.sequences, gen.scores, normalize_logits=True)[0]
                logprobs = [float(v) for v in scores[: len(new)] if math.isfinite(float(v))]
                text = tokenizer.decode(new, skip_special_tokens=True).strip()
                samples.append(Sample(text, sum(logprobs) / len(logprobs) if logprobs else None, len(new)))
            out.append(
                Written(
                    samples, int(ids["input_ids"].shape[1]), sum(s.tokens for s in samples), time.perf_counter() - start
                )
            )
        return out


def make_writer(settings: Settings, recorded: Mapping[str, Any] | None = None) -> Writer:
    """The writer ``teacher.kind`` names; ``recorded``: item id -> answer(s), for the recorded teacher."""
    kind = settings.teacher.kind
    if kind == "openai":
        return OpenAIWriter(settings)
    if kind == "python":
        return PythonWriter(settings.teacher.function or "", settings.generate.samples)
    if kind == "recorded":
        if recorded is None:
            raise ConfigError("the recorded teacher needs the imported answers; call it through the teach stage")
        return RecordedWriter(settings.generate.recorded_column, recorded)
    return LocalWriter(settings)


class CachedWriter:
    """Answers from ``teacher_calls`` when stored; otherwise asks ``inner`` and stores what came back."""

    def __init__(self, inner: Writer, db: Any, *, prompt_version: str = "") -> None:
        self.inner, self.db, self.prompt_version = inner, db, prompt_version
        self.name, self.params = inner.name, dict(inner.params)

    def key(self, request: TeacherRequest) -> str:
        return call_key(self.name, self.prompt_version, request, {**self.params, "task": "generate"})

    def write_cached(self, requests: Sequence[TeacherRequest]) -> list[tuple[Written, str, bool]]:
        from sqlalchemy import select
        from sqlalchemy.exc import IntegrityError

        from terakoya.storage.models import TeacherCall

        keys = [self.key(r) for r in requests]
        with self.db.session() as s:
            stored = {
                k: Written.from_json(v)
                for k, v in s.execute(select(TeacherCall.key, TeacherCall.response).where(TeacherCall.key.in_(keys)))
            }
        missing = [i for i, k in enumerate(keys) if k not in stored]
        fresh = dict(zip(missing, self.inner.write([requests[i] for i in missing]), strict=True)) if missing else {}
        with self.db.session() as s:
            for i, answer in fresh.items():
                if not answer.answered or answer.error:
                    continue
                call = TeacherCall(
                    key=keys[i],
                    model=self.name,
                    prompt_version=self.prompt_version,
                    request={"messages": list(requests[i].messages), "params": self.params},
                    response=answer.to_json(),
                )
                try:
                    with s.begin_nested():
                        s.add(call)
                except IntegrityError:
                    continue
        return [(fresh[i], k, False) if i in fresh else (stored[k], k, True) for i, k in enumerate(keys)]


def recorded_answers(items: Sequence[tuple[int, Mapping[str, Any]]], column: str) -> dict[str, Any]:
    """item id (as a request key) -> the recorded answer(s) in its imported ``column`` (a JSON list: several)."""
    out: dict[str, Any] = {}
    for item_id, meta in items:
        value = meta.get(column)
        if isinstance(value, str) and value.lstrip().startswith("["):
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        out[str(item_id)] = value
    return out
