"""One Ray + Serve instance for the whole integration session, reached through real HTTP."""

from __future__ import annotations

import shutil

import httpx
import pytest
import ray
from ray import serve

from serve_app.app import build_app
from tests.conftest import SAMPLES, free_port, wait_until_healthy


@pytest.fixture(scope="session")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("service")
    datasets_root = root / "datasets"
    datasets_root.mkdir()
    shutil.copytree(SAMPLES / "perf", datasets_root / "perf")
    port = free_port()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(
        build_app({"outputs_root": str(root / "outputs"), "datasets_root": str(datasets_root)}),
        name="evalscope",
        route_prefix="/",
    )
    base = f"http://127.0.0.1:{port}"
    wait_until_healthy(f"{base}/health", 60)
    with httpx.Client(base_url=base, timeout=300) as client:
        client.root = root
        client.datasets_root = datasets_root
        yield client
    serve.shutdown()
    ray.shutdown()
