"""Debian's headless Chromium, driven by Playwright, with no way off this machine (as on an air-gapped cluster), and
what a page did there: requests that failed and uncaught script errors."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

# Playwright's 5 s default is short for a page that waits on the service while a 2-core box runs Ray beside it.
expect.set_options(timeout=15_000)
# plotly.js (3.5 MB) may take longer still to load and draw.
CHART_TIMEOUT_MS = 30_000
# evalscope's report charts: plotly.js draws .main-svg layers into each .plotly-graph-div.
REPORT_CHARTS = ".plotly-graph-div"
DRAWN_REPORT_CHARTS = ".plotly-graph-div:has(.main-svg)"


def launch_chromium():
    """Yields a Browser whose host names never resolve (visit() also refuses requests off this machine)."""
    chromium = shutil.which("chromium")
    if chromium is None:  # the tests run offline: installing is the README test command's first step, not theirs
        pytest.fail("chromium is not on PATH: install it first, as README.md's test command does")
    with sync_playwright() as playwright:
        # Playwright starts it without the sandbox, which Chromium refuses to use as root.
        browser = playwright.chromium.launch(
            executable_path=chromium, args=["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
        )
        yield browser
        browser.close()


@dataclass
class Visit:
    """What a page did: requests that failed (blocked, refused or answered >= 400) with why, uncaught script errors,
    and how many elements it ended with, by selector (when counted)."""

    failed_requests: dict[str, str] = field(default_factory=dict)
    script_errors: list[str] = field(default_factory=list)
    elements: dict[str, int] = field(default_factory=dict)


def offline_page(browser: Browser) -> tuple[Page, Visit]:
    """A new page whose every request off this machine is refused, and the Visit it records."""
    seen = Visit()
    page = browser.new_page(viewport={"width": 1280, "height": 900})

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
    return page, seen


def status_of(page: Page):
    """The status badge of the web UI's job page."""
    return page.locator(".page-head h1 .badge")


def expect_report_drawn(page: Page, screenshot: Path) -> None:
    """The web UI's job page has evalscope's report embedded, every one of its charts drawn by the service's
    plotly.js; a screenshot of the window shows it (a full-page one leaves the frame blank)."""
    report = page.frame_locator("iframe.report")
    expect(report.locator(DRAWN_REPORT_CHARTS).first).to_be_visible(timeout=60_000)
    # The report's scripts add charts as they run: done when every chart is drawn, twice in a row.
    deadline, counts = time.monotonic() + 30, []
    while True:
        counts.append((report.locator(REPORT_CHARTS).count(), report.locator(DRAWN_REPORT_CHARTS).count()))
        charts, drawn = counts[-1]
        if charts == drawn > 0 and counts[-2:-1] == [counts[-1]]:
            break
        assert time.monotonic() < deadline, f"(charts, drawn) went {counts}"
        time.sleep(0.25)
    page.locator("iframe.report").scroll_into_view_if_needed()
    page.screenshot(path=screenshot)
