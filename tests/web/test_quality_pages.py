"""The quality summary on the dashboard and in the API: agreement for reviewers and owners, each person's
reliability and pauses for the owner only."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from terakoya.people import accounts
from terakoya.storage.models import Answer, Item
from terakoya.web import create_app

from .conftest import LABELS, PASSWORD, WebProject, make_trainer, sign_in


def test_dashboard_and_api_show_agreement_and_keep_reliability_to_the_owner(project: WebProject) -> None:
    accounts.create_owner(project.db, project.project_id, "olga", "olga@example.org", PASSWORD)
    ann, ben = make_trainer(project, "ann"), make_trainer(project, "ben")
    make_trainer(project, "rita", role="reviewer")
    with project.db.session() as s:
        items = s.scalars(select(Item.id).where(Item.split == "pool").order_by(Item.id)).all()
        for n, item_id in enumerate(items):
            s.add(Answer(item_id=item_id, person_id=ann.id, kind="label", label=LABELS[n % 3]))
            other = LABELS[n % 3] if n % 4 else LABELS[(n + 1) % 3]  # ben differs on every fourth item
            s.add(Answer(item_id=item_id, person_id=ben.id, kind="label", label=other))
    app = create_app(project)
    with TestClient(app) as owner, TestClient(app) as reviewer:
        sign_in(owner, "olga")
        sign_in(reviewer, "rita")
        page = owner.get("/dashboard").text
        assert f"Agreement among 2 people on {len(items)} items answered by two or more" in page
        assert 'id="agreement-per-label"' in page and 'id="reliability"' in page and "2.00 answers per" in page
        differ = len([n for n in range(len(items)) if n % 4 == 0])  # ben differs on every fourth item
        assert f'<a href="/review">{differ} items wait for review</a>' in page
        page = reviewer.get("/dashboard").text
        assert f"Agreement among 2 people on {len(items)} items" in page and 'id="reliability"' not in page

        data = owner.get("/api/v1/quality").json()
        assert data["agreement"]["items"] == len(items) and 0 < data["agreement"]["fleiss"] < 1
        assert {p["person"] for p in data["people"]} == {"ann", "ben"} and data["answers_per_item"] == 2.0
        assert reviewer.get("/api/v1/quality").status_code == 403
        assert reviewer.get(f"/api/v1/items/{project.project_id}-0/provenance").json()["runs"] == []
        assert reviewer.get("/api/v1/items/nope/provenance").status_code == 404
