"""teach / plan_teach on real databases: caching, prompt versions, errors, dry runs, kill and resume."""

from __future__ import annotations

import hashlib
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from fakes.openai_server import FakeOpenAI
from terakoya.errors import ConfigError, TeacherError
from terakoya.settings import Settings
from terakoya.storage.db import Database, open_database
from terakoya.storage.models import Answer, GlossaryTerm, Item, Person, Suggestion, TeacherCall
from terakoya.teachers import approved_glossary, collect_examples
from terakoya.teachers.python import PythonTeacher
from terakoya.teachers.teaching import current_prompt, plan_teach, teach

TEXTS = [
    "Operating profit rose to EUR 13 mn.",
    "Net loss widened in the third quarter.",
    "The company has offices in Espoo.",
    "Sales growth was strong in Asia.",
    "The firm announced layoffs at its plant.",
    "The meeting is held on Tuesday.",
    "Revenue hit a record high.",
    "Shares fell 5 % on the news.",
    "The report covers 2009.",
    "Orders rose by a third.",
]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def make_settings(tmp_path: Path, **teacher: object) -> Settings:
    return Settings.model_validate(
        {
            "name": "p",
            "labels": [{"name": "positive"}, {"name": "negative"}, {"name": "neutral"}],
            "guidelines": "Judge as an investor.",
            "teacher": {"batch_size": 4, "backoff_s": 0.001, **teacher},
            "project_dir": tmp_path,
        }
    )


def openai_settings(tmp_path: Path, server: FakeOpenAI, **teacher: object) -> Settings:
    return make_settings(
        tmp_path,
        kind="openai",
        model="fake-model",
        base_url=server.base_url,
        price_input_per_million=2.0,
        price_output_per_million=8.0,
        **teacher,
    )


def add_items(db: Database, project_id: int, texts: list[str], *, test_every: int = 5) -> list[int]:
    with db.session() as s:
        items = [
            Item(
                project_id=project_id,
                external_id=str(i),
                text=text,
                text_hash=hashlib.sha256(text.encode()).hexdigest(),
                split="test" if i % test_every == test_every - 1 else "pool",
            )
            for i, text in enumerate(texts)
        ]
        s.add_all(items)
        s.flush()
        return [item.id for item in items]


def count(db: Database, model: type[Suggestion] | type[TeacherCall]) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_teach_labels_every_item_once_and_again_makes_no_calls(db_url: str, tmp_path: Path, fake: FakeOpenAI) -> None:
    db = open_database(db_url)
    pid = db.project_id("p")
    ids = add_items(db, pid, TEXTS)
    settings = openai_settings(tmp_path, fake)
    seen: list[tuple[int, int]] = []
    report = teach(db, pid, settings, progress=lambda done, total: seen.append((done, total)))
    assert (report.labeled, report.calls, report.cached, report.errors) == (10, 10, 0, 0)
    assert seen == [(0, 10), (4, 10), (8, 10), (10, 10)]
    assert report.model == "fake-model" and report.prompt_version == current_prompt(db, pid, settings).version
    assert fake.calls == 10 and count(db, TeacherCall) == 10
    with db.session() as s:
        rows = s.scalars(select(Suggestion).order_by(Suggestion.item_id)).all()
        assert [r.item_id for r in rows] == ids  # pool and test items alike
        first = rows[0]
        assert (first.agent_kind, first.agent, first.prompt_version) == ("teacher", "fake-model", report.prompt_version)
        assert first.label == "positive" and first.confidence == pytest.approx(0.8 / 0.9)
        assert first.confidence_known and not first.cached and first.error is None and first.call_key
        assert first.completion_tokens == 1 and first.prompt_tokens > 0
        assert first.cost_usd == pytest.approx((first.prompt_tokens * 2.0 + 8.0) / 1e6)
        assert report.cost_usd == pytest.approx(sum(r.cost_usd for r in rows))
        assert [r.label for r in rows[:3]] == ["positive", "negative", "neutral"]
    again = teach(db, pid, settings)
    assert (again.labeled, again.calls, again.cached) == (0, 0, 0)
    assert fake.calls == 10 and count(db, Suggestion) == 10
    db.close()


def test_stored_calls_answer_without_calling(db_url: str, tmp_path: Path, fake: FakeOpenAI) -> None:
    db = open_database(db_url)
    pid = db.project_id("p")
    add_items(db, pid, TEXTS[:5])
    settings = openai_settings(tmp_path, fake)
    teach(db, pid, settings)
    with db.session() as s:
        s.execute(delete(Suggestion))
    report = teach(db, pid, settings)
    assert (report.labeled, report.calls, report.cached, report.cost_usd) == (5, 0, 5, 0.0)
    assert fake.calls == 5
    with db.session() as s:
        assert all(s.scalars(select(Suggestion.cached)))
    db.close()


def test_new_guidelines_mean_a_new_prompt_version_but_no_paying_twice(tmp_path: Path, fake: FakeOpenAI) -> None:
    """Items already taught keep their answer when the prompt changes; only --refresh asks again."""
    db = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    pid = db.project_id("p")
    add_items(db, pid, TEXTS[:4])
    settings = openai_settings(tmp_path, fake)
    first = teach(db, pid, settings)
    settings.guidelines = "Judge as a creditor."
    kept = teach(db, pid, settings)
    assert kept.prompt_version != first.prompt_version
    assert kept.calls == 0 and fake.calls == 4
    plan = plan_teach(db, pid, settings, refresh=True)
    assert (plan.to_call, plan.already_labeled) == (4, 0)
    second = teach(db, pid, settings, refresh=True)
    assert second.calls == 4 and fake.calls == 8
    assert plan_teach(db, pid, settings, refresh=True).to_call == 0
    with db.session() as s:
        versions = s.execute(select(Suggestion.prompt_version, func.count()).group_by(Suggestion.prompt_version)).all()
    assert dict(versions) == {first.prompt_version: 4, second.prompt_version: 4}
    assert "Judge as a creditor." in fake.requests[-1]["messages"][0]["content"]
    db.close()


def test_dry_run_counts_and_prices_without_calling(db_url: str, tmp_path: Path, fake: FakeOpenAI) -> None:
    db = open_database(db_url)
    pid = db.project_id("p")
    add_items(db, pid, TEXTS)
    settings = openai_settings(tmp_path, fake)
    prompt = current_prompt(db, pid, settings)
    plan = plan_teach(db, pid, settings)
    chars = sum(len(m["content"]) for t in TEXTS for m in prompt.messages(t))
    assert (plan.items, plan.to_call, plan.cached, plan.already_labeled) == (10, 10, 0, 0)
    assert plan.est_prompt_tokens == math.ceil(chars / 4)
    assert plan.est_completion_tokens == 10 * 2  # "positive" is 8 characters: 2 tokens at 4 characters each
    assert plan.est_cost_usd == pytest.approx((plan.est_prompt_tokens * 2.0 + 20 * 8.0) / 1e6)
    assert (plan.model, plan.prompt_version) == ("fake-model", prompt.version)
    assert fake.calls == 0 and count(db, TeacherCall) == 0
    assert plan_teach(db, pid, settings, limit=3).to_call == 3
    teach(db, pid, settings, limit=4)
    assert fake.calls == 4
    with db.session() as s:
        s.execute(
            delete(Suggestion).where(Suggestion.item_id.in_(select(Suggestion.item_id).limit(2).scalar_subquery()))
        )
    plan = plan_teach(db, pid, settings)
    assert (plan.to_call, plan.cached, plan.already_labeled) == (6, 2, 2)
    db.close()


def test_one_failing_item_is_recorded_and_tried_again_next_run(db_url: str, tmp_path: Path, fake: FakeOpenAI) -> None:
    db = open_database(db_url)
    pid = db.project_id("p")
    add_items(db, pid, TEXTS[:4])
    fake.fail_when = "Espoo"
    settings = openai_settings(tmp_path, fake, max_retries=1)
    report = teach(db, pid, settings)
    assert (report.labeled, report.errors) == (3, 1)
    with db.session() as s:
        failed = s.scalars(select(Suggestion).where(Suggestion.error.is_not(None))).one()
        assert failed.item.text == TEXTS[2]
        assert failed.label is None and failed.confidence is None and failed.call_key is None
        assert "HTTP 500: scripted failure on 'Espoo'" in (failed.error or "")
    assert count(db, TeacherCall) == 3  # failures are not cached
    fake.fail_when = None
    before = fake.calls
    again = teach(db, pid, settings)
    assert (again.labeled, again.calls, again.errors) == (1, 1, 0)
    assert fake.calls == before + 1
    db.close()


def test_garbage_answers_are_kept_and_not_asked_again(tmp_path: Path, fake: FakeOpenAI) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    pid = db.project_id("p")
    add_items(db, pid, TEXTS[:3])
    fake.mode = "garbage"
    settings = openai_settings(tmp_path, fake)
    report = teach(db, pid, settings)
    assert (report.labeled, report.errors, report.calls) == (0, 3, 3)
    with db.session() as s:
        row = s.scalars(select(Suggestion)).first()
        assert row is not None and row.raw_output == "I am not sure what you mean." and row.call_key
        assert row.probabilities == pytest.approx({"positive": 1 / 3, "negative": 1 / 3, "neutral": 1 / 3})
    assert teach(db, pid, settings).calls == 0
    db.close()


def test_a_batch_that_fails_entirely_stops_with_the_fix(tmp_path: Path, fake: FakeOpenAI) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    pid = db.project_id("p")
    add_items(db, pid, TEXTS[:6])
    fake.fail_first = 4  # the first batch (4 items, no retries) fails; the rest would work
    fake.fail_status = 503
    settings = openai_settings(tmp_path, fake, max_retries=0)
    endpoint = f"{fake.base_url}/chat/completions"
    with pytest.raises(TeacherError) as caught:
        teach(db, pid, settings)
    assert str(caught.value) == (
        "every request in a batch of 4 failed, so teaching stopped (0 items labelled before; run teach again "
        f"to go on): {endpoint} failed after 1 tries: HTTP 503: Rate limit reached; retry later, or raise "
        "teacher.max_retries / teacher.timeout_s"
    )
    assert count(db, Suggestion) == 0
    assert teach(db, pid, settings).labeled == 6
    db.close()


def test_python_teacher_through_teach(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    pid = db.project_id("p")
    add_items(db, pid, TEXTS[:3])
    calls: list[list[str]] = []

    def label(texts: list[str], labels: list[str]) -> list[str]:
        calls.append(texts)
        return ["neutral" for _ in texts]

    report = teach(db, pid, make_settings(tmp_path), teacher=PythonTeacher(label, name="python:test"))
    assert (report.labeled, report.model, calls) == (3, "python:test", [TEXTS[:3]])
    with db.session() as s:
        row = s.scalars(select(Suggestion)).first()
        # a label string: confidence unknown
        assert row is not None and row.label == "neutral" and row.confidence is None and not row.confidence_known
    db.close()


# ----------------------------------------------------------------------------- few-shot examples and glossary


def test_examples_come_from_experts_first_balanced_then_the_project_file(db_url: str, tmp_path: Path) -> None:
    db = open_database(db_url)
    pid = db.project_id("p")
    ids = add_items(db, pid, TEXTS, test_every=100)
    with db.session() as s:
        ann, sim = Person(name="ann"), Person(name="sim", simulated=True)
        test_item = Item(project_id=pid, external_id="t", text="Gold text.", text_hash="t", split="test")
        s.add_all([ann, sim, test_item])
        s.flush()
        s.add_all(
            [
                Answer(item_id=ids[0], person_id=sim.id, label="positive", simulated=True, source="simulate"),
                Answer(item_id=ids[3], person_id=ann.id, label="positive"),
                Answer(item_id=ids[6], person_id=ann.id, label="positive"),
                Answer(item_id=ids[1], person_id=ann.id, label="negative"),
                Answer(item_id=ids[4], person_id=ann.id, label="negative", superseded=True),
                Answer(item_id=ids[7], person_id=ann.id, label="negative"),
                Answer(item_id=ids[7], person_id=sim.id, label="neutral", simulated=True),  # disagreement: skipped
                Answer(item_id=ids[2], person_id=ann.id, label="flagged", kind="flag"),
                Answer(item_id=test_item.id, person_id=ann.id, label="neutral"),  # test split: never shown
            ]
        )
    settings = make_settings(tmp_path, few_shot=5)
    settings.examples = [{"text": "Plain fact.", "label": "neutral"}, {"text": "Big win.", "label": "positive"}]  # type: ignore[list-item]
    assert collect_examples(db, pid, settings) == [
        (TEXTS[3], "positive"),  # a real expert before a simulated one
        (TEXTS[1], "negative"),
        (TEXTS[6], "positive"),
        (TEXTS[0], "positive"),
        ("Plain fact.", "neutral"),
    ]
    settings.teacher.few_shot = 0
    assert collect_examples(db, pid, settings) == []
    db.close()


def test_example_with_an_undeclared_label_is_a_config_error(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    settings = make_settings(tmp_path)
    settings.examples = [{"text": "x", "label": "Positive"}]  # type: ignore[list-item]
    with pytest.raises(ConfigError) as caught:
        collect_examples(db, db.project_id("p"), settings)
    assert str(caught.value) == (
        "examples[0] has label 'Positive', which is not declared; labels are: positive, negative, neutral "
        "— fix the example in terakoya.toml"
    )
    db.close()


def test_glossary_is_the_file_plus_approved_terms(db_url: str, tmp_path: Path) -> None:
    db = open_database(db_url)
    pid = db.project_id("p")
    with db.session() as s:
        s.add_all(
            [
                GlossaryTerm(project_id=pid, term="EBIT", definition="operating profit", status="approved"),
                GlossaryTerm(project_id=pid, term="YoY", definition="year on year", status="proposed"),
                GlossaryTerm(project_id=pid, term="bad", definition="nope", status="rejected"),
            ]
        )
    settings = make_settings(tmp_path)
    settings.glossary = {"mn": "million"}
    assert approved_glossary(db, pid, settings) == {"mn": "million", "EBIT": "operating profit"}
    assert "- EBIT: operating profit" in current_prompt(db, pid, settings).system
    db.close()


# ----------------------------------------------------------------------------- kill and resume

SLOW_TEACHER = """
import os, time

def label(texts, labels):
    with open(os.environ["TEACHER_LOG"], "a", encoding="utf-8") as log:
        for text in texts:
            time.sleep(0.1)
            log.write(text + "\\n")
            log.flush()
    return [{labels[0]: 0.9, labels[1]: 0.1} for _ in texts]
"""

CHILD = """
import sys
from pathlib import Path
from terakoya.settings import Settings
from terakoya.storage.db import open_database
from terakoya.teachers.teaching import teach

db = open_database(sys.argv[1])
settings = Settings.model_validate({
    "name": "p",
    "labels": [{"name": "positive"}, {"name": "negative"}],
    "teacher": {"kind": "python", "function": "slow_teacher:label", "batch_size": 4},
    "project_dir": Path(sys.argv[2]),
})
teach(db, db.project_id("p"), settings)
"""


def test_killed_teach_resumes_without_losing_or_repeating_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    db = open_database(url)
    pid = db.project_id("p")
    texts = [f"Sentence number {i}." for i in range(40)]
    add_items(db, pid, texts)
    (tmp_path / "slow_teacher.py").write_text(SLOW_TEACHER)
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]), "TEACHER_LOG": str(first_log)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, url, str(tmp_path)], env=env)
    try:
        deadline = time.monotonic() + 60
        while count(db, Suggestion) < 8:  # two batches committed
            assert child.poll() is None, "the teach process ended before it could be killed"
            assert time.monotonic() < deadline, "no batch was committed within 60 s"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL
    with db.session() as s:
        stored_before = set(s.scalars(select(Item.text).join(Suggestion, Suggestion.item_id == Item.id)))
        calls_before = count(db, TeacherCall)
    assert 8 <= len(stored_before) < 40
    made_before = first_log.read_text().splitlines()

    monkeypatch.setenv("TEACHER_LOG", str(second_log))
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = Settings.model_validate(
        {
            "name": "p",
            "labels": [{"name": "positive"}, {"name": "negative"}],
            "teacher": {"kind": "python", "function": "slow_teacher:label", "batch_size": 4},
            "project_dir": tmp_path,
        }
    )
    report = teach(db, pid, settings)
    sys.modules.pop("slow_teacher", None)
    made_after = second_log.read_text().splitlines()
    with db.session() as s:
        per_item = s.execute(select(Suggestion.item_id, func.count()).group_by(Suggestion.item_id)).all()
    assert len(per_item) == 40 and all(n == 1 for _, n in per_item)  # every item once: nothing lost, no duplicates
    assert not set(made_after) & stored_before  # stored work was not done again
    assert report.calls == len(made_after) == 40 - calls_before
    assert report.labeled == 40 - len(stored_before)
    assert len(made_before) >= len(stored_before)
    db.close()
