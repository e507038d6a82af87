"""The files that /docs, /redoc and the job reports load in the browser, served by the service itself from installed
packages, so that these pages render on clusters without internet access.

Each file's URL carries its package's version, so a browser may cache it for good and an upgrade changes the URL.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

ASSETS_PREFIX = "/assets"


def _shipped(distribution: str, path: str) -> tuple[str, Path]:
    """The URL path and file of `path`, a file inside the installed `distribution`, found without importing it."""
    installed = metadata.distribution(distribution)
    return f"{ASSETS_PREFIX}/{distribution}-{installed.version}/{Path(path).name}", Path(installed.locate_file(path))


# File name -> (URL path, file). Swagger UI, ReDoc and a favicon from fastapi-offline; plotly.js from the plotly
# package whose Python side drew the reports' figures, so that library and figures match.
_ASSETS = {
    Path(path).name: _shipped(distribution, path)
    for distribution, path in [
        ("fastapi_offline", "fastapi_offline/static/swagger-ui-bundle.js"),
        ("fastapi_offline", "fastapi_offline/static/swagger-ui.css"),
        ("fastapi_offline", "fastapi_offline/static/redoc.standalone.js"),
        ("fastapi_offline", "fastapi_offline/static/favicon.png"),
        ("plotly", "plotly/package_data/plotly.min.js"),
    ]
}
_FILES = dict(_ASSETS.values())

# Open without a token like the pages that load them: a <script> or <link> tag cannot send one.
ASSET_PATHS = frozenset(_FILES)

# The web UI (serve_app/ui, package data): a static app with no build step, which calls the JSON API itself.
UI_PREFIX = "/ui"
UI_DIR = Path(__file__).with_name("ui")
UI_PAGE = UI_DIR / "index.html"
UI_FILES = {f"{UI_PREFIX}/{file.name}": file for file in sorted(UI_DIR.iterdir()) if file.suffix in (".js", ".css")}
# The page and its scripts hold no data (they fetch it with the token the user types), so they load without one.
UI_PATHS = frozenset({UI_PREFIX, f"{UI_PREFIX}/", *UI_FILES})


def asset_url(name: str, root_path: str = "") -> str:
    """Where the browser finds asset `name`, below `root_path` (the application's mount point, no trailing /)."""
    return root_path + _ASSETS[name][0]


def asset_file(url_path: str) -> Path | None:
    return _FILES.get(url_path)


# evalscope's reports load plotly.js from a CDN (evalscope.constants.PLOTLY_CDN_URL): any plotly script on any host.
_CDN_PLOTLY_SCRIPT = re.compile(r'<script src="https?://[^"]*/plotly[^"/]*\.js"')


def offline_report(html: str, root_path: str = "") -> str:
    """An evalscope HTML report that loads plotly.js from this service instead of the CDN."""
    return _CDN_PLOTLY_SCRIPT.sub(f'<script src="{asset_url("plotly.min.js", root_path)}"', html)
