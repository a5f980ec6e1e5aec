"""A teacher that is a plain Python function (``teacher.function = "module:function"``).

The function takes ``(texts: list[str], labels: list[str])`` and returns, for each text, either a dict
label -> probability (confidence known) or a label string (confidence unknown). It is how a team plugs
in a model of its own, and it doubles as the test fake.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from terakoya.errors import ConfigError, TeacherError
from terakoya.teachers.base import TeacherAnswer, TeacherRequest, from_probabilities, from_text, uniform

__all__ = ["PythonTeacher", "resolve_function"]

EXAMPLE = 'teacher.function = "my_package.labeling:label_batch"'


def resolve_function(spec: str | None) -> Callable[..., Any]:
    """The callable named by ``"module:function"``, or a ConfigError that says how to fix the spec."""
    if not spec:
        raise ConfigError(
            f"teacher.kind is 'python' but teacher.function is not set; set it in terakoya.toml: {EXAMPLE}"
        )
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name.strip() or not attr.strip():
        raise ConfigError(f"teacher.function {spec!r} is not 'module:function'; write it as: {EXAMPLE}")
    try:
        module = importlib.import_module(module_name.strip())
    except ImportError as exc:
        raise ConfigError(
            f"teacher.function {spec!r}: cannot import module {module_name!r} ({exc}); check the name and that "
            "its folder is on PYTHONPATH"
        ) from exc
    target: Any = module
    for part in attr.strip().split("."):
        if not hasattr(target, part):
            raise ConfigError(f"teacher.function {spec!r}: module {module_name!r} has no {attr!r}; check the name")
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(f"teacher.function {spec!r}: {attr!r} is not callable; point it at a function")
    return target  # type: ignore[no-any-return]


class PythonTeacher:
    """Calls ``function(texts, labels)`` once per batch."""

    def __init__(self, function: str | Callable[..., Any], *, name: str | None = None) -> None:
        if isinstance(function, str):
            self.function = resolve_function(function)
            default_name = f"python:{function}"
        else:
            self.function = function
            default_name = f"python:{getattr(function, '__module__', '?')}:{getattr(function, '__qualname__', '?')}"
        self.name = name or default_name
        self.params: dict[str, Any] = {}

    def label(self, requests: Sequence[TeacherRequest]) -> list[TeacherAnswer]:
        out: list[TeacherAnswer | None] = [None] * len(requests)
        # one call per distinct label set (a batch from `teach` has one)
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(request.labels, []).append(i)
        for labels, indexes in groups.items():
            texts = [requests[i].text for i in indexes]
            start = time.perf_counter()
            try:
                results = self.function(texts, list(labels))
            except Exception as exc:
                raise TeacherError(
                    f"the teacher function {self.name.removeprefix('python:')} raised "
                    f"{type(exc).__name__}: {exc}; fix the function"
                ) from exc
            seconds = (time.perf_counter() - start) / max(len(texts), 1)
            if not isinstance(results, Sequence) or isinstance(results, str) or len(results) != len(texts):
                got = len(results) if isinstance(results, Sequence) else type(results).__name__
                raise TeacherError(
                    f"the teacher function {self.name.removeprefix('python:')} returned {got} answers for "
                    f"{len(texts)} texts; return one dict (label -> probability) or label string per text"
                )
            for i, result in zip(indexes, results, strict=True):
                out[i] = _answer(result, labels, seconds)
        return [answer for answer in out if answer is not None]


def _answer(result: Any, labels: Sequence[str], seconds: float) -> TeacherAnswer:
    if isinstance(result, str):
        return from_text(result, labels, latency_s=seconds)
    if isinstance(result, Mapping):
        try:
            scores = {str(k): float(v) for k, v in result.items()}
        except (TypeError, ValueError):
            return TeacherAnswer(uniform(labels), False, repr(result), latency_s=seconds, error="non-numeric scores")
        return from_probabilities(scores, labels, raw=repr(result), latency_s=seconds)
    return TeacherAnswer(
        uniform(labels),
        False,
        repr(result),
        latency_s=seconds,
        error=f"the teacher function returned a {type(result).__name__}; return a dict or a label string",
    )
