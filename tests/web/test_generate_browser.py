"""A generation project in a real browser (Chromium through Playwright) against a real server on 127.0.0.1.

A trainer rates the teacher's answer with the number keys, rejects one, corrects one in place (the diff shows what
changed) and compares two answers blind; the answer most raters rejected comes back to another trainer as a correct
task. What the
server stored is checked; the trainer's screen holds up on a phone. Screenshots go to test-output/screenshots/.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from terakoya.project import Project
from terakoya.storage.models import Answer, Task

from .conftest import make_trainer
from .test_browser import DESKTOP, PHONE, SMALL_TARGETS_JS, chromium, server, shown_text, sign_in, wait_saved

pytestmark = pytest.mark.browser
__all__ = ["chromium", "server"]  # the fixtures this module uses from the browser tests

TOML = """
[project]
name = "gen-web"
guidelines = "Answers must be correct and short."
[task]
kind = "generate.v1"
[teacher]
kind = "recorded"
[routing]
gold_share = 0.0
audit_share = 0.0
[generate]
compare_share = 0.25
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """Eight prompts with recorded answers (two samples each); four tasks: three rate tasks, then a comparison."""
    (tmp_path / "terakoya.toml").write_text(TOML, encoding="utf-8")
    rows = [
        {"id": f"q{i}", "prompt": f"What is the capital of country {i}?",
         "response": [f"The capital of country {i} is City {i}.", f"Country {i} has City {i + 1} as its capital."]}
        for i in range(8)
    ]  # fmt: skip
    rows[0]["prompt"] = [
        {"role": "user", "content": "I am planning a trip."},
        {"role": "assistant", "content": "Where to?"},
        {"role": "user", "content": "What is the capital of country 0?"},
    ]
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    p = Project.open(tmp_path, env={})
    p.import_file(data, text_column="prompt", id_column="id")
    p.teach()
    p.route(budget_items=4)
    with p.db.session() as s:  # the rate tasks first, the comparison last
        s.execute(update(Task).where(Task.kind == "compare").values(priority=100))
    yield p
    p.close()


def _answers(project: Project) -> list[Answer]:
    with project.db.session() as s:
        rows = list(s.scalars(select(Answer).order_by(Answer.id)))
        for row in rows:
            s.expunge(row)
    return rows


def _wait_other(page: Any, before: str) -> None:
    page.wait_for_function(
        "before => document.getElementById('task-prompt').textContent + document.getElementById('task-text')"
        ".textContent !== before",
        arg=before,
        timeout=10000,
    )


def _where(page: Any) -> str:
    return str(page.inner_text("#task-prompt")) + shown_text(page)


def test_a_trainer_rates_corrects_and_compares_with_the_keyboard(
    server: str, chromium: Any, project: Project, test_output: Path
) -> None:
    shots = test_output / "screenshots"
    shots.mkdir(exist_ok=True)
    make_trainer(project, "gina")  # type: ignore[arg-type]
    page = chromium.new_context(viewport=DESKTOP).new_page()
    sign_in(page, server, "gina")
    page.wait_for_selector("#gen:not([hidden])")

    # 1. rate: 5, 4, 5 and Enter; the highlighted line moves down as each is rated
    assert page.inner_text("#task-prompt") == "Rate the teacher's answer"
    assert "The capital of country" in page.inner_text("#gen-answer-text")
    assert page.locator(".gen-rubric-row").count() == 3
    assert page.is_disabled("#gen-submit-rating")
    for key in "545":
        page.keyboard.press(key)
    assert page.locator(".gen-score[aria-checked=true]").count() == 3
    page.screenshot(path=str(shots / "generate-rate.png"), full_page=True)
    before = _where(page)
    page.keyboard.press("Enter")
    _wait_other(page, before)

    # 2. rate it low: rejected
    for key in "215":
        page.keyboard.press(key)
    before = _where(page)
    page.keyboard.press("Enter")
    _wait_other(page, before)

    # 3. correct in place: C opens the text box with the answer, the diff shows the change, Ctrl+Enter saves
    page.keyboard.press("c")
    box = page.locator("#gen-edit-text")
    assert box.is_visible() and page.evaluate("document.activeElement.id") == "gen-edit-text"
    original = box.input_value()
    box.fill(original.replace("City", "Capital City"))
    assert page.locator("#gen-diff ins").count() >= 1
    page.screenshot(path=str(shots / "generate-correct-diff.png"), full_page=True)
    before = _where(page)
    box.press("Control+Enter")
    _wait_other(page, before)

    # 4. compare, blind: two answers, keys 1-4
    assert page.inner_text("#task-prompt") == "Which answer is better?"
    a, b = page.inner_text("#gen-a"), page.inner_text("#gen-b")
    assert a != b and "teacher" not in (a + b).lower()
    page.screenshot(path=str(shots / "generate-compare.png"), full_page=True)
    page.keyboard.press("2")
    page.wait_for_selector("#empty:not([hidden])")
    wait_saved(page)

    stored = _answers(project)
    assert [x.kind for x in stored] == ["rate", "rate", "rate", "compare"]
    assert stored[0].label == "accept" and stored[0].value["ratings"] == {"correct": 5, "helpful": 4, "safe": 5}
    assert stored[1].label == "reject"
    assert stored[2].label == "corrected" and stored[2].value["text"] == original.replace("City", "Capital City")
    assert stored[3].value["choice"] == "b" and stored[3].label == stored[3].value["winner"]
    winner, loser = stored[3].value["winner"], stored[3].value["loser"]
    assert {winner, loser} == {"teacher:0", "teacher:1"}
    assert all(x.active_seconds is not None for x in stored)

    # the rejected answer comes back as a correct task, for someone else: the text box is open at once
    project.route(budget_items=1)
    make_trainer(project, "hugo")  # type: ignore[arg-type]
    page = chromium.new_context(viewport=DESKTOP).new_page()
    sign_in(page, server, "hugo")
    page.wait_for_selector("#gen-edit:not([hidden])")
    assert page.inner_text("#task-prompt") == "Correct the teacher's answer"
    page.locator("#gen-edit-text").fill("A short, right answer.")
    page.click("#gen-save-edit")
    page.wait_for_selector("#empty:not([hidden])")
    wait_saved(page)
    last = _answers(project)[-1]
    assert (last.kind, last.label, last.value["text"]) == ("correct", "corrected", "A short, right answer.")
    assert last.item_id == stored[1].item_id


def test_the_comparison_fits_a_phone(server: str, chromium: Any, project: Project, test_output: Path) -> None:
    make_trainer(project, "pia")  # type: ignore[arg-type]
    with project.db.session() as s:
        s.execute(update(Task).where(Task.kind == "compare").values(priority=-1))
    page = chromium.new_context(**PHONE).new_page()
    sign_in(page, server, "pia")
    page.wait_for_selector("#gen-pair:not([hidden])")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.evaluate(SMALL_TARGETS_JS) == []
    page.screenshot(path=str(test_output / "screenshots" / "generate-compare-phone.png"), full_page=True)
    page.tap(".gen-choice[data-choice=tie]")
    wait_saved(page)
    assert _answers(project)[-1].label == "tie"
