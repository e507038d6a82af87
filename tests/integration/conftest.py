"""One Ray + Serve instance for the whole integration session, reached through real HTTP."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import ray
from ray import serve
from ray.util.placement_group import placement_group_table

from serve_app import start_service
from serve_app.app import build_app
from serve_app.config import ServiceArgs
from serve_app.jobs.actor import job_manager
from serve_app.perf.placement import placement_name
from tests.conftest import RAY_FOR_TESTS, SAMPLES, free_port, wait_until_healthy
from tests.integration.browser import launch_chromium
from tests.integration.faulty_target import FaultyTarget

# Where the browser tests' screenshots go: this variable's directory, or one under pytest's basetemp.
SCREENSHOTS_ENV = "UI_SCREENSHOTS_DIR"


@pytest.fixture(scope="package")
def service(tmp_path_factory):
    """Per package, not per session: the cluster stops with the last integration test, not after the unit tests
    that follow them (its idle processes took a fifth of a core meanwhile)."""
    root = tmp_path_factory.mktemp("service")
    datasets_root = root / "datasets"
    datasets_root.mkdir()
    shutil.copytree(SAMPLES / "perf", datasets_root / "perf")
    metrics_port = free_port()
    base = start_service(
        host="127.0.0.1",
        port=free_port(),
        ray_init={**RAY_FOR_TESTS, "_metrics_export_port": metrics_port},
        outputs_root=str(root / "outputs"),
        datasets_root=str(datasets_root),
        samples_root=str(SAMPLES),
        max_running_jobs=2,
        max_queued_jobs=3,
        progress_interval_s=0.5,
        # One warm shard and one warm job worker: their idle 0.75 CPU leaves room on the 2-CPU test cluster for a
        # second application's jobs (see second_application).
        warm_workers=1,
    )
    wait_until_healthy(f"{base}/health", 60)
    with httpx.Client(base_url=base, timeout=300) as client:
        client.root = root
        client.metrics_port = metrics_port
        client.datasets_root = datasets_root
        yield client
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium, unable to reach anything off this machine (tests/integration/browser.py). Per
    module, not per session: Playwright's sync API keeps an event loop running in the main thread while it is open,
    and every later asyncio.run() in the tests would fail."""
    yield from launch_chromium()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory, pytestconfig) -> Path:
    """A directory for screenshots of the pages the browser tests open, named at the end of the test output."""
    directory = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path_factory.getbasetemp() / "ui-screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    pytestconfig.stash[_SCREENSHOTS] = directory
    return directory


_SCREENSHOTS = pytest.StashKey[Path]()


def pytest_terminal_summary(terminalreporter, config):
    if _SCREENSHOTS in config.stash:
        terminalreporter.write_line(f"screenshots of the web UI: {config.stash[_SCREENSHOTS]} (${SCREENSHOTS_ENV} "
                                    "sets another directory)")


@pytest.fixture(scope="session")
def faulty():
    """A target that answers 500s, garbage or nothing, by path (tests/integration/faulty_target.py)."""
    return FaultyTarget()


@contextmanager
def second_application(name: str, **args) -> Iterator[str]:
    """The service deployed again beside the first, at /<name>, with these ServiceArgs: an outputs root of its own
    gives it its own job manager, so its jobs and limits are unaffected by whatever the first one runs. It keeps no
    warm workers unless asked: the first application's idle ones already hold 0.75 of the test cluster's 2 CPUs."""
    args = {"warm_workers": 0, **args}
    serve.run(build_app(args), name=name, route_prefix=f"/{name}")
    try:
        yield f"/{name}"
    finally:
        serve.delete(name)
        ray.kill(job_manager(ServiceArgs(**args)))  # detached: it would outlive the application


def report_when_written(service, job_id: str, timeout_s: float = 60) -> httpx.Response:
    """A succeeded job's HTML report: a perf job's follows its result within seconds, and says so meanwhile."""
    deadline = time.monotonic() + timeout_s
    while (report := service.get(f"/api/v1/jobs/{job_id}/report")).status_code == 404:
        assert "still being written" in report.json()["message"] and time.monotonic() < deadline, report.text
        time.sleep(0.5)
    return report


def placement_states(job: dict) -> set[str]:
    """The states of the placement groups of a perf job's test points (named after its run directory)."""
    prefix = placement_name(Path(job["output_dir"]), "")
    return {group["state"] for group in placement_group_table().values() if group["name"].startswith(prefix)}
