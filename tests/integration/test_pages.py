"""The API docs people open in a browser render with no internet access: /docs and /redoc, opened in a real headless
Chromium (Debian's) whose requests to anything but this machine fail. The job reports are drawn offline in the web
UI's job page (test_ui.py: a perf report; test_compare.py: an eval report)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.integration.browser import Visit, offline_page

# ReDoc's bundle always shows Redocly's logo from Redocly's CDN in its menu's footer; offline, the logo hides itself.
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def visit(browser: Browser, url: str, screenshot, rendered: str) -> Visit:
    """Open `url` offline, wait for `rendered` elements, take a screenshot and count them."""
    page, seen = offline_page(browser)
    try:
        page.goto(url, wait_until="networkidle")
        page.wait_for_selector(rendered, timeout=15_000)
    except PlaywrightTimeout:
        pass  # told by the count below, with the screenshot to look at
    page.screenshot(path=screenshot, full_page=True)
    seen.elements = {rendered: page.locator(rendered).count()}
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
