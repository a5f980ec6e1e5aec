"""A real browser (Debian's Chromium, driven by Playwright) against a real server on 127.0.0.1.

The owner invites a trainer; the trainer joins through the link, labels five items with the keyboard,
undoes one, explains one, teaches a term and sees their time and earnings; the owner approves the term
and finds it in the guidelines panel. Screenshots of the main pages go to test-output/screenshots/.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from terakoya.people import accounts
from terakoya.storage.models import Answer, GlossaryTerm, Task
from terakoya.web import create_app

from .conftest import PASSWORD, WebProject

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
    "--disable-domain-reliability",
    "--no-pings",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(project: WebProject) -> Iterator[str]:
    import uvicorn

    accounts.create_owner(project.db, project.project_id, "Olga Owner", "olga@example.org", PASSWORD)
    with project.db.session() as s:  # one verify task comes first, so Enter has something to accept
        first = s.scalar(select(func.min(Task.id)).where(Task.kind == "verify"))
        s.execute(update(Task).where(Task.id == first).values(priority=-1))
    port = _free_port()
    config = uvicorn.Config(create_app(project), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (`make test` does, as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_owner_invites_trainer_who_labels_undoes_explains_and_teaches(
    server: str, chromium: Any, project: WebProject, test_output: Path
) -> None:
    shots = test_output / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    owner = chromium.new_context(viewport={"width": 1280, "height": 860})
    page = owner.new_page()

    # the owner signs in and creates an invite link
    page.goto(f"{server}/queue")
    assert page.url.startswith(f"{server}/login?next=/queue")
    page.screenshot(path=str(shots / "login.png"))
    # signing in from the queue page would lease tasks to the owner; sign in towards /people instead
    page.goto(f"{server}/login?next=/people")
    page.fill("input[name=login]", "olga@example.org")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/people")
    page.fill("#invite-form input[name=tags]", "finance")
    page.click("#invite-form button[type=submit]")
    link = page.input_value("#invite-link")
    assert link.startswith(f"{server}/invite/")

    # the trainer joins through the link
    trainer = chromium.new_context(viewport={"width": 1280, "height": 860})
    tp = trainer.new_page()
    tp.goto(link)
    tp.fill("input[name=name]", "Tomoko")
    tp.fill("input[name=email]", "tomoko@example.org")
    tp.fill("input[name=password]", PASSWORD)
    tp.fill("input[name=tags]", "finance, banking")
    tp.click("#invite-form button[type=submit]")
    tp.wait_for_url(f"{server}/queue")
    tp.wait_for_selector("#task:not([hidden])")

    # the first task is a verify task: the teacher's label is shown and Enter accepts it
    assert tp.is_visible("#suggestion") and tp.inner_text("#sug-label") == "positive"
    tp.screenshot(path=str(shots / "queue-desktop.png"))
    texts = []

    def answer_with(key: str) -> None:
        before = tp.inner_text("#task-text")
        texts.append(before)
        tp.keyboard.press(key)
        tp.wait_for_function(
            "before => document.getElementById('task-text').textContent !== before", arg=before, timeout=10000
        )

    tp.wait_for_timeout(1500)  # a person reads before answering: this is active time
    answer_with("Enter")
    tp.wait_for_timeout(1500)
    answer_with("2")
    # explain the third answer: E opens the box, Escape goes back to the keys
    tp.keyboard.press("e")
    tp.keyboard.type("Profit rose, but the outlook was cut.")
    tp.keyboard.press("Escape")
    answer_with("3")
    answer_with("1")
    # undo the fourth: the same item comes back
    tp.keyboard.press("Backspace")
    tp.wait_for_function("t => document.getElementById('task-text').textContent === t", arg=texts[-1], timeout=10000)
    texts.pop()
    answer_with("2")
    answer_with("3")

    # teach a term
    tp.keyboard.press("t")
    tp.fill("#term-form input[name=term]", "guidance cut")
    tp.fill("#term-form textarea[name=definition]", "the company lowers its own forecast")
    tp.fill("#term-form textarea[name=example]", "We now expect sales to fall 5%.")
    tp.click("#term-form button[type=submit]")
    # an earlier toast (the undo's) may still be showing: wait for this one
    tp.wait_for_function(
        "() => (document.getElementById('toast').textContent || '').includes('sent to the owner')", timeout=10000
    )
    assert not tp.is_hidden("#toast")

    # time and earnings: five items at 0.10 each today
    tp.wait_for_function("() => document.getElementById('stat-today-items').textContent === '5'", timeout=10000)
    assert tp.inner_text("#stat-today-earn") == "0.50 USD"
    active = tp.inner_text("#stat-today-time")
    assert re.fullmatch(r"[0-9]+ s", active) and 3 <= int(active.split()[0]) <= 10, active
    tp.keyboard.press("?")
    assert tp.is_visible("#help-dialog")
    tp.keyboard.press("Escape")
    tp.keyboard.press("g")
    tp.wait_for_selector("#panel:not([hidden])")
    tp.screenshot(path=str(shots / "queue-guidelines-panel.png"))
    tp.goto(f"{server}/me")
    assert "0.50 USD" in tp.inner_text("#my-stats")
    tp.screenshot(path=str(shots / "trainer-stats.png"), full_page=True)

    # the same queue on a phone
    phone = chromium.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True,
        storage_state=trainer.storage_state(),
    )  # fmt: skip
    pp = phone.new_page()
    pp.goto(f"{server}/queue")
    pp.wait_for_selector("#task:not([hidden])")
    width = pp.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the queue page is {width}px wide on a 390px phone"
    box = pp.locator(".label-btn").first.bounding_box()
    assert box is not None and box["height"] >= 48, "label buttons must be big enough to tap"
    pp.screenshot(path=str(shots / "queue-phone.png"))
    pp.locator(".label-btn").first.tap()
    pp.wait_for_function("() => document.getElementById('stat-today-items').textContent === '6'", timeout=10000)
    phone.close()

    # the owner approves the term and finds it in the guidelines panel
    page.goto(f"{server}/glossary")
    row = page.locator(".term-row", has_text="guidance cut")
    row.locator("button[value=approve]").click()
    page.wait_for_url(f"{server}/glossary?done=approved")
    page.goto(f"{server}/queue")
    page.wait_for_selector("#task:not([hidden])")
    page.keyboard.press("G")
    page.wait_for_selector("#panel:not([hidden])")
    page.wait_for_selector("#panel dt:has-text('guidance cut')")
    page.screenshot(path=str(shots / "guidelines-panel.png"))
    page.goto(f"{server}/dashboard")
    assert "Tomoko" in page.inner_text("#trainers")
    page.screenshot(path=str(shots / "owner-dashboard.png"), full_page=True)

    with project.db.session() as s:
        rows = s.scalars(select(Answer).order_by(Answer.id)).all()
        assert [(a.kind, a.superseded) for a in rows].count(("label", False)) == 5
        assert sum(a.superseded for a in rows) == 1 and rows[0].kind == "verify"
        assert [a.rationale for a in rows if a.rationale] == ["Profit rose, but the outlook was cut."]
        assert all(a.source == "web" and (a.active_seconds or 0) > 0 for a in rows)
        assert s.scalar(select(GlossaryTerm.status).where(GlossaryTerm.term == "guidance cut")) == "approved"
    owner.close()
    trainer.close()
