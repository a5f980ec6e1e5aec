"""Every route of the app, called by every kind of visitor: who gets in and who is refused.

A new route fails this test until it is given an access level below.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from terakoya.people import accounts
from terakoya.web import create_app

from .conftest import PASSWORD, WebProject, csrf_of, make_trainer, sign_in

# who may call each route: public < signed-in (any account, member or not) < trainer < reviewer < owner
ACCESS: dict[tuple[str, str], str] = {
    ("GET", "/openapi.json"): "public",
    ("GET", "/docs"): "public",
    ("GET", "/healthz"): "public",
    ("GET", "/static"): "public",
    ("GET", "/login"): "public",
    ("POST", "/login"): "public",
    ("GET", "/invite/{token}"): "public",
    ("POST", "/invite/{token}"): "public",
    ("POST", "/api/v1/auth/token"): "public",
    ("GET", "/"): "signed-in",
    ("POST", "/logout"): "signed-in",
    ("GET", "/queue"): "trainer",
    ("GET", "/glossary"): "trainer",
    ("POST", "/glossary"): "trainer",
    ("GET", "/me"): "trainer",
    ("POST", "/me/profile"): "trainer",
    ("POST", "/me/tokens"): "trainer",
    ("POST", "/me/tokens/{token_id}/revoke"): "trainer",
    ("GET", "/api/v1/tasks/next"): "trainer",
    ("POST", "/api/v1/tasks/{task_id}/answer"): "trainer",
    ("POST", "/api/v1/tasks/{task_id}/flag"): "trainer",
    ("POST", "/api/v1/tasks/{task_id}/skip"): "trainer",
    ("POST", "/api/v1/answers/undo"): "trainer",
    ("GET", "/api/v1/guidelines"): "trainer",
    ("GET", "/api/v1/glossary"): "trainer",
    ("POST", "/api/v1/glossary"): "trainer",
    ("GET", "/api/v1/me"): "trainer",
    ("GET", "/api/v1/me/stats"): "trainer",
    ("PUT", "/api/v1/me/profile"): "trainer",
    ("GET", "/api/v1/me/tokens"): "trainer",
    ("POST", "/api/v1/me/tokens"): "trainer",
    ("DELETE", "/api/v1/me/tokens/{token_id}"): "trainer",
    ("POST", "/glossary/{term_id}/decide"): "reviewer",
    ("POST", "/api/v1/glossary/{term_id}/approve"): "reviewer",
    ("POST", "/api/v1/glossary/{term_id}/reject"): "reviewer",
    ("GET", "/dashboard"): "reviewer",
    ("GET", "/report"): "reviewer",
    ("GET", "/report/{name}"): "reviewer",
    ("GET", "/payouts"): "owner",
    ("POST", "/glossary/guidelines"): "owner",
    ("PUT", "/api/v1/guidelines"): "owner",
    ("POST", "/api/v1/tasks/release"): "trainer",
    ("GET", "/payouts.csv"): "owner",
    ("GET", "/api/v1/payouts"): "owner",
    ("GET", "/api/v1/dashboard"): "reviewer",
    ("GET", "/api/v1/jobs"): "reviewer",
    ("GET", "/api/v1/jobs/{job_id}"): "reviewer",
    ("POST", "/dashboard/jobs"): "owner",
    ("GET", "/people"): "owner",
    ("POST", "/people/invite"): "owner",
    ("POST", "/people/invites/{invite_id}/revoke"): "owner",
    ("POST", "/people/pay"): "owner",
    ("GET", "/api/v1/members"): "owner",
    ("GET", "/api/v1/invites"): "owner",
    ("POST", "/api/v1/invites"): "owner",
    ("DELETE", "/api/v1/invites/{invite_id}"): "owner",
    ("GET", "/api/v1/pay"): "owner",
    ("PUT", "/api/v1/pay"): "owner",
    ("POST", "/api/v1/jobs"): "owner",
    ("GET", "/review"): "reviewer",
    ("POST", "/review/{item_id}"): "reviewer",
    ("POST", "/review/decisions/{answer_id}/undo"): "reviewer",
    ("GET", "/api/v1/review"): "reviewer",
    ("POST", "/api/v1/review/{item_id}"): "reviewer",
    ("POST", "/api/v1/review/decisions/{answer_id}/undo"): "reviewer",
    ("GET", "/provenance"): "reviewer",
    ("GET", "/api/v1/items/{external_id}/provenance"): "reviewer",
    ("GET", "/api/v1/quality"): "owner",
    ("POST", "/people/{person_id}/unpause"): "owner",
    ("POST", "/api/v1/people/{person_id}/unpause"): "owner",
}

LEVELS = ["public", "signed-in", "trainer", "reviewer", "owner"]
# each visitor and the highest level they reach in this project
VISITORS = {
    "anonymous": "public",
    "outsider": "signed-in",  # a trainer of another project
    "trainer": "trainer",
    "reviewer": "reviewer",
    "owner": "owner",
}
PARAMS = {"token": "no-such-invite", "name": "report.json"}


def app_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route, walking into included routers (FastAPI keeps them as branches)."""
    found: list[tuple[str, str]] = []

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            if isinstance(route, Mount):
                found.append(("GET", prefix + route.path))
            elif isinstance(route, APIRoute | Route):
                found.extend((m, prefix + route.path) for m in sorted(route.methods or ()) if m != "HEAD")
            elif hasattr(route, "original_router"):
                walk(route.original_router.routes, prefix + getattr(route.include_context, "prefix", ""))
            else:
                raise AssertionError(f"unknown kind of route: {route!r}")

    walk(app.routes, "")
    return found


@pytest.fixture
def setup(project: WebProject) -> tuple[Any, dict[str, TestClient]]:
    accounts.create_owner(project.db, project.project_id, "olga", "olga@example.org", PASSWORD)
    make_trainer(project, "tom")
    make_trainer(project, "rita", role="reviewer")
    make_trainer(project, "xena", pid=project.db.project_id("other"))
    app = create_app(project)
    clients = {name: TestClient(app) for name in VISITORS}
    for name, login in (("outsider", "xena"), ("trainer", "tom"), ("reviewer", "rita"), ("owner", "olga")):
        sign_in(clients[name], login)
    return app, clients


def call(client: TestClient, method: str, path: str, ids: dict[str, int]) -> Any:
    url = re.sub(r"\{(\w+)\}", lambda m: str(ids.get(m.group(1), PARAMS.get(m.group(1), "1"))), path)
    if path == "/static":
        url = "/static/app.css"
    if method == "GET":
        return client.get(url, follow_redirects=False)
    csrf = csrf_of(client.get("/login").text) if "/api/" not in path else None
    if "/api/" in path:
        token_page = client.get("/me")
        headers = {"X-CSRF-Token": csrf_of(token_page.text)} if token_page.status_code == 200 else {}
        return client.request(method, url, json={}, headers=headers, follow_redirects=False)
    return client.request(method, url, data={"csrf_token": csrf or ""}, follow_redirects=False)


def refused(response: Any, path: str) -> bool:
    if response.status_code == 403:
        return True
    if path.startswith("/api/") and response.status_code == 401:
        return True
    return response.status_code == 303 and response.headers["location"].startswith("/login?next=")


def test_every_route_is_classified(setup: tuple[Any, dict[str, TestClient]]) -> None:
    app, _ = setup
    routes = set(app_routes(app))
    assert routes - set(ACCESS) == set(), "give these routes an access level in ACCESS"
    assert set(ACCESS) - routes == set(), "these routes no longer exist"


def test_every_route_lets_in_exactly_the_right_visitors(setup: tuple[Any, dict[str, TestClient]]) -> None:
    app, clients = setup
    ids = {"task_id": 1, "term_id": 1, "invite_id": 1, "token_id": 1, "job_id": 1}
    wrong: list[str] = []
    for method, path in app_routes(app):
        needed = ACCESS[(method, path)]
        for visitor, reach in VISITORS.items():
            client = clients[visitor]
            response = call(client, method, path, ids)
            allowed = LEVELS.index(reach) >= LEVELS.index(needed)
            if allowed == refused(response, path):
                wrong.append(
                    f"{visitor:9} {method:6} {path}: {response.status_code} (should be {'in' if allowed else 'out'})"
                )
            if (method, path) == ("POST", "/logout") and visitor != "anonymous":
                login = {"outsider": "xena", "trainer": "tom", "reviewer": "rita", "owner": "olga"}[visitor]
                sign_in(client, login)
    assert wrong == []


def test_refusals_say_why(setup: tuple[Any, dict[str, TestClient]]) -> None:
    _, clients = setup
    outsider = clients["outsider"].get("/api/v1/tasks/next").json()
    assert outsider == {
        "error": {
            "code": "forbidden",
            "message": "xena is not a member of this project; ask its owner for an invite link",
        }
    }
    page = clients["trainer"].get("/people")
    assert page.status_code == 403 and "this needs the owner role and you are a trainer" in page.text
    assert (
        clients["anonymous"].get("/dashboard", follow_redirects=False).headers["location"] == "/login?next=/dashboard"
    )
    home = clients["outsider"].get("/")
    assert home.status_code == 200 and "not a member of <strong>fin</strong>" in home.text
