"""The built-in ops dashboard: static HTML, CSS and JavaScript modules on the API's port.

No build chain: the files in ``cloud/static`` are served as they are. ``/`` is the app
shell (a single page; the views are hash routes such as ``#/board``); ``/ui/<file>`` are its
assets. The pages talk to the public HTTP API only (``/api/v1/...`` with the bearer token
the login returns), so the dashboard has no powers of its own: roles and sites are enforced
by the API exactly as for any other client.

Mount with :func:`install`, which also mounts the dashboard's data API
(:mod:`cloud.telemetry_api`) and is idempotent.
"""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Annotated

from fastapi import APIRouter, FastAPI, Path
from fastapi.responses import FileResponse, RedirectResponse, Response

from cloud.api.deps import not_found
from cloud.telemetry_api import router as telemetry_router

STATIC_DIR = FsPath(__file__).resolve().parent / "static"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_SHELL_HEADERS = {
    **_HEADERS,
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
}

router = APIRouter(tags=["dashboard"], include_in_schema=False)


@router.get("/", response_class=FileResponse)
def shell() -> Response:
    """The dashboard's single page; the browser routes between views itself."""
    return FileResponse(STATIC_DIR / "index.html", media_type=_TYPES[".html"],
                        headers=_SHELL_HEADERS)


@router.get("/dashboard")
def dashboard_alias() -> Response:
    return RedirectResponse("/", status_code=307)


@router.get("/ui/{name:path}", response_class=FileResponse)
def asset(name: Annotated[str, Path(min_length=1, max_length=200)]) -> Response:
    """One file of ``cloud/static`` (never anything outside it)."""
    path = (STATIC_DIR / name).resolve()
    if (not path.is_relative_to(STATIC_DIR) or not path.is_file()
            or path.suffix not in _TYPES):
        raise not_found("file")
    return FileResponse(path, media_type=_TYPES[path.suffix], headers=_HEADERS)


def install(app: FastAPI) -> None:
    """Mount the dashboard and its data API on ``app`` (a second call changes nothing)."""
    if getattr(app.state, "dashboard_installed", False):
        return
    app.include_router(telemetry_router)
    app.include_router(router)
    app.state.dashboard_installed = True
