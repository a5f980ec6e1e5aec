"""Task kinds: an explicit, versioned registry.

``task.kind`` in terakoya.toml names one (``classify.v1``). The registry is the literal table below
plus kinds added by an explicit :func:`register` call (a plug-in, or a test): importing a module never
registers anything. :func:`kind_for` is how every stage finds the project's kind.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from terakoya.errors import ConfigError
from terakoya.kinds.base import AnswerValue, TaskKind
from terakoya.kinds.classify import ClassifyKind
from terakoya.kinds.generate import GenerateKind

if TYPE_CHECKING:
    from terakoya.settings import Settings

__all__ = [
    "PLANNED",
    "AnswerValue",
    "TaskKind",
    "available",
    "get_kind",
    "is_generative",
    "kind_for",
    "register",
    "registered",
]

_BUILTIN: dict[str, TaskKind] = {"classify.v1": ClassifyKind(), "generate.v1": GenerateKind()}
_EXTRA: dict[str, TaskKind] = {}
#: kinds that are designed but not available yet: naming one is a clear error, not a silent fallback
PLANNED: dict[str, str] = {}


def available() -> list[str]:
    """The names of the kinds a project can use now."""
    return sorted({**_BUILTIN, **_EXTRA})


def get_kind(name: str) -> TaskKind:
    """The kind called ``name``; a ConfigError naming the available ones otherwise."""
    kind = _EXTRA.get(name) or _BUILTIN.get(name)
    if kind is not None:
        return kind
    names = ", ".join(available())
    if name in PLANNED:
        raise ConfigError(f"task kind {name!r} ({PLANNED[name]}) is not available yet; available kinds: {names}")
    raise ConfigError(f"task kind {name!r} is unknown; set task.kind in terakoya.toml to one of: {names}")


def is_generative(kind: TaskKind) -> bool:
    """Whether the kind's items are answered in writing (its stages are those of :mod:`terakoya.generation`)."""
    return bool(kind.generative)


def kind_for(settings: Settings) -> TaskKind:
    """The project's kind, checked against its settings."""
    kind = get_kind(settings.task.kind)
    kind.check(settings)
    return kind


def register(kind: TaskKind) -> None:
    """Make ``kind`` available under ``kind.name`` (versioned names: ``name.vN``); built-in names are taken."""
    if kind.name in _BUILTIN:
        raise ConfigError(f"task kind {kind.name!r} is built in; give yours another name or version")
    if "." not in kind.name or not kind.name.rsplit(".", 1)[1].startswith("v"):
        raise ConfigError(f"task kind name {kind.name!r} has no version; name it like 'mykind.v1'")
    _EXTRA[kind.name] = kind


@contextmanager
def registered(kind: TaskKind) -> Iterator[TaskKind]:
    """``register`` for the length of a ``with`` block (tests)."""
    register(kind)
    try:
        yield kind
    finally:
        _EXTRA.pop(kind.name, None)
