"""Quality control in a real browser: a trainer who answers check items wrongly is paused and sees why; the owner
sees why on the people page and lifts the pause; the trainer works again. Screenshots go to
test-output/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from terakoya.settings import QualitySettings
from terakoya.storage.models import Answer, Item, Pause, Task, TrainingLabel
from terakoya.training import train

from .conftest import LABELS, WebProject, add_tasks, build_project, make_trainer
from .test_browser import DESKTOP, chromium, server, shown_text, sign_in, wait_for_next, wait_saved

pytestmark = pytest.mark.browser
__all__ = ["chromium", "server"]  # the fixtures this module uses from the browser tests


@pytest.fixture
def project(tmp_path: Path) -> Iterator[WebProject]:
    """Six check items first in the queue, then ordinary ones; a trainer is paused after 4 wrong checks."""
    p = build_project(f"sqlite:///{tmp_path / 'terakoya.db'}", tmp_path, pool=0, gold=6, verify=2)
    add_tasks(p.db, p.project_id, pool=6, start=50)
    with p.db.session() as s:
        s.execute(update(Task).where(Task.reason == "gold").values(priority=-5))
    p.settings = p.settings.model_copy(update={"quality": QualitySettings(min_gold=4, min_gold_accuracy=0.6)})
    yield p
    p.close()


def _gold_of(project: WebProject, text: str) -> str | None:
    with project.db.session() as s:
        return s.scalar(select(Item.gold_label).where(Item.text == text))


def test_a_trainer_failing_checks_is_paused_sees_why_and_the_owner_lets_them_back(
    server: str, chromium: Any, project: WebProject, test_output: Path
) -> None:
    shots = test_output / "screenshots"
    shots.mkdir(exist_ok=True)
    tina = make_trainer(project, "tina")
    page = chromium.new_context(viewport=DESKTOP).new_page()
    sign_in(page, server, "tina")
    page.wait_for_selector("#task:not([hidden])")
    for _ in range(4):  # four check items, each answered with a label other than the known one
        text = shown_text(page)
        known = _gold_of(project, text)
        assert known is not None, "the check items come first"
        wrong = next(i for i, label in enumerate(LABELS) if label != known)
        page.keyboard.press(str(wrong + 1))
        if _ < 3:
            wait_for_next(page, text)
    wait_saved(page)
    page.wait_for_selector("#paused:not([hidden])", timeout=10000)
    assert page.is_hidden("#task")
    reason = page.inner_text("#paused")
    assert "0 of 4 answers on check items matched the known answer" in reason and "60%" in reason
    page.screenshot(path=str(shots / "queue-paused.png"))
    page.reload()  # the server says so too, without asking for a task
    assert page.is_visible("#paused") and "0 of 4 answers" in page.inner_text("#paused-reason")
    page.goto(f"{server}/me")
    assert "You are paused on this project" in page.inner_text("#paused-note")

    owner = chromium.new_context(viewport=DESKTOP).new_page()
    sign_in(owner, server, "olga@example.org", then="/dashboard")
    assert "tina is paused" in owner.inner_text("#quality") and "tina" in owner.inner_text("#reliability")
    owner.goto(f"{server}/people")
    card = owner.inner_text("#quality")
    assert "tina is paused" in card and "0 of 4 answers" in card
    assert "tina" in owner.inner_text("#reliability")
    owner.screenshot(path=str(shots / "people-quality.png"), full_page=True)
    owner.click(f"#pause-{tina.id} button[type=submit]")
    owner.wait_for_url(f"{server}/people?saved=unpaused#quality")
    assert "is paused" not in owner.inner_text("#quality")
    with project.db.session() as s:
        pause = s.scalars(select(Pause).where(Pause.person_id == tina.id)).one()
        assert pause.lifted_by is not None and pause.lifted_at is not None

    page.goto(f"{server}/queue")
    page.wait_for_selector("#task:not([hidden])")
    assert page.is_hidden("#paused")
    text = shown_text(page)
    page.keyboard.press("Enter" if page.is_visible("#suggestion") else "1")
    wait_for_next(page, text)
    wait_saved(page)
    with project.db.session() as s:
        assert s.scalar(select(Answer.id).where(Answer.person_id == tina.id).order_by(Answer.id.desc()).limit(1))
        answered = s.scalars(select(Answer.task_id).where(Answer.person_id == tina.id)).all()
    assert len(answered) == 5 == len(set(answered))


def test_the_provenance_page_shows_where_a_label_came_from(server: str, chromium: Any, project: WebProject) -> None:
    ann = make_trainer(project, "ann")
    with project.db.session() as s:
        items = s.execute(select(Item.id, Item.external_id).where(Item.split == "pool").order_by(Item.id)).all()
        for n, (item_id, _) in enumerate(items):
            s.add(Answer(item_id=item_id, person_id=ann.id, kind="label", label=LABELS[n % 3], rationale=f"reason {n}"))
    student = project.settings.student.model_copy(update={"kind": "linear"})
    train(project.db, project.project_id, project.settings.model_copy(update={"student": student}))

    owner = chromium.new_context(viewport=DESKTOP).new_page()
    sign_in(owner, server, "olga@example.org", then="/people")
    owner.click("text=Where did a training label come from?")
    owner.fill("input[name=item]", items[0].external_id)
    owner.click("#provenance-form button[type=submit]")
    section = owner.inner_text("#provenance")
    assert f"Item {items[0].external_id}" in section and "majority.v1" in section
    assert "ann" in section and "reason 0" in section
    owner.fill("input[name=item]", "no-such-item")
    owner.click("#provenance-form button[type=submit]")
    assert "no item 'no-such-item' in this project" in owner.inner_text("main")


def test_a_reviewer_settles_a_conflict_and_the_next_train_learns_the_decision(
    server: str, chromium: Any, project: WebProject, test_output: Path
) -> None:
    ann, ben = make_trainer(project, "ann"), make_trainer(project, "ben")
    make_trainer(project, "rita", role="reviewer")
    with project.db.session() as s:
        items = s.execute(select(Item.id, Item.external_id).where(Item.split == "pool").order_by(Item.id)).all()
        for n, (item_id, _) in enumerate(items):
            s.add(Answer(item_id=item_id, person_id=ann.id, kind="label", label=LABELS[n % 3]))
        conflict_id = items[0][0]
        s.add(Answer(item_id=conflict_id, person_id=ben.id, kind="label", label="neutral", rationale="no news"))
    page = chromium.new_context(viewport=DESKTOP).new_page()
    sign_in(page, server, "rita", then="/review")
    card = page.locator(f"#review-{conflict_id}")
    assert "conflict" in card.inner_text() and "no news" in card.inner_text() and "ben" in card.inner_text()
    page.screenshot(path=str(test_output / "screenshots" / "review.png"), full_page=True)
    card.locator("input[name=rationale]").fill("the profit rose: positive")
    card.locator("button[value=negative]").click()
    page.wait_for_url(f"{server}/review?done=decided")
    assert page.locator(f"#review-{conflict_id}").count() == 0
    assert "negative" in page.inner_text("#decisions") and "rita" in page.inner_text("#decisions")

    student = project.settings.student.model_copy(update={"kind": "linear"})
    train(project.db, project.project_id, project.settings.model_copy(update={"student": student}))
    with project.db.session() as s:
        row = s.scalars(select(TrainingLabel).where(TrainingLabel.item_id == conflict_id)).one()
    assert (row.label, row.source, row.aggregator) == ("negative", "review", "review")

    page.locator("#decisions button", has_text="take back").first.click()
    page.wait_for_url(f"{server}/review?done=undone#decisions")
    assert page.locator(f"#review-{conflict_id}").count() == 1  # back in the queue


def test_a_new_trainer_sees_the_qualification_first(server: str, chromium: Any, project: WebProject) -> None:
    project.settings = project.settings.model_copy(
        update={"quality": QualitySettings(qualification_items=2, min_gold_accuracy=0.6)}
    )
    make_trainer(project, "quinn")
    page = chromium.new_context(viewport=DESKTOP).new_page()
    sign_in(page, server, "quinn")
    page.wait_for_selector("#task:not([hidden])")
    assert "your first 2 items have known answers (0 done)" in page.inner_text("#qualification")
    for _ in range(2):
        text = shown_text(page)
        known = _gold_of(project, text)
        assert known is not None, "qualification items have known answers"
        page.keyboard.press(str(LABELS.index(known) + 1))
        wait_for_next(page, text)
    wait_saved(page)
    page.reload()
    page.wait_for_selector("#task:not([hidden])")
    assert page.locator("#qualification").count() == 0 and page.is_hidden("#paused")
