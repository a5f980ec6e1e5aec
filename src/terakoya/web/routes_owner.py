"""Owner and reviewer pages: the dashboard with jobs, people and pay, and the scrutiny report."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import FileResponse, RedirectResponse
from starlette.responses import Response

from terakoya import dashboard, jobs
from terakoya.errors import DataError, TerakoyaError
from terakoya.people import accounts
from terakoya.web.render import render
from terakoya.web.security import Principal, RowId, get_state, page_user

router = APIRouter(include_in_schema=False)

REPORT_DIR = ("reports", "latest")
_REPORT_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")


def invite_url(request: Request, token: str) -> str:
    return str(request.base_url).rstrip("/") + f"/invite/{token}"


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
    }
    return render(request, "dashboard.html", ctx, page="dashboard")


@router.post("/dashboard/jobs")
def start_job(
    request: Request,
    who: Annotated[Principal, Depends(page_user("owner"))],
    kind: Annotated[str, Form()] = "",
    budget_items: Annotated[int | None, Form()] = None,
) -> Response:
    st = get_state(request)
    st.runner.start(kind, jobs.action_for(st.project, kind, budget_items=budget_items))
    return RedirectResponse("/dashboard#jobs", status_code=303)


@router.get("/people")
def people_page(request: Request, who: Annotated[Principal, Depends(page_user("owner"))]) -> Response:
    return _people(request, new_link=None, error=None, status_code=200)


def _people(request: Request, *, new_link: str | None, error: str | None, status_code: int) -> Response:
    st = get_state(request)
    ctx = {
        "members": accounts.list_members(st.db, st.project_id),
        "invites": accounts.list_invites(st.db, st.project_id),
        "pay": accounts.current_pay(st.db, st.project_id, st.settings),
        "language": st.settings.language,
        "new_link": new_link,
        "error": error,
        "saved": request.query_params.get("saved"),
    }
    return render(request, "people.html", ctx, status_code=status_code, page="people")


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
    per_item: Annotated[float, Form()] = 0.0,
    per_hour: Annotated[float, Form()] = 0.0,
    currency: Annotated[str, Form()] = "",
) -> Response:
    st = get_state(request)
    try:
        accounts.set_pay(
            st.db,
            st.project_id,
            st.settings,
            mode=mode,
            per_item=per_item,
            per_hour=per_hour,
            currency=currency or None,
            set_by=who.person_id,
        )
    except TerakoyaError as exc:
        return _people(request, new_link=None, error=exc.message, status_code=422)
    return RedirectResponse("/people?saved=pay", status_code=303)


@router.get("/report")
def report(request: Request, who: Annotated[Principal, Depends(page_user("reviewer"))]) -> Response:
    st = get_state(request)
    path = st.dir.joinpath(*REPORT_DIR) / "report.html"
    if not path.is_file():
        return render(request, "report_missing.html", {"can_run": who.may("owner")}, page="report")
    return FileResponse(path, media_type="text/html")


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
