"""The web UI's page and files: served by the service under its mount point, open without a token (they hold no
data), loading nothing from another host; and GET /api/v1/me, which it asks who the caller is. Its behaviour in a real
browser is tests/integration/test_ui.py."""

import re
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from serve_app.api import create_api
from serve_app.assets import UI_DIR, UI_FILES
from serve_app.auth import OPEN_PATHS
from serve_app.principals import Principal
from tests.unit.fakes import ManagerBackend

TEAMS = {"team-a": Principal("a"), "ops": Principal("ops", admin=True)}
# ES module imports: the UI has no build step, so each module loads the next by URL.
IMPORT = re.compile(r'^import .*? from "([^"]+)";$', re.MULTILINE | re.DOTALL)


def loaded_urls(html: str) -> list[str]:
    return re.findall(r'<(?:script|link)[^>]*? (?:src|href)="([^"]+)"', html)


@pytest.fixture
def backend(tmp_path):
    return ManagerBackend(tmp_path)


def test_the_page_and_every_file_it_loads_come_from_this_service_without_a_token(backend):
    with TestClient(create_api(backend, tokens=TEAMS), root_path="/teams") as api:
        page = api.get("/ui")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'data-root="/teams"' in page.text
        assert re.search(r'data-plotly="/teams/assets/plotly-[\d.]+/plotly\.min\.js"', page.text)
        urls = loaded_urls(page.text)
        assert {"/teams/ui/app.js", "/teams/ui/app.css"} <= set(urls)
        for url in urls:
            path = url.removeprefix("/teams")
            assert path in OPEN_PATHS, url
            response = api.get(path)
            assert response.status_code == 200 and response.content, url
        assert api.get("/ui/app.js").headers["content-type"].startswith("text/javascript")
        assert api.get("/ui/", follow_redirects=False).headers["location"] == "/teams/ui"
        # The data stays behind the token.
        assert api.get("/api/v1/jobs").status_code == 401


def test_every_module_the_ui_imports_is_served_and_nothing_comes_from_another_host(backend):
    scripts = {path: file.read_text(encoding="utf-8") for path, file in UI_FILES.items() if file.suffix == ".js"}
    imported = {f"/ui/{name.removeprefix('./')}" for text in scripts.values() for name in IMPORT.findall(text)}
    assert imported and imported <= set(scripts)
    with TestClient(create_api(backend)) as api:
        for path in imported:
            assert api.get(path).status_code == 200, path
    # The only absolute URLs in the UI are examples in form placeholders (host "host"): nothing to load.
    texts = [file.read_text(encoding="utf-8") for file in UI_DIR.iterdir()]
    hosts = {urlsplit(url).hostname for text in texts for url in re.findall(r"https?://[^\s\"'<>`]+", text)}
    assert hosts <= {"host"}, hosts


def test_an_unknown_ui_file_is_a_404(backend):
    with TestClient(create_api(backend)) as api:
        response = api.get("/ui/nothing.js")
        assert response.status_code == 404 and response.json()["message"] == "no such path: /ui/nothing.js"


@pytest.mark.parametrize("tokens,token,expected", [
    (None, None, {"principal": "default", "admin": True, "auth": False}),
    (TEAMS, "team-a", {"principal": "a", "admin": False, "auth": True}),
    (TEAMS, "ops", {"principal": "ops", "admin": True, "auth": True}),
], ids=["auth off", "a team", "an admin"])
def test_me_says_who_the_token_stands_for(backend, tokens, token, expected):
    with TestClient(create_api(backend, tokens=tokens)) as api:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        assert api.get("/api/v1/me", headers=headers).json() == expected
        if tokens:
            assert api.get("/api/v1/me").status_code == 401
