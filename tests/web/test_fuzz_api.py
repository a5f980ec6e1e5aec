"""Fuzzing the JSON API from its own schema (schemathesis) and the HTML forms with random fields (hypothesis).

Every operation in /openapi.json gets requests that fit its schema and requests that do not (wrong types,
missing fields, out-of-range ids, odd strings), half of them with plausible values swapped in (a held task, a
label, a job kind, the ends of the calendar: :data:`PLAUSIBLE`), each sent three times: anonymous, as a trainer
and as the owner (Bearer tokens, so CSRF does not apply), to the app in-process on a real SQLite project, and
with fewer examples on a real PostgreSQL database (marked ``postgres``). The property: no response is a 5xx,
and every 4xx body is the one error shape ``{"error": {"code", "message"}}`` with a message that is not
empty. The owner's jobs run the project's fake stages (see :class:`WebProject`). The HTML forms get random
fields, with and without their CSRF token: never a 5xx.

Bounded so the file runs in a minute or two on two cores; a longer hunt (each bug it found is a regression
test at the end of test_api.py): FUZZ_EXAMPLES=300 pytest tests/web/test_fuzz_api.py
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.python import asgi

from terakoya import jobs, workqueue
from terakoya.jobs import JOB_KINDS
from terakoya.people import accounts, glossary
from terakoya.web import create_app, routes_api
from terakoya.workqueue import FLAG_REASONS

from .conftest import PASSWORD, WebProject, build_project, csrf_of, make_trainer

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
#: PostgreSQL differs from SQLite in what it refuses (32-bit ids, NUL in text): fewer examples find those
FUZZ_POSTGRES = settings(FUZZ, max_examples=max(1, EXAMPLES // 4))
FORM = "application/x-www-form-urlencoded"
#: True three times in four
MOSTLY = st.sampled_from([True, True, True, False])
ROLES = ("anonymous", "trainer", "owner")


@dataclass
class Fuzzed:
    """The app under test and the Bearer tokens of its trainer and owner (made again if a case revoked one)."""

    project: WebProject
    app: FastAPI
    people: dict[str, int]
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, role: str) -> dict[str, str]:
        if role == "anonymous":
            return {}
        token = self.tokens.get(role)
        if token is None or accounts.account_for_token(self.project.db, self.project.project_id, token) is None:
            _, token = accounts.create_api_token(self.project.db, self.people[role], f"fuzz-{role}")
            self.tokens[role] = token
        return {"Authorization": f"Bearer {token}"}

    def hold_tasks(self) -> None:
        """The trainer and the owner each hold leased tasks, so answers, flags and skips can reach them."""
        p = self.project
        for person in self.people.values():
            workqueue.lease_next(p.db, p.project_id, p.settings, person)


def _fuzzed(folder: Path, url: str | None = None) -> Fuzzed:
    """A project with people, and something for each id in a path to find: a spare token, an answer to undo, a
    proposed term, an invite, a job."""
    project = build_project(url or f"sqlite:///{folder / 'terakoya.db'}", folder, pool=8, gold=2, verify=2)
    owner = accounts.create_owner(project.db, project.project_id, "olga", "olga@example.org", PASSWORD)
    trainer = make_trainer(project, "tom")
    accounts.create_api_token(project.db, trainer.id, "spare")
    task = workqueue.lease_next(project.db, project.project_id, project.settings, trainer.id)
    assert task is not None
    workqueue.submit_answer(
        project.db, project.project_id, project.settings, trainer.id, task.task_id, label="positive"
    )
    glossary.propose_term(project.db, project.project_id, trainer.id, term="churn", definition="customers lost")
    accounts.create_invite(project.db, project.project_id, project.settings, created_by=owner.id)
    jobs.create_job(project.db, project.project_id, "teach")
    return Fuzzed(project, create_app(project), {"owner": owner.id, "trainer": trainer.id})


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fuzzed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fuzzed]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    f = _fuzzed(tmp_path, url)
    yield f
    asgi.shutdown_lifespans()  # schemathesis keeps each app's lifespan (its job runner) running until told
    f.project.close()


def assert_error_shape(response: Any, what: str) -> None:
    """No 5xx; a 4xx is JSON of the one error shape with a code and a message."""
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:500]}"
    if response.status_code < 400:
        return
    content_type = response.headers.get("content-type", [""])[0]  # schemathesis keeps every value of a header
    assert content_type.startswith("application/json"), (what, response.text[:500])
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, (what, body)
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message"}, (what, body)
    assert isinstance(error["code"], str) and error["code"], (what, body)
    assert isinstance(error["message"], str) and error["message"].strip(), (what, body)


#: every operation of the JSON API, read from its router (the schema needs an app, and so a project, to load)
OPERATIONS = sorted(
    (method, route.path)
    for route in routes_api.router.routes
    if isinstance(route, APIRoute)
    for method in route.methods
)


def test_the_fuzzed_operations_are_those_of_the_schema(tmp_path: Path) -> None:
    f = _fuzzed(tmp_path)
    spec = f.app.openapi()
    f.project.close()
    in_schema = sorted((method.upper(), path) for path, methods in spec["paths"].items() for method in methods)
    assert in_schema == OPERATIONS


#: values that get a request past the first checks (a real task, label, job kind...), by field name; the
#: schema alone says "a string" and an "an integer", and random ones are refused before anything runs
DAYS = st.one_of(
    st.dates().map(date.isoformat),
    st.sampled_from(["0001-01-01", "9999-12-31", "2026-02-29", "2024-02-29", " 2026-01-01 ", "", "today"]),
    st.sampled_from(["0001-01-01", "9999-12-31"]),  # the ends of the calendar, more often
)
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    # path
    "task_id": st.integers(1, 16),
    "term_id": st.integers(1, 6),
    "token_id": st.integers(1, 8),
    "invite_id": st.integers(1, 6),
    "job_id": st.integers(1, 4),
    # query
    "exclude": st.lists(st.integers(1, 16), max_size=4),
    "status": st.sampled_from(["proposed", "approved", "rejected", "", "PROPOSED"]),
    "utc_offset_minutes": st.one_of(st.integers(-1000, 1000), st.sampled_from([-(2**63), 2**63 - 1, 10**12])),
    "start": DAYS,
    "end": DAYS,
    "format": st.sampled_from(["json", "csv"]),
    # bodies
    "label": st.sampled_from(["positive", "negative", "neutral", "Positive", " positive", ""]),
    "reason": st.sampled_from([*FLAG_REASONS, ""]),
    "kind": st.sampled_from([*JOB_KINDS, "TEACH", ""]),
    "budget_items": st.integers(1, 30),
    "mode": st.sampled_from(["per_item", "per_hour", "per_day"]),
    "per_item": st.one_of(st.floats(0, 1_000_000), st.sampled_from([0, 1e-300, 1_000_000])),
    "per_hour": st.one_of(st.floats(0, 1_000_000), st.sampled_from([0, 1e-300, 1_000_000])),
    "currency": st.sampled_from(["EUR", "eur", "€", "", " ", "JPY"]),
    "role": st.sampled_from(["trainer", "reviewer", "owner", "Trainer", ""]),
    "days": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([1e-300, 90, 1e300])),
    "email": st.sampled_from(["ivy@example.org", "tom@example.org", "IVY@EXAMPLE.ORG ", "not-an-email", ""]),
    "login": st.sampled_from(["tom", "olga", "olga@example.org", " TOM ", ""]),
    "password": st.sampled_from([PASSWORD, "", "x" * 5000]),
    # finite: the client cannot write Infinity or NaN as JSON (the app refuses them: test_api)
    "active_seconds": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([-1.0, 1e308])),
    "idempotency_key": st.sampled_from(["k1", "k2", "", " "]),
    "term": st.sampled_from(["EBITDA", "ebitda", "churn", " churn ", "", "x" * 500]),
}


def _declared(operation: Any) -> dict[str, set[str]]:
    """The names of the operation's path and query parameters and of its JSON body's fields."""
    names = {
        "path_parameters": {p.name for p in operation.path_parameters},
        "query": {p.name for p in operation.query},
        "body": set(),
    }
    for body in operation.body:
        names["body"] |= set(body.definition.get("schema", {}).get("properties", {}))
    return names


def _plausible(case: schemathesis.Case, data: st.DataObject, declared: dict[str, set[str]]) -> schemathesis.Case:
    """The case with most of its declared values (present or not) set to ones that reach further into the app."""
    for where, names in declared.items():
        container = getattr(case, where)
        if where == "query" and container is None:
            container = case.query = {}
        if not isinstance(container, dict):  # a body that is not an object: nothing to swap
            continue
        for name in sorted(names & PLAUSIBLE.keys()):
            if data.draw(MOSTLY):
                container[name] = data.draw(PLAUSIBLE[name])
    return case


def _cases(operation: Any) -> st.SearchStrategy[schemathesis.Case]:
    """Cases that fit the operation's schema and, where it has anything to break, cases that do not; half of
    them with plausible values swapped in (:data:`PLAUSIBLE`)."""
    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    if operation.path_parameters or operation.query or operation.body:
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
    cases = st.one_of(strategies)
    declared = _declared(operation)
    return st.one_of(cases, st.tuples(cases, st.data()).map(lambda pair: _plausible(*pair, declared)))


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_api_operation_answers_in_the_one_error_shape(fuzzed: Fuzzed, method: str, path: str) -> None:
    operation = schemathesis.openapi.from_asgi("/openapi.json", fuzzed.app)[path][method]

    @FUZZ_POSTGRES if fuzzed.project.db.dialect == "postgresql" else FUZZ
    @given(case=_cases(operation))
    def check(case: schemathesis.Case) -> None:
        fuzzed.hold_tasks()
        for role in ROLES:
            response = case.call(headers=fuzzed.headers(role))
            assert_error_shape(response, f"{role}: {case.as_curl_command()}")

    check()


# ----------------------------------------------------------------------------- the HTML forms

FORM_ROUTES = [
    ("anonymous", "/login", ("login", "password", "next")),
    ("anonymous", "/invite/{invite}", ("action", "name", "email", "password", "languages", "tags")),
    ("trainer", "/invite/{invite}", ("action", "name", "email", "password", "languages", "tags")),
    ("trainer", "/glossary", ("term", "definition", "example")),
    ("owner", "/glossary/{term}/decide", ("decision",)),
    ("trainer", "/me/profile", ("languages", "tags")),
    ("trainer", "/me/tokens", ("name",)),
    ("trainer", "/me/tokens/{token}/revoke", ()),
    ("owner", "/people/invite", ("role", "email", "note", "tags", "languages", "days")),
    ("owner", "/people/invites/{invite_id}/revoke", ()),
    ("owner", "/people/pay", ("mode", "per_item", "per_hour", "currency")),
    ("owner", "/dashboard/jobs", ("kind", "budget_items")),
    ("owner", "/logout", ()),
]
#: values that break careless form handlers (empty, blank, huge, NUL, numbers out of range, odd Unicode) and ones
#: that get a form past its first checks
ODD = st.sampled_from(
    ["", " ", "0", "-1", "1e309", "nan", "inf", "9" * 30, "x" * 5000, "\x00", "a\x00b", "\ud800", "😀", "//evil",
     "approve", "reject", "join", "create", "trainer", "owner", "reviewer", "per_item", "per_hour", "teach", "route",
     "en, de", "a@b.c", PASSWORD]
)  # fmt: skip
form_value = st.one_of(ODD, st.text(max_size=40))
#: path segments, percent-encoded as a browser sends them (no lone surrogates: those cannot be sent at all)
segment = st.text(st.characters(exclude_categories=["Cs"]), max_size=12).map(lambda text: quote(text, safe=""))
ids = st.one_of(st.sampled_from(["1", "2", "0", "-1", "x", "99999999999999999999999", "%00"]), segment)


def _signed_in(app: FastAPI, role: str) -> tuple[TestClient, str]:
    client = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
    page = client.get("/login")
    csrf = csrf_of(page.text)
    if role != "anonymous":
        login = {"trainer": "tom", "owner": "olga"}[role]
        r = client.post("/login", data={"login": login, "password": PASSWORD, "next": "/", "csrf_token": csrf})
        assert r.status_code == 303, r.text
        csrf = csrf_of(client.get("/me").text)
    return client, csrf


@pytest.mark.parametrize(("role", "path", "fields"), FORM_ROUTES, ids=[f"{r}:{p}" for r, p, _ in FORM_ROUTES])
def test_html_forms_never_answer_5xx(tmp_path: Path, role: str, path: str, fields: tuple[str, ...]) -> None:
    f = _fuzzed(tmp_path)
    _, invite = accounts.create_invite(f.project.db, f.project.project_id, f.project.settings, created_by=None)
    try:
        with TestClient(f.app):  # the app's lifespan: the job runner
            client, csrf = _signed_in(f.app, role)
            tokens = [csrf]  # the page's CSRF token: a new one once an invite signed someone in

            @FUZZ
            @given(
                values=st.fixed_dictionaries({}, optional=dict.fromkeys(fields, form_value)),
                with_csrf=MOSTLY,
                path_id=ids,
                path_invite=st.one_of(st.just(invite), segment),
            )
            def check(values: dict[str, str], with_csrf: bool, path_id: str, path_invite: str) -> None:
                url = path.format(invite=path_invite, term=path_id, token=path_id, invite_id=path_id)
                # encoded by hand: a lone surrogate becomes bytes that are not UTF-8, as a broken client sends them
                data = {k: v.encode("utf-8", "surrogatepass") for k, v in values.items()}
                if with_csrf:
                    data["csrf_token"] = tokens[-1].encode()
                response = client.post(url, content=urlencode(data), headers={"Content-Type": FORM})
                assert response.status_code < 500, f"{role} POST {url} {values}: {response.text[:500]}"
                if path.startswith("/invite/") and response.status_code == 303:
                    tokens.append(csrf_of(client.get("/me").text))

            check()
    finally:
        f.project.close()


PAGES = ["/", "/login", "/invite/{segment}", "/docs", "/healthz", "/dashboard", "/people", "/payouts", "/payouts.csv",
         "/report", "/report/{segment}", "/queue", "/glossary", "/me"]  # fmt: skip
QUERY_NAMES = ["next", "start", "end", "error", "saved", "done", "exclude", "x"]


@pytest.mark.parametrize("role", ROLES)
def test_html_pages_never_answer_5xx(tmp_path: Path, role: str) -> None:
    """Every page, with random query strings, path segments and a random time-zone cookie."""
    f = _fuzzed(tmp_path)
    try:
        client, _ = _signed_in(f.app, role)

        @FUZZ
        @given(
            page=st.sampled_from(PAGES),
            path_segment=st.one_of(segment, st.sampled_from(["report.json", "..", "%2e%2e", "%00"])),
            query=st.dictionaries(st.sampled_from(QUERY_NAMES), st.one_of(ODD, DAYS, st.text(max_size=20))),
            tz=st.one_of(st.none(), st.sampled_from(["", "-60", "9" * 5000, "1e3", "x"]), st.text(max_size=8)),
        )
        def check(page: str, path_segment: str, query: dict[str, str], tz: str | None) -> None:
            url = page.format(segment=path_segment)
            params = {k: v.encode("utf-8", "surrogatepass") for k, v in query.items()}
            if params:
                url += "?" + urlencode(params)
            client.cookies.delete("terakoya_tz")
            if tz is not None:
                client.cookies.set("terakoya_tz", quote(tz, safe=""))
            response = client.get(url)
            assert response.status_code < 500, f"{role} GET {url} tz={tz!r}: {response.text[:500]}"

        check()
    finally:
        f.project.close()
