"""``classify.v1``: one label per item, from the labels the project declares."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from terakoya.errors import ConfigError, DataError
from terakoya.kinds.base import AnswerValue, Evidence, ExpertTarget, SuggestionValue
from terakoya.quality.aggregate import AGGREGATOR, majority

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from terakoya.routing import ItemScores
    from terakoya.settings import RoutingSettings, Settings
    from terakoya.teachers.base import TeacherAnswer, TeacherRequest
    from terakoya.teachers.prompts import Prompt

__all__ = [
    "REPORT_SECTIONS",
    "ClassifyAnswer",
    "ClassifyKind",
    "crowd_targets",
    "label_suggestion",
    "one_hot_targets",
    "present_label",
]

#: every section of the evaluation report, by its id on the page, in the order the report shows them
REPORT_SECTIONS = (
    "summary",
    "comparison",
    "findings",
    "notes",
    "per-class",
    "confusion",
    "calibration",
    "errors",
    "slices",
    "verify-blind",
    "overrides",
    "experts",
    "quality",
    "agreement",
    "curve",
    "economics",
)


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


def one_hot_targets(
    answers: Mapping[int, Sequence[tuple[int, str]]],
    labels: Sequence[str],
    rule: Callable[[Sequence[tuple[int, str]]], str],
    aggregator: str,
) -> dict[int, ExpertTarget]:
    """Each item's answers aggregated by ``rule`` into one label, learned as a sure (one-hot) target."""
    out: dict[int, ExpertTarget] = {}
    for item_id, pairs in answers.items():
        label = rule(pairs)
        distribution = {c: float(c == label) for c in labels}
        out[item_id] = ExpertTarget(label, distribution, 1.0, tuple(answer_id for answer_id, _ in pairs), aggregator)
    return out


def crowd_targets(
    evidence: Evidence, labels: Sequence[str], method: str, *, with_models: bool
) -> dict[int, ExpertTarget]:
    """Each item's answers aggregated by a model of every answerer's reliability (:mod:`terakoya.quality.crowd`),
    the teacher and the student answering too when ``with_models``: the posterior is the target, its top
    probability the confidence. The aggregator's name says whether models took part (``...+models``)."""
    from terakoya.quality.crowd import aggregate

    rows = sorted(
        (answer_id, item_id, label) for item_id, pairs in evidence.answers.items() for answer_id, label in pairs
    )
    triples = [
        (item_id, evidence.people.get(answer_id, f"answer {answer_id}"), label) for answer_id, item_id, label in rows
    ]
    models = {name: dict(given) for name, given in evidence.models.items()} if with_models else None
    result = aggregate(triples, labels, method, models=models or None)
    name = result.version + ("+models" if models else "")
    out: dict[int, ExpertTarget] = {}
    for item_id, pairs in evidence.answers.items():
        distribution = {c: float(result.probabilities[item_id].get(c, 0.0)) for c in labels}
        ids = tuple(answer_id for answer_id, _ in pairs)
        out[item_id] = ExpertTarget(result.labels[item_id], distribution, float(result.confidence[item_id]), ids, name)
    return out


def present_label(classes: Sequence[str], probabilities: Sequence[float]) -> dict[str, Any]:
    """A label distribution as output columns: the label, its probability, then one ``p_<label>`` per label."""
    best = max(range(len(classes)), key=lambda i: probabilities[i])
    return {
        "predicted_label": classes[best],
        "confidence": float(probabilities[best]),
        **{f"p_{c}": float(p) for c, p in zip(classes, probabilities, strict=True)},
    }


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
    report_sections = REPORT_SECTIONS
    generative = False

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

    def read_gold(self, raw: str, settings: Settings) -> AnswerValue:
        """A known label from a file's cell: one of the declared labels (any label while none is declared yet:
        the import then declares the labels it saw)."""
        label = raw.strip()
        labels = settings.label_names
        if labels and label not in labels:
            raise DataError(
                f"label {label!r} is not one of the project's labels: {', '.join(labels)} — "
                "fix the file or declare the label in terakoya.toml"
            )
        return AnswerValue(label, {"label": label})

    def expert_targets(self, evidence: Evidence, settings: Settings) -> dict[int, ExpertTarget]:
        """``quality.aggregator``: majority (one-hot targets, ``majority.v1``), or a crowd-kit model of each
        answerer's reliability (``dawid_skene``, ``mace``), with the teacher and the student as workers when
        ``quality.models_as_workers``."""
        method = settings.quality.aggregator
        if method == "majority" or not evidence.answers:
            return one_hot_targets(evidence.answers, self.labels(settings), self.aggregate, self.aggregator)
        return crowd_targets(evidence, self.labels(settings), method, with_models=settings.quality.models_as_workers)

    def present(self, classes: Sequence[str], probabilities: Sequence[float]) -> dict[str, Any]:
        return present_label(classes, probabilities)
