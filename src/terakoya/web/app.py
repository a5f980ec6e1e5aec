"""The web app of one project: pages for trainers and the owner, and the JSON API under /api/v1.

Errors: every :class:`~terakoya.errors.TerakoyaError` becomes ``{"error": {"code", "message"}}`` on the API
(with an HTTP status chosen by its class) and an error page elsewhere.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from terakoya.errors import (
    ConfigError,
    DataError,
    MissingDependency,
    ProjectNotFound,
    StateError,
    StudentError,
    TeacherError,
    TerakoyaError,
)
from terakoya.jobs import JobRunner, fail_interrupted
from terakoya.people.accounts import AuthError, Forbidden, NotFound, RateLimited, web_secret
from terakoya.project import ProjectLike
from terakoya.web.security import LoginRequired, LoginThrottle, WebState

__all__ = ["create_app", "serve", "status_for"]

log = logging.getLogger(__name__)
HERE = Path(__file__).parent

_STATUS: list[tuple[type[TerakoyaError], int]] = [
    (AuthError, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (ProjectNotFound, 404),
    (RateLimited, 429),
    (DataError, 422),
    (StateError, 409),
    (TeacherError, 502),
    (StudentError, 500),
    (MissingDependency, 500),
    (ConfigError, 500),
]
_HTTP_CODES = {
    400: "bad-request",
    401: "auth",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "too-large",
}
#: what FastAPI says of a body it cannot decode (not UTF-8, JSON nested too deeply): nothing to act on
_UNREADABLE = "There was an error parsing the body"
_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


def status_for(exc: TerakoyaError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 400


class SecurityHeaders:
    """Adds the same protective headers to every response (a plain ASGI wrapper: no per-request task)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "no-referrer")  # invite links carry their token in the path
                headers.setdefault("Content-Security-Policy", _CSP)
                if scope["path"].startswith("/api/"):
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


#: the largest request body accepted: answers, forms and glossary terms are a few kilobytes
MAX_BODY_BYTES = 1_000_000
_TOO_LARGE = f"the request body is larger than {MAX_BODY_BYTES:,} bytes; send one answer, form or term per request"


class BodyLimit:
    """Refuses request bodies over :data:`MAX_BODY_BYTES` (413), declared or streamed, before anything reads
    them whole: one 100 MB password once took the server from 105 MB to 527 MB of memory."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            await _error_json(413, "too-large", _TOO_LARGE)(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    raise StarletteHTTPException(413, detail=_TOO_LARGE)
            return message

        await self.app(scope, limited, send)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _error_json(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _error_page(request: Request, status: int, code: str, message: str) -> Response:
    from terakoya.web.render import render

    try:
        return render(request, "error.html", {"status": status, "code": code, "message": message}, status_code=status)
    except TerakoyaError:  # e.g. a bad Bearer token on a page: answer plainly
        return _error_json(status, code, message)


async def _terakoya_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TerakoyaError)
    status = status_for(exc)
    headers = {}
    if status == 429:
        headers["Retry-After"] = "60"
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if _is_api(request):
        return _error_json(status, exc.code, exc.message, headers)
    response = _error_page(request, status, exc.code, exc.message)
    response.headers.update(headers)
    return response


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return RedirectResponse(f"/login?next={quote(exc.next_url, safe='/?=&')}", status_code=303)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http")
    message = str(exc.detail)
    if exc.status_code == 404:
        message = f"there is no page at {request.url.path}; check the address (the API is listed at /docs)"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}; see /docs for the methods it takes"
    elif exc.status_code == 400:
        why = "" if message == _UNREADABLE else f" ({message.rstrip('.')})"
        message = (
            f"the request body could not be read{why}; send a JSON object in UTF-8 (a form, to a page); "
            "see /docs for the expected fields"
        )
    if _is_api(request) or request.method != "GET":
        return _error_json(exc.status_code, code, message, dict(exc.headers or {}))
    return _error_page(request, exc.status_code, code, message)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":  # its "loc" is a position in the body, not a field
            reason = (err.get("ctx") or {}).get("error", "not JSON")
            problems.append(f"the body is not valid JSON ({reason} at character {err.get('loc', ('', '?'))[-1]})")
            continue
        loc = err.get("loc", ())
        where = ".".join(str(p) for p in loc if p != "body") or ("the body" if loc[:1] == ("body",) else "the request")
        problems.append(f"{where}: {err.get('msg', 'is not valid')}")
    message = "the request is not valid — " + "; ".join(problems) + "; see /docs for the expected fields"
    if _is_api(request):
        return _error_json(422, "validation", message)
    return _error_page(request, 422, "validation", message)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    message = "something went wrong on the server; it was logged — try again, and tell the project owner if it repeats"
    return _error_json(500, "internal", message)


def create_app(
    project: ProjectLike,
    *,
    secure_cookies: bool | None = None,
    run_jobs: bool = True,
    public_url: str | None = None,
) -> FastAPI:
    """The web app for one open project (a :class:`~terakoya.project.Project`, or anything :class:`ProjectLike`).

    The owner's job buttons run ``project.teach/route/train/evaluate`` in the background (:mod:`terakoya.jobs`),
    and the settings are read again after each job. ``secure_cookies``: True marks every cookie Secure, False
    none; None (the default) marks them Secure on requests that came over HTTPS (directly, or through a proxy
    that :func:`serve` was told to trust). ``run_jobs=False``: this process only queues jobs, and
    `terakoya worker` processes run them. ``public_url``: the address people reach the server at, for invite
    links and the API page, when it differs from the one it listens on (behind a proxy).
    """
    from terakoya.web import routes_api, routes_auth, routes_owner, routes_pages

    state = WebState(
        project=project,
        secret=web_secret(project.db, project.project_id),
        runner=JobRunner(
            project.db, project.project_id, project=project, after_each=project.reload_settings, run_jobs=run_jobs
        ),
        throttle=LoginThrottle(project.db, project.project_id),
        secure_cookies=secure_cookies,
        public_url=public_url,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stale = fail_interrupted(state.db, state.project_id)
        if stale:
            log.warning("%d job(s) whose process stopped were marked failed", stale)
        if run_jobs:
            state.runner.begin()  # jobs queued before a restart run now
        yield
        state.runner.shutdown(wait=False)

    app = FastAPI(
        title="Terakoya workbench",
        version="1",
        description=(
            "Work the expert queue, teach glossary terms and follow the project. Authenticate scripts with "
            "`Authorization: Bearer <token>` (create tokens on the 'My work' page or with POST /api/v1/auth/token). "
            'Every error is `{"error": {"code": ..., "message": ...}}`.'
        ),
        docs_url=None,  # the stock docs page loads its scripts from a CDN; /docs is served from here instead
        redoc_url=None,
        lifespan=lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.web = state
    app.add_exception_handler(TerakoyaError, _terakoya_error)
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(BodyLimit)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(routes_auth.router)
    app.include_router(routes_pages.router)
    app.include_router(routes_owner.router)
    app.include_router(routes_api.router)
    return app


_SERVE_ENV = "TERAKOYA_SERVE_CONFIG"


def app_from_environment() -> FastAPI:
    """The app of one worker process of ``terakoya serve --workers N`` (uvicorn imports it by name there)."""
    import json

    from terakoya.project import Project

    config = json.loads(os.environ[_SERVE_ENV])
    project = Project.open(Path(config["project_dir"]), overrides=config["overrides"])
    return create_app(
        project,
        secure_cookies=config["secure_cookies"],
        run_jobs=config["run_jobs"],
        public_url=config["public_url"],
    )


def serve(
    project_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    overrides: dict[str, Any] | None = None,
    secure_cookies: bool | None = None,
    trusted_proxies: str | None = None,
    workers: int = 1,
    run_jobs: bool = True,
    public_url: str | None = None,
) -> None:
    """Open the project in ``project_dir`` and serve its workbench until interrupted.

    ``trusted_proxies`` (comma-separated addresses, e.g. the TLS proxy's) are the only clients whose
    ``X-Forwarded-For`` / ``X-Forwarded-Proto`` headers are believed; by default nobody's are. ``workers``
    processes share the queue (each lease and answer is one transaction, so nothing is leased twice);
    ``run_jobs=False`` leaves background jobs to `terakoya worker` processes.
    """
    try:
        import uvicorn
    except ModuleNotFoundError as exc:  # pragma: no cover - part of the web extra
        raise MissingDependency.for_extra("uvicorn", "web", "terakoya serve") from exc
    import json

    from terakoya.people.accounts import list_members
    from terakoya.project import Project

    if workers < 1:
        raise ConfigError(f"--workers {workers} is not a number of processes; use 1 or more")
    if public_url and not public_url.startswith(("http://", "https://")):
        raise ConfigError(f"--public-url {public_url!r} is not an address; write it as https://host[:port]")
    project = Project.open(project_dir, overrides=overrides)
    try:
        if not any(m.role == "owner" for m in list_members(project.db, project.project_id)):
            log.warning("no owner can sign in yet; add one with: terakoya user add NAME --email you@example.org")
        if host not in {"127.0.0.1", "localhost", "::1"} and not trusted_proxies:
            log.warning("serving on %s without HTTPS; put a TLS proxy in front before trainers sign in", host)
        if workers > 1 and project.db.dialect == "sqlite":
            log.warning("%d processes on one SQLite file take turns to write; PostgreSQL serves them better", workers)
        # proxy headers only from the proxies named: an X-Forwarded-For from any other client would choose its
        # own address, and with it its own sign-in rate limit
        options: dict[str, Any] = {
            "host": host,
            "port": port,
            "log_level": "info",
            "proxy_headers": bool(trusted_proxies),
            "forwarded_allow_ips": trusted_proxies or None,
        }
        if workers == 1:
            app = create_app(project, secure_cookies=secure_cookies, run_jobs=run_jobs, public_url=public_url)
            uvicorn.run(app, **options)
            return
        os.environ[_SERVE_ENV] = json.dumps(
            {
                "project_dir": str(project.dir),
                "overrides": overrides or {},
                "secure_cookies": secure_cookies,
                "run_jobs": run_jobs,
                "public_url": public_url,
            }
        )
        uvicorn.run("terakoya.web.app:app_from_environment", factory=True, workers=workers, **options)
    finally:
        project.close()
