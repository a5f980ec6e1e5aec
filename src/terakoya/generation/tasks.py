"""What an expert sees of a generation task, and what their answer means once the task is known.

A task's ``components`` say which answers it shows: ``suggestion_id`` (the teacher's answer that is rated or
corrected), and for a comparison ``pair`` (sources: ``teacher:N`` is the teacher's N-th sample, ``student`` the
student's answer) and ``order`` (the seeded random order in which the pair is shown as A and B). The expert never
sees where an answer came from; the server resolves "A" and "B" back to their sources when the answer arrives.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from terakoya.kinds.base import AnswerValue
from terakoya.kinds.generate import messages_of
from terakoya.settings import Settings
from terakoya.storage.models import Item, Suggestion, Task
from terakoya.storage.queries import current_suggestion

__all__ = ["resolve_answer", "source_text", "task_content"]


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
    sug = _suggestion(s, task.item_id, comps.get("suggestion_id"), "teacher")
    if sug is None or not sug.value:
        return ""
    index = int(source.partition(":")[2] or 0)
    samples = sug.value.get("samples") or [{"text": sug.value.get("text", "")}]
    return str(samples[index]["text"]) if index < len(samples) else ""


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
        content["answers"] = [{"slot": "", "text": source_text(s, task, "teacher:0")}]
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
    else:
        sug = _suggestion(s, task.item_id, (task.components or {}).get("suggestion_id"), "teacher")
        value["suggestion_id"] = sug.id if sug is not None else None
        judged = source_text(s, task, "teacher:0")
        text = value.get("text")
        if isinstance(text, str) and text.strip() == judged.strip():
            value.pop("text")
            value["unchanged"] = True
            ratings = value.get("ratings")
            label = "accept"
            if ratings and min(ratings.values()) < settings.generate.accept_min_rating:
                label = "reject"
    return AnswerValue(label, value, answer.rationale)
