"""What an expert sees of a generation task, and what their answer means once the task is known.

A task's ``components`` say which answers it shows: ``suggestion_id`` (the teacher's answer that is rated or
corrected), and for a comparison ``pair`` (sources: ``teacher:N`` is the teacher's N-th sample, ``student`` the
student's answer) and ``order`` (the seeded random order in which the pair is shown as A and B). A check task (a
test prompt with a reference answer) has ``check`` (the verdict it expects) and ``shown`` (``reference``, or
``decoy`` with ``decoy_item``: another prompt's reference). The expert never sees where an answer came from; the
server resolves "A" and "B" back to their sources, and a check to its verdict, when the answer arrives.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from terakoya.kinds.base import AnswerValue
from terakoya.kinds.generate import messages_of
from terakoya.settings import Settings
from terakoya.storage.models import Item, Suggestion, Task
from terakoya.storage.queries import current_suggestion

__all__ = ["check_components", "resolve_answer", "source_text", "task_content"]


def _suggestion(s: Session, item_id: int, suggestion_id: Any, agent_kind: str) -> Suggestion | None:
    if suggestion_id is not None:
        found = s.get(Suggestion, int(suggestion_id))
        if found is not None and found.item_id == item_id:
            return found
    return current_suggestion(s, item_id, agent_kind)


def source_text(s: Session, task: Task, source: str) -> str:
    """The text of one of a task's answer sources (``teacher:N``, ``student``); empty when it is gone."""
    comps = task.components or {}
    if source == "student":
        sug = _suggestion(s, task.item_id, comps.get("student_suggestion_id"), "student")
        return str((sug.value or {}).get("text", "")) if sug is not None else ""
    return _sample(_suggestion(s, task.item_id, comps.get("suggestion_id"), "teacher"), source)


def _sample(sug: Suggestion | None, source: str) -> str:
    """The text of a teacher answer's sample ``teacher:N`` (empty when there is none)."""
    if sug is None or not sug.value:
        return ""
    index = int(source.partition(":")[2] or 0)
    samples = sug.value.get("samples") or [{"text": sug.value.get("text", "")}]
    return str(samples[index]["text"]) if index < len(samples) else ""


def check_components(s: Session, item: Item) -> dict[str, Any]:
    """What a check task on a test prompt shows: its reference (the check expects ``accept``) or, for a prompt
    whose check role is ``reject``, a decoy: the reference of the next test prompt (another question's answer)."""
    role = item.gold_label or "accept"
    if role != "reject":
        return {"check": "accept", "shown": "reference"}
    rows = s.execute(
        select(Item.id, Item.gold)
        .where(Item.project_id == item.project_id, Item.split == "test", Item.gold.is_not(None))
        .order_by(Item.id)
    ).all()
    mine = (item.gold or {}).get("text")
    others = [r.id for r in rows if (r.gold or {}).get("text") and (r.gold or {}).get("text") != mine]
    later = [i for i in others if i > item.id]
    decoy = (later or others or [item.id])[0]
    return {"check": "reject", "shown": "decoy", "decoy_item": int(decoy)}


def _check_text(s: Session, task: Task) -> str | None:
    """The answer a check task shows (None: the task is no check)."""
    comps = task.components or {}
    if "check" not in comps:
        return None
    item = s.get(Item, int(comps.get("decoy_item") or task.item_id))
    return str(((item.gold or {}) if item is not None else {}).get("text", ""))


def _shown(task: Task) -> list[str]:
    comps = task.components or {}
    pair = list(comps.get("pair") or ["teacher:0", "teacher:1"])
    order = list(comps.get("order") or [0, 1])
    return [pair[i] for i in order]


def task_content(s: Session, task: Task, item: Item, settings: Settings) -> dict[str, Any]:
    """The prompt, the answer(s) to judge (A and B for a comparison, in the task's order) and the rubric."""
    content: dict[str, Any] = {"messages": messages_of(item.text)}
    if task.kind == "compare":
        content["answers"] = [
            {"slot": slot, "text": source_text(s, task, src)} for slot, src in zip("AB", _shown(task), strict=True)
        ]
    else:
        check = _check_text(s, task)
        content["answers"] = [{"slot": "", "text": check if check is not None else source_text(s, task, "teacher:0")}]
        content["rubric"] = [{"name": r.name, "description": r.description} for r in settings.generate.rubric]
        content["accept_min_rating"] = settings.generate.accept_min_rating
    return content


def resolve_answer(s: Session, task: Task, answer: AnswerValue, settings: Settings) -> AnswerValue:
    """The answer with what its task shows: a comparison's winner and loser by source (the label is the winner,
    ``tie`` or ``both_bad``), and for rate and correct the answer judged; an unchanged "correction" is an accept."""
    value = dict(answer.value)
    label = answer.label
    if task.kind == "compare":
        shown = _shown(task)
        value["shown"] = shown
        choice = value.get("choice")
        if choice in ("a", "b"):
            won = 0 if choice == "a" else 1
            value["winner"], value["loser"] = shown[won], shown[1 - won]
            label = shown[won]
    elif "check" in (task.components or {}):
        # a check: accepting the shown answer as it is, or not (low ratings, or any edit: the expert saw a flaw)
        comps = task.components
        value["check"], value["shown"] = comps["check"], comps.get("shown")
        ratings = value.get("ratings") or {}
        edited = isinstance(value.get("text"), str) and value["text"].strip() != (_check_text(s, task) or "").strip()
        low = bool(ratings) and min(ratings.values()) < settings.generate.accept_min_rating
        label = "reject" if edited or low else "accept"
    else:
        sug = _suggestion(s, task.item_id, (task.components or {}).get("suggestion_id"), "teacher")
        value["suggestion_id"] = sug.id if sug is not None else None
        judged = _sample(sug, "teacher:0")
        text = value.get("text")
        if isinstance(text, str) and text.strip() == judged.strip():
            value.pop("text")
            value["unchanged"] = True
            ratings = value.get("ratings")
            label = "accept"
            if ratings and min(ratings.values()) < settings.generate.accept_min_rating:
                label = "reject"
    return AnswerValue(label, value, answer.rationale)
