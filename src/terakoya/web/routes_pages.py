"""Trainer pages: the work queue, the guidelines and glossary, and 'My work' (time, earnings, hourly rate, accuracy
on the check items, profile, tokens)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from terakoya import dashboard
from terakoya.errors import DataError
from terakoya.kinds import get_kind
from terakoya.people import accounts, glossary, payouts
from terakoya.quality.gold import Qualification, active_pause, qualification_in
from terakoya.settings import Settings
from terakoya.storage.db import Database
from terakoya.storage.models import Pause
from terakoya.web.render import render
from terakoya.web.security import Principal, RowId, get_state, page_user
from terakoya.workqueue import FLAG_REASONS, IDLE_CAP_S, MAX_HELD

router = APIRouter(include_in_schema=False)

TZ_COOKIE = "terakoya_tz"


def utc_offset(request: Request) -> int:
    """The browser's offset from UTC in minutes (set by the page's script), 0 when unknown."""
    try:
        return max(-14 * 60, min(14 * 60, int(request.cookies.get(TZ_COOKIE, "0"))))
    except ValueError:
        return 0


def _panel(request: Request) -> dict[str, object]:
    st = get_state(request)
    settings = st.settings
    return {
        "guidelines_html": glossary.guidelines_html(settings),
        "labels": settings.labels,
        "terms": glossary.panel_terms(st.db, st.project_id, settings),
    }


@router.get("/queue")
def queue_page(request: Request, who: Annotated[Principal, Depends(page_user("trainer"))]) -> Response:
    st = get_state(request)
    stats = dashboard.trainer_stats(
        st.db, st.project_id, st.settings, who.person_id, utc_offset_minutes=utc_offset(request)
    )
    ctx = {
        **_panel(request),
        "stats": stats,
        "flag_reasons": FLAG_REASONS,
        "idle_cap": int(IDLE_CAP_S),
        # the page preloads tasks and sends answers in the background, holding no more than the server allows
        "max_held": MAX_HELD,
        "label_keys": [str(i) for i in range(1, 10)] + ["0"],
        # the task kind's own widget collects the answer
        "widget": get_kind(st.settings.task.kind).widget,
        "paused": _pause(st.db, st.project_id, who.person_id),
        "qualification": _qualification(st.db, st.project_id, who.person_id, st.settings),
        "min_accuracy": st.settings.quality.min_gold_accuracy,
    }
    return render(request, "queue.html", ctx, page="queue")


def _qualification(db: Database, project_id: int, person_id: int, settings: Settings) -> Qualification:
    with db.session() as s:
        return qualification_in(s, project_id, person_id, settings.quality)


def _pause(db: Database, project_id: int, person_id: int) -> Pause | None:
    with db.session() as s:
        pause = active_pause(s, project_id, person_id)
        if pause is not None:
            s.expunge(pause)
        return pause


@router.get("/glossary")
def glossary_page(request: Request, who: Annotated[Principal, Depends(page_user("trainer"))]) -> Response:
    return _glossary(request, who, error=None, status_code=200, done=request.query_params.get("done"))


def _glossary(
    request: Request,
    who: Principal,
    *,
    error: str | None,
    status_code: int,
    done: str | None,
    edit: dict[str, str] | None = None,
) -> Response:
    st = get_state(request)
    if who.may("reviewer"):
        proposals = glossary.list_terms(st.db, st.project_id, status="proposed")
        decided = [t for t in glossary.list_terms(st.db, st.project_id) if t.status != "proposed"][:50]
    else:
        proposals = glossary.list_terms(st.db, st.project_id, proposed_by=who.person_id)
        decided = []
    ctx = {**_panel(request), "proposals": proposals, "decided": decided, "error": error, "done": done}
    if who.may("owner"):
        ctx["revisions"] = glossary.guideline_history(st.db, st.project_id, limit=10)
        ctx["edit"] = edit or {
            "guidelines": st.settings.guidelines,
            **{f"label:{spec.name}": spec.description for spec in st.settings.labels},
        }
        ctx["labels"] = st.settings.labels
    return render(request, "glossary.html", ctx, status_code=status_code, page="glossary")


@router.post("/glossary/guidelines")
async def edit_guidelines(request: Request, who: Annotated[Principal, Depends(page_user("owner"))]) -> Response:
    """The owner edits the guidelines and label descriptions: a new revision from now on."""
    st = get_state(request)
    form = await request.form()
    edit = {str(k): str(v) for k, v in form.items() if k == "guidelines" or str(k).startswith("label:")}
    descriptions = {k.removeprefix("label:"): v for k, v in edit.items() if k.startswith("label:")}
    try:
        glossary.set_guidelines(
            st.db,
            st.project_id,
            st.settings,
            guidelines=edit.get("guidelines", ""),
            descriptions=descriptions,
            set_by=who.person_id,
        )
    except DataError as exc:
        return _glossary(request, who, error=exc.message, status_code=422, done=None, edit=edit)
    st.project.reload_settings()
    return RedirectResponse("/glossary?done=guidelines", status_code=303)


@router.post("/glossary")
def propose_term(
    request: Request,
    who: Annotated[Principal, Depends(page_user("trainer"))],
    term: Annotated[str, Form()] = "",
    definition: Annotated[str, Form()] = "",
    example: Annotated[str, Form()] = "",
) -> Response:
    st = get_state(request)
    try:
        glossary.propose_term(
            st.db, st.project_id, who.person_id, term=term, definition=definition, example=example, settings=st.settings
        )
    except DataError as exc:
        return _glossary(request, who, error=exc.message, status_code=422, done=None)
    return RedirectResponse("/glossary?done=proposed", status_code=303)


@router.post("/glossary/{term_id}/decide")
def decide_term(
    request: Request,
    term_id: RowId,
    who: Annotated[Principal, Depends(page_user("reviewer"))],
    decision: Annotated[str, Form()] = "",
) -> Response:
    st = get_state(request)
    if decision not in {"approve", "reject"}:
        raise DataError(f"decision {decision!r} is unknown; choose approve or reject")
    glossary.decide_term(st.db, st.project_id, term_id, decided_by=who.person_id, approve=decision == "approve")
    return RedirectResponse(f"/glossary?done={decision}d", status_code=303)


@router.get("/me")
def me_page(request: Request, who: Annotated[Principal, Depends(page_user("trainer"))]) -> Response:
    return _me(request, who, new_token=None, error=None, status_code=200)


def _me(request: Request, who: Principal, *, new_token: str | None, error: str | None, status_code: int) -> Response:
    st = get_state(request)
    account = accounts.get_account(st.db, st.project_id, who.person_id)
    stats = dashboard.trainer_stats(
        st.db, st.project_id, st.settings, who.person_id, utc_offset_minutes=utc_offset(request)
    )
    work = payouts.work_by_person(st.db, st.project_id, person_id=who.person_id).get(who.person_id, payouts.Work())
    ctx = {
        "account": account,
        "stats": stats,
        "work": work,
        "feedback": dashboard.trainer_feedback(st.db, st.project_id, who.person_id),
        "paused": _pause(st.db, st.project_id, who.person_id),
        "hourly": _per_hour(stats.total.earnings, stats.total.active_seconds),
        "items_per_hour": _per_hour(stats.total.items, stats.total.active_seconds),
        "tokens": accounts.list_api_tokens(st.db, who.person_id),
        "new_token": new_token,
        "error": error,
        "saved": request.query_params.get("saved"),
    }
    return render(request, "me.html", ctx, status_code=status_code, page="me")


def _per_hour(amount: float, active_seconds: float) -> float | None:
    """``amount`` per active hour; None until there are a few minutes of work to divide by."""
    return amount / (active_seconds / 3600.0) if active_seconds >= 60 else None


@router.post("/me/profile")
def save_profile(
    request: Request,
    who: Annotated[Principal, Depends(page_user("trainer"))],
    languages: Annotated[str, Form()] = "",
    tags: Annotated[str, Form()] = "",
) -> Response:
    accounts.update_profile(get_state(request).db, who.person_id, tags=[tags], languages=[languages])
    return RedirectResponse("/me?saved=profile", status_code=303)


@router.post("/me/tokens")
def create_token(
    request: Request, who: Annotated[Principal, Depends(page_user("trainer"))], name: Annotated[str, Form()] = ""
) -> Response:
    _, token = accounts.create_api_token(get_state(request).db, who.person_id, name or "script")
    return _me(request, who, new_token=token, error=None, status_code=200)


@router.post("/me/tokens/{token_id}/revoke")
def revoke_token(
    request: Request, token_id: RowId, who: Annotated[Principal, Depends(page_user("trainer"))]
) -> Response:
    accounts.revoke_api_token(get_state(request).db, who.person_id, token_id)
    return RedirectResponse("/me?saved=token", status_code=303)
