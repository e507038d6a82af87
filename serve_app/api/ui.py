"""The web UI at /ui: one page and its scripts and styles (serve_app/ui), served as files. The page calls the JSON
API like any client; only the URLs it starts from (its mount point, plotly.js) are written into it here."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from starlette.exceptions import HTTPException

from serve_app.api.pages import root_path
from serve_app.assets import UI_FILES, UI_PAGE, UI_PREFIX, asset_url

router = APIRouter(include_in_schema=False)

# The files are not versioned by URL: the browser revalidates them (ETag) so that an upgrade shows at once.
_REVALIDATE = {"Cache-Control": "no-cache"}


@router.get(UI_PREFIX + "/")
async def ui_slash(request: Request) -> RedirectResponse:
    return RedirectResponse(root_path(request) + UI_PREFIX)


@router.get(UI_PREFIX)
async def ui_page(request: Request) -> HTMLResponse:
    root = root_path(request)
    html = UI_PAGE.read_text(encoding="utf-8")
    for placeholder, value in (("{{root}}", root), ("{{plotly}}", asset_url("plotly.min.js", root)),
                               ("{{favicon}}", asset_url("favicon.png", root))):
        html = html.replace(placeholder, escape(value))
    return HTMLResponse(html, headers=_REVALIDATE)


@router.get(UI_PREFIX + "/{name}")
async def ui_file(name: str) -> FileResponse:
    file = UI_FILES.get(f"{UI_PREFIX}/{name}")
    if file is None:
        raise HTTPException(404)
    # A module script must come as JavaScript: the system's MIME table may not say so for .js.
    media_type = "text/javascript" if file.suffix == ".js" else "text/css"
    return FileResponse(file, media_type=media_type, headers=_REVALIDATE)
