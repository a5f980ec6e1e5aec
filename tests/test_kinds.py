"""Task kinds: the registry, the settings that name one, and a test-only kind that runs the whole loop.

The test-only kind (yes/no with a reason) differs from ``classify.v1`` in what the stages ask of a kind:
the teacher's request, the answer schema (a reason is required), the aggregation rule, the students it
allows. It goes through import -> teach -> route -> answer -> train -> evaluate with no change to the
stage code: the proof that the seams work.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import pytest
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from terakoya import kinds
from terakoya.errors import ConfigError, DataError
from terakoya.kinds import AnswerValue, get_kind, registered
from terakoya.kinds.base import Evidence, ExpertTarget, SuggestionValue
from terakoya.kinds.classify import ClassifyKind, label_suggestion
from terakoya.project import Project
from terakoya.routing import ItemScores, score_items
from terakoya.settings import RoutingSettings, Settings, load_settings
from terakoya.storage.models import Answer, Item, Suggestion, TrainingLabel
from terakoya.teachers.base import TeacherAnswer, TeacherRequest
from terakoya.teachers.prompts import Prompt

QUESTION = "Does the company expect to grow?"


# ----------------------------------------------------------------------------- the registry


def test_the_registry_names_what_is_available() -> None:
    assert "classify.v1" in kinds.available()
    assert get_kind("classify.v1").name == "classify.v1"
    with pytest.raises(ConfigError, match=r"^task kind 'nope.v1' is unknown; set task.kind .* one of: classify.v1"):
        get_kind("nope.v1")
    assert get_kind("generate.v1").generative and not get_kind("classify.v1").generative
    with pytest.raises(ConfigError, match="has no version"):
        kinds.register(YesNoWithReason(name="yesno"))
    with pytest.raises(ConfigError, match="is built in"):
        kinds.register(ClassifyKind())
    with registered(YesNoWithReason()):
        assert "yesno-reason.v1" in kinds.available()
    assert "yesno-reason.v1" not in kinds.available()


def test_settings_name_a_kind_or_fail_clearly(tmp_path: Path) -> None:
    assert Settings(name="x").task.kind == "classify.v1"
    (tmp_path / "terakoya.toml").write_text('[project]\nname = "x"\n[task]\ntype = "generation"\n', encoding="utf-8")
    assert load_settings(tmp_path).task.kind == "generate.v1"  # the older spelling of the kind
    (tmp_path / "terakoya.toml").write_text('[project]\nname = "x"\n[task]\nkind = "cls.v9"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"task kind 'cls.v9' is unknown"):
        load_settings(tmp_path)
    (tmp_path / "terakoya.toml").write_text('[project]\nname = "x"\n[task]\ntype = "single-label"\n', encoding="utf-8")
    assert load_settings(tmp_path).task.kind == "classify.v1"  # the older spelling still opens


def test_classify_answers_are_read_by_its_schema() -> None:
    settings = Settings(name="x", labels=[{"name": "up"}, {"name": "down"}])
    kind = get_kind("classify.v1")
    assert kind.read_answer({"label": " up ", "rationale": "  "}, settings) == AnswerValue("up", {"label": "up"}, None)
    with pytest.raises(DataError, match=r"label 'sideways' is not one of the project's labels: up, down"):
        kind.read_answer({"label": "sideways"}, settings)
    with pytest.raises(DataError, match=r"does not fit classify.v1: label: Field required"):
        kind.read_answer({"rationale": "no label"}, settings)


# ----------------------------------------------------------------------------- a test-only kind


class YesNoAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: Literal["yes", "no"]
    rationale: str = Field(min_length=3)


class YesNoWithReason:
    """A yes/no question about each text; every answer must say why; "yes" only when every expert says yes."""

    summary = "yes or no to the question in the guidelines, with a reason"
    aggregator = "unanimous-yes.v1"
    students: tuple[str, ...] = ("linear",)
    widget = "widgets/classify.html"
    generative = False

    def __init__(self, name: str = "yesno-reason.v1") -> None:
        self.name = name

    def check(self, settings: Settings) -> None:
        if tuple(settings.label_names) != ("yes", "no"):
            raise ConfigError(f"{self.name} needs exactly the labels yes and no, in that order")

    def labels(self, settings: Settings) -> tuple[str, ...]:
        return ("yes", "no")

    def requests(self, prompt: Prompt, settings: Settings, items: Sequence[tuple[int, str]]) -> list[TeacherRequest]:
        question = settings.guidelines.strip()
        return [
            TeacherRequest(str(i), f"Q: {question}\nText: {text}", prompt.messages(text), ("yes", "no"))
            for i, text in items
        ]

    def read_suggestion(self, answer: TeacherAnswer) -> SuggestionValue:
        """A teacher less than 70 % sure either way has not measurably answered: its confidence is unknown."""
        read = label_suggestion(answer)
        sure = read.confidence is not None and read.confidence >= 0.7
        return replace(read, confidence=read.confidence if sure else None, confidence_known=sure, value={"sure": sure})

    def route_value(
        self,
        teacher: NDArray[Any],
        known: NDArray[Any],
        student: NDArray[Any] | None,
        has_student: NDArray[Any],
        routing: RoutingSettings,
    ) -> ItemScores:
        """Only the teacher's doubt counts (a student's disagreement on a yes/no question is ignored)."""
        ROUTE_CALLS.append(len(teacher))
        return score_items(teacher, confidence_known=known, disagreement_weight=0.0)

    def read_answer(self, raw: Mapping[str, Any], settings: Settings) -> AnswerValue:
        try:
            answer = YesNoAnswer.model_validate(dict(raw))
        except ValidationError:
            raise DataError("a yes/no answer needs the label yes or no and a reason of 3 characters or more") from None
        return AnswerValue(answer.label, answer.model_dump(), answer.rationale)

    def aggregate(self, answers: Sequence[tuple[int, str]]) -> str:
        return "yes" if all(label == "yes" for _, label in answers) else "no"

    report_sections = ("summary", "comparison", "findings", "notes", "errors", "experts")

    def read_gold(self, raw: str, settings: Settings) -> AnswerValue:
        """Known answers may be written y/n, yes/no or true/false, in any case."""
        value = {"y": "yes", "yes": "yes", "true": "yes", "n": "no", "no": "no", "false": "no"}.get(raw.strip().lower())
        if value is None:
            raise DataError(f"{raw!r} is not a yes/no answer; write yes or no")
        return AnswerValue(value, {"label": value, "written": raw.strip()})

    def expert_targets(self, evidence: Evidence, settings: Settings) -> dict[int, ExpertTarget]:
        """The unanimous-yes label, as sure as the share of the experts who gave it."""
        out = {}
        for item_id, pairs in evidence.answers.items():
            label = self.aggregate(pairs)
            share = sum(given == label for _, given in pairs) / len(pairs)
            distribution = {"yes": float(label == "yes"), "no": float(label == "no")}
            out[item_id] = ExpertTarget(label, distribution, share, tuple(a for a, _ in pairs), self.aggregator)
        return out

    def present(self, classes: Sequence[str], probabilities: Sequence[float]) -> dict[str, Any]:
        yes = float(probabilities[list(classes).index("yes")])
        return {"answer": "yes" if yes >= 0.5 else "no", "sure": yes >= 0.8 or yes <= 0.2}


SEEN_BY_TEACHER: list[str] = []
ROUTE_CALLS: list[int] = []


def yes_no_teacher(texts: list[str], labels: list[str]) -> list[dict[str, float]]:
    """The python teacher: sure "yes" when the text talks of growth."""
    SEEN_BY_TEACHER.extend(texts)
    said = [t.split("\nText: ", 1)[-1] for t in texts]  # the text after the kind's question
    return [{"yes": 0.8, "no": 0.2} if "grow" in t else {"yes": 0.35, "no": 0.65} for t in said]


GROW = ["We expect sales to grow {} percent.", "Orders grow fast in region {}.", "Revenue will grow in year {}."]
SHRINK = ["Sales fell {} percent.", "The plant {} closes next month.", "Costs rose and margins shrank in {}."]


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_a_new_kind_runs_the_loop_without_touching_stage_code(tmp_path: Path) -> None:
    toml = f"""
[project]
name = "yn"
[task]
kind = "yesno-reason.v1"
[[labels]]
name = "yes"
[[labels]]
name = "no"
[guidelines]
text = "{QUESTION}"
[teacher]
kind = "python"
function = "test_kinds:yes_no_teacher"
[student]
kind = "linear"
[routing]
gold_share = 0.0
"""
    (tmp_path / "terakoya.toml").write_text(toml, encoding="utf-8")
    pool = [{"id": f"p{i}", "text": (GROW if i % 2 else SHRINK)[i % 3].format(i)} for i in range(60)]
    test = [
        {
            "id": f"t{i}",
            "text": (GROW if i % 2 else SHRINK)[i % 3].format(100 + i),
            "label": ("Y" if i % 4 == 1 else "yes") if i % 2 else ("false" if i % 3 else "N"),
        }
        for i in range(20)
    ]
    with registered(YesNoWithReason()), Project.open(tmp_path, env={}) as project:
        project.import_file(_write(tmp_path / "pool.csv", pool), id_column="id")
        bad = [{"id": "b1", "text": "x", "label": "yes"}, {"id": "b2", "text": "y", "label": "maybe"}]
        with pytest.raises(DataError, match=r"^bad.csv line 3: 'maybe' is not a yes/no answer; write yes or no"):
            project.import_file(_write(tmp_path / "bad.csv", bad), id_column="id", label_column="label")
        project.import_file(_write(tmp_path / "test.csv", test), id_column="id", label_column="label", split="test")
        with project.db.session() as s:  # the kind read the known answers
            known = s.execute(select(Item.gold_label, Item.gold).where(Item.split == "test")).all()
        assert {label for label, _ in known} == {"yes", "no"}
        assert {gold["written"] for _, gold in known} == {"Y", "yes", "false", "N"}
        assert all(gold["label"] == label for label, gold in known)

        SEEN_BY_TEACHER.clear()
        project.teach()
        assert SEEN_BY_TEACHER and all(t.startswith(f"Q: {QUESTION}\nText: ") for t in SEEN_BY_TEACHER)

        # the kind reads the teacher's answers: "no" at 0.65 is not sure enough to count as measured
        with project.db.session() as s:
            read = {(sg.label, sg.confidence_known, sg.value["sure"]) for sg in s.scalars(select(Suggestion)).all()}
        assert read == {("yes", True, True), ("no", False, False)}

        ROUTE_CALLS.clear()
        routed = project.route(budget_items=10)
        assert routed.routed >= 1 and ROUTE_CALLS == [60]  # the kind valued every eligible pool item

        # the kind's answer schema: a reason is required, and a bad row names its line and loses nothing
        no_reason = [{"id": "p1", "label": "yes", "person": "ann", "rationale": "says grow"},
                     {"id": "p2", "label": "no", "person": "ann", "rationale": ""}]  # fmt: skip
        with pytest.raises(DataError, match=r"^no_reason.csv line 3: a yes/no answer needs .* a reason"):
            project.record_answers(_write(tmp_path / "no_reason.csv", no_reason))
        with project.db.session() as s:
            assert s.scalars(select(Answer)).all() == []

        answers = [
            {"id": "p1", "label": "yes", "person": "ann", "rationale": "it says grow"},
            {"id": "p1", "label": "no", "person": "ben", "rationale": "only one region"},
            {"id": "p2", "label": "no", "person": "ann", "rationale": "sales fell"},
        ] + [
            {"id": f"p{i}", "label": "yes" if i % 2 else "no", "person": "ann", "rationale": "read it"}
            for i in range(3, 30)
        ]
        report = project.record_answers(_write(tmp_path / "answers.csv", answers))
        assert report.recorded == len(answers)
        with project.db.session() as s:
            stored = s.scalars(select(Answer).where(Answer.rationale == "it says grow")).one()
            assert stored.value == {"label": "yes", "rationale": "it says grow"}

        trained = project.train()
        with project.db.session() as s:
            rows = {
                r.item_id: r for r in s.scalars(select(TrainingLabel).where(TrainingLabel.source == "expert")).all()
            }
        with project.db.session() as s:
            p1 = s.scalar(select(Item.id).where(Item.external_id == "p1"))
        assert rows[p1].label == "no"  # the kind's rule: yes only when every expert says yes
        # the kind's training target: as sure as the share of experts who gave it (one of two said no)
        p3 = next(r for r in rows.values() if r.answer_ids and len(r.answer_ids) == 1)
        assert rows[p1].weight == pytest.approx(p3.weight / 2)
        assert {r.aggregator for r in rows.values()} == {"unanimous-yes.v1"}

        with pytest.raises(ConfigError, match=r"student 'embed.v1' cannot learn task kind yesno-reason.v1"):
            project.train(kind="embed")

        evaluation = project.evaluate(learning_curve=False)
        student = evaluation.data["student"]
        assert student["accuracy"] is not None and student["accuracy"] > 0.5, student
        # the kind's report sections: no calibration or learning curve for a yes/no question
        html = evaluation.html_path.read_text(encoding="utf-8")
        assert 'id="experts"' in html and 'id="comparison"' in html
        assert 'id="calibration"' not in html and 'id="curve"' not in html and 'id="slices"' not in html

        # serving: the kind says what a prediction looks like in the output file
        from terakoya.serving.predicting import predict_file

        inp = _write(tmp_path / "new.csv", [{"text": GROW[0].format(7)}, {"text": SHRINK[0].format(9)}])
        assert predict_file(trained.path, inp, tmp_path / "out.csv") == 2
        with open(tmp_path / "out.csv", encoding="utf-8") as fh:
            out = list(csv.DictReader(fh))
        assert list(out[0]) == ["text", "answer", "sure"] and [r["answer"] for r in out] == ["yes", "no"]
        assert trained.expert_items == 29
