"""End-to-end: the service started with `serve run configs/serve.yaml` as a user would, and a real small model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, free_port, wait_until_healthy

SERVE_PORT = 9000  # the port configs/serve.yaml declares


@pytest.fixture(scope="session")
def smollm2():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("llama_server.py")), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until_healthy(f"http://127.0.0.1:{port}/v1/models", 60, process)
    yield f"http://127.0.0.1:{port}/v1"
    process.terminate()
    process.wait(20)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`serve run configs/serve.yaml`, started from a scratch directory so its outputs land there."""
    workdir = tmp_path_factory.mktemp("serve-run")
    # The shipped samples where the config's relative samples_root finds them, as in the repository root.
    (workdir / "examples").symlink_to(REPO / "examples")
    log = open(workdir / "serve.log", "w")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "SERVE_SOCKET_REUSE_PORT_ENABLED": "0"}
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("serve")), "run", str(REPO / "configs" / "serve.yaml")],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until_healthy(f"http://127.0.0.1:{SERVE_PORT}/health", 180, process)
        with httpx.Client(base_url=f"http://127.0.0.1:{SERVE_PORT}", timeout=600) as client:
            client.workdir = workdir
            yield client
    finally:
        os.killpg(process.pid, signal.SIGINT)  # serve run shuts its cluster down on Ctrl-C
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        subprocess.run([str(Path(sys.executable).with_name("ray")), "stop", "--force"], capture_output=True)
        log.close()
