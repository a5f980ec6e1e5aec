"""The teacher contract: a batch of requests in, a batch of answers out.

A teacher is anything with a ``name`` (the model identity, used in cache keys and as
``Suggestion.agent``) and one method, :meth:`Teacher.label`. Adapters (``openai``, ``local``,
``python``) implement it; :class:`~terakoya.teachers.cache.CachedTeacher` wraps any of them.

A teacher may also carry ``params``: a mapping of the settings that change its answers
(temperature, max tokens, ...). They go into the cache key.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Teacher",
    "TeacherAnswer",
    "TeacherRequest",
    "from_probabilities",
    "from_text",
    "normalise",
    "parse_label",
    "teacher_params",
    "uniform",
]


@dataclass(frozen=True)
class TeacherRequest:
    """One item to label: ``key`` is the caller's id for it (an item id), ``messages`` the full chat prompt."""

    key: str
    text: str
    messages: tuple[dict[str, str], ...]
    labels: tuple[str, ...]


@dataclass
class TeacherAnswer:
    """What the teacher said about one request.

    ``probabilities`` covers exactly the request's labels and sums to 1 (uniform when nothing could be read).
    ``confidence_known`` is False when the probabilities were not measured (the label was parsed from text).
    ``answered`` is False when no answer came back at all (the call failed): such answers are never cached,
    and the item is tried again on the next run.
    """

    probabilities: dict[str, float]
    confidence_known: bool
    raw: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    error: str | None = None
    answered: bool = True

    @property
    def label(self) -> str | None:
        """The most probable label, or None when the answer is an error."""
        if self.error is not None or not self.probabilities:
            return None
        return max(self.probabilities, key=lambda k: self.probabilities[k])

    def to_json(self) -> dict[str, Any]:
        return {
            "probabilities": self.probabilities,
            "confidence_known": self.confidence_known,
            "raw": self.raw,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency_s": self.latency_s,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TeacherAnswer:
        return cls(
            probabilities={str(k): float(v) for k, v in data["probabilities"].items()},
            confidence_known=bool(data["confidence_known"]),
            raw=str(data.get("raw", "")),
            prompt_tokens=int(data.get("prompt_tokens", 0)),
            completion_tokens=int(data.get("completion_tokens", 0)),
            latency_s=float(data.get("latency_s", 0.0)),
            error=data.get("error"),
        )


@runtime_checkable
class Teacher(Protocol):
    """Anything that labels a batch of requests."""

    name: str

    def label(self, requests: Sequence[TeacherRequest]) -> list[TeacherAnswer]: ...


def teacher_params(teacher: Teacher) -> dict[str, Any]:
    """The settings that change a teacher's answers (its optional ``params`` attribute)."""
    params = getattr(teacher, "params", None)
    return dict(params) if isinstance(params, Mapping) else {}


# ----------------------------------------------------------------------------- reading answers

_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise(token: str) -> str:
    """Lower case, NFKC, without spaces or punctuation: ``" Positive."`` -> ``"positive"``."""
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", token)).casefold()


def uniform(labels: Sequence[str]) -> dict[str, float]:
    return {label: 1.0 / len(labels) for label in labels} if labels else {}


def from_probabilities(
    scores: Mapping[str, float], labels: Sequence[str], *, raw: str = "", **extra: Any
) -> TeacherAnswer:
    """An answer from non-negative scores over (some of) the labels, renormalised over all of them."""
    unknown = sorted(set(scores) - set(labels))
    if unknown:
        return TeacherAnswer(
            uniform(labels),
            False,
            raw,
            error=f"the answer names labels that are not declared: {', '.join(unknown)}",
            **extra,
        )
    values = {label: float(scores.get(label, 0.0)) for label in labels}
    if any(not math.isfinite(v) or v < 0 for v in values.values()):
        return TeacherAnswer(uniform(labels), False, raw, error="the answer has negative or non-finite scores", **extra)
    total = sum(values.values())
    if total <= 0:
        error = "the answer gives every label zero probability"
        return TeacherAnswer(uniform(labels), False, raw, error=error, **extra)
    return TeacherAnswer({k: v / total for k, v in values.items()}, True, raw, **extra)


def parse_label(text: str, labels: Sequence[str]) -> str | None:
    """The label a free-text answer names: exact, then the earliest label word in it, then a close spelling."""
    wanted = {normalise(label): label for label in labels}
    flat = normalise(text)
    if flat in wanted:
        return wanted[flat]
    words = [normalise(w) for w in text.split()]
    words = [w for w in words if w]
    for word in words:
        if word in wanted:
            return wanted[word]
    # labels of several words, or written without spaces (Japanese)
    hits = [(flat.find(key), label) for key, label in wanted.items() if key and key in flat]
    if hits:
        return min(hits)[1]
    for word in words[:3]:
        close = get_close_matches(word, list(wanted), n=1, cutoff=0.8)
        if close:
            return wanted[close[0]]
    return None


def from_text(text: str, labels: Sequence[str], **extra: Any) -> TeacherAnswer:
    """An answer read from free text: probability 1 on the named label, confidence unknown."""
    found = parse_label(text, labels)
    if found is None:
        shown = text.strip().replace("\n", " ")[:80]
        return TeacherAnswer(
            uniform(labels),
            False,
            text,
            error=f"no label found in the answer {shown!r}; expected one of: {', '.join(labels)}",
            **extra,
        )
    return TeacherAnswer({label: float(label == found) for label in labels}, False, text, **extra)
