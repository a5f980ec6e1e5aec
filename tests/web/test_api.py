"""The web app in-process (real SQLite file, real HTTP handling): API, pages, errors, sessions, jobs, report."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from terakoya.people import accounts, glossary
from terakoya.storage.models import Answer
from terakoya.web import create_app

from .conftest import PASSWORD, WebProject, build_project, csrf_of, make_trainer, sign_in


@pytest.fixture
def app(project: WebProject) -> Any:
    accounts.create_owner(project.db, project.project_id, "olga", "olga@example.org", PASSWORD)
    make_trainer(project, "tom")
    return create_app(project)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def token_for(client: TestClient, login: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", json={"login": login, "password": PASSWORD, "name": "test"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def error(response: Any) -> tuple[int, str, str]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return response.status_code, body["error"]["code"], body["error"]["message"]


def test_a_script_works_the_queue_with_a_bearer_token(client: TestClient, project: WebProject) -> None:
    tom = token_for(client, "tom@example.org")
    first = client.get("/api/v1/tasks/next", headers=tom).json()["task"]
    preload = client.get(f"/api/v1/tasks/next?exclude={first['task_id']}", headers=tom).json()["task"]
    assert first["task_id"] != preload["task_id"]
    assert first["labels"][0] == {"name": "positive", "description": "positive news for the company", "key": "1"}
    assert "reason" not in first  # gold items look like any other
    body = {"label": "negative", "rationale": "profit rose but guidance was cut", "idempotency_key": "abc"}
    r1 = client.post(f"/api/v1/tasks/{first['task_id']}/answer", json=body, headers=tom)
    r2 = client.post(f"/api/v1/tasks/{first['task_id']}/answer", json=body, headers=tom)
    assert r1.status_code == r2.status_code == 200
    assert (r1.json()["duplicate"], r2.json()["duplicate"]) == (False, True)
    with project.db.session() as s:
        (stored,) = s.scalars(select(Answer)).all()
        assert (stored.source, stored.rationale, stored.guideline_version is not None) == (
            "api",
            "profit rose but guidance was cut",
            True,
        )
    undone = client.post("/api/v1/answers/undo", headers=tom).json()
    assert undone["task"]["task_id"] == first["task_id"]
    assert client.post(f"/api/v1/tasks/{preload['task_id']}/skip", headers=tom).json() == {"ok": True}
    flag = {"reason": "ambiguous", "comment": "two readings", "idempotency_key": "f1"}
    assert client.post(f"/api/v1/tasks/{first['task_id']}/flag", json=flag, headers=tom).status_code == 200
    stats = client.get("/api/v1/me/stats", headers=tom).json()
    assert (stats["total"]["items"], stats["pay"]["mode"], stats["remaining"]) == (1, "per_item", 10)
    me = client.get("/api/v1/me", headers=tom).json()
    assert (me["name"], me["role"]) == ("tom", "trainer")


def test_errors_have_one_shape_and_say_how_to_fix(client: TestClient) -> None:
    assert error(client.get("/api/v1/tasks/next")) == (
        401,
        "auth",
        "sign in first: send 'Authorization: Bearer <token>' or use the session of the web app",
    )
    assert error(client.get("/api/v1/me", headers={"Authorization": "Bearer tk_nope"})) == (
        401,
        "auth",
        "the API token is not valid (unknown or revoked); create a new one on your 'My work' page",
    )
    tom = token_for(client, "tom")
    assert error(client.get("/api/v1/dashboard", headers=tom)) == (
        403,
        "forbidden",
        "this needs the reviewer role and you are a trainer; ask the project owner if you need it",
    )
    task = client.get("/api/v1/tasks/next", headers=tom).json()["task"]
    bad = client.post(f"/api/v1/tasks/{task['task_id']}/answer", json={"label": "meh"}, headers=tom)
    assert error(bad) == (
        422,
        "data",
        "label 'meh' is not one of this project's labels: positive, negative, neutral; choose one of them",
    )
    missing = client.post(f"/api/v1/tasks/{task['task_id']}/answer", json={}, headers=tom)
    assert error(missing) == (
        422,
        "validation",
        "the request is not valid — the body: Value error, give label (one of the project's labels) or, for a "
        "written-answer task, value; see /docs for the expected fields",
    )
    assert error(client.post("/api/v1/tasks/99999/answer", json={"label": "positive"}, headers=tom)) == (
        404,
        "not-found",
        "task 99999 does not exist in this project; fetch the next task",
    )
    assert error(client.post("/api/v1/answers/undo", headers=tom)) == (
        409,
        "state",
        "there is no answer of yours to undo in this project",
    )
    assert error(client.get("/api/v1/nothing-here", headers=tom))[:2] == (404, "not-found")
    assert error(client.delete("/api/v1/tasks/next", headers=tom))[:2] == (405, "method-not-allowed")


def test_session_cookies_are_httponly_lax_and_api_writes_need_the_csrf_header(client: TestClient) -> None:
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"login": "tom", "password": PASSWORD, "next": "/queue", "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert (response.status_code, response.headers["location"]) == (303, "/queue")
    cookies = response.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("terakoya_session_"))
    assert "HttpOnly" in session and "SameSite=lax" in session and "Max-Age=" in session
    task = client.get("/api/v1/tasks/next").json()["task"]
    no_header = client.post(f"/api/v1/tasks/{task['task_id']}/skip")
    assert error(no_header) == (
        403,
        "forbidden",
        "the X-CSRF-Token header is missing or wrong; reload the page (scripts: use a Bearer token)",
    )
    csrf = csrf_of(client.get("/queue").text)
    assert client.post(f"/api/v1/tasks/{task['task_id']}/skip", headers={"X-CSRF-Token": csrf}).status_code == 200
    # forms need the token too
    assert client.post("/me/tokens", data={"name": "x"}).status_code == 403
    assert client.post("/me/tokens", data={"name": "x", "csrf_token": csrf}).status_code == 200
    # signing out ends the session on the server too: a saved copy of the cookie opens nothing afterwards
    saved = dict(client.cookies)
    assert client.get("/api/v1/me").status_code == 200
    assert client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    assert client.get("/queue", follow_redirects=False).headers["location"] == "/login?next=/queue"
    client.cookies.update(saved)
    assert error(client.get("/api/v1/me"))[:2] == (401, "auth")
    assert client.get("/queue", follow_redirects=False).headers["location"] == "/login?next=/queue"


def test_login_is_rate_limited_per_account_and_address(client: TestClient) -> None:
    csrf = csrf_of(client.get("/login").text)
    for _ in range(5):
        r = client.post("/login", data={"login": "tom", "password": "wrong!!!", "csrf_token": csrf})
        assert r.status_code == 401
        assert "the email/name or the password is wrong; check both and try again" in r.text
    blocked = client.post("/login", data={"login": "tom", "password": PASSWORD, "csrf_token": csrf})
    assert blocked.status_code == 429
    assert "too many failed sign-ins for &#39;tom&#39; from your address; wait" in blocked.text
    api = client.post("/api/v1/auth/token", json={"login": "tom", "password": PASSWORD})
    status, code, message = error(api)
    assert (status, code) == (429, "rate-limited") and message.startswith("too many failed sign-ins for 'tom'")
    assert api.headers["retry-after"] == "60"
    # another account from the same address is not blocked
    assert client.post("/api/v1/auth/token", json={"login": "olga", "password": PASSWORD}).status_code == 200


@pytest.mark.parametrize("processes", [1, 3])
def test_simultaneous_wrong_passwords_are_counted_as_they_arrive(db_url: str, processes: int) -> None:
    """100 sign-ins at once used to pass the check together while their passwords were being compared; and
    each server process kept its own count, so N processes let 5 N through. Each handle stands for a process."""
    import threading

    from terakoya.storage import open_database
    from terakoya.web.security import LoginThrottle

    handles = [open_database(db_url) for _ in range(processes)]
    pid = handles[0].project_id("fin")
    throttles = [LoginThrottle(db, pid, limit=5, window_s=60) for db in handles]
    let_through: list[int] = []
    refused: list[int] = []
    start = threading.Barrier(100)

    def attempt(i: int) -> None:
        start.wait()
        try:
            throttles[i % processes].check("tom", "127.0.0.1")
        except accounts.RateLimited:
            refused.append(i)
            return
        let_through.append(i)  # the password check would run here; none has failed() yet

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (len(let_through), len(refused)) == (5, 95)
    throttles[0].check("tom", "10.0.0.9")  # another address has its own count
    throttles[-1].succeeded("tom", "127.0.0.1")  # a right password clears the count
    throttles[0].check("tom", "127.0.0.1")
    for db in handles:
        db.close()


def test_owner_invites_a_trainer_who_joins_through_the_link(client: TestClient) -> None:
    olga = token_for(client, "olga")
    made = client.post("/api/v1/invites", json={"tags": ["finance"], "days": 3}, headers=olga)
    assert made.status_code == 201
    url = made.json()["url"]
    assert url.startswith("http://testserver/invite/") and made.json()["invite"]["languages"] == ["en"]
    with TestClient(client.app) as fresh:
        page = fresh.get(url)
        assert page.status_code == 200 and "Join fin" in page.text
        form = {"name": "ivy", "password": "short", "languages": "en", "tags": "", "csrf_token": csrf_of(page.text)}
        short = fresh.post(url, data=form)
        assert short.status_code == 422 and "the password is too short (5 characters); use at least 8" in short.text
        joined = fresh.post(url, data={**form, "password": PASSWORD}, follow_redirects=False)
        assert (joined.status_code, joined.headers["location"]) == (303, "/queue")
        assert fresh.get("/queue").status_code == 200
        assert fresh.get(url).status_code == 409  # used
    members = client.get("/api/v1/members", headers=olga).json()
    assert [(m["name"], m["role"]) for m in members] == [("olga", "owner"), ("tom", "trainer"), ("ivy", "trainer")]
    newest = client.get("/api/v1/invites", headers=olga).json()[0]
    assert (newest["used_by_name"], newest["role"]) == ("ivy", "trainer")


def test_glossary_through_the_api_trainers_see_only_their_own_proposals(client: TestClient) -> None:
    tom, olga = token_for(client, "tom"), token_for(client, "olga")
    made = client.post("/api/v1/glossary", json={"term": "guidance", "definition": "a forecast"}, headers=tom)
    assert made.status_code == 201 and made.json()["status"] == "proposed"
    make = client.app.state.web  # a second trainer proposes too
    una = make_trainer(make.project, "una")
    una_token = {"Authorization": "Bearer " + accounts.create_api_token(make.db, una.id)[1]}
    client.post("/api/v1/glossary", json={"term": "churn", "definition": "customers lost"}, headers=una_token)
    assert [t["term"] for t in client.get("/api/v1/glossary", headers=tom).json()] == ["guidance"]
    assert error(client.post(f"/api/v1/glossary/{made.json()['id']}/approve", headers=tom))[0] == 403
    approved = client.post(f"/api/v1/glossary/{made.json()['id']}/approve", headers=olga)
    assert approved.json()["status"] == "approved"
    terms = client.get("/api/v1/guidelines", headers=una_token).json()["terms"]
    assert [t["term"] for t in terms] == ["EBITDA", "guidance"]
    assert sorted(t["term"] for t in client.get("/api/v1/glossary", headers=una_token).json()) == ["churn", "guidance"]


def test_owner_runs_a_job_and_polls_its_progress(client: TestClient, project: WebProject) -> None:
    olga = token_for(client, "olga")
    started = client.post("/api/v1/jobs", json={"kind": "teach"}, headers=olga)
    assert started.status_code == 202 and started.json()["status"] in {"queued", "running", "done"}
    job_id = started.json()["id"]
    deadline = time.monotonic() + 30
    while (job := client.get(f"/api/v1/jobs/{job_id}", headers=olga).json())["status"] not in {"done", "failed"}:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (job["status"], job["done"], job["total"], job["result"]) == (
        "done",
        3,
        3,
        {"labeled": 3, "path": str(project.dir)},
    )
    assert ("teach", None) in project.calls
    assert error(client.post("/api/v1/jobs", json={"kind": "route"}, headers=olga)) == (
        422,
        "data",
        "routing needs a budget: how many items to send to experts (1 or more)",
    )
    assert error(client.post("/api/v1/jobs", json={"kind": "dance"}, headers=olga)) == (
        422,
        "data",
        "job kind 'dance' is unknown; choose one of: teach, route, train, evaluate",
    )
    csrf = sign_in(client, "olga")
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert all(f'id="run-{kind}"' in page.text for kind in ("teach", "route", "train", "evaluate"))
    form = client.post("/dashboard/jobs", data={"kind": "teach", "csrf_token": csrf}, follow_redirects=False)
    assert form.status_code == 303


def test_report_is_served_when_evaluate_wrote_one(client: TestClient, project: WebProject) -> None:
    sign_in(client, "olga")
    assert "No report yet" in client.get("/report").text
    folder = project.dir / "reports" / "latest"
    folder.mkdir(parents=True)
    (folder / "report.html").write_text("<html><body><h1>Scrutiny</h1></body></html>")
    (folder / "report.json").write_text('{"ok": true}')
    assert "<h1>Scrutiny</h1>" in client.get("/report").text
    assert client.get("/report/report.json").json() == {"ok": True}
    (project.dir / "secret.txt").write_text("no")
    assert client.get("/report/..%2Fsecret.txt").status_code == 404
    assert client.get("/report/../secret.txt").status_code == 404
    for odd in ("report.json%00", "%00", "report.json%0A", "a%00b.png"):  # NUL bytes were 500s
        assert client.get(f"/report/{odd}").status_code == 404, odd


def test_pages_render_for_their_roles(client: TestClient) -> None:
    sign_in(client, "olga")
    for path, marker in [
        ("/dashboard", "Teacher vs expert"),
        ("/people", "Invite a trainer"),
        ("/glossary", "Proposed terms"),
        ("/queue", 'id="label-buttons"'),
        ("/me", "Time and earnings"),
        ("/", "Your projects"),
        ("/docs", "/api/v1/tasks/next"),
    ]:
        page = client.get(path)
        assert page.status_code == 200 and marker in page.text, path
        assert re.search(r'<(script|link)[^>]+(src|href)="(https?:)?//', page.text) is None, "assets must be local"
    invite = client.post(
        "/people/invite", data={"role": "trainer", "days": "7", "csrf_token": csrf_of(client.get("/people").text)}
    )
    assert invite.status_code == 200 and "/invite/" in invite.text
    pay = client.post(
        "/people/pay",
        data={
            "mode": "per_hour",
            "per_item": "0",
            "per_hour": "25",
            "currency": "eur",
            "csrf_token": csrf_of(invite.text),
        },
        follow_redirects=False,
    )
    assert pay.status_code == 303
    assert "25.00 EUR per active hour" in client.get("/me").text


def test_openapi_is_served_locally_and_pages_send_protective_headers(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/api/v1/tasks/next" in spec["paths"] and "/queue" not in spec["paths"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text.lower() and "swagger" not in docs.text.lower()
    headers = client.get("/login").headers
    assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer"
    assert "script-src 'self'" in headers["content-security-policy"]
    assert client.get("/static/app.css").status_code == 200


def test_serve_opens_the_project_folder_and_answers_on_127_0_0_1(tmp_path: Path) -> None:
    from terakoya.project import Project

    Project.init(tmp_path / "news").close()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = str(tmp_path / "news")
    code = f"from pathlib import Path; from terakoya.web import serve; serve(Path({folder!r}), port={port})"
    server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        assert health.json() == {"ok": True}
        login = httpx.get(f"http://127.0.0.1:{port}/queue", follow_redirects=True)
        assert login.status_code == 200 and "Sign in" in login.text and "news" in login.text
    finally:
        server.terminate()
        _, err = server.communicate(timeout=10)
    assert b"no owner can sign in yet; add one with: terakoya user add NAME --email you@example.org" in err


def test_large_bodies_and_long_passwords_are_refused_before_they_cost_memory(client: TestClient) -> None:
    """One 100 MB password once took the server from 105 MB to 527 MB; bodies are capped, declared or streamed."""
    from terakoya.web.app import MAX_BODY_BYTES

    huge = "x" * (MAX_BODY_BYTES + 10)
    r = client.post("/api/v1/auth/token", json={"login": "olga@example.org", "password": huge})
    assert error(r)[:2] == (413, "too-large") and "larger than 1,000,000 bytes" in error(r)[2]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the body streams in and is cut off
        yield b'{"login": "olga@example.org", "password": "'
        for _ in range(30):
            yield b"y" * 50_000
        yield b'"}'

    r = client.post("/api/v1/auth/token", content=chunks(), headers={"Content-Type": "application/json"})
    assert error(r)[:2] == (413, "too-large")
    # a long password that fits in a body is simply wrong, without hashing it
    r = client.post("/api/v1/auth/token", json={"login": "olga@example.org", "password": "p" * 5000})
    assert error(r)[:2] == (401, "auth")
    right = client.post("/api/v1/auth/token", json={"login": "olga@example.org", "password": PASSWORD})
    assert right.status_code == 200


def test_out_of_range_values_are_refused_at_the_edge(client: TestClient) -> None:
    """Ids beyond 64 bits used to be 500s; a budget of 10**30 and an Infinity pay were accepted."""
    olga = token_for(client, "olga")
    for path in ("/api/v1/tasks/99999999999999999999999/skip", "/api/v1/tasks/0/skip"):
        r = client.post(path, headers=olga)
        assert error(r)[:2] == (422, "validation"), (path, r.text)
    assert error(client.get("/api/v1/jobs/99999999999999999999999", headers=olga))[:2] == (422, "validation")
    r = client.post("/api/v1/jobs", json={"kind": "route", "budget_items": 10**30}, headers=olga)
    assert error(r)[:2] == (422, "validation") and "budget_items" in error(r)[2]
    infinite = '{"mode": "per_item", "per_item": Infinity, "per_hour": 0}'
    r = client.put("/api/v1/pay", content=infinite, headers={**olga, "Content-Type": "application/json"})
    assert error(r)[:2] == (422, "validation")
    r = client.put("/api/v1/pay", json={"mode": "per_item", "per_item": 0.1, "currency": "X" * 10_000}, headers=olga)
    assert error(r)[:2] == (422, "validation")


@pytest.mark.parametrize(
    ("setting", "scheme", "secure"),
    [(None, "https", True), (None, "http", False), (True, "http", True), (False, "https", False)],
)
def test_cookies_are_secure_behind_https_by_default(
    project: WebProject, setting: bool | None, scheme: str, secure: bool
) -> None:
    make_trainer(project, "tom")
    with TestClient(create_app(project, secure_cookies=setting), base_url=f"{scheme}://testserver") as c:
        page = c.get("/login")
        cookies = [page.headers["set-cookie"]]
        if scheme == "https" or not secure:  # a client sends a Secure cookie back over HTTPS only
            r = c.post(
                "/login",
                data={"login": "tom", "password": PASSWORD, "next": "/", "csrf_token": csrf_of(page.text)},
                follow_redirects=False,
            )
            assert r.status_code == 303
            cookies += [v for k, v in r.headers.multi_items() if k == "set-cookie"]
            assert len(cookies) == 3
        assert all(("; secure" in c.lower()) is secure for c in cookies), cookies


def test_the_owner_edits_guidelines_and_label_descriptions_as_versions(client: TestClient, project: WebProject) -> None:
    tom = token_for(client, "tom")
    before = client.get("/api/v1/guidelines", headers=tom).json()
    task = client.get("/api/v1/tasks/next", headers=tom).json()["task"]
    key = {"idempotency_key": "k1", "active_seconds": 3}
    assert client.post(f"/api/v1/tasks/{task['task_id']}/answer", json={"label": "neutral", **key}, headers=tom)
    olga = token_for(client, "olga")
    body = {"guidelines": "# Tone\n\nJudge the **company**.", "descriptions": {"positive": "good for the firm"}}
    assert error(client.put("/api/v1/guidelines", json=body, headers=tom))[:2] == (403, "forbidden")
    bad = client.put("/api/v1/guidelines", json={**body, "descriptions": {"great": "x"}}, headers=olga)
    assert error(bad)[:2] == (422, "data") and "'great' is not a label of this project" in error(bad)[2]
    saved = client.put("/api/v1/guidelines", json=body, headers=olga).json()
    assert saved["guidelines"] == body["guidelines"] and "<h3>Tone</h3>" in saved["guidelines_html"]
    assert saved["version"] != before["version"]
    assert [o["description"] for o in saved["labels"] if o["name"] == "positive"] == ["good for the firm"]
    # trainers read the new version; the answer given before keeps the old one
    assert client.get("/api/v1/guidelines", headers=tom).json()["version"] == saved["version"]
    history = glossary.guideline_history(project.db, project.project_id)
    assert [(h.version, h.set_by, h.answers) for h in history] == [(saved["version"], "olga", 0)]
    with project.db.session() as s:
        assert s.scalars(select(Answer.guideline_version)).all() == [before["version"]]
    # the owner's page edits the same way, through a form
    sign_in(client, "olga")
    page = client.get("/glossary")
    assert "Edit the guidelines" in page.text and "good for the firm" in page.text
    form = {"csrf_token": csrf_of(page.text), "guidelines": "Read it twice.", "label:negative": "bad news"}
    assert client.post("/glossary/guidelines", data=form, follow_redirects=False).status_code == 303
    assert project.settings.guidelines == "Read it twice."
    assert [s.description for s in project.settings.labels if s.name == "negative"] == ["bad news"]


def test_payouts_to_the_last_day_of_the_calendar(client: TestClient) -> None:
    """Found by tests/web/test_fuzz_api.py: the day after 9999-12-31 overflowed, a 500 on the API and the pages."""
    olga = token_for(client, "olga")
    r = client.get("/api/v1/payouts?start=0001-01-01&end=9999-12-31", headers=olga)
    assert r.status_code == 200, r.text
    assert (r.json()["start"], r.json()["end"]) == ("0001-01-01", "9999-12-31")
    assert client.get("/api/v1/payouts?end=9999-12-31&format=csv", headers=olga).status_code == 200
    sign_in(client, "olga")
    assert client.get("/payouts?start=9999-12-01&end=9999-12-31").status_code == 200
    assert client.get("/payouts.csv?end=9999-12-31").status_code == 200


def test_text_with_a_nul_character_is_refused_on_every_backend(db_url: str, tmp_path: Path) -> None:
    """Found by tests/web/test_fuzz_api.py: PostgreSQL refuses text with NUL (``\\x00``), and a glossary term, a
    token name, an answer's key, an invite, a pay currency or a sign-in name holding one was a 500 there; SQLite
    stored it. Both now refuse it alike, with the one error shape."""
    project = build_project(db_url, tmp_path, pool=2)
    try:
        accounts.create_owner(project.db, project.project_id, "olga", "olga@example.org", PASSWORD)
        make_trainer(project, "tom")
        with TestClient(create_app(project)) as client:
            tom, olga = token_for(client, "tom"), token_for(client, "olga")
            task = client.get("/api/v1/tasks/next", headers=tom).json()["task"]
            refused = {
                "term": client.post("/api/v1/glossary", json={"term": "EB\x00", "definition": "d"}, headers=tom),
                "token": client.post("/api/v1/me/tokens", json={"name": "a\x00b"}, headers=tom),
                "key": client.post(
                    f"/api/v1/tasks/{task['task_id']}/answer",
                    json={"label": "positive", "idempotency_key": "k\x00"},
                    headers=tom,
                ),
                "invite": client.post("/api/v1/invites", json={"email": "a\x00@example.org"}, headers=olga),
                "pay": client.put("/api/v1/pay", json={"mode": "per_item", "currency": "E\x00"}, headers=olga),
            }
            for what, response in refused.items():
                status, code, message = error(response)
                assert (status, code) == (422, "data"), (what, message)
                assert message.endswith(
                    "holds a NUL character (\\x00), which the database cannot store; remove the character and try again"
                ), (what, message)
            assert error(refused["pay"])[2].startswith("the text for 'currency' holds a NUL character")
            assert error(refused["term"])[2].startswith("a text holds a NUL character")  # a look-up, not a column
            login = client.post("/api/v1/auth/token", json={"login": "olga\x00", "password": PASSWORD})
            assert error(login) == (401, "auth", "the email/name or the password is wrong; check both and try again")
            # nothing was stored half-way, and the same requests without the NUL go through
            assert client.post("/api/v1/me/tokens", json={"name": "ab"}, headers=tom).status_code == 201
            assert (
                client.put("/api/v1/pay", json={"mode": "per_item", "currency": "EUR"}, headers=olga).status_code == 200
            )
    finally:
        project.close()


def test_unreadable_bodies_say_what_to_send(client: TestClient) -> None:
    """Found by tests/web/test_fuzz_api.py: a body in Latin-1 or nested too deeply was a 400 whose code was "http"
    and whose message ("There was an error parsing the body") named no fix; broken JSON named a position as if
    it were a field ("1: JSON decode error")."""
    tom = {**token_for(client, "tom"), "Content-Type": "application/json"}
    latin1 = '{"term": "été", "definition": "summer"}'.encode("latin-1")
    for body in (latin1, b"[" * 100_000 + b"]" * 100_000):
        assert error(client.post("/api/v1/glossary", content=body, headers=tom)) == (
            400,
            "bad-request",
            "the request body could not be read; send a JSON object in UTF-8 (a form, to a page); "
            "see /docs for the expected fields",
        )
    assert error(client.post("/api/v1/glossary", content=b"{term", headers=tom)) == (
        422,
        "validation",
        "the request is not valid — the body is not valid JSON (Expecting property name enclosed in double quotes "
        "at character 1); see /docs for the expected fields",
    )
    assert error(client.post("/api/v1/glossary", content=b"[1]", headers=tom)) == (
        422,
        "validation",
        "the request is not valid — the body: Input should be a valid dictionary or object to extract fields from; "
        "see /docs for the expected fields",
    )


def test_ids_beyond_32_bits_are_refused_at_the_edge_on_every_backend(db_url: str, tmp_path: Path) -> None:
    """Found by tests/web/test_fuzz_api.py on PostgreSQL, whose id columns hold 32 bits: an id of 2**31 in a URL
    was a 500 there ("integer out of range"). Every backend now refuses it as a bad id; 2**31 - 1 is not found."""
    project = build_project(db_url, tmp_path, pool=1)
    try:
        accounts.create_owner(project.db, project.project_id, "olga", "olga@example.org", PASSWORD)
        with TestClient(create_app(project)) as client:
            olga = token_for(client, "olga")
            for method, path in [
                ("DELETE", "/api/v1/invites/{}"),
                ("DELETE", "/api/v1/me/tokens/{}"),
                ("GET", "/api/v1/jobs/{}"),
                ("POST", "/api/v1/glossary/{}/approve"),
                ("POST", "/api/v1/tasks/{}/skip"),
            ]:
                too_big = client.request(method, path.format(2**31), headers=olga)
                status, code, message = error(too_big)
                assert (status, code) == (422, "validation") and "less than or equal to 2147483647" in message
                assert error(client.request(method, path.format(2**31 - 1), headers=olga))[:2] == (404, "not-found")
    finally:
        project.close()


def test_openapi_documents_the_one_error_shape(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    shape = spec["components"]["schemas"]["ErrorOut"]
    assert set(shape["properties"]) == {"error"}
    for path, methods in spec["paths"].items():
        if not path.startswith("/api/v1"):
            continue
        for method, operation in methods.items():
            responses = operation["responses"]
            for status in ("401", "403", "404", "409", "413", "422", "429"):
                ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorOut"), (method, path, status)
    # and what the API answers is that shape
    body = client.get("/api/v1/tasks/next").json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
