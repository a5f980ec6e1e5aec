"""Accessibility: axe-core (bundled by the ``axe-playwright-python`` dev dependency, no network) on every page.

Each page is checked as its users see it, on a laptop and (the trainer's pages) on a phone; the queue also with
the guidelines open, the flag dialog open and after an answer. No page may have a serious or critical violation;
``pytest -s`` prints every page's counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from terakoya.people import accounts

from . import test_browser
from .conftest import PASSWORD, WebProject, make_trainer

pytestmark = pytest.mark.browser

# the browser tests' fixtures: a real server on 127.0.0.1 and Debian's Chromium
server = test_browser.server
chromium = test_browser.chromium

BLOCKING = ("serious", "critical")


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (every rule axe runs by default)."""
    from axe_playwright_python.sync_playwright import Axe

    return list(Axe().run(page).response["violations"])


def check(page: Any, name: str, seen: dict[str, list[dict[str, Any]]]) -> None:
    found = axe_violations(page)
    seen[name] = found
    counts = {impact: sum(len(v["nodes"]) for v in found if v["impact"] == impact) for impact in BLOCKING}
    others = sorted(f"{v['id']} ({v['impact']})" for v in found if v["impact"] not in BLOCKING)
    print(
        f"axe {name}: serious {counts['serious']}, critical {counts['critical']}; other: {', '.join(others) or 'none'}"
    )


def blocking(seen: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """page -> its serious and critical violations, with the elements, for the assertion message."""
    out: dict[str, list[str]] = {}
    for name, found in seen.items():
        bad = [
            f"{v['id']} ({v['impact']}): {v['help']} at {', '.join(str(n['target']) for n in v['nodes'][:3])}"
            for v in found
            if v["impact"] in BLOCKING
        ]
        if bad:
            out[name] = bad
    return out


def test_every_page_has_no_serious_or_critical_axe_violation(
    server: str, chromium: Any, project: WebProject, test_output: Path
) -> None:
    accounts.create_owner(project.db, project.project_id, "Olga Owner", "olga@example.org", PASSWORD)
    make_trainer(project, "mina")
    seen: dict[str, list[dict[str, Any]]] = {}
    print()

    anonymous = chromium.new_context(viewport=test_browser.DESKTOP)
    page = anonymous.new_page()
    page.goto(f"{server}/login")
    check(page, "login", seen)
    anonymous.close()

    for device, options in (("desktop", {"viewport": test_browser.DESKTOP}), ("phone", test_browser.PHONE)):
        context = chromium.new_context(**options)
        page = context.new_page()
        test_browser.sign_in(page, server, "mina", "/")
        check(page, f"home ({device})", seen)
        page.goto(f"{server}/queue")
        page.wait_for_selector("#task:not([hidden])")
        check(page, f"queue ({device})", seen)
        before = test_browser.shown_text(page)
        page.locator(".label-btn").first.click()
        test_browser.wait_for_next(page, before)
        test_browser.wait_saved(page)
        check(page, f"queue after an answer ({device})", seen)
        page.click("#btn-panel")
        page.wait_for_selector("#panel:not([hidden])")
        check(page, f"queue with the guidelines ({device})", seen)
        page.click("#btn-panel-close")
        page.click("#btn-flag")
        page.wait_for_selector("#flag-dialog[open]")
        check(page, f"queue flag dialog ({device})", seen)
        page.click("#flag-dialog .cancel")
        page.goto(f"{server}/me")
        check(page, f"me ({device})", seen)
        page.goto(f"{server}/glossary")
        check(page, f"glossary ({device})", seen)
        context.close()

    from sqlalchemy import select

    from terakoya.storage.models import Item

    with project.db.session() as s:
        first_item = s.scalar(select(Item.external_id).order_by(Item.id).limit(1))
    owner = chromium.new_context(viewport=test_browser.DESKTOP)
    page = owner.new_page()
    test_browser.sign_in(page, server, "olga@example.org", "/dashboard")
    check(page, "dashboard (owner)", seen)
    for path in ("/people", "/report", "/glossary", "/review", "/provenance", f"/provenance?item={first_item}"):
        page.goto(f"{server}{path}")
        check(page, f"{path.strip('/')} (owner)", seen)
    owner.close()

    assert blocking(seen) == {}


def test_the_report_first_screen_on_a_laptop_and_a_phone(
    server: str, chromium: Any, project: WebProject, test_output: Path
) -> None:
    """A real report (teacher-only: the test project has gold items and teacher suggestions) served at /report:
    its plain-words first screen is on the first screen, nothing scrolls sideways on a phone, axe passes."""
    from terakoya.evaluation.report import evaluate

    with project.db.session() as s:  # the fixture's project has no gold yet: half the pool becomes gold test items
        from sqlalchemy import select, update

        from terakoya.storage.models import Item, Suggestion

        items = s.scalars(select(Item).where(Item.project_id == project.project_id).order_by(Item.id)).all()
        for i, item in enumerate(items[: len(items) // 2]):
            label = s.scalar(select(Suggestion.label).where(Suggestion.item_id == item.id))
            gold = label if i % 3 else ("negative" if label != "negative" else "positive")
            s.execute(update(Item).where(Item.id == item.id).values(split="test", gold_label=gold))
    evaluate(
        project.db,
        project.project_id,
        project.settings,
        learning_curve=False,
        out_dir=project.dir / "reports" / "latest",
    )
    shots = test_output / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    seen: dict[str, list[dict[str, Any]]] = {}
    for name, options in (("desktop", {"viewport": test_browser.DESKTOP}), ("phone", test_browser.PHONE)):
        context = chromium.new_context(**options)
        page = context.new_page()
        test_browser.sign_in(page, server, "Olga Owner", then="/report")
        summary = page.locator("#summary")
        assert summary.count() == 1
        box = summary.bounding_box()
        height = page.viewport_size["height"]
        assert box is not None and box["y"] < height, f"the first screen starts below the fold on the {name}"
        assert page.evaluate("() => document.scrollingElement.scrollWidth <= window.innerWidth + 1"), name
        assert page.get_by_role("link", name="← Dashboard").count() == 1  # the app's way back
        page.screenshot(path=str(shots / f"report-first-screen-{name}.png"))
        check(page, f"report ({name})", seen)
        context.close()
    assert blocking(seen) == {}
