"""`terakoya teacher check`: variants scored on the items with known labels, with advice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from terakoya.errors import StateError
from terakoya.settings import Settings
from terakoya.storage import open_database
from terakoya.storage.models import Item
from terakoya.teachers.check import check_teachers

FAKES = Path(__file__).parent / "fakes"
LABELS = ["positive", "negative", "neutral"]
SENTENCES = [
    ("Profit rose sharply", "positive"),
    ("Sales hit a record", "positive"),
    ("The loss widened", "negative"),
    ("Shares fell on the news", "negative"),
    ("The meeting is on Tuesday", "neutral"),
    ("The firm has offices in Oslo", "neutral"),
]


def _settings(tmp_path: Path) -> Settings:
    return Settings.model_validate(
        {
            "name": "p",
            "labels": [{"name": n} for n in LABELS],
            "teacher": {"kind": "python", "function": "keyword_teacher:label"},
            "project_dir": tmp_path,
        }
    )


def _fill(tmp_path: Path, n: int) -> tuple[object, int]:
    db = open_database(f"sqlite:///{tmp_path / 'terakoya.db'}")
    pid = db.project_id("p")
    with db.session() as s:
        for i in range(n):
            text, label = SENTENCES[i % len(SENTENCES)]
            s.add(Item(project_id=pid, external_id=str(i), text=f"{text} ({i})", text_hash=f"h{i}", split="test",
                       gold_label=label))  # fmt: skip
    return db, pid


def test_check_scores_the_configured_teacher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FAKES))
    db, pid = _fill(tmp_path, 60)
    result = check_teachers(db, pid, _settings(tmp_path))  # type: ignore[arg-type]
    assert result.items == 60 and "60 gold test items" in result.source
    assert {v.calibration for v in result.scores} == {"none", "batch"}
    none = next(v for v in result.scores if v.calibration == "none")
    assert none.accuracy == pytest.approx(1.0)  # the keyword teacher knows these sentences
    assert none.accuracy_ci is not None and none.accuracy_ci[0] > 0.9
    assert result.best is not None and result.advice.startswith("Best:")
    db.close()  # type: ignore[attr-defined]


def test_too_few_labelled_items_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FAKES))
    db, pid = _fill(tmp_path, 5)
    with pytest.raises(StateError, match="only 5 items have a known label"):
        check_teachers(db, pid, _settings(tmp_path))  # type: ignore[arg-type]
    db.close()  # type: ignore[attr-defined]


def test_cli_prints_the_table_and_advice(tmp_path: Path) -> None:
    db, _ = _fill(tmp_path, 40)
    db.close()  # type: ignore[attr-defined]
    (tmp_path / "terakoya.toml").write_text(
        '[project]\nname = "p"\n\n' + "".join(f'[[labels]]\nname = "{n}"\n\n' for n in LABELS)
        + '[teacher]\nkind = "python"\nfunction = "keyword_teacher:label"\n',
        encoding="utf-8",
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(FAKES), "COLUMNS": "200"}
    out = subprocess.run(
        [sys.executable, "-m", "terakoya", "--project", str(tmp_path), "teacher", "check"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "teacher check on" in out.stdout and "batch" in out.stdout and "Best:" in out.stdout


KEY = "Output rose at the Tampere mill"


def test_example_sets_are_measured_and_the_one_that_teaches_is_advised(tmp_path: Path) -> None:
    from fakes.openai_server import FakeOpenAI
    from terakoya.teachers.check import check_examples
    from terakoya.teachers.prompts import collect_examples

    db, pid = _fill(tmp_path, 60)
    examples = [
        {"text": "Revenue rose in May", "label": "positive"},
        {"text": "The loss grew", "label": "negative"},
        {"text": "The report is due in June", "label": "neutral"},
        {"text": KEY, "label": "positive"},
    ]
    with FakeOpenAI() as server:
        server.needs_example = KEY  # the model labels well only when shown this example
        settings = Settings.model_validate(
            {
                "name": "p",
                "labels": [{"name": n} for n in LABELS],
                "teacher": {"kind": "openai", "base_url": server.base_url, "model": "fake", "few_shot": 2,
                            "max_retries": 0},
                "examples": examples,
                "project_dir": tmp_path,
            }
        )  # fmt: skip
        assert KEY not in {text for text, _ in collect_examples(db, pid, settings)}  # type: ignore[arg-type]
        result = check_examples(db, pid, settings, sets=5)  # type: ignore[arg-type]
    assert result.candidates == 4 and result.items == 60 and len(result.sets) == 5
    current = next(e for e in result.sets if e.current)
    assert current.score is not None and current.score.accuracy == pytest.approx(1 / 3)
    with_key = [e for e in result.sets if KEY in {text for text, _ in e.examples}]
    assert with_key and all(e.score and e.score.accuracy == pytest.approx(1.0) for e in with_key)
    assert result.best in with_key and result.better
    assert 'examples_from = "file"' in result.advice and KEY in result.advice
    # pinned as advised, the teacher sees that set
    assert result.best is not None
    pinned = settings.model_copy(
        update={
            "teacher": settings.teacher.model_copy(update={"examples_from": "file"}),
            "examples": [type(settings.examples[0])(text=t, label=lab) for t, lab in result.best.examples],
        }
    )
    assert collect_examples(db, pid, pinned) == result.best.examples  # type: ignore[arg-type]
    db.close()  # type: ignore[attr-defined]


def test_example_check_needs_something_to_choose_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from terakoya.teachers.check import check_examples

    monkeypatch.syspath_prepend(str(FAKES))
    db, pid = _fill(tmp_path, 30)
    settings = _settings(tmp_path).model_copy(
        update={"examples": [], "teacher": _settings(tmp_path).teacher.model_copy(update={"few_shot": 2})}
    )
    with pytest.raises(StateError, match="only 0 candidate examples for 2 places"):
        check_examples(db, pid, settings)  # type: ignore[arg-type]
    db.close()  # type: ignore[attr-defined]


def test_cli_prints_the_example_sets(tmp_path: Path) -> None:
    db, _ = _fill(tmp_path, 40)
    db.close()  # type: ignore[attr-defined]
    examples = "".join(f'[[examples]]\ntext = "{t} (example)"\nlabel = "{lab}"\n\n' for t, lab in SENTENCES)
    (tmp_path / "terakoya.toml").write_text(
        '[project]\nname = "p"\n\n' + "".join(f'[[labels]]\nname = "{n}"\n\n' for n in LABELS)
        + '[teacher]\nkind = "python"\nfunction = "keyword_teacher:label"\nfew_shot = 2\n\n' + examples,
        encoding="utf-8",
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(FAKES), "COLUMNS": "200"}
    out = subprocess.run(
        [sys.executable, "-m", "terakoya", "--project", str(tmp_path), "teacher", "examples", "--sets", "3"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "3 example sets from 6 candidates" in out.stdout and "(current)" in out.stdout
    # a teacher that reads no examples: no set beats the current one
    assert "keep them" in out.stdout


def test_a_generation_project_is_told_what_judges_its_teacher(tmp_path: Path) -> None:
    from terakoya.errors import ConfigError
    from terakoya.teachers.check import check_examples

    settings = Settings.model_validate({"name": "p", "task": {"kind": "generate.v1"}, "project_dir": tmp_path})
    db, pid = _fill(tmp_path, 20)
    for run in (check_teachers, check_examples):
        with pytest.raises(ConfigError, match=r"task kind is 'generate\.v1'"):
            run(db, pid, settings)  # type: ignore[operator]
    db.close()  # type: ignore[attr-defined]


def test_pool_only_leaves_the_test_split_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from terakoya.storage.models import Answer, Person

    monkeypatch.syspath_prepend(str(FAKES))
    db, pid = _fill(tmp_path, 40)
    with db.session() as s:  # type: ignore[attr-defined]
        who = Person(name="ann")
        s.add(who)
        s.flush()
        for i, (text, label) in enumerate(SENTENCES * 3):
            item = Item(project_id=pid, external_id=f"p{i}", text=f"{text} [p{i}]", text_hash=f"p{i}", split="pool")
            s.add(item)
            s.flush()
            s.add(Answer(item_id=item.id, person_id=who.id, kind="label", label=label))
    result = check_teachers(db, pid, _settings(tmp_path), include_test=False)  # type: ignore[arg-type]
    assert result.items == 18 and result.source == "18 expert-answered pool items (the test split left out)"
    assert check_teachers(db, pid, _settings(tmp_path)).items == 58  # type: ignore[arg-type]
    db.close()  # type: ignore[attr-defined]
