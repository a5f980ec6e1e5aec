"""``teach``: the teacher labels every item, with a probability for each label.

Every item (pool and test) without a suggestion from this model under this prompt version is sent, in
batches of ``teacher.batch_size``; each batch is committed before the next starts, so a run that is
killed resumes where it stopped, and stored calls are never made again (the cache). ``plan_teach``
says what a run would do and cost, spending nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from terakoya.errors import TeacherError
from terakoya.settings import Settings
from terakoya.storage.db import Database
from terakoya.storage.models import Item, Suggestion
from terakoya.storage.queries import current_suggestion_ids
from terakoya.teachers import make_teacher
from terakoya.teachers.base import Teacher, TeacherRequest
from terakoya.teachers.cache import CachedAnswer, CachedTeacher, stored_keys
from terakoya.teachers.prompts import Prompt, approved_glossary, build_prompt, collect_examples

__all__ = ["TeachPlan", "TeachReport", "build_requests", "current_prompt", "plan_teach", "teach"]

#: characters per token, for estimates before any call is made (a rough rule for English text)
CHARS_PER_TOKEN = 4


@dataclass
class TeachPlan:
    items: int
    to_call: int
    cached: int
    already_labeled: int
    est_prompt_tokens: int
    est_completion_tokens: int
    est_cost_usd: float
    model: str
    prompt_version: str


@dataclass
class TeachReport:
    labeled: int
    calls: int
    cached: int
    errors: int
    seconds: float
    cost_usd: float
    model: str
    prompt_version: str
    #: what calibration did, per (model, prompt version)
    calibration: list[dict[str, Any]] = field(default_factory=list)


def current_prompt(db: Database, project_id: int, settings: Settings) -> Prompt:
    """The prompt the teacher gets now: labels, guidelines, approved glossary and few-shot examples."""
    return build_prompt(
        settings,
        glossary=approved_glossary(db, project_id, settings),
        examples=collect_examples(db, project_id, settings),
    )


def _pending(
    db: Database,
    project_id: int,
    model: str,
    prompt_version: str,
    *,
    refresh: bool = False,
    below: float | None = None,
) -> tuple[list[tuple[int, str]], int, int]:
    """(items still to label, in id order; how many are already labelled; items in all).

    An item the teacher (this model) has answered keeps that answer, whatever prompt version it was
    asked under: new few-shot examples or glossary terms do not make the teacher label everything
    again. ``refresh`` asks again for the items not yet answered under the *current* prompt version —
    only those whose current teacher confidence is below ``below`` when it is given.
    """
    with db.session() as s:
        items = s.execute(select(Item.id, Item.text).where(Item.project_id == project_id).order_by(Item.id)).all()
        answered = (
            select(Suggestion.item_id, Suggestion.prompt_version)
            .join(Item, Item.id == Suggestion.item_id)
            .where(
                Item.project_id == project_id,
                Suggestion.agent_kind == "teacher",
                Suggestion.agent == model,
                # a failed call (no call key) does not count: the item is tried again
                Suggestion.call_key.is_not(None),
            )
        )
        rows = s.execute(answered).all()
        confidence: dict[int, float | None] = {}
        if refresh and below is not None:
            newest = current_suggestion_ids(project_id, "teacher", agent=model).subquery()
            confidence = dict(
                s.execute(select(Suggestion.item_id, Suggestion.confidence).join(newest, Suggestion.id == newest.c.sid))
            )
    done = {item_id for item_id, version in rows if not refresh or version == prompt_version}
    if refresh and below is not None:
        sure = {i for i, c in confidence.items() if c is not None and c >= below}
        done |= sure & {item_id for item_id, _ in rows}
    todo = [(item_id, text) for item_id, text in items if item_id not in done]
    return todo, len(items) - len(todo), len(items)


def build_requests(prompt: Prompt, settings: Settings, items: Sequence[tuple[int, str]]) -> list[TeacherRequest]:
    """The teacher requests for ``(item id, text)`` pairs, as the project's task kind writes them."""
    from terakoya.kinds import kind_for

    return kind_for(settings).requests(prompt, settings, items)


def _cost(settings: Settings, prompt_tokens: int, completion_tokens: int) -> float:
    t = settings.teacher
    return (prompt_tokens * t.price_input_per_million + completion_tokens * t.price_output_per_million) / 1e6


def plan_teach(
    db: Database,
    project_id: int,
    settings: Settings,
    *,
    limit: int | None = None,
    refresh: bool = False,
    below: float | None = None,
) -> TeachPlan:
    """What ``teach`` would do: calls to make, answers already cached, tokens (chars/4) and cost. Spends nothing."""
    teacher = make_teacher(settings.teacher)
    prompt = current_prompt(db, project_id, settings)
    todo, already, total = _pending(db, project_id, teacher.name, prompt.version, refresh=refresh, below=below)
    if limit is not None:
        todo = todo[: max(limit, 0)]
    cache = CachedTeacher(teacher, db, prompt_version=prompt.version)
    requests = build_requests(prompt, settings, todo)
    keys = [cache.key(r) for r in requests]
    stored = stored_keys(db, keys)
    to_call = [r for r, k in zip(requests, keys, strict=True) if k not in stored]
    prompt_chars = sum(len(m["content"]) for r in to_call for m in r.messages)
    est_prompt = math.ceil(prompt_chars / CHARS_PER_TOKEN)
    per_answer = max(1, math.ceil(max(len(n) for n in settings.label_names) / CHARS_PER_TOKEN))
    est_completion = per_answer * len(to_call)
    return TeachPlan(
        items=total,
        to_call=len(to_call),
        cached=len(requests) - len(to_call),
        already_labeled=already,
        est_prompt_tokens=est_prompt,
        est_completion_tokens=est_completion,
        est_cost_usd=_cost(settings, est_prompt, est_completion),
        model=teacher.name,
        prompt_version=prompt.version,
    )


def _suggestion(settings: Settings, item_id: int, prompt_version: str, model: str, result: CachedAnswer) -> Suggestion:
    from terakoya.kinds import kind_for

    answer = result.answer
    read = kind_for(settings).read_suggestion(answer)
    return Suggestion(
        item_id=item_id,
        agent_kind="teacher",
        agent=model,
        prompt_version=prompt_version,
        label=read.label,
        probabilities=read.probabilities,
        confidence=read.confidence,
        confidence_known=read.confidence_known,
        value=read.value,
        raw_output=answer.raw,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        latency_ms=answer.latency_s * 1000.0,
        cost_usd=0.0 if result.cached else _cost(settings, answer.prompt_tokens, answer.completion_tokens),
        cached=result.cached,
        call_key=result.key if answer.answered else None,
        error=answer.error,
    )


def teach(
    db: Database,
    project_id: int,
    settings: Settings,
    *,
    teacher: Teacher | None = None,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    refresh: bool = False,
    below: float | None = None,
) -> TeachReport:
    """Label every item the teacher has not labelled yet (``refresh``: not under the current prompt, optionally
    only where its confidence is below ``below``); commit after every batch; then calibrate."""
    began = time.perf_counter()
    if teacher is None:
        teacher = make_teacher(settings.teacher)
    inner = teacher.inner if isinstance(teacher, CachedTeacher) else teacher
    prompt = current_prompt(db, project_id, settings)
    cache = CachedTeacher(inner, db, prompt_version=prompt.version)
    todo, _already, _total = _pending(db, project_id, cache.name, prompt.version, refresh=refresh, below=below)
    if limit is not None:
        todo = todo[: max(limit, 0)]
    size = settings.teacher.batch_size
    report = TeachReport(0, 0, 0, 0, 0.0, 0.0, cache.name, prompt.version)
    if progress is not None:
        progress(0, len(todo))
    for start in range(0, len(todo), size):
        batch = todo[start : start + size]
        results = cache.label_cached(build_requests(prompt, settings, batch))
        if all(not r.answer.answered for r in results):
            first = results[0].answer.error
            raise TeacherError(
                f"every request in a batch of {len(batch)} failed, so teaching stopped "
                f"({report.labeled} items labelled before; run teach again to go on): {first}"
            )
        rows = [
            _suggestion(settings, item_id, prompt.version, cache.name, r)
            for (item_id, _text), r in zip(batch, results, strict=True)
        ]
        with db.session() as s:
            s.add_all(rows)
        for row in rows:
            report.labeled += row.error is None
            report.errors += row.error is not None
            report.cached += row.cached
            report.cost_usd += row.cost_usd
        report.calls = cache.calls
        if progress is not None:
            progress(start + len(batch), len(todo))
    # calibration re-uses the stored log-probabilities: it costs no call
    from terakoya.teachers.calibrating import calibrate_teacher

    report.calibration = calibrate_teacher(db, project_id, settings).groups
    report.seconds = time.perf_counter() - began
    return report
