"""HTML pages: the Jinja2 environment, its filters, and one render function that adds what every page needs."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse

from terakoya.web.security import csrf_token, get_state, principal, remember_csrf, served_base_url

__all__ = ["render", "templates"]

HERE = Path(__file__).parent


def _duration(seconds: float | None) -> str:
    seconds = round(seconds or 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def _money(amount: float | None, currency: str = "") -> str:
    return f"{amount or 0:,.2f} {currency}".strip()


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def _when(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


@lru_cache(maxsize=1)
def templates() -> Jinja2Templates:
    t = Jinja2Templates(directory=str(HERE / "templates"))
    t.env.filters.update(duration=_duration, money=_money, pct=_pct, when=_when)
    return t


def _nav(role: str | None) -> list[tuple[str, str, str]]:
    """(href, text, key) of the menu for a role."""
    from terakoya.people.accounts import role_at_least

    items: list[tuple[str, str, str]] = []
    if role_at_least(role, "trainer"):
        items += [("/queue", "Work", "queue"), ("/glossary", "Guidelines", "glossary"), ("/me", "My work", "me")]
    if role_at_least(role, "reviewer"):
        items += [
            ("/dashboard", "Dashboard", "dashboard"),
            ("/review", "Review", "review"),
            ("/report", "Report", "report"),
        ]
    if role_at_least(role, "owner"):
        items += [("/people", "People & pay", "people")]
    return items


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, *, status_code: int = 200, page: str = ""
) -> HTMLResponse:
    st = get_state(request)
    who = principal(request) if "authorization" not in request.headers else None
    ctx: dict[str, Any] = {
        "me": who,
        "csrf": csrf_token(request),
        "project_name": st.settings.name,
        "nav": _nav(who.role if who else None),
        "base_url": served_base_url(request),
        "page": page,
        **(context or {}),
    }
    response = templates().TemplateResponse(request, name, ctx, status_code=status_code)
    remember_csrf(request, response)
    return response
