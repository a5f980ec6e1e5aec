"""``generate.v1``: a written answer per prompt; experts rate, compare and correct the teacher's answers.

An item's text is its prompt: plain text (one user turn), or a conversation in chat format kept as canonical
JSON (:func:`prompt_text`), so that duplicates are found and the teacher's cache keys stay stable. A known
answer imported with the prompt (``--label-column reference``) is its reference answer; on a test prompt it makes
the prompt a check item (``items.gold_label`` is its :func:`check_role`), which quality control reads as for
every kind.

The stages that are about labels (teaching label probabilities, routing by label uncertainty, training a
classifier, the classification report) do not apply: a generative kind (``generative = True``) runs the stages
of :mod:`terakoya.generation` instead, which share the items, the work queue, the people, quality control and
the jobs with every other kind. The label-only members below say so when called.

Expert answers, one schema per task (``task`` in the raw answer names it):

- ``rate``: ``ratings`` (every rubric line of ``[generate]``, 1-5), optionally ``text``: the corrected answer
  (with a correction the ratings may be left out);
- ``compare``: ``choice`` of ``a`` / ``b`` (the better of the two shown) / ``tie`` / ``both_bad``;
- ``correct``: ``text``, the answer as it should be;

each with an optional ``rationale``. The answer's label summarises it: ``accept`` / ``reject`` / ``corrected``
for rate and correct, the winner for compare (resolved by :mod:`terakoya.generation.tasks`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from terakoya.errors import DataError, StateError
from terakoya.kinds.base import AnswerValue, Evidence, ExpertTarget, SuggestionValue
from terakoya.kinds.classify import schema_error
from terakoya.quality.aggregate import majority

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from terakoya.routing import ItemScores
    from terakoya.settings import RoutingSettings, Settings
    from terakoya.teachers.base import TeacherAnswer, TeacherRequest
    from terakoya.teachers.prompts import Prompt

__all__ = [
    "EXPERT_TASKS",
    "REPORT_SECTIONS",
    "VERDICTS",
    "GenerateKind",
    "check_role",
    "messages_of",
    "prompt_text",
    "read_messages",
    "system_prompt",
]

#: the expert tasks of a generation project (``tasks.kind``)
EXPERT_TASKS = ("rate", "compare", "correct")
#: what an expert's answer says, as its label (quality control counts agreement on these)
VERDICTS = ("accept", "reject", "corrected", "teacher:0", "teacher:1", "student", "tie", "both_bad")
#: the sections of a generation project's report, in order
REPORT_SECTIONS = ("summary", "judged", "references", "speed", "examples", "experts", "economics")
#: the chat roles a prompt may hold
ROLES = ("system", "user", "assistant")
MAX_ANSWER_CHARS = 20_000


def read_messages(value: Any) -> list[dict[str, str]]:
    """A conversation in chat format (a list of ``{"role", "content"}``, or its JSON text), checked; a DataError
    says what is wrong (the caller adds the file and line)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"the messages are not JSON ({exc.msg} at column {exc.colno}); write them as "
                '[{"role": "user", "content": "..."}]'
            ) from None
    if not isinstance(value, list) or not value:
        raise DataError('the messages are not a non-empty list; write them as [{"role": "user", "content": "..."}]')
    out: list[dict[str, str]] = []
    for n, turn in enumerate(value, start=1):
        if not isinstance(turn, Mapping) or not isinstance(turn.get("role"), str) or "content" not in turn:
            raise DataError(f"message {n} is not an object with 'role' and 'content'; fix it in the file")
        role, content = str(turn["role"]).strip(), turn["content"]
        if role not in ROLES:
            raise DataError(f"message {n} has role {role!r}; use one of {', '.join(ROLES)}")
        if not isinstance(content, str) or not content.strip():
            raise DataError(f"message {n} ({role}) has no text in 'content'; fill it in or drop the message")
        out.append({"role": role, "content": content})
    if out[-1]["role"] != "user":
        raise DataError(
            f"the conversation ends with a {out[-1]['role']} message; a prompt ends with the user's turn "
            "(move the answer to the reference or recorded answer column)"
        )
    return out


def prompt_text(value: Any) -> str:
    """An item's text for a prompt cell: plain text as it is, a conversation as canonical JSON."""
    if isinstance(value, list) or (isinstance(value, str) and value.lstrip().startswith("[{")):
        return json.dumps(read_messages(value), ensure_ascii=False, separators=(",", ":"))
    return str(value)


def messages_of(text: str) -> list[dict[str, str]]:
    """The conversation an item's text holds (:func:`prompt_text`'s inverse): plain text is one user turn."""
    if text.startswith('[{"role":'):
        try:
            return read_messages(text)
        except DataError:
            pass
    return [{"role": "user", "content": text}]


def system_prompt(settings: Settings, glossary: Mapping[str, str]) -> str | None:
    """The system message the teacher gets before every prompt: the guidelines and the approved glossary."""
    parts = []
    if settings.guidelines.strip():
        parts.append(settings.guidelines.strip())
    if glossary:
        terms = "\n".join(f"- {term}: {meaning}" for term, meaning in sorted(glossary.items()))
        parts.append(f"Use these terms as defined:\n{terms}")
    return "\n\n".join(parts) or None


def check_role(reference: str) -> str:
    """What a check on a prompt with this reference answer expects: ``accept`` (the check shows the reference
    itself, and a careful expert accepts it) or ``reject`` (it shows a decoy, another prompt's reference, and a
    careful expert rejects or corrects it). Half and half, fixed by the text, so that an expert who accepts
    everything fails the checks as surely as one who rejects everything."""
    digest = hashlib.sha256(reference.encode("utf-8")).digest()
    return "accept" if digest[0] % 2 == 0 else "reject"


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: Literal["rate", "compare", "correct"]
    rationale: str | None = Field(None, max_length=5000)


class RateAnswer(_Answer):
    ratings: dict[str, int] = Field(default_factory=dict)
    text: str | None = Field(None, max_length=MAX_ANSWER_CHARS)


class CompareAnswer(_Answer):
    choice: Literal["a", "b", "tie", "both_bad"]


class CorrectAnswer(_Answer):
    text: str = Field(max_length=MAX_ANSWER_CHARS)

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the corrected answer is empty; write the answer as it should be")
        return v


_SCHEMAS: dict[str, type[_Answer]] = {"rate": RateAnswer, "compare": CompareAnswer, "correct": CorrectAnswer}


class GenerateKind:
    """Instruction following: the teacher writes, experts judge and fix, a small language model learns."""

    name = "generate.v1"
    summary = "a written answer per prompt; experts rate, compare and correct the teacher's answers"
    aggregator = "verdicts.v1"
    students: tuple[str, ...] = ("generative",)
    widget = "widgets/generate.html"
    report_sections = REPORT_SECTIONS
    generative = True

    def check(self, settings: Settings) -> None:
        names = [r.name for r in settings.generate.rubric]
        if not names or len(set(names)) != len(names):
            from terakoya.errors import ConfigError

            raise ConfigError(
                "generate.rubric needs at least one line, each with its own name; list them under "
                "[[generate.rubric]] with name = ... in terakoya.toml"
            )

    def labels(self, settings: Settings) -> tuple[str, ...]:
        return ()

    def requests(self, prompt: Prompt, settings: Settings, items: Sequence[tuple[int, str]]) -> list[TeacherRequest]:
        from terakoya.teachers.base import TeacherRequest

        system = [{"role": "system", "content": prompt.system}] if prompt.system else []
        return [
            TeacherRequest(key=str(item_id), text=text, messages=(*system, *messages_of(text)), labels=())
            for item_id, text in items
        ]

    def read_suggestion(self, answer: TeacherAnswer) -> SuggestionValue:
        raise StateError(f"{self.name} keeps written answers, not labels: teach it with terakoya.generation.teach")

    def route_value(
        self,
        teacher: NDArray[Any],
        known: NDArray[Any],
        student: NDArray[Any] | None,
        has_student: NDArray[Any],
        routing: RoutingSettings,
    ) -> ItemScores:
        raise StateError(f"{self.name} routes by its own scores: use terakoya.generation.routing")

    def read_answer(self, raw: Mapping[str, Any], settings: Settings) -> AnswerValue:
        """One expert answer of any of the three tasks, checked against its schema and the rubric."""
        task = raw.get("task")
        schema = _SCHEMAS.get(str(task))
        if schema is None:
            raise DataError(f"the answer names task {task!r}; a {self.name} answer is one of {', '.join(_SCHEMAS)}")
        try:
            answer = schema.model_validate(dict(raw))
        except ValidationError as exc:
            raise DataError(f"the answer does not fit {self.name} {task}: {schema_error(exc)}") from None
        rationale = (answer.rationale or "").strip() or None
        value: dict[str, Any] = {"task": answer.task}
        label: str
        if isinstance(answer, RateAnswer):
            rubric = [r.name for r in settings.generate.rubric]
            correcting = answer.text is not None and bool(answer.text.strip())
            # a correction may come without ratings (the corrected answer says enough); partial ratings never
            missing = [n for n in rubric if n not in answer.ratings] if answer.ratings or not correcting else []
            extra = [n for n in answer.ratings if n not in rubric]
            if missing or extra:
                problems = [f"missing {', '.join(missing)}"] if missing else []
                problems += [f"not in the rubric: {', '.join(extra)}"] if extra else []
                raise DataError(f"the ratings must cover the rubric ({', '.join(rubric)}): {'; '.join(problems)}")
            bad = {n: v for n, v in answer.ratings.items() if not 1 <= v <= 5}
            if bad:
                raise DataError(f"ratings go from 1 to 5; got {bad}")
            if answer.ratings:
                value["ratings"] = {n: answer.ratings[n] for n in rubric}
            low = answer.ratings and min(answer.ratings.values()) < settings.generate.accept_min_rating
            label = "reject" if low else "accept"
            if answer.text is not None and answer.text.strip():
                value["text"] = answer.text
                label = "corrected"
        elif isinstance(answer, CompareAnswer):
            value["choice"] = answer.choice
            label = answer.choice
        else:
            assert isinstance(answer, CorrectAnswer)
            value["text"] = answer.text
            label = "corrected"
        if rationale:
            value["rationale"] = rationale
        return AnswerValue(label, value, rationale)

    def aggregate(self, answers: Sequence[tuple[int, str]]) -> str:
        """The verdict most answers gave, by the house rule every kind shares (:func:`majority`)."""
        return majority(answers)

    def read_gold(self, raw: str, settings: Settings) -> AnswerValue:
        """A reference answer: its text, and its role as a check item (:func:`check_role`) as the label."""
        if len(raw) > MAX_ANSWER_CHARS:
            raise DataError(f"the reference answer is {len(raw):,} characters long; keep it under {MAX_ANSWER_CHARS:,}")
        return AnswerValue(check_role(raw), {"text": raw})

    def expert_targets(self, evidence: Evidence, settings: Settings) -> dict[int, ExpertTarget]:
        raise StateError(f"{self.name} trains on written answers: use terakoya.generation.training")

    def present(self, classes: Sequence[str], probabilities: Sequence[float]) -> dict[str, Any]:
        raise StateError(f"{self.name} students write answers: serve them with `terakoya serve-model`")
