"""One Ray + Serve instance for the whole integration session, reached through real HTTP."""

from __future__ import annotations

import contextlib
import shutil

import httpx
import pytest
import ray
from ray import serve

from serve_app import start_service
from serve_app.app import build_app
from tests.conftest import RAY_FOR_TESTS, SAMPLES, free_port, wait_until_healthy
from tests.integration.faulty_target import FaultyTarget


@pytest.fixture(scope="session")
def service(tmp_path_factory):
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
    )
    wait_until_healthy(f"{base}/health", 60)
    with httpx.Client(base_url=base, timeout=300) as client:
        client.root = root
        client.metrics_port = metrics_port
        client.datasets_root = datasets_root
        yield client
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def faulty():
    """A target that answers 500s, garbage or nothing, by path (tests/integration/faulty_target.py)."""
    return FaultyTarget()


@contextlib.contextmanager
def extra_app(service, name, root, token=None, **args):
    """A second application on the session's Serve instance, at /<name>, with an outputs root of its own under
    `root` (so a job manager and settings of its own); yields a client for it that sends `token`."""
    app = build_app({"outputs_root": str(root / "outputs"), "datasets_root": str(service.datasets_root),
                     "samples_root": str(SAMPLES), **args})
    serve.run(app, name=name, route_prefix=f"/{name}")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(base_url=f"{str(service.base_url).rstrip('/')}/{name}", headers=headers, timeout=300) as client:
            client.root = root
            yield client
    finally:
        serve.delete(name)
