"""The task-kind contract: what a stage asks of the kind, and only what differs between kinds.

A task kind says what an item asks for and what an answer looks like. Stages stay kind-free for
everything else (budgets, leases, provenance, jobs) and ask the kind for:

- ``labels``: the answer vocabulary the teacher, the experts and the student share;
- ``check``: whether the project's settings suit the kind (a ConfigError that names the fix);
- ``requests``: the teacher requests for a batch of items (teaching);
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
    from terakoya.settings import Settings
    from terakoya.teachers.base import TeacherRequest
    from terakoya.teachers.prompts import Prompt

__all__ = ["AnswerValue", "TaskKind"]


@dataclass(frozen=True)
class AnswerValue:
    """One validated expert answer: the label it gives (None for answers without one), the kind's whole
    value as JSON (stored in ``answers.value``), and the expert's own words, if any."""

    label: str | None
    value: dict[str, Any] = field(default_factory=dict)
    rationale: str | None = None


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

    def read_answer(self, raw: Mapping[str, Any], settings: Settings) -> AnswerValue: ...

    def aggregate(self, answers: Sequence[tuple[int, str]]) -> str: ...
