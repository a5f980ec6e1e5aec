"""``evaluate`` for a generation project: the student's answers vs the teacher's on the held-out test prompts.

- **judged by experts**: the blind comparisons of the student's answer with the teacher's (``evaluation`` tasks,
  queued by ``route`` once a student exists), counted as win / tie / loss for the student with an interval;
- **judged by a model** (``generate.judge = "teacher"``): the project's teacher compares the two answers twice,
  in both orders, and a verdict that changes with the order counts as a tie (order bias cancels);
- **reference-based**: chrF of each answer against the reference answer, where the prompt came with one;
- **speed and size**: the student's tokens per second and latency per answer on this machine, its parameters and
  its folder's size; the teacher's from its recorded calls (not measured for a recorded teacher);
- **examples** of where the student and the teacher went wrong (lowest chrF, comparisons the student lost);
- **agreement on ratings**: per rubric line, how far two people's scores of the same answer lie apart.

The report is ``report.json`` and ``report.html`` in ``reports/<time>/``, copied to ``reports/latest/`` (what the
web app shows), or in ``out_dir``.
"""

from __future__ import annotations

import html
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from terakoya.errors import ConfigError, StateError
from terakoya.generation.metrics import chrf, throughput, win_tie_loss
from terakoya.generation.routing import current_answers
from terakoya.kinds.generate import messages_of
from terakoya.quality.aggregate import live_expert_answer
from terakoya.settings import Settings
from terakoya.storage.db import Database
from terakoya.storage.models import Answer, Item, StudentRun, Suggestion, Task

__all__ = ["GenerationReport", "evaluate_generate", "expert_outcomes", "rating_agreement", "verdict"]

#: answers the student writes one at a time to time itself
TIMING_PROMPTS = 20
EXAMPLES = 5


@dataclass
class GenerationReport:
    """What :func:`evaluate_generate` returns: the report's data and where its files were written."""

    data: dict[str, Any]
    out_dir: Path
    json_path: Path
    html_path: Path


def rating_agreement(db: Database, project_id: int) -> dict[str, dict[str, float | int]]:
    """How closely people who rated the same answer agree, per rubric line: over every pair of live ratings of
    one answer by two people, the mean absolute difference (1-5 scale), the share that are equal and the share
    within one point."""
    with db.session() as s:
        rows = s.execute(
            select(Answer.task_id, Answer.person_id, Answer.value)
            .join(Item, Item.id == Answer.item_id)
            .where(Item.project_id == project_id, Answer.kind == "rate", live_expert_answer())
            .order_by(Answer.id)
        ).all()
    by_task: dict[int, dict[int, dict[str, int]]] = {}
    for task_id, person_id, value in rows:
        if task_id is not None and (value or {}).get("ratings"):
            by_task.setdefault(int(task_id), {})[int(person_id)] = value["ratings"]  # the newest per person
    diffs: dict[str, list[int]] = {}
    for ratings in by_task.values():
        people = list(ratings.values())
        for i in range(len(people)):
            for j in range(i + 1, len(people)):
                for name in people[i].keys() & people[j].keys():
                    diffs.setdefault(name, []).append(abs(int(people[i][name]) - int(people[j][name])))
    return {
        name: {
            "pairs": len(d),
            "mean_abs_difference": statistics.fmean(d),
            "equal": sum(x == 0 for x in d) / len(d),
            "within_one": sum(x <= 1 for x in d) / len(d),
        }
        for name, d in sorted(diffs.items())
    }


def expert_outcomes(db: Database, project_id: int) -> dict[int, list[str]]:
    """test item -> the outcomes of the experts' blind comparisons there, for the student (win, tie, loss,
    both_bad), one per live answer."""
    with db.session() as s:
        rows = s.execute(
            select(Answer.item_id, Answer.label)
            .join(Task, Task.id == Answer.task_id)
            .where(Task.project_id == project_id, Task.reason == "evaluation", Answer.kind == "compare")
            .where(live_expert_answer())
            .order_by(Answer.id)
        ).all()
    out: dict[int, list[str]] = {}
    for item_id, label in rows:
        outcome = {"student": "win", "tie": "tie", "both_bad": "both_bad"}.get(str(label), "loss")
        out.setdefault(item_id, []).append(outcome)
    return out


def _answers_of(
    db: Database, run_id: str, items: Sequence[Any], student: Any, max_new_tokens: int, *, stored: bool
) -> dict[int, str]:
    """item id -> the student's answer to each test prompt: the run's stored answers (those it lacks written and
    stored now) when ``stored``, else written now and kept nowhere (a student from another folder)."""
    if not stored:
        written = student.generate([messages_of(i.text) for i in items])
        return {i.id: out.text for i, out in zip(items, written, strict=True)}

    def read() -> dict[int, str]:
        with db.session() as s:
            rows = s.execute(
                select(Suggestion.item_id, Suggestion.value).where(
                    Suggestion.agent_kind == "student", Suggestion.agent == run_id
                )
            ).all()
        return {int(i): str((v or {}).get("text", "")) for i, v in rows}

    mine = read()
    missing = [(i.id, i.text) for i in items if i.id not in mine]
    if missing:
        from terakoya.generation.training import student_answers

        student_answers(db, run_id, student, missing, max_new_tokens)
        mine = read()
    return mine


def _newest_run(db: Database, project_id: int) -> StudentRun:
    with db.session() as s:
        run = s.scalar(
            select(StudentRun)
            .where(StudentRun.project_id == project_id, StudentRun.kind == "generative")
            .order_by(StudentRun.id.desc())
            .limit(1)
        )
        if run is None:
            raise StateError("no generative student yet: run `terakoya train` first")
        s.expunge(run)
    return run


def _folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def _judge(settings: Settings, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The teacher as judge, both orders (see the module text); None when ``generate.judge`` is none."""
    if settings.generate.judge == "none" or not rows:
        return None
    if settings.teacher.kind == "recorded":
        raise ConfigError(
            "generate.judge = 'teacher' needs a teacher that answers (a recorded one only replays): set teacher.kind "
            "to openai, local or python, or generate.judge = 'none'"
        )
    from terakoya.generation.metrics import swap_judgement
    from terakoya.generation.teachers import make_writer
    from terakoya.teachers.base import TeacherRequest

    writer = make_writer(settings.model_copy(update={"generate": settings.generate.model_copy(update={"samples": 1})}))
    requests = []
    for n, row in enumerate(rows):
        for order, (a, b) in enumerate(((row["student"], row["teacher"]), (row["teacher"], row["student"]))):
            question = (
                f"Question:\n{row['prompt']}\n\nAnswer A:\n{a}\n\nAnswer B:\n{b}\n\n"
                "Which answer is better? Reply with one word: A, B, tie, or bad (both are bad)."
            )
            requests.append(TeacherRequest(f"{n}:{order}", question, ({"role": "user", "content": question},), ()))
    written = writer.write(requests)

    said: Counter[str] = Counter()  # what the judge answered, order by order (unreadable answers count as ties)

    def verdict(text: str) -> str:
        word = text.strip().lower().split()[0].strip(".:!") if text.strip() else ""
        read = {"a": "a", "b": "b", "tie": "tie", "bad": "both_bad"}.get(word)
        said[read or "unreadable"] += 1
        return read or "tie"

    outcomes = []
    for n in range(len(rows)):
        first = written[2 * n].samples[0].text if written[2 * n].samples else ""
        second = written[2 * n + 1].samples[0].text if written[2 * n + 1].samples else ""
        combined = swap_judgement(verdict(first), verdict(second))  # for the student, shown first as A
        outcomes.append({"a": "win", "b": "loss"}.get(combined, combined))
    counted = win_tie_loss(outcomes)
    return {"judge": writer.name, **asdict(counted), "total": counted.n, "verdicts": dict(said)}


def evaluate_generate(
    db: Database,
    project_id: int,
    settings: Settings,
    *,
    model_path: Path | None = None,
    out_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> GenerationReport:
    """The generation report (see the module text)."""
    from terakoya.students.generative import GenerativeStudent

    run = _newest_run(db, project_id)
    path = Path(model_path or run.path)
    student = GenerativeStudent.load(path)
    teacher = current_answers(db, project_id, "teacher", "test")
    with db.session() as s:
        items = s.execute(
            select(Item.id, Item.external_id, Item.text, Item.gold).where(
                Item.project_id == project_id, Item.split == "test"
            )
        ).all()
    if not items:
        raise StateError("the project has no test prompts: import some with --split test (or --test-fraction)")
    same = path.resolve() == Path(run.path).resolve()
    written = _answers_of(db, run.run_id, items, student, settings.generate.student_max_new_tokens, stored=same)
    rows = []
    for n, item in enumerate(items):
        t = teacher.get(item.id)
        st_text = written[item.id]
        t_text = str((t.value or {}).get("text", "")) if t is not None else ""
        ref = (item.gold or {}).get("text") if item.gold else None
        rows.append(
            {
                "item": item.external_id,
                "item_id": item.id,
                "prompt": messages_of(item.text)[-1]["content"],
                "teacher": t_text,
                "student": st_text,
                "reference": ref,
                "student_chrf": chrf(st_text, ref) if ref else None,
                "teacher_chrf": chrf(t_text, ref) if ref else None,
                "agreement_chrf": chrf(st_text, t_text) if t_text else None,
            }
        )
        if progress is not None:
            progress(n + 1, len(items))
    outcomes_by_item = expert_outcomes(db, project_id)
    outcomes = [o for i in items for o in outcomes_by_item.get(i.id, [])]
    counted = win_tie_loss(outcomes)
    judged = {**asdict(counted), "total": counted.n}
    with_ref = [r for r in rows if r["reference"]]

    def mean(key: str) -> float | None:
        values = [r[key] for r in rows if r[key] is not None]
        return statistics.fmean(values) if values else None

    # speed: the student, one prompt at a time, on this machine
    timing = [messages_of(i.text) for i in items[:TIMING_PROMPTS]]
    start = time.perf_counter()
    outs = [student.generate([m])[0] for m in timing]
    seconds = time.perf_counter() - start
    tokens = sum(o.tokens for o in outs)
    with db.session() as s:
        t_tokens, t_ms, t_cost, t_calls = s.execute(
            select(
                func.coalesce(func.sum(Suggestion.completion_tokens), 0),
                func.coalesce(func.sum(Suggestion.latency_ms), 0.0),
                func.coalesce(func.sum(Suggestion.cost_usd), 0.0),
                func.count(),
            )
            .join(Item, Item.id == Suggestion.item_id)
            .where(Item.project_id == project_id, Suggestion.agent_kind == "teacher", Suggestion.cached.is_(False))
        ).one()
        answers = s.execute(
            select(Answer.kind, func.count(), func.coalesce(func.sum(Answer.active_seconds), 0.0))
            .join(Item, Item.id == Answer.item_id)
            .where(
                Item.project_id == project_id,
                Answer.superseded.is_(False),
                Answer.kind.in_(("rate", "compare", "correct")),
            )
            .group_by(Answer.kind)
        ).all()
    describe = student.describe()
    meta = describe.get("metadata", {})
    data: dict[str, Any] = {
        "kind": "generate.v1",
        "sections": list(settings_sections()),
        "student": {
            "run_id": run.run_id,
            "path": str(path),
            "params": meta.get("parameters"),
            "size_mb": round(_folder_mb(path), 2),
            "trained_on": run.metrics,
        },
        "test_prompts": len(rows),
        "judged_by_experts": {**judged, "prompts": sum(1 for i in items if i.id in outcomes_by_item)},
        "judged_by_model": _judge(settings, rows),
        "references": {
            "prompts": len(with_ref),
            "student_chrf": mean("student_chrf"),
            "teacher_chrf": mean("teacher_chrf"),
            "student_teacher_chrf": mean("agreement_chrf"),
        },
        "speed": {
            "student_tokens_per_s": throughput(tokens, seconds),
            "student_seconds_per_answer": seconds / len(outs) if outs else None,
            "teacher_tokens_per_s": throughput(int(t_tokens), float(t_ms or 0) / 1000) if t_calls else None,
            "teacher_seconds_per_answer": float(t_ms) / 1000 / t_calls if t_calls and t_ms else None,
        },
        "experts": {k: {"answers": int(n), "minutes": float(sec or 0) / 60} for k, n, sec in answers},
        "rating_agreement": rating_agreement(db, project_id),
        "economics": {
            "teacher_cost_usd": float(t_cost),
            "teacher_calls": int(t_calls),
            "training_cpu_minutes": float(run.metrics.get("fit_seconds", 0.0)) / 60,
        },
        "examples": {
            "student_wrong": sorted(with_ref, key=lambda r: r["student_chrf"])[:EXAMPLES],
            "teacher_wrong": sorted(with_ref, key=lambda r: r["teacher_chrf"])[:EXAMPLES],
            "student_lost": [r for r in rows if "loss" in outcomes_by_item.get(r["item_id"], [])][:EXAMPLES],
        },
        "notes": _notes(rows, outcomes, settings),
    }
    from terakoya.evaluation.report import publish_latest, report_dir

    folder, default = report_dir(settings, out_dir)
    json_path, html_path = folder / "report.json", folder / "report.html"
    json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    html_path.write_text(render_html(data, settings.name), encoding="utf-8")
    if default:
        publish_latest(folder)
    return GenerationReport(data, folder, json_path, html_path)


def settings_sections() -> tuple[str, ...]:
    from terakoya.kinds.generate import REPORT_SECTIONS

    return REPORT_SECTIONS


def _notes(rows: list[dict[str, Any]], outcomes: list[str], settings: Settings) -> list[str]:
    notes = []
    if not outcomes:
        notes.append(
            "no expert has compared the student with the teacher yet: run `terakoya route` (generate.evaluation_share "
            "of the batch goes to blind comparisons on test prompts) and answer them in the workbench"
        )
    if not any(r["reference"] for r in rows):
        notes.append("no test prompt has a reference answer: import one with --label-column to get chrF scores")
    if settings.teacher.kind == "recorded":
        notes.append("the teacher is recorded: its speed and cost were not measured here")
    return notes


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def verdict(data: dict[str, Any]) -> str:
    """The report's answer in one sentence: is the student as good as the teacher? From the experts' blind
    comparisons when there are any (the interval decides), else from chrF against the references."""
    j, ref = data["judged_by_experts"], data["references"]
    interval = j.get("interval")
    if j.get("total") and interval:
        low, high = interval
        rate = 100 * j["win_or_tie_rate"]
        if low > 0.5:
            return f"Experts preferred the student's answers ({rate:.0f} % won or tied, 95 % interval above half)."
        if high < 0.5:
            return (
                f"Experts preferred the teacher's answers (the student won or tied {rate:.0f} %, interval below half)."
            )
        return (
            f"Experts cannot tell the two apart yet ({rate:.0f} % won or tied; the interval spans half): compare more."
        )
    if ref.get("student_chrf") is not None and ref.get("teacher_chrf") is not None:
        closer = "closer to" if ref["student_chrf"] > ref["teacher_chrf"] else "further from"
        return (
            f"No expert has compared them yet; by chrF the student is {closer} the reference answers than the teacher "
            f"({ref['student_chrf']:.1f} vs {ref['teacher_chrf']:.1f})."
        )
    return "No expert has compared them yet and no prompt has a reference answer: nothing says which is better."


def render_html(data: dict[str, Any], name: str) -> str:
    """The report as one self-contained page."""
    e = html.escape
    j, ref, sp = data["judged_by_experts"], data["references"], data["speed"]
    rate = j.get("win_or_tie_rate")
    interval = j.get("interval") or (None, None)
    parts = [
        f"<!doctype html><html lang='en'><meta charset='utf-8'><title>{e(name)} — generation report</title>",
        "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a}"
        "table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.3rem .6rem;"
        "text-align:left;vertical-align:top}pre{white-space:pre-wrap;margin:0;max-width:28rem}</style>",
        f"<h1>{e(name)}: student vs teacher</h1>",
        f"<section id='summary'><p class='verdict'><strong>{e(verdict(data))}</strong></p>"
        f"<p>{data['test_prompts']} held-out test prompts. "
        f"Student {e(data['student']['run_id'])}: {_fmt(data['student']['params'], 0)} parameters, "
        f"{_fmt(data['student']['size_mb'])} MB.</p>",
        *[f"<p class='note'>{e(n)}</p>" for n in data["notes"]],
        "</section><section id='judged'><h2>Judged blind by experts</h2>",
        f"<p>{j['total']} comparisons on {j['prompts']} prompts: the student won {j['wins']}, tied {j['ties']}, "
        f"lost {j['losses']}; both bad {j['both_bad']}. Win-or-tie rate {_fmt(rate and 100 * rate)} % "
        f"(95 % interval {_fmt(interval[0] and 100 * interval[0])}–{_fmt(interval[1] and 100 * interval[1])} %).</p>"
        if j["total"]
        else "<p>No comparisons yet.</p>",
    ]
    model = data.get("judged_by_model")
    if model:
        parts.append(
            f"<p>Judged by {e(model['judge'])} (both orders): won {model['wins']}, tied {model['ties']}, "
            f"lost {model['losses']}.</p>"
        )
    parts += [
        "</section><section id='references'><h2>Against the reference answers</h2>",
        f"<table><tr><th>prompts with a reference</th><td>{ref['prompts']}</td></tr>"
        f"<tr><th>student chrF</th><td>{_fmt(ref['student_chrf'])}</td></tr>"
        f"<tr><th>teacher chrF</th><td>{_fmt(ref['teacher_chrf'])}</td></tr>"
        f"<tr><th>student vs teacher chrF</th><td>{_fmt(ref['student_teacher_chrf'])}</td></tr></table>",
        "</section><section id='speed'><h2>Speed on this machine</h2><table><tr><th></th><th>tokens/s</th>"
        "<th>seconds per answer</th></tr>"
        f"<tr><th>student</th><td>{_fmt(sp['student_tokens_per_s'])}</td>"
        f"<td>{_fmt(sp['student_seconds_per_answer'], 3)}</td></tr>"
        f"<tr><th>teacher</th><td>{_fmt(sp['teacher_tokens_per_s'])}</td>"
        f"<td>{_fmt(sp['teacher_seconds_per_answer'], 3)}</td></tr>"
        "</table></section><section id='examples'><h2>Where they went wrong</h2>",
    ]
    for key, title in (
        ("student_wrong", "Student furthest from the reference"),
        ("teacher_wrong", "Teacher furthest from the reference"),
        ("student_lost", "Comparisons the student lost"),
    ):
        rows = data["examples"][key]
        if not rows:
            continue
        parts.append(
            f"<h3>{title}</h3><table><tr><th>prompt</th><th>student</th><th>teacher</th><th>reference</th></tr>"
        )
        for r in rows:
            parts.append(
                f"<tr><td><pre>{e(r['prompt'][:400])}</pre></td><td><pre>{e(r['student'][:400])}</pre></td>"
                f"<td><pre>{e(r['teacher'][:400])}</pre></td><td><pre>{e((r['reference'] or '')[:400])}</pre></td></tr>"
            )
        parts.append("</table>")
    ex = data["experts"] or {"(none yet)": {"answers": 0, "minutes": 0.0}}
    parts.append(
        "</section><section id='experts'><h2>Expert work</h2>"
        "<table><tr><th>task</th><th>answers</th><th>minutes</th></tr>"
    )
    parts += [
        f"<tr><td>{e(k)}</td><td>{v['answers']}</td><td>{_fmt(v['minutes'])}</td></tr>" for k, v in sorted(ex.items())
    ]
    agree = data.get("rating_agreement") or {}
    if agree:
        parts.append(
            "</table><h3>Agreement on ratings</h3><p>Pairs of people who rated the same answer:</p><table><tr>"
            "<th>rubric line</th><th>pairs</th><th>mean |difference|</th><th>equal</th><th>within one</th></tr>"
        )
        parts += [
            f"<tr><td>{e(k)}</td><td>{v['pairs']}</td><td>{v['mean_abs_difference']:.2f}</td>"
            f"<td>{100 * v['equal']:.0f} %</td><td>{100 * v['within_one']:.0f} %</td></tr>"
            for k, v in agree.items()
        ]
    eco = data["economics"]
    parts.append(
        "</table></section><section id='economics'><h2>Cost</h2>"
        f"<p>Teacher: {eco['teacher_calls']} calls, {eco['teacher_cost_usd']:.4f} USD. "
        f"Training: {eco['training_cpu_minutes']:.1f} CPU minutes.</p></section></html>"
    )
    return "\n".join(parts)
