"""Caching is a wrapper: :class:`CachedTeacher` wraps any teacher and stores every answer in ``teacher_calls``.

The key is the sha256 of (model, prompt version, messages, labels, params). Answers that came back from
the model are stored, garbage included (asking again would give the same); calls that failed are not, so
they are tried again next time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from terakoya.storage.db import Database
from terakoya.storage.models import TeacherCall
from terakoya.teachers.base import Teacher, TeacherAnswer, TeacherRequest, teacher_params

__all__ = ["CachedAnswer", "CachedTeacher", "call_key", "stored_keys"]

_CHUNK = 500  # keys per IN (...) query, well under every backend's parameter limit


def call_key(model: str, prompt_version: str, request: TeacherRequest, params: Mapping[str, Any]) -> str:
    payload = {
        "model": model,
        "prompt_version": prompt_version,
        "messages": list(request.messages),
        "labels": list(request.labels),
        "params": dict(params),
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def stored_keys(db: Database, keys: Iterable[str]) -> set[str]:
    """Which of ``keys`` are already in ``teacher_calls``."""
    wanted = list(dict.fromkeys(keys))
    found: set[str] = set()
    with db.session() as s:
        for i in range(0, len(wanted), _CHUNK):
            chunk = wanted[i : i + _CHUNK]
            found.update(s.scalars(select(TeacherCall.key).where(TeacherCall.key.in_(chunk))))
    return found


@dataclass
class CachedAnswer:
    answer: TeacherAnswer
    key: str
    cached: bool


class CachedTeacher:
    """Answers from ``teacher_calls`` when stored; otherwise asks ``inner`` and stores what comes back."""

    def __init__(self, inner: Teacher, db: Database, *, prompt_version: str = "") -> None:
        self.inner = inner
        self.db = db
        self.prompt_version = prompt_version
        self.name = inner.name
        self.params = teacher_params(inner)
        #: calls made to the inner teacher (not answered from the cache) since this wrapper was made
        self.calls = 0

    def key(self, request: TeacherRequest) -> str:
        return call_key(self.name, self.prompt_version, request, self.params)

    def label(self, requests: Sequence[TeacherRequest]) -> list[TeacherAnswer]:
        return [c.answer for c in self.label_cached(requests)]

    def label_cached(self, requests: Sequence[TeacherRequest]) -> list[CachedAnswer]:
        keys = [self.key(r) for r in requests]
        stored = self._load(keys)
        missing = [i for i, k in enumerate(keys) if k not in stored]
        fresh: dict[int, TeacherAnswer] = {}
        if missing:
            answers = self.inner.label([requests[i] for i in missing])
            self.calls += len(missing)
            fresh = dict(zip(missing, answers, strict=True))
            self._store([(keys[i], requests[i], a) for i, a in fresh.items() if a.answered])
        out = []
        for i, key in enumerate(keys):
            if i in fresh:
                out.append(CachedAnswer(fresh[i], key, cached=False))
            else:
                out.append(CachedAnswer(stored[key], key, cached=True))
        return out

    def _load(self, keys: Sequence[str]) -> dict[str, TeacherAnswer]:
        out: dict[str, TeacherAnswer] = {}
        unique = list(dict.fromkeys(keys))
        with self.db.session() as s:
            for i in range(0, len(unique), _CHUNK):
                rows = s.execute(
                    select(TeacherCall.key, TeacherCall.response).where(TeacherCall.key.in_(unique[i : i + _CHUNK]))
                ).all()
                out.update({key: TeacherAnswer.from_json(response) for key, response in rows})
        return out

    def _store(self, rows: Sequence[tuple[str, TeacherRequest, TeacherAnswer]]) -> None:
        if not rows:
            return
        with self.db.session() as s:
            for key, request, answer in dict((r[0], r) for r in rows).values():
                call = TeacherCall(
                    key=key,
                    model=self.name,
                    prompt_version=self.prompt_version,
                    request={"messages": list(request.messages), "labels": list(request.labels), "params": self.params},
                    response=answer.to_json(),
                )
                try:
                    # a savepoint per row: another process may have stored the same key meanwhile
                    with s.begin_nested():
                        s.add(call)
                except IntegrityError:
                    continue
