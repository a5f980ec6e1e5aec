"""The web workbench: trainers work the queue, the owner watches the dashboard (FastAPI, the ``web`` extra).

``create_app(project)`` builds the app for an open project; ``serve(project_dir)`` runs it with uvicorn.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from terakoya.project import ProjectLike

__all__ = ["create_app", "serve"]


def create_app(
    project: ProjectLike,
    *,
    secure_cookies: bool | None = None,
    run_jobs: bool = True,
    public_url: str | None = None,
) -> FastAPI:
    """The FastAPI app for an open project (see :func:`terakoya.web.app.create_app`)."""
    try:
        from terakoya.web.app import create_app as build
    except ModuleNotFoundError as exc:
        from terakoya.errors import MissingDependency

        raise MissingDependency.for_extra(exc.name or "fastapi", "web", "the web workbench") from exc
    return build(project, secure_cookies=secure_cookies, run_jobs=run_jobs, public_url=public_url)


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
    """Serve the workbench of the project in ``project_dir`` until interrupted (see :func:`terakoya.web.app.serve`)."""
    from terakoya.web.app import serve as run

    run(
        project_dir,
        host=host,
        port=port,
        overrides=overrides,
        secure_cookies=secure_cookies,
        trusted_proxies=trusted_proxies,
        workers=workers,
        run_jobs=run_jobs,
        public_url=public_url,
    )
