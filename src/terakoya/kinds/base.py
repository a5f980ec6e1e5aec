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
- ``read_gold``: an item's known answer read from an imported file's cell, as the kind's value (items);
- ``expert_targets``: what each item's expert answers give the student to learn (the training set);
- ``students``: the student kinds that can learn it; ``widget``: the web template that collects answers;
- ``report_sections``: the report sections that mean something for the kind, in order (the report);
- ``present``: one prediction of a saved student as the output columns of ``terakoya predict`` (serving);
- ``generative``: True for a kind whose items are answered in writing (``generate.v1``): its teaching,
  routing, training and evaluation are the stages of :mod:`terakoya.generation`, and the label-only members
  above raise a StateError that says so.
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

__all__ = ["AnswerValue", "Evidence", "ExpertTarget", "SuggestionValue", "TaskKind"]


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
    probabilities, the confidence (None when unknown), whether that confidence was measured, and the kind's
    value for anything more (None: nothing more)."""

    label: str | None
    probabilities: dict[str, float]
    confidence: float | None
    confidence_known: bool
    #: what the model said beyond the label and its probabilities (stored in ``suggestions.value``)
    value: dict[str, Any] | None = None


@dataclass(frozen=True)
class ExpertTarget:
    """What one item's expert answers give the student: the label, the target distribution over the kind's
    labels, how sure the aggregate is (a sample-weight factor in [0, 1]), the answers it came from and the
    aggregation rule's versioned name (recorded with the training label)."""

    label: str
    distribution: dict[str, float]
    confidence: float
    answer_ids: tuple[int, ...]
    aggregator: str


@dataclass(frozen=True)
class Evidence:
    """What the training set knows of the items people answered.

    ``answers``: item -> its live expert answers ``(answer id, label)``, oldest first; ``people``: answer id ->
    who gave it; ``models``: a model worker (``teacher``, ``student``) -> item -> its label, for aggregators that
    weigh people and models by their estimated reliability.
    """

    answers: Mapping[int, Sequence[tuple[int, str]]]
    people: Mapping[int, str] = field(default_factory=dict)
    models: Mapping[str, Mapping[int, str]] = field(default_factory=dict)


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

    @property
    def report_sections(self) -> tuple[str, ...]: ...

    @property
    def generative(self) -> bool: ...

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

    def read_gold(self, raw: str, settings: Settings) -> AnswerValue: ...

    def expert_targets(self, evidence: Evidence, settings: Settings) -> dict[int, ExpertTarget]: ...

    def present(self, classes: Sequence[str], probabilities: Sequence[float]) -> dict[str, Any]: ...
