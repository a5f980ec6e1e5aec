"""``classify.v1``: one label per item, from the labels the project declares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from terakoya.errors import ConfigError, DataError
from terakoya.kinds.base import AnswerValue, SuggestionValue
from terakoya.quality.aggregate import AGGREGATOR, majority

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from terakoya.routing import ItemScores
    from terakoya.settings import RoutingSettings, Settings
    from terakoya.teachers.base import TeacherAnswer, TeacherRequest
    from terakoya.teachers.prompts import Prompt

__all__ = ["ClassifyAnswer", "ClassifyKind", "label_suggestion"]


class ClassifyAnswer(BaseModel):
    """The answer schema: a label, and optionally why."""

    model_config = ConfigDict(extra="forbid")

    label: str
    rationale: str | None = None

    @field_validator("label")
    @classmethod
    def _label(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the label is empty")
        return v.strip()


def label_suggestion(answer: TeacherAnswer) -> SuggestionValue:
    """A label distribution as a suggestion: the top label, its probability as the confidence where measured."""
    known = answer.error is None and answer.confidence_known
    confidence = max(answer.probabilities.values()) if known and answer.probabilities else None
    return SuggestionValue(answer.label, dict(answer.probabilities), confidence, known)


def schema_error(exc: ValidationError) -> str:
    """A pydantic error in one line: ``field: message; ...``."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}" for e in exc.errors())


class ClassifyKind:
    """Single-label text classification."""

    name = "classify.v1"
    summary = "one label per text, from the labels declared under [[labels]]"
    aggregator = AGGREGATOR
    students: tuple[str, ...] = ("embed", "linear", "finetune", "auto")
    widget = "widgets/classify.html"
    schema: type[ClassifyAnswer] = ClassifyAnswer

    def check(self, settings: Settings) -> None:
        if len(settings.label_names) < 2:
            raise ConfigError(
                f"task kind {self.name} needs at least two labels, the project declares {len(settings.label_names)}: "
                "add [[labels]] entries with name = ... to terakoya.toml"
            )

    def labels(self, settings: Settings) -> tuple[str, ...]:
        return tuple(settings.label_names)

    def requests(self, prompt: Prompt, settings: Settings, items: Sequence[tuple[int, str]]) -> list[TeacherRequest]:
        from terakoya.teachers.base import TeacherRequest

        labels = self.labels(settings)
        return [
            TeacherRequest(key=str(item_id), text=text, messages=prompt.messages(text), labels=labels)
            for item_id, text in items
        ]

    def read_suggestion(self, answer: TeacherAnswer) -> SuggestionValue:
        return label_suggestion(answer)

    def route_value(
        self,
        teacher: NDArray[Any],
        known: NDArray[Any],
        student: NDArray[Any] | None,
        has_student: NDArray[Any],
        routing: RoutingSettings,
    ) -> ItemScores:
        """Teacher uncertainty plus teacher-student disagreement, weighted as ``[routing]`` says."""
        from terakoya.routing import score_items

        return score_items(
            teacher,
            confidence_known=known,
            student=student,
            has_student=has_student,
            uncertainty_weight=routing.uncertainty_weight,
            disagreement_weight=routing.disagreement_weight,
        )

    def read_answer(self, raw: Mapping[str, Any], settings: Settings) -> AnswerValue:
        """Validate one answer; a DataError says what is wrong and how to fix it (the caller adds where)."""
        try:
            answer = self.schema.model_validate(dict(raw))
        except ValidationError as exc:
            raise DataError(f"the answer does not fit {self.name}: {schema_error(exc)}") from None
        labels = self.labels(settings)
        if answer.label not in labels:
            raise DataError(
                f"label {answer.label!r} is not one of the project's labels: {', '.join(labels)}; "
                "fix the label, or declare it under [[labels]] in terakoya.toml"
            )
        rationale = (answer.rationale or "").strip() or None
        value: dict[str, Any] = {"label": answer.label, **({"rationale": rationale} if rationale else {})}
        return AnswerValue(answer.label, value, rationale)

    def aggregate(self, answers: Sequence[tuple[int, str]]) -> str:
        return majority(answers)
