"""The teacher's prompt: a versioned template filled with labels, guidelines, glossary and examples.

``Prompt.version`` is the template id plus a short hash of everything rendered into it, so editing the
guidelines, approving a glossary term or gaining a new expert example gives a new version (and the
teacher labels again under it; answers under the old version stay, marked with that version).

Two styles share the same messages (system, then few-shot user/assistant turns, then the item):

- ``chat`` (template ``cls-v1``): the system message names the labels with their descriptions, the
  guidelines and the glossary; chat models (and every endpoint) get the messages as they are.
- ``plain`` (template ``cls-plain-v1``): for base models, which read a document rather than follow an
  instruction: the system message is one instruction line naming the labels, and the local teacher
  writes the turns as ``Text: …`` / ``Label: …`` lines (:mod:`terakoya.teachers.local`).

The style comes from ``teacher.prompt_style``; under ``auto`` it is ``plain`` only for a local model
without a chat template (:func:`prompt_style`).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select

from terakoya.errors import ConfigError
from terakoya.settings import Settings
from terakoya.storage.db import Database
from terakoya.storage.models import Answer, GlossaryTerm, Item

__all__ = [
    "PLAIN_TEMPLATE",
    "TEMPLATE",
    "Prompt",
    "approved_glossary",
    "build_prompt",
    "collect_examples",
    "expert_examples",
    "file_examples",
    "prompt_style",
]

#: the id of the chat template below; bump it whenever its wording changes
TEMPLATE = "cls-v1"
#: the id of the plain (base model) template below; bump it whenever its wording changes
PLAIN_TEMPLATE = "cls-plain-v1"

Style = Literal["chat", "plain"]


@dataclass(frozen=True)
class Prompt:
    version: str
    system: str
    examples: tuple[tuple[str, str], ...]
    style: Style = "chat"

    def prefix(self) -> tuple[dict[str, str], ...]:
        """The messages shared by every item: the system message and the few-shot turns."""
        out = [{"role": "system", "content": self.system}]
        for text, label in self.examples:
            out.append({"role": "user", "content": text})
            out.append({"role": "assistant", "content": label})
        return tuple(out)

    def messages(self, text: str) -> tuple[dict[str, str], ...]:
        return (*self.prefix(), {"role": "user", "content": text})


def _render_system(settings: Settings, glossary: Mapping[str, str]) -> str:
    names = settings.label_names
    described = (f"- {s.name}: {s.description}" if s.description else f"- {s.name}" for s in settings.labels)
    parts = [
        "You label texts for a single-label classification task. "
        f"Each text gets exactly one of these labels: {', '.join(names)}.",
        "Labels:\n" + "\n".join(described),
    ]
    if settings.guidelines.strip():
        parts.append("Guidelines:\n" + settings.guidelines.strip())
    if glossary:
        parts.append("Glossary:\n" + "\n".join(f"- {term}: {definition}" for term, definition in glossary.items()))
    parts.append(f"Answer with one word, the label, and nothing else: {' or '.join(names)}.")
    return "\n\n".join(parts)


def _render_instruction(settings: Settings) -> str:
    """The plain style's one line: what to do and the labels (a base model continues a document)."""
    return f"Label each text as one of: {', '.join(settings.label_names)}."


def prompt_style(settings: Settings) -> Style:
    """The style of ``settings``' teacher: ``teacher.prompt_style``, with ``auto`` resolved (``chat`` for every
    teacher but a local model without a chat template)."""
    teacher = settings.teacher
    if teacher.kind != "local":
        return "plain" if teacher.prompt_style == "plain" else "chat"
    from terakoya.teachers.local import resolve_style

    return resolve_style(teacher.model, teacher.prompt_style)


def build_prompt(
    settings: Settings,
    *,
    glossary: Mapping[str, str],
    examples: Sequence[tuple[str, str]],
    style: Style | None = None,
) -> Prompt:
    """The prompt for this project's labels, guidelines, glossary and few-shot examples, in ``style``
    (default: :func:`prompt_style` of the settings)."""
    if not settings.labels:
        raise ConfigError("no labels are declared; add [[labels]] entries (name, description) to terakoya.toml")
    style = style or prompt_style(settings)
    shots = tuple((str(text), str(label)) for text, label in examples)
    if style == "plain":
        template, system = PLAIN_TEMPLATE, _render_instruction(settings)
    else:
        template, system = TEMPLATE, _render_system(settings, glossary)
    digest = hashlib.sha256(json.dumps([template, system, shots], ensure_ascii=False).encode()).hexdigest()
    return Prompt(version=f"{template}-{digest[:8]}", system=system, examples=shots, style=style)


def approved_glossary(db: Database, project_id: int, settings: Settings) -> dict[str, str]:
    """The project file's glossary, then the approved terms taught by experts (oldest first)."""
    out = dict(settings.glossary)
    with db.session() as s:
        rows = s.execute(
            select(GlossaryTerm.term, GlossaryTerm.definition)
            .where(GlossaryTerm.project_id == project_id, GlossaryTerm.status == "approved")
            .order_by(GlossaryTerm.id)
        ).all()
    for term, definition in rows:
        out[term] = definition
    return out


def file_examples(settings: Settings) -> list[tuple[str, str]]:
    """The project file's ``[[examples]]`` as (text, label), each label checked against the declared ones."""
    names = settings.label_names
    for i, example in enumerate(settings.examples):
        if example.label not in names:
            raise ConfigError(
                f"examples[{i}] has label {example.label!r}, which is not declared; labels are: "
                f"{', '.join(names)} — fix the example in terakoya.toml"
            )
    return [(example.text, example.label) for example in settings.examples]


def expert_examples(db: Database, project_id: int, settings: Settings) -> dict[str, list[str]]:
    """Label -> texts of pool items (never the test split, which measures the teacher) whose current label
    answers agree on it: real experts' before simulated ones, older answers before newer."""
    names = settings.label_names
    with db.session() as s:
        rows = s.execute(
            select(Answer.item_id, Answer.label, Answer.simulated, Answer.id, Item.text)
            .join(Item, Item.id == Answer.item_id)
            .where(
                Item.project_id == project_id,
                Item.split == "pool",
                Answer.kind == "label",
                Answer.superseded.is_(False),
                Answer.label.is_not(None),
            )
            .order_by(Answer.id)
        ).all()
    by_item: dict[int, list[tuple[str, bool, int, str]]] = defaultdict(list)
    for item_id, label, simulated, answer_id, text in rows:
        by_item[item_id].append((str(label), bool(simulated), int(answer_id), str(text)))
    per_label: dict[str, list[tuple[bool, int, str]]] = {name: [] for name in names}
    for answers in by_item.values():
        labels = {a[0] for a in answers}
        if len(labels) != 1 or answers[0][0] not in per_label:
            continue  # experts disagree, or a label no longer declared: not a clean example
        label = answers[0][0]
        simulated = all(a[1] for a in answers)
        per_label[label].append((simulated, answers[0][2], answers[0][3]))
    return {name: [text for _, _, text in sorted(per_label[name])] for name in names}


def collect_examples(db: Database, project_id: int, settings: Settings) -> list[tuple[str, str]]:
    """Few-shot examples, ``teacher.few_shot`` in all: with ``teacher.examples_from = "experts"`` expert answers
    first (:func:`expert_examples`, the labels taking turns so that each is shown), then the project file's
    examples; with ``"file"`` the file's examples only, in their order.
    """
    wanted = settings.teacher.few_shot
    from_file = file_examples(settings)
    if wanted == 0:
        return []
    if settings.teacher.examples_from == "file":
        return from_file[:wanted]
    queues = expert_examples(db, project_id, settings)
    chosen: list[tuple[str, str]] = []
    while len(chosen) < wanted and any(queues.values()):
        for name in settings.label_names:
            if queues[name] and len(chosen) < wanted:
                chosen.append((queues[name].pop(0), name))
    seen = {text for text, _ in chosen}
    for text, label in from_file:
        if len(chosen) >= wanted:
            break
        if text not in seen:
            chosen.append((text, label))
            seen.add(text)
    return chosen
