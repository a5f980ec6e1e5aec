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
