"""The pages people open in a browser render with no internet access: /docs, /redoc and an eval and a perf report,
opened in a real headless Chromium (Debian's) whose requests to anything but this machine fail."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Route, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.conftest import SAMPLES
from tests.integration.conftest import report_when_written

# ReDoc's bundle always shows Redocly's logo from Redocly's CDN in its menu's footer; offline, the logo hides itself.
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
# Each chart of evalscope's reports is a .plotly-graph-div, in which plotly.js draws .main-svg layers.
CHARTS = ".plotly-graph-div"
DRAWN_CHARTS = ".plotly-graph-div:has(.main-svg)"


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    if chromium is None:  # the tests run offline: installing is the README test command's first step, not theirs
        pytest.fail("chromium is not on PATH: install it first, as README.md's test command does")
    with sync_playwright() as playwright:
        # No host name resolves, as on an air-gapped cluster (visit() also refuses requests off this machine);
        # Playwright starts it without the sandbox, which Chromium refuses to use as root.
        browser = playwright.chromium.launch(
            executable_path=chromium, args=["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
        )
        yield browser
        browser.close()


@dataclass
class Visit:
    """What a page did: requests that failed (blocked, refused or answered >= 400) with why, uncaught script errors,
    and how many elements it ended with, by selector."""

    failed_requests: dict[str, str] = field(default_factory=dict)
    script_errors: list[str] = field(default_factory=list)
    elements: dict[str, int] = field(default_factory=dict)


def visit(browser: Browser, url: str, screenshot, rendered: str, *also_count: str) -> Visit:
    """Open `url` with every request off this machine refused, wait for `rendered` elements, take a screenshot and
    count the elements of `rendered` and `also_count`."""
    seen = Visit()
    page = browser.new_page()

    def only_this_machine(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            route.abort("internetdisconnected")

    page.route("**/*", only_this_machine)
    page.on("requestfailed", lambda request: seen.failed_requests.update({request.url: request.failure}))
    page.on("response", lambda response: response.status >= 400
            and seen.failed_requests.update({response.url: f"HTTP {response.status}"}))
    page.on("pageerror", lambda error: seen.script_errors.append(str(error)))
    try:
        page.goto(url, wait_until="networkidle")
        page.wait_for_selector(rendered, timeout=15_000)
    except PlaywrightTimeout:
        pass  # told by the counts below, with the screenshot to look at
    page.screenshot(path=screenshot, full_page=True)
    seen.elements = {selector: page.locator(selector).count() for selector in (rendered, *also_count)}
    page.close()
    return seen


@pytest.mark.parametrize("path,rendered,offsite", [
    ("/docs", ".swagger-ui .opblock", set()),  # a block per operation
    ("/redoc", ".api-content [data-section-id]", {REDOCLY_LOGO}),  # a section per operation, and per tag
], ids=["docs", "redoc"])
def test_api_docs_render_offline(service, browser, tmp_path, path, rendered, offsite):
    operations = sum(len(methods) for methods in service.get("/openapi.json").json()["paths"].values())
    seen = visit(browser, str(service.base_url.join(path)), tmp_path / "page.png", rendered)
    assert set(seen.failed_requests) == offsite and seen.script_errors == []
    assert seen.elements[rendered] >= operations > 0, f"the docs did not render, see {tmp_path / 'page.png'}"


def eval_job(simulator) -> dict:
    return {"model": "simulator", "api_url": simulator.base_url, "datasets": ["iquiz"], "limit": 2,
            "dataset_args": {"iquiz": {"local_path": str(SAMPLES / "iquiz")}}}


def perf_job(simulator) -> dict:
    return {"model": "simulator", "url": simulator.chat_url, "dataset_path": "perf/openqa.jsonl", "max_tokens": 4,
            "number": [4, 8], "parallel": [1, 2]}  # a sweep: its report also draws the metrics against the load


@pytest.mark.parametrize("kind,body", [("eval", eval_job), ("perf", perf_job)], ids=["eval", "perf"])
def test_job_reports_draw_their_charts_offline(service, simulator, browser, tmp_path, kind, body):
    job_id = service.post(f"/api/v1/{kind}?wait=false", json=body(simulator)).json()["job_id"]
    service.get(f"/api/v1/jobs/{job_id}/events")  # the stream ends with the job
    assert service.get(f"/api/v1/jobs/{job_id}").json()["status"] == "succeeded"
    report_when_written(service, job_id)
    report = str(service.base_url.join(f"/api/v1/jobs/{job_id}/report"))
    seen = visit(browser, report, tmp_path / "report.png", DRAWN_CHARTS, CHARTS)
    assert seen.failed_requests == {} and seen.script_errors == []
    assert seen.elements[DRAWN_CHARTS] == seen.elements[CHARTS] > 0, f"charts missing, see {tmp_path / 'report.png'}"
    if kind == "perf":
        assert 'id="chart-load-ttft"' in service.get(f"/api/v1/jobs/{job_id}/report").text
