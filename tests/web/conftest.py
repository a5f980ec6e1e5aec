"""Fixtures for the web workbench: a project built straight from the models, people, and signed-in clients."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from terakoya.people import accounts, glossary
from terakoya.project import Progress
from terakoya.settings import LabelSpec, Settings
from terakoya.storage import open_database
from terakoya.storage.db import Database
from terakoya.storage.models import Item, Suggestion, Task

LABELS = ("positive", "negative", "neutral")
PASSWORD = "correct horse battery"


@dataclass
class WebProject:
    """A :class:`terakoya.project.ProjectLike` built straight from the models; its stages are tiny fake jobs.

    ``calls`` records each stage run (and each settings reload) with what it was given.
    """

    db: Database
    project_id: int
    settings: Settings
    dir: Path
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def reload_settings(self) -> None:
        """As :meth:`terakoya.project.Project.reload_settings`: the owner's web edits of the guidelines apply."""
        self.calls.append(("reload_settings", None))
        self.settings = glossary.edited_settings(self.db, self.project_id, self.settings)

    def teach(self, *, progress: Progress | None = None) -> dict[str, Any]:
        for i in range(3):
            if progress:
                progress(i + 1, 3)
        self.calls.append(("teach", None))
        return {"labeled": 3, "path": self.dir}

    def route(self, *, budget_items: int | None = None) -> dict[str, Any]:
        self.calls.append(("route", budget_items))
        return {"routed": budget_items}

    def train(self, *, progress: Progress | None = None) -> dict[str, Any]:
        if progress:
            progress(1, 1)
        self.calls.append(("train", None))
        return {"kind": "fake", "macro_f1": 0.5}

    def evaluate(self, *, progress: Progress | None = None) -> dict[str, Any]:
        if progress:
            progress(2, 2)
        self.calls.append(("evaluate", None))
        return {"report": self.dir / "reports" / "latest"}

    def close(self) -> None:
        self.db.close()


def build_project(
    url: str,
    folder: Path,
    *,
    name: str = "fin",
    pool: int = 10,
    gold: int = 0,
    verify: int = 0,
    guidelines: str = "Label what the sentence says about the **company**.",
) -> WebProject:
    """Items with teacher suggestions and queued tasks, inserted through the models."""
    settings = Settings(
        name=name,
        labels=[LabelSpec(name=n, description=f"{n} news for the company") for n in LABELS],
        guidelines=guidelines,
        glossary={"EBITDA": "earnings before interest, taxes, depreciation and amortisation"},
        db=url,
        project_dir=folder,
    )
    db = open_database(url)
    pid = db.project_id(name)
    add_tasks(db, pid, pool=pool, gold=gold, verify=verify)
    return WebProject(db, pid, settings, folder)


def add_tasks(db: Database, pid: int, *, pool: int = 10, gold: int = 0, verify: int = 0, start: int = 0) -> list[int]:
    ids: list[int] = []
    with db.session() as s:
        for i in range(start, start + pool + gold + verify):
            is_gold = start + pool <= i < start + pool + gold
            text = f"Item {pid}-{i}: operating profit rose {i} percent."
            item = Item(
                project_id=pid,
                external_id=f"{pid}-{i}",
                text=text,
                text_hash=hashlib.sha256(text.encode()).hexdigest(),
                split="test" if is_gold else "pool",
                gold_label=LABELS[i % 3] if is_gold else None,
            )
            s.add(item)
            s.flush()
            probs = {"positive": 0.5, "negative": 0.3, "neutral": 0.2}
            s.add(
                Suggestion(
                    item_id=item.id, agent_kind="teacher", agent="tiny", prompt_version="v1",
                    label="positive", probabilities=probs, confidence=0.5,
                )
            )  # fmt: skip
            task = Task(
                project_id=pid,
                item_id=item.id,
                kind="verify" if i >= start + pool + gold else "label",
                reason="gold" if is_gold else "routed",
                priority=0,
                status="queued",
            )
            s.add(task)
            s.flush()
            ids.append(task.id)
    return ids


@pytest.fixture
def project(tmp_path: Path) -> Iterator[WebProject]:
    p = build_project(f"sqlite:///{tmp_path / 'terakoya.db'}", tmp_path, pool=8, gold=2, verify=2)
    yield p
    p.close()


def make_trainer(p: WebProject, name: str, *, role: str = "trainer", pid: int | None = None) -> accounts.Account:
    """A person who joined through an invite link, as in real life."""
    _, token = accounts.create_invite(
        p.db, pid or p.project_id, p.settings, created_by=None, role=role, languages=["en"]
    )
    return accounts.accept_invite(p.db, token, name=name, password=PASSWORD, email=f"{name}@example.org")


def exact(message: str) -> str:
    """A ``pytest.raises(match=...)`` pattern for exactly this message."""
    return "^" + re.escape(message) + "$"


CSRF_RE = re.compile(r'name="csrf-token" content="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF_RE.search(html)
    assert found, "page has no CSRF token"
    return found.group(1)


def sign_in(client: Any, login: str, password: str = PASSWORD) -> str:
    """Sign in through the form; returns the session's CSRF token."""
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"login": login, "password": password, "next": "/", "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    me = client.get("/me")  # members land on their page; others only on the home page
    return csrf_of(me.text if me.status_code == 200 else client.get("/").text)
