"""A real browser (Debian's Chromium, driven by Playwright) against a real server on 127.0.0.1.

The owner invites a trainer; the trainer joins through the link, labels five items with the keyboard,
undoes one, explains one, teaches a term and sees their time and earnings; the owner approves the term
and finds it in the guidelines panel. The queue shows the next item before the server has the answer
(latency printed with ``pytest -s``), a lost answer is sent again and stored once, and the trainer's
screen holds up on a 1280 px laptop and a 390 px phone. Screenshots go to test-output/screenshots/.
"""

from __future__ import annotations

import re
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from terakoya import workqueue
from terakoya.people import accounts
from terakoya.storage.models import Answer, Assignment, GlossaryTerm, Item, Task, utcnow
from terakoya.web import create_app

from .conftest import PASSWORD, WebProject, add_tasks, make_trainer

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


DESKTOP = {"width": 1280, "height": 800}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


def sign_in(page: Any, server: str, login: str, then: str = "/queue") -> None:
    """Sign in through the form and land on ``then``."""
    page.goto(f"{server}/login?next={then}")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{server}{then}")


def shown_text(page: Any) -> str:
    return str(page.inner_text("#task-text"))


def wait_for_next(page: Any, before: str) -> None:
    page.wait_for_function(
        "before => document.getElementById('task-text').textContent !== before", arg=before, timeout=10000
    )


def wait_saved(page: Any) -> None:
    """Until every answer in the list of last answers is acknowledged by the server."""
    page.wait_for_function(
        "() => !document.querySelector('#recent-list .sending')"
        " && !(JSON.parse(localStorage.getItem(document.getElementById('app').dataset.outbox) || '[]')).length",
        timeout=10000,
    )


def outbox(page: Any) -> list[dict[str, Any]]:
    """The answers this browser still has to send."""
    return list(
        page.evaluate("() => JSON.parse(localStorage.getItem(document.getElementById('app').dataset.outbox) || '[]')")
    )


#: targets smaller than 44 x 44 CSS px; a link inside running text is exempt (WCAG 2.5.8's inline exception)
SMALL_TARGETS_JS = """() => {
  const bad = [];
  const all = 'a[href], button, summary, input:not([type=hidden]), select, textarea';
  for (const el of document.querySelectorAll(all)) {
    const target = (el.matches('input[type=radio], input[type=checkbox]') && el.closest('label')) || el;
    const r = target.getBoundingClientRect();
    if (!r.width || !r.height || getComputedStyle(el).visibility === 'hidden') continue;
    if (el.matches('a') && getComputedStyle(el).display === 'inline' && el.closest('p, li, dd')) continue;
    if (r.width < 44 || r.height < 44) {
      bad.push(`${el.tagName.toLowerCase()}#${el.id} "${(target.textContent || '').trim().slice(0, 30)}" `
        + `${Math.round(r.width)}x${Math.round(r.height)}`);
    }
  }
  return bad;
}"""


def test_owner_invites_trainer_who_labels_undoes_explains_and_teaches(
    server: str, chromium: Any, project: WebProject, test_output: Path
) -> None:
    shots = test_output / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    owner = chromium.new_context(viewport=DESKTOP)
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
    trainer = chromium.new_context(viewport=DESKTOP)
    tp = trainer.new_page()
    tp.goto(link)
    tp.fill("input[name=name]", "Tomoko")
    tp.fill("input[name=email]", "tomoko@example.org")
    tp.fill("input[name=password]", PASSWORD)
    tp.fill("input[name=tags]", "finance, banking")
    tp.click("#invite-form button[type=submit]")
    tp.wait_for_url(f"{server}/queue")
    tp.wait_for_selector("#task:not([hidden])")

    # the first task is a verify task: the teacher's label and confidence are shown and Enter accepts it
    assert tp.is_visible("#suggestion") and tp.inner_text("#sug-label") == "positive"
    assert tp.inner_text("#sug-conf") == "(50% sure)" and tp.is_visible("#btn-accept")
    assert "suggested" in (tp.get_attribute(".label-btn[data-label=positive]", "class") or "")
    # no jargon: neither the task kind as a pill nor the item's number
    assert tp.inner_text("#task-prompt") == "Check the teacher's label"
    assert not re.search(r"#[0-9]+", tp.inner_text("#task")), tp.inner_text("#task")
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
    # a trace of what was recorded, the answer in the list of last answers, and the focus on the work area
    assert tp.inner_text("#trace-text") == "positive ✓ — Backspace to undo"
    assert tp.evaluate("document.activeElement.id") == "task"
    wait_saved(tp)
    assert tp.inner_text("#recent-list li:first-child .recent-state") == "saved ✓"
    tp.wait_for_timeout(1500)
    answer_with("2")
    # explain the third answer: E opens the box, Escape goes back to the keys
    tp.keyboard.press("e")
    tp.keyboard.type("Profit rose, but the outlook was cut.")
    tp.keyboard.press("Escape")
    answer_with("3")
    answer_with("1")
    # undo the fourth once the server has it: the same item comes back, from the server
    wait_saved(tp)
    tp.keyboard.press("Backspace")
    tp.wait_for_function("t => document.getElementById('task-text').textContent === t", arg=texts[-1], timeout=10000)
    assert tp.inner_text("#trace-text") == "Undone — answer it again"
    assert tp.inner_text("#recent-list li:first-child .recent-state") == "undone"
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
    # on a laptop the guidelines sit beside the item: the sentence and every label button stay in view
    panel = tp.locator("#panel").bounding_box()
    for target in [tp.locator("#task-text"), *tp.locator(".label-btn").all()]:
        box = target.bounding_box()
        assert panel and box and box["x"] + box["width"] <= panel["x"], (box, panel)
    # the labels' descriptions come from the project's [[labels]] (terakoya.toml)
    assert "negative news for the company" in tp.inner_text("#panel .labels-help")
    assert "—" not in tp.inner_text("#panel .labels-help")
    tp.screenshot(path=str(shots / "queue-guidelines-panel.png"))
    tp.goto(f"{server}/me")
    assert "0.50 USD" in tp.inner_text("#my-stats")
    tp.screenshot(path=str(shots / "trainer-stats.png"), full_page=True)

    # the same queue on a phone
    phone = chromium.new_context(**PHONE, storage_state=trainer.storage_state())
    pp = phone.new_page()
    pp.goto(f"{server}/queue")
    pp.wait_for_selector("#task:not([hidden])")
    width = pp.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the queue page is {width}px wide on a 390px phone"
    # the labels keep their declared order, one under the other, each big enough to tap
    boxes = [b.bounding_box() for b in pp.locator(".label-btn").all()]
    assert pp.eval_on_selector_all(".label-btn", "bs => bs.map(b => b.dataset.label)") == [
        "positive",
        "negative",
        "neutral",
    ]
    assert all(b is not None and b["height"] >= 48 for b in boxes), "label buttons must be big enough to tap"
    assert [b["y"] for b in boxes if b] == sorted(b["y"] for b in boxes if b) and len({b["x"] for b in boxes if b}) == 1
    # no keyboard hints on a touch screen, and every target at least 44 px
    assert not pp.is_visible("#btn-help") and not pp.is_visible("#suggestion .hint")
    assert pp.evaluate(SMALL_TARGETS_JS) == []
    pp.screenshot(path=str(shots / "queue-phone.png"))
    pp.locator(".label-btn").first.tap()
    pp.wait_for_function("() => document.getElementById('stat-today-items').textContent === '6'", timeout=10000)
    assert pp.inner_text("#trace-text") == "positive ✓ — Undo takes it back"
    pp.screenshot(path=str(shots / "queue-phone-after-answer.png"))
    # the guidelines come up as a sheet over the lower part of the screen
    pp.locator("#btn-panel").tap()
    pp.wait_for_selector("#panel:not([hidden])")
    sheet = pp.locator("#panel").bounding_box()
    assert sheet and sheet["width"] == 390 and sheet["y"] > 100 and sheet["y"] + sheet["height"] == 844, sheet
    assert pp.evaluate(SMALL_TARGETS_JS) == []
    pp.screenshot(path=str(shots / "queue-phone-guidelines.png"))
    for path in ("/me", "/glossary", "/"):
        pp.goto(f"{server}{path}")
        assert pp.evaluate(SMALL_TARGETS_JS) == [], path
    pp.goto(f"{server}/me")
    pp.screenshot(path=str(shots / "trainer-stats-phone.png"), full_page=True)
    phone.close()
    stranger = chromium.new_context(**PHONE)
    sp = stranger.new_page()
    sp.goto(f"{server}/login")
    assert sp.evaluate(SMALL_TARGETS_JS) == []
    stranger.close()

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


#: in the page: for each answer key, the time from the keydown to the next item's text in the DOM, and to the frame
#: that shows it (a timer queued by requestAnimationFrame runs once that frame is painted)
LATENCY_PROBE_JS = """() => {
  window.__latency = [];
  let start = null, kind = null;
  window.addEventListener('keydown', (e) => {
    if (/^[0-9]$|^Enter$/.test(e.key)) {
      start = performance.now();
      kind = document.getElementById('suggestion').hidden ? 'label' : 'verify';
    }
  }, true);
  new MutationObserver(() => {
    if (start === null) return;
    const t0 = start, k = kind, dom = performance.now() - t0;
    start = null;
    const shown = () => window.__latency.push({kind: k, dom, shown: performance.now() - t0});
    requestAnimationFrame(() => setTimeout(shown, 0));
  }).observe(document.getElementById('task-text'), {childList: true, characterData: true, subtree: true});
}"""


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * len(ordered) + 0.5) - 1)]


def test_next_item_shows_before_the_server_has_the_answer(server: str, chromium: Any, project: WebProject) -> None:
    for j in range(14):  # label and verify tasks, interleaved
        add_tasks(project.db, project.project_id, pool=2, verify=2, start=100 + 4 * j)
    kenji = make_trainer(project, "kenji")
    context = chromium.new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, server, "kenji")
    page.wait_for_selector("#task:not([hidden])")

    # the answer request is held at the network: the next item shows while it has not completed
    held: list[Any] = []

    def hold(route: Any) -> None:
        held.append(route)

    page.route("**/api/v1/tasks/*/answer", hold)
    before = shown_text(page)
    page.keyboard.press("Enter" if page.is_visible("#suggestion") else "1")
    wait_for_next(page, before)
    page.wait_for_timeout(300)
    assert len(held) == 1, "the answer is sent in the background"
    assert page.inner_text("#recent-list li:first-child .recent-state") == "saving…"
    assert shown_text(page) != before
    for route in held:
        route.continue_()
    page.unroute("**/api/v1/tasks/*/answer")
    wait_saved(page)

    # keypress to next item, verify and label tasks, at the pace of a very fast person (a few items a second)
    page.evaluate(LATENCY_PROBE_JS)
    answered = 1
    while page.is_visible("#task") and answered < 60:
        before = shown_text(page)
        page.keyboard.press("Enter" if page.is_visible("#suggestion") else str(1 + answered % 3))
        wait_for_next(page, before)
        answered += 1
        page.wait_for_timeout(250)
    page.wait_for_timeout(100)
    samples: list[dict[str, Any]] = page.evaluate("window.__latency")
    wait_saved(page)
    print()
    for kind in ("verify", "label"):
        dom = [s["dom"] for s in samples if s["kind"] == kind]
        shown = [s["shown"] for s in samples if s["kind"] == kind]
        assert len(shown) >= 20, (kind, len(shown))
        print(
            f"keypress -> next {kind} item ({len(shown)} answers): in the DOM median {statistics.median(dom):.1f} ms, "
            f"p95 {_p95(dom):.1f} ms; painted median {statistics.median(shown):.1f} ms, p95 {_p95(shown):.1f} ms"
        )
    with project.db.session() as s:
        rows = s.execute(select(Answer.task_id, Answer.kind).where(Answer.person_id == kenji.id)).all()
    assert len(rows) == answered == len({r.task_id for r in rows})
    assert {r.kind for r in rows} == {"verify", "label"}
    context.close()


def test_a_lost_answer_is_sent_again_and_stored_once(server: str, chromium: Any, project: WebProject) -> None:
    yuki = make_trainer(project, "yuki")
    context = chromium.new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, server, "yuki")
    page.wait_for_selector("#task:not([hidden])")
    sent: list[str] = []

    def flaky(route: Any) -> None:
        sent.append(route.request.post_data_json["idempotency_key"])
        if len(sent) == 1:
            route.abort()  # the first answer never reaches the server
        elif len(sent) == 3:
            route.fetch()  # the second one reaches it, and its reply is lost on the way back
            route.abort()
        else:
            route.continue_()

    page.route("**/api/v1/tasks/*/answer", flaky)
    first = shown_text(page)
    page.keyboard.press("Enter" if page.is_visible("#suggestion") else "1")
    wait_for_next(page, first)
    second = shown_text(page)
    page.keyboard.press("2")
    wait_for_next(page, second)
    wait_saved(page)
    assert len(sent) == 4 and sent[0] == sent[1] and sent[2] == sent[3] and sent[0] != sent[2], sent

    # with the network down the answer waits in this browser, and a reload sends it
    page.unroute("**/api/v1/tasks/*/answer")
    page.route("**/api/v1/tasks/*/answer", lambda route: route.abort())
    third = shown_text(page)
    page.keyboard.press("3")
    wait_for_next(page, third)
    page.wait_for_selector("#sync:not([hidden])")
    assert "waiting for the connection" in page.inner_text("#sync")
    assert [e["text"] for e in outbox(page)] == [third]
    page.unroute("**/api/v1/tasks/*/answer")
    page.reload()
    page.wait_for_selector("#task:not([hidden])")
    wait_saved(page)
    assert shown_text(page) not in (first, second, third)

    with project.db.session() as s:
        rows = s.execute(
            select(Answer.task_id, Answer.label, Item.text)
            .join(Item, Item.id == Answer.item_id)
            .where(Answer.person_id == yuki.id)
            .order_by(Answer.id)
        ).all()
    assert [r.text for r in rows] == [first, second, third], "each answer stored exactly once"
    assert [r.label for r in rows][1:] == ["negative", "neutral"]
    context.close()


def test_trainer_screen_flags_without_a_default_and_switches_shortcuts_off(
    server: str, chromium: Any, project: WebProject, test_output: Path
) -> None:
    shots = test_output / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    aiko = make_trainer(project, "aiko")
    # a minute and a half of work, through the API: leased 100 s ago, answered now
    ago = utcnow() - timedelta(seconds=100)
    task = workqueue.lease_next(project.db, project.project_id, project.settings, aiko.id, now=ago)
    assert task is not None
    workqueue.submit_answer(
        project.db, project.project_id, project.settings, aiko.id, task.task_id, label="neutral", active_seconds=90
    )
    context = chromium.new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, server, "aiko")
    page.wait_for_selector("#task:not([hidden])")

    # the flag dialog chooses no reason for the trainer, and will not send without one
    flagged = shown_text(page)
    page.keyboard.press("f")
    page.wait_for_selector("#flag-dialog[open]")
    assert page.eval_on_selector_all("#flag-form input[name=reason]", "rs => rs.filter(r => r.checked).length") == 0
    page.screenshot(path=str(shots / "queue-flag-dialog.png"))
    page.click("#flag-form button[type=submit]")
    page.wait_for_timeout(200)
    assert page.is_visible("#flag-dialog") and shown_text(page) == flagged
    page.check("#flag-form input[value=ambiguous]")
    page.click("#flag-form button[type=submit]")
    wait_for_next(page, flagged)
    assert page.inner_text("#trace-text") == "Flagged ✓ — Backspace to undo"
    # a skipped item goes at once and does not come back
    skipped = shown_text(page)
    page.keyboard.press("s")
    wait_for_next(page, skipped)
    assert page.inner_text("#trace-text") == "Skipped"

    # single-key shortcuts can be switched off, and stay off after a reload; the buttons still work
    page.uncheck("#keys-toggle")
    off = shown_text(page)
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    assert shown_text(page) == off
    page.reload()
    page.wait_for_selector("#task:not([hidden])")
    assert not page.is_checked("#keys-toggle") and not page.is_visible(".label-btn kbd")
    page.keyboard.press("2")
    page.wait_for_timeout(300)
    assert shown_text(page) == off
    page.click(".label-btn[data-label=negative]")
    wait_for_next(page, off)
    page.check("#keys-toggle")
    on = shown_text(page)
    page.keyboard.press("3")
    wait_for_next(page, on)

    # answer the rest, gold checks included; "My work" shows the accuracy on them and the hourly rate
    seen = []
    while page.wait_for_selector("#task:not([hidden]), #empty:not([hidden])") and page.is_visible("#task"):
        before = shown_text(page)
        seen.append(before)
        page.keyboard.press("1")
        page.wait_for_function(
            "b => document.getElementById('task').hidden || document.getElementById('task-text').textContent !== b",
            arg=before,
        )
    wait_saved(page)
    assert skipped not in seen and flagged not in seen
    page.goto(f"{server}/me")
    checks = page.inner_text("#my-quality")
    assert re.search(r"You matched it on [0-2] of 2 \([0-9]+%\)", checks), checks
    assert re.search(r"That makes [0-9.,]+ USD per active hour \([0-9]+ items an hour\)", page.inner_text("#my-rate"))
    page.screenshot(path=str(shots / "my-work-desktop.png"), full_page=True)
    context.close()


def test_leaving_the_queue_gives_the_held_tasks_back_at_once(server: str, chromium: Any, project: WebProject) -> None:
    """Opening the queue leases the task shown and one behind it; leaving the page must not keep them from
    others until the lease runs out (an owner passing through /queue once held a trainer's verify task)."""
    tom = make_trainer(project, "tom")

    def held() -> int:
        with project.db.session() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(Assignment)
                    .where(Assignment.person_id == tom.id, Assignment.status == "leased")
                )
                or 0
            )

    page = chromium.new_page(viewport=DESKTOP)
    sign_in(page, server, "tom")
    page.wait_for_function("() => document.getElementById('task-text').textContent.trim().length > 0")
    deadline = time.monotonic() + 10
    while held() < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert held() == 2
    page.goto(f"{server}/me")
    deadline = time.monotonic() + 10
    while held() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert held() == 0
    page.close()
