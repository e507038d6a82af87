"""The docs pages and the job reports load their scripts and styles from this service, never from a CDN (their
rendering in a real browser is tests/integration/test_pages.py)."""

import re

import pytest
from evalscope.constants import PLOTLY_CDN_URL
from fastapi.testclient import TestClient

from serve_app.api import create_api
from serve_app.auth import OPEN_PATHS
from serve_app.principals import Principal
from tests.unit.fakes import ManagerBackend

PERF = {"model": "m", "url": "http://127.0.0.1:8801/v1/chat/completions", "number": 4}
# As evalscope's report templates load plotly.js.
REPORT = f'<html><head><script src="{PLOTLY_CDN_URL}" charset="utf-8"></script></head><body></body></html>'


def loaded_urls(html: str) -> list[str]:
    """What a page's tags make the browser fetch (links to follow are not fetched: <a> is left out)."""
    return re.findall(r'<(?:script|link|img)[^>]*? (?:src|href)="([^"]+)"', html)


@pytest.fixture
def backend(tmp_path):
    return ManagerBackend(tmp_path)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_files_this_service_serves_to_anyone(backend, page):
    with TestClient(create_api(backend, tokens={"secret": Principal("a")})) as api:
        html = api.get(page).text
        assets = loaded_urls(html)
        assert assets and all(url.startswith("/assets/") for url in assets), assets
        for url in assets:  # no token: a page's <script> and <link> tags cannot send one
            response = api.get(url)
            assert response.status_code == 200 and response.content, url
            assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert url in OPEN_PATHS


def test_a_report_loads_plotly_from_this_service_under_its_mount_point(backend, tmp_path):
    with TestClient(create_api(backend), root_path="/teams") as api:
        job = api.post("/api/v1/perf?wait=false", json=PERF).json()
        api.get(f"/api/v1/jobs/{job['job_id']}/events")  # the stream ends with the job
        (tmp_path / "out" / "1" / "perf_report.html").write_text(REPORT, encoding="utf-8")
        report = api.get(f"/api/v1/jobs/{job['job_id']}/report")
        assert report.headers["content-type"].startswith("text/html")
        [plotly] = loaded_urls(report.text)
        assert re.fullmatch(r"/teams/assets/plotly-[\d.]+/plotly\.min\.js", plotly)
        script = api.get(plotly.removeprefix("/teams"))
        assert script.headers["content-type"].startswith("text/javascript")
        assert script.text.startswith("/**\n* plotly.js v")


def test_an_unknown_asset_is_a_404(backend):
    with TestClient(create_api(backend)) as api:
        response = api.get("/assets/plotly-0.0.0/plotly.min.js")
        assert response.status_code == 404 and response.json()["message"].startswith("no such path")
