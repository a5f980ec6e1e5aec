"""What the experts' answers give a generative student, the datasets out, and ``train`` for a generation project.

:func:`verdicts` is the one rule that turns an item's live expert answers into what they say (training, the
datasets and the report all read it):

- a **correction** (the newest, when several people corrected) is the answer to learn, and the teacher's answer
  it replaced the rejected side of a preference pair;
- a **comparison** of two teacher samples: the sample most answers preferred is the answer to learn, and
  (winner, loser) a preference pair; ``tie`` or ``both_bad`` give no pair, and ``both_bad`` no target;
- **ratings**: the teacher's answer is learned when most raters accepted it (every rubric line at least
  ``generate.accept_min_rating``), and left out when most rejected it;
- with no answer, the teacher's answer is learned when ``generate.train_on_unreviewed`` (plain distillation), and
  a reference answer imported with the prompt wins over it;
- a reviewer's standing decision (:mod:`terakoya.quality.review`) wins over the answers.

Only pool prompts train; the test split is held out for the report.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from terakoya.errors import StateError
from terakoya.generation.datasets import PreferencePair, SFTExample, preference_rows, sft_rows, write_jsonl
from terakoya.generation.routing import current_answers
from terakoya.kinds.generate import EXPERT_TASKS, messages_of
from terakoya.quality.aggregate import live_expert_answer
from terakoya.quality.review import reviewed_labels
from terakoya.settings import Settings
from terakoya.storage.db import Database
from terakoya.storage.models import Answer, Item, StudentRun, Suggestion, Task, TrainingLabel
from terakoya.training import TrainReport

__all__ = ["AGGREGATOR", "Verdict", "build_datasets", "student_answers", "train_generate", "verdicts"]

#: the versioned name of the rule below (recorded with every training target)
AGGREGATOR = "verdicts.v1"


@dataclass
class Verdict:
    """What one item's live expert answers say about its teacher answer."""

    item_id: int
    #: accept | reject | corrected | preferred | both_bad | tie | None (no answer)
    outcome: str | None = None
    corrected: str | None = None
    #: for a comparison: the preferred and the other source (``teacher:N`` or ``student``)
    winner: str | None = None
    loser: str | None = None
    ratings: dict[str, float] = field(default_factory=dict)
    answer_ids: list[int] = field(default_factory=list)


def verdicts(db: Database, project_id: int, *, split: str | None = "pool") -> dict[int, Verdict]:
    """item id -> the verdict of its live expert answers (rate, compare, correct), outside evaluation tasks."""
    with db.session() as s:
        query = (
            select(Answer.id, Answer.item_id, Answer.kind, Answer.label, Answer.value, Task.reason)
            .join(Item, Item.id == Answer.item_id)
            .outerjoin(Task, Task.id == Answer.task_id)
            .where(Item.project_id == project_id, live_expert_answer(), Answer.kind.in_(EXPERT_TASKS))
            .order_by(Answer.id)
        )
        if split is not None:
            query = query.where(Item.split == split)
        rows = s.execute(query).all()
    by_item: dict[int, list[Any]] = {}
    for row in rows:
        if row.reason != "evaluation":
            by_item.setdefault(row.item_id, []).append(row)
    with db.session() as s:
        decided = reviewed_labels(s, project_id)
    out = {}
    for item_id, answers in by_item.items():
        v = _verdict(item_id, answers)
        if item_id in decided:  # a reviewer's standing decision wins over the answers
            v = _decided(v, answers, decided[item_id])
        out[item_id] = v
    return out


def _decided(v: Verdict, answers: list[Any], decision: tuple[int, str]) -> Verdict:
    answer_id, label = decision
    out = Verdict(v.item_id, answer_ids=[answer_id, *v.answer_ids], ratings=v.ratings)
    if label in ("accept", "reject", "tie", "both_bad"):
        out.outcome = label
    elif label == "corrected":
        texts = [
            a.value["text"] for a in answers if a.label == "corrected" and isinstance((a.value or {}).get("text"), str)
        ]
        out.outcome, out.corrected = ("corrected", str(texts[-1])) if texts else ("reject", None)
    else:  # a comparison's source: it won, the other one lost
        shown = next((list(a.value.get("shown", [])) for a in answers if a.kind == "compare"), [])
        out.outcome, out.winner = "preferred", label
        out.loser = next((src for src in shown if src != label), None)
    return out


def _verdict(item_id: int, answers: list[Any]) -> Verdict:
    v = Verdict(item_id, answer_ids=[a.id for a in answers])
    corrections = [a for a in answers if isinstance((a.value or {}).get("text"), str) and a.label == "corrected"]
    if corrections:
        v.outcome, v.corrected = "corrected", str(corrections[-1].value["text"])
        return v
    compares = [a for a in answers if a.kind == "compare"]
    if compares:
        said = Counter(a.label for a in compares)
        top, n = said.most_common(1)[0]
        if list(said.values()).count(n) > 1:
            v.outcome = "tie"
        elif top in ("tie", "both_bad"):
            v.outcome = top
        else:
            v.outcome = "preferred"
            winner = next(a for a in compares if a.label == top)
            v.winner, v.loser = winner.value.get("winner"), winner.value.get("loser")
        return v
    rates = [a for a in answers if a.kind in ("rate", "correct")]
    if rates:
        said = Counter(a.label for a in rates)
        v.outcome = "accept" if said["accept"] > said["reject"] else "reject"
        names = {n for a in rates for n in (a.value or {}).get("ratings", {})}
        for name in sorted(names):
            scores = [a.value["ratings"][name] for a in rates if name in (a.value or {}).get("ratings", {})]
            v.ratings[name] = sum(scores) / len(scores)
    return v


@dataclass
class Datasets:
    sft: list[SFTExample]
    preferences: list[PreferencePair]
    #: SFT source -> examples, and why prompts were left out -> prompts
    counts: dict[str, int]
    #: item id -> (source, answer ids, teacher suggestion id) of its training target
    provenance: dict[int, tuple[str, list[int], int | None]]


def _sample(value: dict[str, Any], source: str | None) -> str | None:
    if source is None or not source.startswith("teacher:"):
        return None
    index = int(source.partition(":")[2] or 0)
    samples = value.get("samples") or []
    return str(samples[index]["text"]) if index < len(samples) else None


def build_datasets(db: Database, project_id: int, settings: Settings) -> Datasets:
    """The SFT examples and preference pairs of the project's pool prompts, by :func:`verdicts`."""
    teacher = current_answers(db, project_id, "teacher", "pool")
    said = verdicts(db, project_id)
    with db.session() as s:
        items = s.execute(
            select(Item.id, Item.external_id, Item.text, Item.gold).where(
                Item.project_id == project_id, Item.split == "pool"
            )
        ).all()
    sft: list[SFTExample] = []
    pairs: list[PreferencePair] = []
    counts: Counter[str] = Counter()
    provenance: dict[int, tuple[str, list[int], int | None]] = {}
    for item in items:
        messages = tuple(messages_of(item.text))
        sug = teacher.get(item.id)
        value = (sug.value or {}) if sug is not None else {}
        answer = value.get("text") if isinstance(value.get("text"), str) else None
        v = said.get(item.id)
        reference = (item.gold or {}).get("text") if item.gold else None

        def learn(
            text: str, source: str, ids: list[int], item: Any = item, sug: Any = sug, messages: Any = messages
        ) -> None:
            sft.append(SFTExample(item.id, item.external_id, messages, text, source))
            counts[source] += 1
            provenance[item.id] = (source, ids, sug.id if sug is not None else None)

        if v is not None and v.outcome == "corrected" and v.corrected is not None:
            learn(v.corrected, "expert_corrected", v.answer_ids)
            if answer is not None and answer.strip() != v.corrected.strip():
                pairs.append(PreferencePair(item.id, item.external_id, messages, v.corrected, answer, "correction"))
        elif v is not None and v.outcome == "preferred":
            chosen, rejected = _sample(value, v.winner), _sample(value, v.loser)
            if chosen:
                learn(chosen, "expert_preferred", v.answer_ids)
                if rejected and rejected.strip() != chosen.strip():
                    pairs.append(PreferencePair(item.id, item.external_id, messages, chosen, rejected, "comparison"))
        elif v is not None and v.outcome == "accept" and answer:
            learn(answer, "teacher_accepted", v.answer_ids)
        elif v is not None and v.outcome in ("reject", "both_bad"):
            counts[f"left out: experts {'rejected' if v.outcome == 'reject' else 'found both samples bad'}"] += 1
        elif reference:
            learn(str(reference), "reference", [])
        elif v is not None and v.outcome == "tie" and answer:
            learn(answer, "teacher_accepted", v.answer_ids)
        elif answer and settings.generate.train_on_unreviewed:
            learn(answer, "teacher_unreviewed", [])
        else:
            counts["left out: no answer to learn"] += 1
    return Datasets(sft, pairs, dict(counts), provenance)


def export_datasets(
    db: Database, project_id: int, settings: Settings, out: Path, *, force: bool = False
) -> dict[str, Any]:
    """``out/sft.jsonl``, ``out/preferences.jsonl`` and the same as Hugging Face ``datasets`` folders (``out/sft``,
    ``out/preferences``: ``datasets.load_from_disk`` reads them)."""
    from terakoya.generation.datasets import dataset_card, write_dataset_folder

    data = build_datasets(db, project_id, settings)
    if not data.sft:
        raise StateError("there is nothing to export yet: run `terakoya teach` first (the teacher's answers)")
    out.mkdir(parents=True, exist_ok=True)
    sft, prefs = sft_rows(data.sft), preference_rows(data.preferences)
    write_jsonl(sft, out / "sft.jsonl", force=force)
    write_jsonl(prefs, out / "preferences.jsonl", force=force)
    write_dataset_folder(sft, out / "sft", force=force, card=dataset_card(sft, title=f"{settings.name}: SFT"))
    if prefs:
        card = dataset_card(prefs, title=f"{settings.name}: preference pairs")
        write_dataset_folder(prefs, out / "preferences", force=force, card=card)
    return {"sft": len(sft), "preferences": len(prefs), "counts": data.counts, "folder": str(out)}


def student_answers(
    db: Database, run_id: str, student: Any, items: list[tuple[int, str]], max_new_tokens: int
) -> float:
    """The student answers ``items`` (id, text); each answer a ``student`` suggestion. Returns the seconds taken."""
    start = time.perf_counter()
    batch = 16
    for at in range(0, len(items), batch):
        chunk = items[at : at + batch]
        outs = student.generate([messages_of(text) for _, text in chunk], max_new_tokens=max_new_tokens)
        with db.session() as s:
            for (item_id, _), out in zip(chunk, outs, strict=True):
                s.add(
                    Suggestion(
                        item_id=item_id,
                        agent_kind="student",
                        agent=run_id,
                        label=None,
                        probabilities={},
                        confidence=None,
                        confidence_known=False,
                        value={"text": out.text},
                        raw_output=out.text,
                        completion_tokens=out.tokens,
                        latency_ms=out.seconds * 1000,
                    )
                )
    return time.perf_counter() - start


def train_generate(
    db: Database,
    project_id: int,
    settings: Settings,
    *,
    out_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TrainReport:
    """SFT (then DPO on the preference pairs) of a small language model; it then answers the test prompts and
    ``generate.student_answers`` pool prompts, for the report and for routing."""
    from terakoya.students.generative import GenerativeStudent

    started = time.perf_counter()
    data = build_datasets(db, project_id, settings)
    if not data.sft:
        raise StateError("there is nothing to learn yet: run `terakoya teach` first (the teacher's answers)")
    g = settings.generate
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    path = (out_dir or settings.project_dir / "runs" / run_id).resolve()
    student = GenerativeStudent(
        base_model=g.student_base_model,
        vocab_size=g.student_vocab,
        n_layer=g.student_layers,
        n_embd=g.student_width,
        max_length=g.max_length,
        sft_epochs=g.sft_epochs,
        dpo_epochs=g.dpo_epochs,
        learning_rate=g.learning_rate,
        dpo_learning_rate=g.dpo_learning_rate,
        lora=g.lora,
        max_new_tokens=g.student_max_new_tokens,
        seed=settings.seed,
    )
    # the pairs always go in: the tiny model's tokenizer learns from every text, so a student with and one
    # without DPO (generate.dpo_epochs = 0) share their tokenizer and their SFT, and differ by DPO alone
    prefs = preference_rows(data.preferences, provenance=False)
    student.fit(sft_rows(data.sft, provenance=False), prefs, progress=progress)
    prefs = prefs if g.dpo_epochs > 0 else []
    student.save(path)
    (path / "training").mkdir(exist_ok=True)
    write_jsonl(sft_rows(data.sft), path / "training" / "sft.jsonl", force=True)
    write_jsonl(preference_rows(data.preferences), path / "training" / "preferences.jsonl", force=True)
    fit_seconds = time.perf_counter() - started
    with db.session() as s:
        run = StudentRun(
            project_id=project_id,
            run_id=run_id,
            kind="generative",
            path=str(path),
            metrics={
                "sft": len(data.sft),
                "preferences": len(prefs),
                "counts": data.counts,
                "fit_seconds": fit_seconds,
                "student": student.describe().get("metadata", {}),
            },
        )
        s.add(run)
        s.flush()
        for item_id, (source, ids, sug_id) in data.provenance.items():
            s.add(
                TrainingLabel(
                    student_run_id=run.id,
                    item_id=item_id,
                    label=source,
                    target={},
                    source="teacher"
                    if source.startswith("teacher")
                    else ("reference" if source == "reference" else "expert"),
                    weight=1.0,
                    answer_ids=ids,
                    suggestion_id=sug_id,
                    aggregator=AGGREGATOR,
                )
            )
        test = s.execute(select(Item.id, Item.text).where(Item.project_id == project_id, Item.split == "test")).all()
        pool = s.execute(
            select(Item.id, Item.text).where(Item.project_id == project_id, Item.split == "pool").order_by(Item.id)
        ).all()
    to_answer = [(r.id, r.text) for r in test] + [(r.id, r.text) for r in pool[: g.student_answers]]
    student_answers(db, run_id, student, to_answer, g.student_max_new_tokens)
    reviewed = sum(n for k, n in data.counts.items() if k.startswith("expert"))
    return TrainReport(
        run_id=run_id,
        kind="generative",
        path=path,
        expert_items=reviewed,
        teacher_items=data.counts.get("teacher_accepted", 0) + data.counts.get("teacher_unreviewed", 0),
        left_out=sum(n for k, n in data.counts.items() if k.startswith("left out")),
        seconds=time.perf_counter() - started,
        temperature=1.0,
        calibration={},
        recipe={"sft": len(data.sft), "preferences": len(prefs), "counts": data.counts, "answered": len(to_answer)},
    )
