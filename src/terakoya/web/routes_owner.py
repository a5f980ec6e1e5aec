"""Owner and reviewer pages: the dashboard with jobs, people and pay, payout statements, and the scrutiny report."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from starlette.responses import Response

from terakoya import dashboard, jobs
from terakoya.errors import DataError, StateError, TerakoyaError
from terakoya.people import accounts, payouts
from terakoya.quality import review
from terakoya.quality.gold import lift_pause
from terakoya.quality.provenance import provenance
from terakoya.quality.summary import quality_summary
from terakoya.web.render import render
from terakoya.web.security import Principal, RowId, get_state, page_user, served_base_url

router = APIRouter(include_in_schema=False)

REPORT_DIR = ("reports", "latest")
_REPORT_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")


def invite_url(request: Request, token: str) -> str:
    return served_base_url(request) + f"/invite/{token}"


@router.get("/dashboard")
def dashboard_page(request: Request, who: Annotated[Principal, Depends(page_user("reviewer"))]) -> Response:
    st = get_state(request)
    data = dashboard.dashboard_data(st.db, st.project_id, st.settings)
    recent_jobs = jobs.list_jobs(st.db, st.project_id, limit=8)
    ctx = {
        "d": data,
        "jobs": recent_jobs,
        "job_kinds": jobs.JOB_KINDS,
        "error": request.query_params.get("error"),
        "report_ready": (st.dir.joinpath(*REPORT_DIR) / "report.html").is_file(),
        "max_cell": max([max(row, default=0) for row in data.confusion.matrix], default=0),
        "help": dashboard.COUNTER_HELP,
        "funnel_steps": dashboard.FUNNEL_STEPS,
        "charts": _charts(data),
        "quality": quality_summary(st.db, st.project_id, st.settings),
        "can_own": who.may("owner"),
        "review_waiting": review.waiting_for_review(st.db, st.project_id),
    }
    return render(request, "dashboard.html", ctx, page="dashboard")


def _charts(data: dashboard.Dashboard) -> dict[str, Any]:
    """The charts' numbers as JSON for dashboard.js (the page shows the same numbers in tables)."""
    return {
        "runs": [
            {"run": r.run_id, "at": r.at.isoformat(), "items": r.items, "student": r.student_accuracy,
             "teacher": r.teacher_accuracy}
            for r in data.runs
        ],
        "days": [{"day": d.day.isoformat(), "hours": d.active_hours, "cost": d.cost} for d in data.days],
        "currency": data.pay.currency,
    }  # fmt: skip


@router.post("/dashboard/jobs")
def start_job(
    request: Request,
    who: Annotated[Principal, Depends(page_user("owner"))],
    kind: Annotated[str, Form()] = "",
    budget_items: Annotated[int | None, Form()] = None,
) -> Response:
    st = get_state(request)
    st.runner.start(kind, budget_items=budget_items)
    return RedirectResponse("/dashboard#jobs", status_code=303)


@router.get("/people")
def people_page(request: Request, who: Annotated[Principal, Depends(page_user("owner"))]) -> Response:
    return _people(request, new_link=None, error=None, status_code=200)


def _people(
    request: Request,
    *,
    new_link: str | None,
    error: str | None,
    status_code: int,
    pay_form: dict[str, str] | None = None,
) -> Response:
    """The people page; ``pay_form`` keeps what the owner typed into the pay form when it was refused."""
    st = get_state(request)
    pay = accounts.current_pay(st.db, st.project_id, st.settings)
    ctx = {
        "members": accounts.list_members(st.db, st.project_id),
        "invites": accounts.list_invites(st.db, st.project_id),
        "pay": pay,
        "rule": payouts.rule_text(pay),
        "pay_form": pay_form
        or {"mode": pay.mode, "per_item": str(pay.per_item), "per_hour": str(pay.per_hour), "currency": pay.currency},
        "language": st.settings.language,
        "new_link": new_link,
        "error": error,
        "saved": request.query_params.get("saved"),
        "quality": quality_summary(st.db, st.project_id, st.settings),
    }
    return render(request, "people.html", ctx, status_code=status_code, page="people")


@router.post("/people/{person_id}/unpause")
def unpause(request: Request, person_id: RowId, who: Annotated[Principal, Depends(page_user("owner"))]) -> Response:
    st = get_state(request)
    if not lift_pause(st.db, st.project_id, person_id, by=who.person_id):
        raise StateError(f"person {person_id} is not paused on this project; reload the people page")
    return RedirectResponse("/people?saved=unpaused#quality", status_code=303)


@router.post("/people/invite")
def invite(
    request: Request,
    who: Annotated[Principal, Depends(page_user("owner"))],
    role: Annotated[str, Form()] = "trainer",
    email: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
    tags: Annotated[str, Form()] = "",
    languages: Annotated[str, Form()] = "",
    days: Annotated[float, Form()] = 7.0,
) -> Response:
    st = get_state(request)
    try:
        _, token = accounts.create_invite(
            st.db,
            st.project_id,
            st.settings,
            created_by=who.person_id,
            role=role,
            email=email or None,
            note=note,
            tags=[tags],
            languages=[languages] if languages.strip() else None,
            days=days,
        )
    except DataError as exc:
        return _people(request, new_link=None, error=exc.message, status_code=422)
    return _people(request, new_link=invite_url(request, token), error=None, status_code=200)


@router.post("/people/invites/{invite_id}/revoke")
def revoke_invite(
    request: Request, invite_id: RowId, who: Annotated[Principal, Depends(page_user("owner"))]
) -> Response:
    st = get_state(request)
    accounts.revoke_invite(st.db, st.project_id, invite_id)
    return RedirectResponse("/people?saved=invite", status_code=303)


@router.post("/people/pay")
def set_pay(
    request: Request,
    who: Annotated[Principal, Depends(page_user("owner"))],
    mode: Annotated[str, Form()] = "per_item",
    per_item: Annotated[str, Form()] = "0",
    per_hour: Annotated[str, Form()] = "0",
    currency: Annotated[str, Form()] = "",
) -> Response:
    """The same values as ``PUT /api/v1/pay`` accepts, checked by the same rules; a refusal is shown on the page."""
    from terakoya.web.routes_api import pay_from_form  # the API module imports this one

    st = get_state(request)
    typed = {"mode": mode, "per_item": per_item, "per_hour": per_hour, "currency": currency}
    try:
        body = pay_from_form(**typed)
        accounts.set_pay(
            st.db,
            st.project_id,
            st.settings,
            mode=body.mode,
            per_item=body.per_item,
            per_hour=body.per_hour,
            currency=body.currency or None,
            set_by=who.person_id,
        )
    except TerakoyaError as exc:
        return _people(request, new_link=None, error=exc.message, status_code=422, pay_form=typed)
    return RedirectResponse("/people?saved=pay", status_code=303)


# ----------------------------------------------------------------------------- payouts


@router.get("/payouts")
def payouts_page(
    request: Request, who: Annotated[Principal, Depends(page_user("owner"))], start: str = "", end: str = ""
) -> Response:
    st = get_state(request)
    error, status = None, 200
    try:
        statement = payouts.payout_statement(
            st.db,
            st.project_id,
            st.settings,
            start=payouts.parse_day(start, "start"),
            end=payouts.parse_day(end, "end"),
        )
    except DataError as exc:  # shown above the form, with this month's statement below
        error, status = exc.message, 422
        statement = payouts.payout_statement(st.db, st.project_id, st.settings)
    ctx = {"s": statement, "error": error, "start": statement.start.isoformat(), "end": statement.end.isoformat()}
    return render(request, "payouts.html", ctx, status_code=status, page="payouts")


@router.get("/payouts.csv")
def payouts_csv(
    request: Request, who: Annotated[Principal, Depends(page_user("owner"))], start: str = "", end: str = ""
) -> Response:
    st = get_state(request)
    statement = payouts.payout_statement(
        st.db, st.project_id, st.settings, start=payouts.parse_day(start, "start"), end=payouts.parse_day(end, "end")
    )
    return csv_response(statement)


def csv_response(statement: payouts.PayoutStatement) -> Response:
    """A payout statement as a CSV download (:func:`terakoya.people.payouts.statement_csv`)."""
    name = f"payouts-{statement.start.isoformat()}-{statement.end.isoformat()}.csv"
    return Response(
        payouts.statement_csv(statement),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


@router.get("/review")
def review_page(request: Request, who: Annotated[Principal, Depends(page_user("reviewer"))]) -> Response:
    return _review(request, error=None, done=request.query_params.get("done"), status_code=200)


def _review(request: Request, *, error: str | None, done: str | None, status_code: int) -> Response:
    st = get_state(request)
    ctx = {
        "items": review.review_queue(st.db, st.project_id, settings=st.settings),
        "decisions": review.recent_decisions(st.db, st.project_id),
        "labels": st.settings.label_names,
        "error": error,
        "done": {"decided": "Decided.", "undone": "Taken back: the item is aggregated again."}.get(done or ""),
    }
    return render(request, "review.html", ctx, status_code=status_code, page="review")


@router.post("/review/{item_id}")
def review_decide(
    request: Request,
    item_id: RowId,
    who: Annotated[Principal, Depends(page_user("reviewer"))],
    label: Annotated[str, Form()] = "",
    rationale: Annotated[str, Form()] = "",
) -> Response:
    st = get_state(request)
    try:
        review.decide(st.db, st.project_id, st.settings, item_id, who.person_id, label, rationale=rationale)
    except DataError as exc:
        return _review(request, error=exc.message, done=None, status_code=422)
    return RedirectResponse("/review?done=decided", status_code=303)


@router.post("/review/decisions/{answer_id}/undo")
def review_undo(
    request: Request, answer_id: RowId, who: Annotated[Principal, Depends(page_user("reviewer"))]
) -> Response:
    st = get_state(request)
    review.undo_decision(st.db, st.project_id, answer_id)
    return RedirectResponse("/review?done=undone#decisions", status_code=303)


@router.get("/provenance")
def provenance_page(request: Request, who: Annotated[Principal, Depends(page_user("reviewer"))]) -> Response:
    """Where an item's training labels came from (``?item=`` its external id)."""
    st = get_state(request)
    item = (request.query_params.get("item") or "").strip()
    found, error = None, None
    if item:
        try:
            found = provenance(st.db, st.project_id, item)
        except TerakoyaError as exc:
            error = exc.message
    ctx = {"item": item, "p": found, "error": error}
    return render(request, "provenance.html", ctx, status_code=404 if error else 200, page="provenance")


@router.get("/report")
def report(request: Request, who: Annotated[Principal, Depends(page_user("reviewer"))]) -> Response:
    st = get_state(request)
    path = st.dir.joinpath(*REPORT_DIR) / "report.html"
    if not path.is_file():
        return render(request, "report_missing.html", {"can_run": who.may("owner")}, page="report")
    # the report file stands alone (it can be mailed); served here, it gets the app's way back
    return HTMLResponse(path.read_text(encoding="utf-8").replace("<body>", "<body>" + _REPORT_NAV, 1))


_REPORT_NAV = (
    '<nav aria-label="Terakoya" style="font:14px system-ui,sans-serif;margin:0 0 8px">'
    '<a href="/dashboard">← Dashboard</a> · <a href="/people">People &amp; pay</a> · '
    '<a href="/glossary">Guidelines</a> · <a href="/report/report.json">report.json</a></nav>'
)


@router.get("/report/{name}")
def report_file(request: Request, name: str, who: Annotated[Principal, Depends(page_user("reviewer"))]) -> Response:
    """Other files of the latest report (report.json, plots), by plain file name only."""
    missing = accounts.NotFound(f"the latest report has no file called {name!r}; open /report")
    if not _REPORT_FILE.fullmatch(name):  # checked before the name touches the file system (NUL, '/', '..')
        raise missing
    folder = get_state(request).dir.joinpath(*REPORT_DIR).resolve()
    path = (folder / name).resolve()
    if path.parent != folder or not path.is_file():
        raise missing
    return FileResponse(path)
