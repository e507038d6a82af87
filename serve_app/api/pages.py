"""The API docs (Swagger UI at /docs, ReDoc at /redoc) and the files they and the job reports load, all served by
this service (serve_app.assets): FastAPI's own docs pages load theirs from CDNs."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse
from starlette.exceptions import HTTPException

from serve_app.assets import ASSETS_PREFIX, asset_file, asset_url

router = APIRouter(include_in_schema=False)

# The URL names the package version: a new version is a new URL, so a cached copy never goes stale.
_CACHE_FOR_GOOD = {"Cache-Control": "public, max-age=31536000, immutable"}


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = root_path(request)
    return get_swagger_ui_html(
        **_spec_and_title(request, "Swagger UI"),
        oauth2_redirect_url=root + request.app.swagger_ui_oauth2_redirect_url,
        swagger_js_url=asset_url("swagger-ui-bundle.js", root),
        swagger_css_url=asset_url("swagger-ui.css", root),
        swagger_favicon_url=asset_url("favicon.png", root),
        swagger_ui_parameters=request.app.swagger_ui_parameters,
    )


@router.get("/docs/oauth2-redirect")
async def swagger_ui_oauth2_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = root_path(request)
    return get_redoc_html(
        **_spec_and_title(request, "ReDoc"),
        redoc_js_url=asset_url("redoc.standalone.js", root),
        redoc_favicon_url=asset_url("favicon.png", root),
        with_google_fonts=False,  # the fonts come from Google's servers; ReDoc falls back to the system's
    )


@router.get(ASSETS_PREFIX + "/{package}/{name}")
async def asset(package: str, name: str) -> FileResponse:
    file = asset_file(f"{ASSETS_PREFIX}/{package}/{name}")
    if file is None:
        raise HTTPException(404)
    return FileResponse(file, headers=_CACHE_FOR_GOOD)


def _spec_and_title(request: Request, viewer: str) -> dict[str, str]:
    app = request.app
    return {"openapi_url": root_path(request) + app.openapi_url, "title": f"{app.title} - {viewer}"}


def root_path(request: Request) -> str:
    """The application's mount point (a Serve route_prefix), which URLs written into a page must start with."""
    return request.scope.get("root_path", "").rstrip("/")
