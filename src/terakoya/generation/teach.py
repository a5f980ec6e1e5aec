"""``teach`` for a generation project: the teacher writes its answers (and extra samples) for every prompt.

Each answer is a row of ``suggestions`` (agent kind ``teacher``) without a label: ``value`` holds the answer's
``text``, every sample, their ``disagreement`` (1 - mean pairwise similarity; routing reads it) and the answer's
``mean_logprob``; ``confidence`` is exp(mean log-probability) where the endpoint gave log-probabilities. Batches
are committed one by one and every call is cached, so a killed run resumes where it stopped and pays nothing
twice. The prompt version covers the guidelines and the approved glossary (both go into the system message).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable

from sqlalchemy import select

from terakoya.generation.teachers import CachedWriter, Writer, make_writer, recorded_answers
from terakoya.kinds.generate import GenerateKind, system_prompt
from terakoya.settings import Settings
from terakoya.storage.db import Database
from terakoya.storage.models import Item, Suggestion
from terakoya.storage.queries import current_suggestion_ids
from terakoya.teachers.prompts import Prompt, approved_glossary
from terakoya.teachers.teaching import TeachReport

__all__ = ["TEMPLATE", "generation_prompt", "teach_generate"]

#: the id of the generation prompt (system message from guidelines and glossary, then the conversation)
TEMPLATE = "gen-v1"


def generation_prompt(db: Database, project_id: int, settings: Settings) -> Prompt:
    """The system message every prompt gets now, versioned by what it holds."""
    system = system_prompt(settings, approved_glossary(db, project_id, settings)) or ""
    digest = hashlib.sha256(system.encode("utf-8")).hexdigest()[:10]
    return Prompt(version=f"{TEMPLATE}-{digest}", system=system, examples=())


def teach_generate(
    db: Database,
    project_id: int,
    settings: Settings,
    *,
    writer: Writer | None = None,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TeachReport:
    """Ask the teacher for an answer to every prompt that has none from it under the current prompt version."""
    from terakoya.generation.metrics import sample_disagreement

    started = time.perf_counter()
    prompt = generation_prompt(db, project_id, settings)
    with db.session() as s:
        rows = s.execute(
            select(Item.id, Item.text, Item.meta).where(Item.project_id == project_id).order_by(Item.id)
        ).all()
    if writer is None:
        recorded = None
        if settings.teacher.kind == "recorded":
            recorded = recorded_answers([(r.id, r.meta or {}) for r in rows], settings.generate.recorded_column)
        writer = make_writer(settings, recorded)
    with db.session() as s:
        current = current_suggestion_ids(project_id, "teacher").subquery()
        done = set(
            s.scalars(
                select(Suggestion.item_id)
                .join(current, Suggestion.id == current.c.sid)
                .where(Suggestion.agent == writer.name, Suggestion.prompt_version == prompt.version)
            )
        )
    todo = [(r.id, r.text) for r in rows if r.id not in done]
    if limit is not None:
        todo = todo[:limit]
    cached_writer = CachedWriter(writer, db, prompt_version=prompt.version)
    kind = GenerateKind()
    price_in, price_out = settings.teacher.price_input_per_million, settings.teacher.price_output_per_million
    answered = calls = cached = errors = 0
    cost = 0.0
    batch = max(1, settings.teacher.batch_size)
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        requests = kind.requests(prompt, settings, chunk)
        results = cached_writer.write_cached(requests)
        with db.session() as s:
            for (item_id, _), (written, key, was_cached) in zip(chunk, results, strict=True):
                if not written.answered:
                    errors += 1
                    continue
                main = written.samples[0] if written.samples else None
                price = (
                    0.0
                    if was_cached
                    else (written.prompt_tokens * price_in + written.completion_tokens * price_out) / 1e6
                )
                cost += price
                cached += was_cached
                calls += not was_cached
                if written.error or main is None:
                    errors += 1
                known = main is not None and main.mean_logprob is not None
                s.add(
                    Suggestion(
                        item_id=item_id,
                        agent_kind="teacher",
                        agent=writer.name,
                        prompt_version=prompt.version,
                        label=None,
                        probabilities={},
                        confidence=math.exp(main.mean_logprob)
                        if known and main and main.mean_logprob is not None
                        else None,
                        confidence_known=known,
                        value=None
                        if main is None
                        else {
                            "text": main.text,
                            "samples": [x.to_json() for x in written.samples],
                            "disagreement": sample_disagreement([x.text for x in written.samples]),
                            "mean_logprob": main.mean_logprob,
                        },
                        raw_output=main.text if main else "",
                        prompt_tokens=written.prompt_tokens,
                        completion_tokens=written.completion_tokens,
                        latency_ms=written.latency_s * 1000,
                        cost_usd=price,
                        cached=was_cached,
                        call_key=key,
                        error=written.error if main is None else None,
                    )
                )
                answered += main is not None
        if progress is not None:
            progress(min(start + batch, len(todo)), len(todo))
    return TeachReport(
        labeled=answered,
        calls=calls,
        cached=cached,
        errors=errors,
        seconds=time.perf_counter() - started,
        cost_usd=cost,
        model=writer.name,
        prompt_version=prompt.version,
    )
