"""``route`` for a generation project: which prompts experts see first, and as which task.

A pool prompt's value is the weighted sum of what is known of it (``[generate]`` weights):

- ``disagreement``: how far the teacher's samples differ from each other (1 - mean pairwise chrF similarity);
- ``low_logprob``: 1 - exp(mean token log-probability) of the teacher's answer, where the endpoint gave them;
- ``student``: how far the newest student's answer differs from the teacher's.

Prompts whose answer most raters rejected without correcting it come first, as ``correct`` tasks (the expert
writes the answer as it should be). ``routing.audit_share`` of the routed prompts are drawn at random instead
(the audit: it measures the teacher where it looked sure), and ``routing.strategy = "random"`` draws them all
at random (the baseline). The top ``generate.compare_share`` of the routed prompts whose samples differ become
blind comparisons of two teacher samples (a preference pair straight away); the others are ``rate`` tasks,
where the expert can also correct the answer in place. ``routing.gold_share`` of the batch are check tasks on
held-out test prompts with a reference answer (the reference itself, or a decoy: :func:`terakoya.kinds.generate.
check_role`), scored by quality control like every kind's gold checks; ``generate.evaluation_share`` goes, once a
student exists, to test prompts it answered: blind comparisons of its answer with the teacher's, counted in the
report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import insert, select

from terakoya.generation.metrics import similarity
from terakoya.routing import RouteReport, start_run
from terakoya.settings import Settings
from terakoya.storage.db import Database
from terakoya.storage.models import Item, RouteRun, Suggestion, Task
from terakoya.storage.queries import current_suggestion_ids

__all__ = ["Candidate", "candidates", "route_generate", "score"]


@dataclass(frozen=True)
class Candidate:
    item_id: int
    suggestion_id: int
    samples: int
    distinct: bool
    disagreement: float | None
    low_logprob: float | None
    student: float | None


def score(c: Candidate, settings: Settings) -> tuple[float, dict[str, Any]]:
    """A candidate's value and its parts (what the task records)."""
    g = settings.generate
    parts = {"disagreement": c.disagreement, "low_logprob": c.low_logprob, "student": c.student}
    weights = {"disagreement": g.disagreement_weight, "low_logprob": g.logprob_weight, "student": g.student_weight}
    value = sum(weights[k] * v for k, v in parts.items() if v is not None)
    return float(value), {k: v for k, v in parts.items() if v is not None}


def current_answers(db: Database, project_id: int, agent_kind: str, split: str) -> dict[int, Suggestion]:
    """item id -> its current suggestion of ``agent_kind`` that holds a written answer, in ``split``."""
    with db.session() as s:
        ids = current_suggestion_ids(project_id, agent_kind, split=split).subquery()
        rows = s.scalars(select(Suggestion).join(ids, Suggestion.id == ids.c.sid)).all()
        for row in rows:
            s.expunge(row)
    return {r.item_id: r for r in rows if r.value and isinstance(r.value.get("text"), str)}


def candidates(db: Database, project_id: int, teacher: dict[int, Suggestion] | None = None) -> list[Candidate]:
    """Pool prompts with a teacher answer and no task yet, with what routing reads of them (``teacher``: the
    teacher's current pool answers, when the caller has read them)."""
    teacher = current_answers(db, project_id, "teacher", "pool") if teacher is None else teacher
    student = current_answers(db, project_id, "student", "pool")
    with db.session() as s:
        asked = set(s.scalars(select(Task.item_id).where(Task.project_id == project_id)))
    out = []
    for item_id, sug in sorted(teacher.items()):
        if item_id in asked:
            continue
        value = sug.value or {}
        samples = [str(x.get("text", "")) for x in value.get("samples", [])]
        mean = value.get("mean_logprob")
        other = student.get(item_id)
        out.append(
            Candidate(
                item_id=item_id,
                suggestion_id=sug.id,
                samples=len(samples),
                distinct=len({x.strip() for x in samples}) > 1,
                disagreement=float(value["disagreement"])
                if len(samples) > 1 and value.get("disagreement") is not None
                else None,
                low_logprob=1.0 - math.exp(float(mean)) if mean is not None else None,
                student=1.0 - similarity(str(other.value["text"]), str(value["text"]))
                if other is not None and other.value
                else None,
            )
        )
    return out


def route_generate(
    db: Database,
    project_id: int,
    settings: Settings,
    *,
    budget_items: int | None = None,
    budget_minutes: float | None = None,
    strategy: str | None = None,
    seed: int | None = None,
) -> RouteReport:
    """Queue rate and compare tasks for the most useful prompts, audits among them, and student comparisons."""
    cfg = settings.routing
    budget, strategy, seed, rng, notes = start_run(settings, budget_items, budget_minutes, strategy, seed)
    teacher = current_answers(db, project_id, "teacher", "pool")
    pool = candidates(db, project_id, teacher)
    evaluation = _evaluation_pairs(db, project_id, round(settings.generate.evaluation_share * budget), rng)
    checks = _checks(db, project_id, round(cfg.gold_share * budget), rng)
    rewrite = _rejected(db, project_id, teacher)[: max(0, budget - len(evaluation) - len(checks))]
    routed_budget = max(0, budget - len(evaluation) - len(checks) - len(rewrite))
    order: list[tuple[Candidate, str, float, dict[str, Any]]] = []
    scored = [(c, *score(c, settings)) for c in pool]
    if strategy == "random":
        picks = rng.permutation(len(scored))[:routed_budget]
        order = [(scored[i][0], "random", scored[i][1], scored[i][2]) for i in picks]
    else:
        audits = min(len(scored), round(cfg.audit_share * routed_budget))
        audit_pos = set(int(i) for i in rng.permutation(len(scored))[:audits])
        order = [(scored[i][0], "audit", scored[i][1], scored[i][2]) for i in sorted(audit_pos)]
        rest = sorted((i for i in range(len(scored)) if i not in audit_pos), key=lambda i: (-scored[i][1], i))
        order += [(scored[i][0], "routed", scored[i][1], scored[i][2]) for i in rest[: routed_budget - audits]]
    if routed_budget > len(pool):
        notes.append(f"the budget asked for {routed_budget} prompts; {len(pool)} had a teacher answer and no task yet")
    # the most disputed of the routed prompts whose samples differ: a blind comparison of two samples
    comparable = sorted(
        (n for n, (c, reason, *_) in enumerate(order) if c.distinct and reason == "routed"),
        key=lambda n: -(order[n][0].disagreement or 0.0),
    )
    compare = set(comparable[: round(settings.generate.compare_share * len(order))])
    tasks: list[dict[str, Any]] = []
    for n, (c, reason, value, parts) in enumerate(order):
        comps: dict[str, Any] = {**parts, "suggestion_id": c.suggestion_id}
        kind = "rate"
        if n in compare:
            kind = "compare"
            comps["pair"] = ["teacher:0", "teacher:1"]
            comps["order"] = [int(x) for x in rng.permutation(2)]
        tasks.append({"item_id": c.item_id, "reason": reason, "score": value, "components": comps, "kind": kind})
    for item_id, suggestion_id in rewrite:
        tasks.append(
            {
                "item_id": item_id,
                "reason": "rejected",
                "score": 0.0,
                "kind": "correct",
                "components": {"suggestion_id": suggestion_id},
            }
        )
    for item_id, comps in checks:
        tasks.append({"item_id": item_id, "reason": "gold", "score": 0.0, "kind": "rate", "components": comps})
    for item_id, teacher_id, student_id in evaluation:
        tasks.append(
            {
                "item_id": item_id,
                "reason": "evaluation",
                "score": 0.0,
                "kind": "compare",
                "components": {
                    "pair": ["teacher:0", "student"],
                    "order": [int(x) for x in rng.permutation(2)],
                    "suggestion_id": teacher_id,
                    "student_suggestion_id": student_id,
                },
            }
        )
    if len(tasks) > 1:
        tasks = [tasks[int(i)] for i in rng.permutation(len(tasks))]
    params = {"seed": seed, "answers_per_item": cfg.answers_per_item, "notes": notes, "kind": "generate.v1"}
    with db.session() as s:
        run = RouteRun(project_id=project_id, strategy=strategy, budget_items=budget, params=params)
        s.add(run)
        s.flush()
        if tasks:
            s.execute(
                insert(Task),
                [
                    {
                        "project_id": project_id,
                        "route_run_id": run.id,
                        "status": "queued",
                        "priority": rank,
                        "answers_wanted": cfg.answers_per_item,
                        **t,
                    }
                    for rank, t in enumerate(tasks)
                ],
            )
        run.routed = len(order) + len(rewrite)
        run.gold = len(checks)
        run_id = run.id
    return RouteReport(
        route_run_id=run_id,
        strategy=strategy,
        budget_items=budget,
        routed=len(order) + len(rewrite),
        gold=len(checks),
        auto_accepted=0,
        expert_minutes=len(tasks) * cfg.answers_per_item * cfg.seconds_per_item / 60.0,
        evaluation=len(evaluation),
        skipped_no_teacher=0,
        eligible=len(pool),
        notes=notes,
        audit=sum(1 for _, reason, *_ in order if reason == "audit"),
    )


def _rejected(db: Database, project_id: int, teacher: dict[int, Suggestion]) -> list[tuple[int, int]]:
    """Pool prompts whose teacher answer most raters rejected and nobody corrected, with no correct task yet:
    (item, teacher suggestion), oldest first. They come first in a batch: a correction makes a target and a
    preference pair where there is none."""
    from terakoya.generation.training import verdicts

    with db.session() as s:
        asked = set(s.scalars(select(Task.item_id).where(Task.project_id == project_id, Task.kind == "correct")))
    said = verdicts(db, project_id)
    return [
        (item_id, teacher[item_id].id)
        for item_id, v in sorted(said.items())
        if v.outcome == "reject" and item_id not in asked and item_id in teacher
    ]


def _checks(db: Database, project_id: int, target: int, rng: np.random.Generator) -> list[tuple[int, dict[str, Any]]]:
    """Up to ``target`` check tasks on test prompts with a reference that have none yet, drawn at random."""
    from terakoya.generation.tasks import check_components

    if target <= 0:
        return []
    with db.session() as s:
        asked = select(Task.item_id).where(Task.project_id == project_id, Task.reason.in_(("gold", "qualification")))
        ids = list(
            s.scalars(
                select(Item.id)
                .where(Item.project_id == project_id, Item.split == "test", Item.gold_label.is_not(None))
                .where(Item.id.not_in(asked))
                .order_by(Item.id)
            )
        )
        picks = [ids[int(i)] for i in rng.permutation(len(ids))[:target]]
        out = []
        for item_id in picks:
            item = s.get(Item, item_id)
            assert item is not None
            out.append((item_id, check_components(s, item)))
    return out


def _evaluation_pairs(
    db: Database, project_id: int, target: int, rng: np.random.Generator
) -> list[tuple[int, int, int]]:
    """Up to ``target`` test prompts with a teacher and a student answer and no comparison yet: (item, teacher
    suggestion, student suggestion)."""
    if target <= 0:
        return []
    teacher = current_answers(db, project_id, "teacher", "test")
    student = current_answers(db, project_id, "student", "test")
    with db.session() as s:
        asked = set(s.scalars(select(Task.item_id).where(Task.project_id == project_id, Task.reason == "evaluation")))
        test_ids = set(s.scalars(select(Item.id).where(Item.project_id == project_id, Item.split == "test")))
    ids = sorted(i for i in teacher.keys() & student.keys() & test_ids if i not in asked)
    picks = [ids[int(i)] for i in rng.permutation(len(ids))[:target]]
    return [(i, teacher[i].id, student[i].id) for i in picks]
