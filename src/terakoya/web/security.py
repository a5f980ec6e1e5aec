"""Who is asking, and may they: sessions, Bearer tokens, CSRF, roles and the sign-in rate limit.

- Sessions are a signed cookie (itsdangerous, key from :func:`terakoya.people.accounts.web_secret`), HttpOnly and
  SameSite=Lax, holding the person's id and their CSRF token.
- Every form carries a CSRF token matching a signed cookie (and, once signed in, the session); API writes
  authenticated by the cookie send it in ``X-CSRF-Token``. Bearer-token requests need none.
- Roles: trainer < reviewer < owner (:func:`terakoya.people.accounts.role_at_least`); a person with no membership
  in this project is refused everything but the public pages.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import Path as UrlPart
from fastapi import Request
from sqlalchemy import case, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from terakoya.jobs import JobRunner
from terakoya.people.accounts import (
    AuthError,
    Forbidden,
    RateLimited,
    account_for_token,
    end_web_session,
    get_account,
    role_at_least,
    start_web_session,
)
from terakoya.project import ProjectLike
from terakoya.settings import Settings
from terakoya.storage.db import Database
from terakoya.storage.models import utcnow
from terakoya.storage.web_models import SignInLimit

__all__ = [
    "CSRF_HEADER",
    "MAX_ROW_ID",
    "LoginRequired",
    "LoginThrottle",
    "Principal",
    "RowId",
    "WebState",
    "api_user",
    "check_form_csrf",
    "clear_session",
    "csrf_token",
    "get_state",
    "page_user",
    "principal",
    "set_session",
]

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SESSION_MAX_AGE_S = 14 * 24 * 3600
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class LoginRequired(Exception):
    """A page needs a signed-in person: the app answers with a redirect to the sign-in page."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class LoginThrottle:
    """At most ``limit`` sign-in attempts per (account, address) in a ``window_s``-second window, counted in the
    project's database, so that every server process shares one count.

    Every attempt counts from the moment it is let through (:meth:`check`) until it succeeds (100 wrong
    passwords sent at once used to pass the check together while their hashes were being compared). The count
    is one conditional UPDATE of the key's row, atomic on SQLite and PostgreSQL alike.
    """

    def __init__(self, db: Database, project_id: int, limit: int = 5, window_s: float = 60.0) -> None:
        self.db, self.project_id = db, project_id
        self.limit, self.window_s = limit, window_s

    def _key(self, login: str, address: str) -> str:
        raw = f"{self.project_id}\0{login.strip().lower()}\0{address}"
        return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()

    def _count(self, s: Session, key: str, now: datetime) -> bool:
        """One more attempt on ``key`` if the window allows it (a window that has passed starts again)."""
        expired = SignInLimit.window_start < now - timedelta(seconds=self.window_s)
        taken = s.execute(
            update(SignInLimit)
            .where(SignInLimit.key == key, or_(expired, SignInLimit.count < self.limit))
            .values(
                count=case((expired, 1), else_=SignInLimit.count + 1),
                window_start=case((expired, now), else_=SignInLimit.window_start),
            )
            .returning(SignInLimit.count)
        ).first()
        return taken is not None

    def check(self, login: str, address: str) -> None:
        key, now = self._key(login, address), utcnow()
        with self.db.writing(), self.db.session() as s:
            if self._count(s, key, now):
                return
            started = s.scalar(select(SignInLimit.window_start).where(SignInLimit.key == key))
            if started is None:
                try:
                    with s.begin_nested():
                        s.add(SignInLimit(key=key, count=1, window_start=now))
                    return
                except IntegrityError:  # another process counted the first attempt at the same moment
                    if self._count(s, key, now):
                        return
                    started = s.scalar(select(SignInLimit.window_start).where(SignInLimit.key == key)) or now
        wait = max(1, int(self.window_s - (now - started).total_seconds()) + 1)
        raise RateLimited(
            f"too many failed sign-ins for {login.strip()!r} from your address; wait {wait} seconds "
            "and try again (or ask the project owner to reset your password)"
        )

    def failed(self, login: str, address: str) -> None:
        """A wrong password: already counted when :meth:`check` let the attempt through."""

    def succeeded(self, login: str, address: str) -> None:
        """A right password clears the count (and windows long past are swept away)."""
        old = utcnow() - timedelta(seconds=max(self.window_s, 3600.0))
        with self.db.writing(), self.db.session() as s:
            s.execute(delete(SignInLimit).where(SignInLimit.key == self._key(login, address)))
            s.execute(delete(SignInLimit).where(SignInLimit.window_start < old))


#: the largest row id: id columns are INTEGER, 32 bits on PostgreSQL (SQLite's hold 64)
MAX_ROW_ID = 2**31 - 1
#: an id in a URL: a database row id (1 .. MAX_ROW_ID); anything else is a 422 with the one error shape, never
#: a 500 from the database (ids beyond 64 bits used to overflow the query on SQLite, beyond 32 on PostgreSQL)
RowId = Annotated[int, UrlPart(ge=1, le=MAX_ROW_ID, description="the row's id")]


@dataclass
class WebState:
    """What the app holds for one project: the project itself, and what serving it needs besides."""

    project: ProjectLike
    secret: str
    runner: JobRunner
    throttle: LoginThrottle
    #: True: always Secure; False: never; None (the default): Secure whenever the request came over HTTPS
    secure_cookies: bool | None = None
    #: the address people reach the server at, when it is not the one it listens on (behind a proxy)
    public_url: str | None = None

    def cookie_secure(self, request: Request) -> bool:
        """Whether cookies set in answer to ``request`` carry ``Secure``."""
        if self.secure_cookies is not None:
            return self.secure_cookies
        return request.url.scheme == "https"

    @property
    def db(self) -> Database:
        return self.project.db

    @property
    def project_id(self) -> int:
        return self.project.project_id

    @property
    def dir(self) -> Path:
        return self.project.dir

    @property
    def settings(self) -> Settings:
        """The project's settings, read through the project (which may reload them after a job)."""
        return self.project.settings

    @property
    def session_cookie(self) -> str:
        return f"terakoya_session_{self.project_id}"

    @property
    def csrf_cookie(self) -> str:
        return f"terakoya_csrf_{self.project_id}"

    def serializer(self, salt: str) -> Any:
        from itsdangerous import URLSafeTimedSerializer

        return URLSafeTimedSerializer(self.secret, salt=salt)


@dataclass(frozen=True)
class Principal:
    person_id: int
    name: str
    role: str | None  # None: signed in, but not a member of this project
    via: str  # session | token
    csrf: str | None  # the session's CSRF token (None for Bearer tokens)

    def may(self, role: str) -> bool:
        return role_at_least(self.role, role)


def get_state(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


def _load(request: Request, salt: str, cookie: str, max_age: int) -> Any:
    raw = request.cookies.get(cookie)
    if not raw:
        return None
    from itsdangerous import BadSignature

    try:
        return get_state(request).serializer(salt).loads(raw, max_age=max_age)
    except (BadSignature, ValueError):
        return None


def principal(request: Request) -> Principal | None:
    """The person behind this request (Bearer token first, then the session cookie), or None."""
    if hasattr(request.state, "principal"):
        found: Principal | None = request.state.principal
        return found
    st = get_state(request)
    found = None
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        account = account_for_token(st.db, st.project_id, auth[7:].strip())
        if account is None:
            raise AuthError("the API token is not valid (unknown or revoked); create a new one on your 'My work' page")
        found = Principal(account.id, account.name, account.role, "token", None)
    else:
        data = _load(request, "session", st.session_cookie, SESSION_MAX_AGE_S)
        if (
            isinstance(data, dict)
            and isinstance(data.get("p"), int)
            and isinstance(data.get("c"), str)
            and isinstance(data.get("s"), str)
        ):
            account = get_account(st.db, st.project_id, data["p"], session_token=data["s"])
            if account is not None:
                found = Principal(account.id, account.name, account.role, "session", data["c"])
    request.state.principal = found
    return found


def _not_member(who: Principal, needed: str) -> Forbidden:
    if who.role is None:
        return Forbidden(f"{who.name} is not a member of this project; ask its owner for an invite link")
    return Forbidden(f"this needs the {needed} role and you are a {who.role}; ask the project owner if you need it")


def api_user(needed: str = "trainer") -> Callable[[Request], Principal]:
    """Dependency for API routes: 401 when anonymous, 403 below ``needed``, CSRF on cookie-authenticated writes.

    A plain function, so FastAPI runs its database look-up in the thread pool, off the event loop.
    """

    def dependency(request: Request) -> Principal:
        who = principal(request)
        if who is None:
            raise AuthError("sign in first: send 'Authorization: Bearer <token>' or use the session of the web app")
        if not who.may(needed):
            raise _not_member(who, needed)
        if who.via == "session" and request.method in UNSAFE:
            sent = request.headers.get(CSRF_HEADER, "")
            if not (who.csrf and sent and hmac.compare_digest(sent, who.csrf)):
                raise Forbidden(
                    f"the {CSRF_HEADER} header is missing or wrong; reload the page (scripts: use a Bearer token)"
                )
        return who

    return dependency


def page_user(needed: str | None = "trainer") -> Callable[[Request], Awaitable[Principal]]:
    """Dependency for pages: a redirect to sign in when anonymous, 403 below ``needed``, CSRF on form posts.

    ``needed=None`` lets in anyone signed in, member or not.
    """

    async def dependency(request: Request) -> Principal:
        who = await run_in_threadpool(principal, request)
        if who is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise LoginRequired(target if request.method == "GET" else "/")
        if needed is not None and not who.may(needed):
            raise _not_member(who, needed)
        if request.method in UNSAFE:
            await check_form_csrf(request, who)
        return who

    return dependency


def csrf_token(request: Request) -> str:
    """This browser's CSRF token (the session's once signed in); a new one is made (and set) when missing."""
    who = principal(request) if "authorization" not in request.headers else None
    if who is not None and who.csrf:
        return who.csrf
    data = _load(request, "csrf", get_state(request).csrf_cookie, SESSION_MAX_AGE_S)
    if isinstance(data, str):
        return data
    if not hasattr(request.state, "new_csrf"):
        request.state.new_csrf = secrets.token_urlsafe(24)
    token: str = request.state.new_csrf
    return token


def remember_csrf(request: Request, response: Response) -> None:
    """Set the CSRF cookie when this request created a new token."""
    token = getattr(request.state, "new_csrf", None)
    if token:
        st = get_state(request)
        response.set_cookie(
            st.csrf_cookie,
            st.serializer("csrf").dumps(token),
            max_age=SESSION_MAX_AGE_S,
            httponly=True,
            samesite="lax",
            secure=st.cookie_secure(request),
        )


async def check_form_csrf(request: Request, who: Principal | None = None) -> None:
    """A form post must carry the token of this browser (and of the session, when signed in)."""
    form = await request.form()
    sent = str(form.get(CSRF_FIELD, "") or request.headers.get(CSRF_HEADER, ""))
    cookie = _load(request, "csrf", get_state(request).csrf_cookie, SESSION_MAX_AGE_S)
    expected = who.csrf if who is not None and who.csrf else cookie
    if not (isinstance(expected, str) and sent and hmac.compare_digest(sent, expected)):
        raise Forbidden("this form has expired or did not come from this site; reload the page and try again")


def set_session(request: Request, response: Response, person_id: int) -> None:
    """Sign a person in: a fresh session with a fresh CSRF token (also in the CSRF cookie)."""
    st = get_state(request)
    token = secrets.token_urlsafe(24)
    session = start_web_session(st.db, person_id)
    for name, salt, value in (
        (st.session_cookie, "session", {"p": person_id, "c": token, "s": session}),
        (st.csrf_cookie, "csrf", token),
    ):
        response.set_cookie(
            name,
            st.serializer(salt).dumps(value),
            max_age=SESSION_MAX_AGE_S,
            httponly=True,
            samesite="lax",
            secure=st.cookie_secure(request),
        )


def clear_session(request: Request, response: Response) -> None:
    """Sign out: the session ends on the server (a saved copy of the cookie opens nothing) and in the browser."""
    st = get_state(request)
    data = _load(request, "session", st.session_cookie, SESSION_MAX_AGE_S)
    if isinstance(data, dict) and isinstance(data.get("s"), str):
        end_web_session(st.db, data["s"])
    secure = st.cookie_secure(request)
    response.delete_cookie(st.session_cookie, httponly=True, samesite="lax", secure=secure)
    response.delete_cookie(st.csrf_cookie, httponly=True, samesite="lax", secure=secure)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def served_base_url(request: Request) -> str:
    """The address people reach this server at: ``terakoya serve --public-url`` when given (behind a TLS
    proxy), else the socket the server was started on — never the request's Host header, which the client
    chooses: a link built from it could send an invited person to someone else's site. Empty when unknown."""
    public = get_state(request).public_url
    if public:
        return public.rstrip("/")
    server = request.scope.get("server")
    if not server:
        return ""
    host, port = str(server[0]), server[1]
    if ":" in host:  # IPv6
        host = f"[{host}]"
    scheme = request.url.scheme
    return f"{scheme}://{host}" + ("" if port in (None, _DEFAULT_PORTS.get(scheme)) else f":{port}")


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
