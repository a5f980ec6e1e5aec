"""The base of the report's typed sections: a record whose JSON is its fields, and plain JSON values.

:class:`Record` is what every section of :class:`terakoya.evaluation.sections.Report` builds on (and the
slices and verify-vs-blind sections, which live beside their computation); :func:`json_safe` turns numpy
scalars, NaN and paths into what report.json can hold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

__all__ = ["OPTIONAL", "Json", "Record", "json_safe"]

Json = dict[str, Any]


def json_safe(value: Any) -> Any:
    """Plain JSON: numpy scalars to Python, NaN and infinities to None, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, Path):
        return str(value)
    return value


class Record:
    """A section whose JSON is its fields in their order, records within it as dicts, and a field with
    :data:`OPTIONAL` metadata left out while it is None; ``from_json`` gives a missing key its default, and
    turns the dicts of a field with ``{"of": SomeRecord}`` metadata into records."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    def to_json(self) -> Json:
        out: Json = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None or not f.metadata.get("optional"):
                out[f.name] = _plain(value)
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Self:
        values: Json = {}
        for f in fields(cls):
            if f.name not in d and (f.default is not MISSING or f.default_factory is not MISSING):
                continue
            value, kind = d[f.name], f.metadata.get("of")
            if kind is not None and value is not None:
                value = [kind.from_json(v) for v in value] if isinstance(value, list) else kind.from_json(value)
            values[f.name] = value
        return cls(**values)


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


#: metadata of a field that report.json leaves out while it is None
OPTIONAL = {"optional": True}
