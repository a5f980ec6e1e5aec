"""Signing in and out, joining by invite link, the home page, the health check and the API docs page."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from terakoya.errors import DataError, StateError
from terakoya.people import accounts
from terakoya.web.render import render
from terakoya.web.security import (
    Principal,
    check_form_csrf,
    clear_session,
    client_address,
    get_state,
    page_user,
    principal,
    set_session,
)

router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only same-site paths: never '//host' or 'https://...' (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/healthz")
def healthz() -> dict[str, Any]:
    return {"ok": True}


@router.get("/")
def home(request: Request, who: Annotated[Principal, Depends(page_user(None))]) -> Response:
    st = get_state(request)
    cards = accounts.projects_for(st.db, who.person_id)
    return render(
        request,
        "home.html",
        {"cards": cards, "this_project": st.project_id, "member": who.role is not None},
        page="home",
    )


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    if principal(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "login.html", {"next": _safe_next(next), "login": "", "error": None}, page="login")


@router.post("/login")
async def login(
    request: Request,
    login: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    await check_form_csrf(request)
    st = get_state(request)
    address = client_address(request)
    try:
        st.throttle.check(login, address)
    except accounts.RateLimited as exc:
        ctx = {"next": _safe_next(next), "login": login, "error": exc.message}
        return render(request, "login.html", ctx, status_code=429, page="login")
    try:
        account = await run_in_threadpool(accounts.authenticate, st.db, st.project_id, login, password)
    except accounts.AuthError as exc:
        st.throttle.failed(login, address)
        ctx = {"next": _safe_next(next), "login": login, "error": exc.message}
        return render(request, "login.html", ctx, status_code=401, page="login")
    st.throttle.succeeded(login, address)
    response = RedirectResponse(_safe_next(next), status_code=303)
    set_session(request, response, account.id)
    return response


@router.post("/logout")
def logout(request: Request, who: Annotated[Principal, Depends(page_user(None))]) -> Response:
    response = RedirectResponse("/login", status_code=303)
    clear_session(request, response)
    return response


@router.get("/invite/{token}")
def invite_page(request: Request, token: str) -> Response:
    st = get_state(request)
    invite, _, project_name = accounts.invite_for_token(st.db, token)
    form = {"name": "", "email": invite.email or "", "languages": ", ".join(invite.languages), "tags": ""}
    ctx = {"invite": invite, "invited_to": project_name, "form": form, "error": None, "token": token}
    return render(request, "invite.html", ctx, page="invite")


@router.post("/invite/{token}")
async def invite_accept(
    request: Request,
    token: str,
    action: Annotated[str, Form()] = "create",
    name: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    languages: Annotated[str, Form()] = "",
    tags: Annotated[str, Form()] = "",
) -> Response:
    who = await run_in_threadpool(principal, request)
    await check_form_csrf(request, who)
    st = get_state(request)
    if action == "join" and who is not None:
        await run_in_threadpool(accounts.join_with_invite, st.db, token, who.person_id)
        return RedirectResponse("/queue", status_code=303)
    try:
        account = await run_in_threadpool(
            lambda: accounts.accept_invite(
                st.db,
                token,
                name=name,
                password=password,
                email=email or None,
                tags=[tags],
                languages=[languages],
            )
        )
    except (DataError, StateError) as exc:
        invite, _, project_name = await run_in_threadpool(accounts.invite_for_token, st.db, token)
        form = {"name": name, "email": email, "languages": languages, "tags": tags}
        ctx = {"invite": invite, "invited_to": project_name, "form": form, "error": exc.message, "token": token}
        return render(request, "invite.html", ctx, status_code=422, page="invite")
    response = RedirectResponse("/queue", status_code=303)
    set_session(request, response, account.id)
    return response


@router.get("/docs")
def docs(request: Request) -> Response:
    spec = request.app.openapi()
    operations = []
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            params = [p.get("name", "") for p in op.get("parameters", [])]
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            body_name = str(body.get("$ref", "")).rsplit("/", 1)[-1]
            fields = spec.get("components", {}).get("schemas", {}).get(body_name, {}).get("properties", {})
            operations.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "params": params,
                    "body": list(fields),
                    "tag": (op.get("tags") or [""])[0],
                }
            )
    return render(request, "docs.html", {"operations": operations, "info": spec.get("info", {})}, page="docs")
