"""Paying people: payout statements by the one pay rule, their page, CSV and API, the pay form, invite links."""

from __future__ import annotations

import csv
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from terakoya import dashboard, workqueue
from terakoya.errors import DataError
from terakoya.people import accounts, payouts
from terakoya.storage.models import Answer
from terakoya.web import create_app

from .conftest import PASSWORD, WebProject, exact, make_trainer, sign_in

DAY = datetime(2026, 11, 16, 9, 0)  # a Monday


def answer(p: WebProject, person: int, label: str, at: datetime, seconds: float = 60.0) -> int:
    task = workqueue.lease_next(p.db, p.project_id, p.settings, person, now=at)
    assert task is not None
    workqueue.submit_answer(
        p.db, p.project_id, p.settings, person, task.task_id, label=label, active_seconds=seconds,
        now=at + timedelta(seconds=seconds),
    )  # fmt: skip
    return task.item_id


def flag(p: WebProject, person: int, at: datetime, seconds: float = 30.0) -> None:
    task = workqueue.lease_next(p.db, p.project_id, p.settings, person, now=at)
    assert task is not None
    workqueue.flag_task(
        p.db, p.project_id, p.settings, person, task.task_id, reason="broken", comment="cut off",
        active_seconds=seconds, now=at + timedelta(seconds=seconds),
    )  # fmt: skip


@pytest.fixture
def worked(project: WebProject) -> dict[str, int]:
    """tom: 3 answers (one undone) and a flag on the 16th, an answer on the 18th; una: 2 answers on the 20th;
    a simulated expert: one answer on the 16th."""
    tom, una = make_trainer(project, "tom"), make_trainer(project, "una")
    answer(project, tom.id, "positive", DAY)
    answer(project, tom.id, "negative", DAY + timedelta(minutes=5))
    answer(project, tom.id, "neutral", DAY + timedelta(minutes=10))
    workqueue.undo_last(project.db, project.project_id, project.settings, tom.id, now=DAY + timedelta(minutes=12))
    workqueue.skip_task(
        project.db, project.project_id, project.settings, tom.id,
        _held(project, tom.id), now=DAY + timedelta(minutes=13),
    )  # fmt: skip
    flag(project, tom.id, DAY + timedelta(minutes=20))
    answer(project, tom.id, "positive", DAY + timedelta(days=2))
    answer(project, una.id, "neutral", DAY + timedelta(days=4))
    answer(project, una.id, "neutral", DAY + timedelta(days=4, minutes=5))
    with project.db.session() as s:  # as `terakoya simulate` records its answers: a person without an account
        bot = accounts.get_or_create_person(s, "simulated-bot", simulated=True)
    answer(project, bot.id, "positive", DAY)
    return {"tom": tom.id, "una": una.id, "bot": bot.id}


def _held(p: WebProject, person: int) -> int:
    task = workqueue.lease_next(p.db, p.project_id, p.settings, person, now=DAY + timedelta(minutes=12, seconds=30))
    assert task is not None
    return task.task_id


def test_a_statement_adds_up_each_persons_work_in_the_period_by_the_one_pay_rule(
    project: WebProject, worked: dict[str, int]
) -> None:
    s = payouts.payout_statement(
        project.db, project.project_id, project.settings, start=date(2026, 11, 16), end=date(2026, 11, 18)
    )
    assert (s.start, s.end, s.currency, s.simulated_left_out) == (date(2026, 11, 16), date(2026, 11, 18), "USD", 1)
    (tom,) = s.lines  # una worked on the 20th, after the period; the simulated expert is not paid
    # the undone answer is not an answer but its minute counts; the flag is paid as an item (the rule says so)
    assert (tom.name, tom.answers, tom.flags, tom.paid_items) == ("tom", 3, 1, 4)
    assert (tom.active_seconds, tom.active_hours) == (4 * 60 + 30, 0.07)
    assert (tom.amount, s.total) == (0.4, 0.4)
    assert s.rule == "0.10 USD per paid item: each expert answer that stands and each flag; undone answers are not paid"
    # the dashboard's cost of a person is the same rule over all their work
    rows = {t.name: t for t in dashboard.dashboard_data(project.db, project.project_id, project.settings).trainers}
    whole = payouts.payout_statement(
        project.db, project.project_id, project.settings, start=date(2026, 11, 1), end=date(2026, 11, 30)
    )
    assert {line.name: line.amount for line in whole.lines} == {"tom": rows["tom"].cost, "una": rows["una"].cost}
    assert [(line.name, line.paid_items) for line in whole.lines] == [("tom", 4), ("una", 2)]

    accounts.set_pay(project.db, project.project_id, project.settings, mode="per_hour", per_item=0, per_hour=36)
    hourly = payouts.payout_statement(
        project.db, project.project_id, project.settings, start=date(2026, 11, 16), end=date(2026, 11, 16)
    )
    assert [(line.name, line.amount) for line in hourly.lines] == [
        ("tom", round(3.5 / 60 * 36, 2))
    ]  # 3 answers and a flag on the 16th
    assert hourly.rule == ("36.00 USD per active hour: the time spent on every answer and flag, undone ones included")
    assert len(hourly.pay_changed_at) == 1  # set after the period began: the amounts say which pay they use


def test_gold_accuracy_in_a_statement_is_over_the_gold_items_answered_in_the_period(project: WebProject) -> None:
    tom = make_trainer(project, "tom")
    from sqlalchemy import select

    from terakoya.storage.models import Item, Task

    with project.db.session() as s:
        gold = dict(
            s.execute(
                select(Task.id, Item.gold_label).join(Item, Item.id == Task.item_id).where(Item.split == "test")
            ).all()
        )
        s.execute(update(Task).where(Task.id.in_(list(gold))).values(priority=-1))
    for i in range(2):
        task = workqueue.lease_next(project.db, project.project_id, project.settings, tom.id, now=DAY)
        assert task is not None and task.task_id in gold
        right = gold[task.task_id]
        label = right if i == 0 else next(x for x in ("positive", "negative") if x != right)
        workqueue.submit_answer(
            project.db, project.project_id, project.settings, tom.id, task.task_id, label=label, now=DAY
        )
    (line,) = payouts.payout_statement(
        project.db, project.project_id, project.settings, start=DAY.date(), end=DAY.date()
    ).lines
    assert (line.gold_answered, line.gold_correct, line.gold_accuracy) == (2, 1, 0.5)


def test_periods_are_whole_utc_days_and_a_wrong_period_says_how_to_fix_it() -> None:
    today = date(2026, 11, 19)
    assert payouts.period(None, None, today=today) == (date(2026, 11, 1), today)
    assert payouts.period(None, date(2026, 10, 5), today=today) == (date(2026, 10, 1), date(2026, 10, 5))
    assert payouts.parse_day(" 2026-11-02 ", "start") == date(2026, 11, 2) and payouts.parse_day("", "end") is None
    with pytest.raises(
        DataError, match=exact("the start date '2026-13-01' is not a date; write it as YYYY-MM-DD, e.g. 2026-11-30")
    ):
        payouts.parse_day("2026-13-01", "start")
    with pytest.raises(
        DataError,
        match=exact("the period starts on 2026-11-20, after it ends on 2026-11-01; pick an end on or after the start"),
    ):
        payouts.period(date(2026, 11, 20), date(2026, 11, 1))


def test_csv_cells_a_spreadsheet_would_run_are_kept_as_text(project: WebProject) -> None:
    names = ['=HYPERLINK("http://x")', "+1 555", "-2+3", "@SUM(A1)", 'Ann, "the" expert']
    with project.db.session() as s:  # people as an answer file names them (no account: hashing is slow)
        people = [accounts.get_or_create_person(s, name) for name in names]
    for i, person in enumerate(people):
        answer(project, person.id, "positive", DAY + timedelta(minutes=i))
    statement = payouts.payout_statement(
        project.db, project.project_id, project.settings, start=DAY.date(), end=DAY.date()
    )
    rows = list(csv.DictReader(io.StringIO(payouts.statement_csv(statement))))
    assert tuple(rows[0]) == payouts.CSV_COLUMNS
    assert sorted(r["name"] for r in rows) == sorted(
        ['\'=HYPERLINK("http://x")', "'+1 555", "'-2+3", "'@SUM(A1)", 'Ann, "the" expert']
    )
    assert {(r["paid_items"], r["amount"], r["currency"], r["start"], r["end"]) for r in rows} == {
        ("1", "0.10", "USD", "2026-11-16", "2026-11-16")
    }
    assert [payouts.csv_cell(v) for v in ("\tx", "\rx", "a=b", None, 3)] == ["'\tx", "'\rx", "a=b", "", "3"]


# ----------------------------------------------------------------------------- the web app


@pytest.fixture
def client(project: WebProject) -> Iterator[TestClient]:
    accounts.create_owner(project.db, project.project_id, "olga", "olga@example.org", PASSWORD)
    with TestClient(create_app(project)) as c:
        yield c


def _token(client: TestClient, login: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", json={"login": login, "password": PASSWORD, "name": "t"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def test_payouts_page_csv_and_api_are_for_the_owner_only(
    client: TestClient, project: WebProject, worked: dict[str, int]
) -> None:
    period = "start=2026-11-16&end=2026-11-18"
    sign_in(client, "tom")
    tom = _token(client, "tom")
    for path in (f"/payouts?{period}", f"/payouts.csv?{period}"):
        page = client.get(path)
        assert page.status_code == 403 and "this needs the owner role and you are a trainer" in page.text, path
    refused = client.get(f"/api/v1/payouts?{period}", headers=tom)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden")

    sign_in(client, "olga")
    page = client.get(f"/payouts?{period}")
    assert page.status_code == 200
    assert 'id="payout-total">0.40 USD<' in page.text and "each expert answer that stands and each flag" in page.text
    assert 'href="/payouts.csv?start=2026-11-16&amp;end=2026-11-18"' in page.text
    assert "1 simulated expert left out" in page.text
    bad = client.get("/payouts?start=2026-11-20&end=2026-11-01")
    assert (
        bad.status_code == 422
        and 'role="alert">the period starts on 2026-11-20, after it ends on 2026-11-01' in bad.text
    )
    assert 'id="period-form"' in bad.text  # the form is still there to fix it

    download = client.get(f"/payouts.csv?{period}")
    assert download.headers["content-type"] == "text/csv; charset=utf-8"
    assert download.headers["content-disposition"] == 'attachment; filename="payouts-2026-11-16-2026-11-18.csv"'
    assert [r["name"] for r in csv.DictReader(io.StringIO(download.text))] == ["tom"]

    olga = _token(client, "olga")
    body = client.get(f"/api/v1/payouts?{period}", headers=olga).json()
    assert (body["start"], body["end"], body["total"], body["rule"]) == (
        "2026-11-16", "2026-11-18", 0.4, payouts.rule_text(project.settings.pay),
    )  # fmt: skip
    assert [(x["name"], x["answers"], x["flags"], x["paid_items"], x["amount"]) for x in body["lines"]] == [
        ("tom", 3, 1, 4, 0.4)
    ]
    as_csv = client.get(f"/api/v1/payouts?{period}&format=csv", headers=olga)
    assert as_csv.text == download.text
    wrong = client.get("/api/v1/payouts?start=16.11.2026", headers=olga).json()
    assert wrong == {
        "error": {
            "code": "data",
            "message": "the start date '16.11.2026' is not a date; write it as YYYY-MM-DD, e.g. 2026-11-30",
        }
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"per_item": "inf"}, "per item: Input should be a finite number"),
        ({"per_item": "nan"}, "per item: Input should be a finite number"),
        ({"per_hour": "1000001"}, "per hour: Input should be less than or equal to 1000000"),
        ({"per_item": "-1"}, "per item: Input should be greater than or equal to 0"),
        ({"per_item": "ten"}, "per item: Input should be a valid number, unable to parse string as a number"),
        ({"currency": "X" * 11}, "currency: String should have at most 10 characters"),
    ],
)
def test_the_pay_form_refuses_what_the_api_refuses_with_a_message_on_the_page(
    client: TestClient, project: WebProject, fields: dict[str, str], message: str
) -> None:
    olga = _token(client, "olga")
    body = {"mode": "per_item", "per_item": 0.1, "per_hour": 0, **{k: _json(v) for k, v in fields.items()}}
    api = client.put(  # json.dumps writes inf and nan as Infinity and NaN, which a JSON parser may accept
        "/api/v1/pay", content=json.dumps(body), headers={**olga, "Content-Type": "application/json"}
    )
    assert (api.status_code, api.json()["error"]["code"]) == (422, "validation")
    csrf = sign_in(client, "olga")
    form = {"mode": "per_item", "per_item": "0.1", "per_hour": "0", "currency": "EUR", **fields, "csrf_token": csrf}
    page = client.post("/people/pay", data=form, follow_redirects=False)
    assert page.status_code == 422
    assert f'role="alert">pay is not valid — {message}; amounts are numbers from 0 to 1,000,000' in page.text
    assert f'value="{fields.get("currency", "EUR")}"' in page.text  # what the owner typed is kept to correct
    assert accounts.current_pay(project.db, project.project_id, project.settings) == project.settings.pay


def _json(value: str) -> Any:
    try:
        return float(value)
    except ValueError:
        return value


def test_the_pay_form_says_which_rule_applies(client: TestClient, project: WebProject) -> None:
    csrf = sign_in(client, "olga")
    page = client.get("/people")
    assert (
        'id="pay-rule"><strong>In force:</strong> 0.10 USD per paid item: each expert answer that stands' in page.text
    )
    saved = client.post(
        "/people/pay",
        data={"mode": "per_hour", "per_item": "", "per_hour": "25.5", "currency": " eur ", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    page = client.get("/people?saved=pay")
    assert "<strong>In force:</strong> 25.50 EUR per active hour: the time spent on every answer and flag" in page.text


def test_invites_show_tags_and_notes_and_their_links_ignore_the_host_header(client: TestClient) -> None:
    csrf = sign_in(client, "olga")
    made = client.post(
        "/people/invite",
        data={
            "role": "trainer",
            "tags": "finance, banking",
            "note": "for the Q3 reports",
            "days": "7",
            "csrf_token": csrf,
        },
        headers={"Host": "evil.example"},
    )
    assert made.status_code == 200
    assert 'value="http://testserver/invite/' in made.text and "evil.example" not in made.text
    row = made.text.split('id="invite-row-', 1)[1].split("</tr>", 1)[0]
    assert '<span class="pill">finance</span>' in row and '<span class="pill">banking</span>' in row
    assert 'class="invite-note">for the Q3 reports<' in row
    olga = _token(client, "olga")
    api = client.post("/api/v1/invites", json={"role": "trainer"}, headers={**olga, "Host": "evil.example:666"})
    assert api.json()["url"].startswith("http://testserver/invite/")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_real_server_shows_its_own_address_on_the_docs_page_and_in_invite_links(project: WebProject) -> None:
    import uvicorn

    accounts.create_owner(project.db, project.project_id, "olga", "olga@example.org", PASSWORD)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(project), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        docs = httpx.get(f"{base}/docs", headers={"Host": "evil.example"}, timeout=10)
        assert f'id="api-origin">{base}</code>' in docs.text and "evil.example" not in docs.text
        assert f'curl -H "Authorization: Bearer $TOKEN" {base}/api/v1/tasks/next' in docs.text
        token = httpx.post(
            f"{base}/api/v1/auth/token", json={"login": "olga", "password": PASSWORD}, timeout=10
        ).json()["token"]
        made = httpx.post(
            f"{base}/api/v1/invites",
            json={"role": "trainer"},
            headers={"Authorization": f"Bearer {token}", "Host": "evil.example"},
            timeout=10,
        )
        assert made.json()["url"].startswith(f"{base}/invite/")
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_simulated_answers_are_left_out_but_their_time_is_not_mixed_with_others(
    project: WebProject, worked: dict[str, int]
) -> None:
    with project.db.session() as s:
        s.execute(update(Answer).where(Answer.person_id == worked["bot"]).values(active_seconds=3600.0))
    statement = payouts.payout_statement(
        project.db, project.project_id, project.settings, start=DAY.date(), end=DAY.date()
    )
    assert [line.name for line in statement.lines] == ["tom"] and statement.lines[0].active_seconds == 210.0


def test_behind_a_proxy_links_use_the_public_url(project: WebProject) -> None:
    accounts.create_owner(project.db, project.project_id, "olga", "olga@example.org", PASSWORD)
    with TestClient(create_app(project, public_url="https://work.example.org/")) as c:
        olga = _token(c, "olga")
        url = c.post("/api/v1/invites", json={"role": "trainer"}, headers=olga).json()["url"]
        assert url.startswith("https://work.example.org/invite/")
        sign_in(c, "olga")
        assert '<code id="api-origin">https://work.example.org</code>' in c.get("/docs").text
