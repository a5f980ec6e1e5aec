"""The task-kind contract: what a stage asks of the kind, and only what differs between kinds.

A task kind says what an item asks for and what an answer looks like. Stages stay kind-free for
everything else (budgets, leases, provenance, jobs) and ask the kind for:

- ``labels``: the answer vocabulary the teacher, the experts and the student share;
- ``check``: whether the project's settings suit the kind (a ConfigError that names the fix);
- ``requests``: the teacher requests for a batch of items (teaching);
- ``read_suggestion``: what a teacher's answer becomes in the suggestions table (label, probabilities,
  confidence and whether it was measured);
- ``route_value``: the value of asking an expert about each candidate item (routing);
- ``read_answer``: one expert answer read and validated against the kind's pydantic schema
  (answer files, the web work queue);
- ``aggregate``: the one target an item's answers give together (training, export, evaluation),
  named and versioned by ``aggregator``;
- ``students``: the student kinds that can learn it; ``widget``: the web template that collects answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from terakoya.routing import ItemScores
    from terakoya.settings import RoutingSettings, Settings
    from terakoya.teachers.base import TeacherAnswer, TeacherRequest
    from terakoya.teachers.prompts import Prompt

__all__ = ["AnswerValue", "SuggestionValue", "TaskKind"]


@dataclass(frozen=True)
class AnswerValue:
    """One validated expert answer: the label it gives (None for answers without one), the kind's whole
    value as JSON (stored in ``answers.value``), and the expert's own words, if any."""

    label: str | None
    value: dict[str, Any] = field(default_factory=dict)
    rationale: str | None = None


@dataclass(frozen=True)
class SuggestionValue:
    """A teacher's answer as the suggestions table keeps it: the label it gives (None: an error), the label
    probabilities, the confidence (None when unknown) and whether that confidence was measured."""

    label: str | None
    probabilities: dict[str, float]
    confidence: float | None
    confidence_known: bool


class TaskKind(Protocol):
    """A versioned task kind (``classify.v1``). Kinds are plain objects listed in :mod:`terakoya.kinds`."""

    @property
    def name(self) -> str: ...

    @property
    def summary(self) -> str: ...

    @property
    def aggregator(self) -> str: ...

    @property
    def students(self) -> tuple[str, ...]: ...

    @property
    def widget(self) -> str: ...

    def check(self, settings: Settings) -> None: ...

    def labels(self, settings: Settings) -> tuple[str, ...]: ...

    def requests(
        self, prompt: Prompt, settings: Settings, items: Sequence[tuple[int, str]]
    ) -> list[TeacherRequest]: ...

    def read_suggestion(self, answer: TeacherAnswer) -> SuggestionValue: ...

    def route_value(
        self,
        teacher: NDArray[Any],
        known: NDArray[Any],
        student: NDArray[Any] | None,
        has_student: NDArray[Any],
        routing: RoutingSettings,
    ) -> ItemScores: ...

    def read_answer(self, raw: Mapping[str, Any], settings: Settings) -> AnswerValue: ...

    def aggregate(self, answers: Sequence[tuple[int, str]]) -> str: ...
