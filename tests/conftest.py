"""Shared test helpers: free ports, and target servers started as separate processes like a user would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "examples" / "datasets"

# Ray in tests: no auth prompt, no dashboard, no port sharing with another Serve instance on this machine.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("SERVE_SOCKET_REUSE_PORT_ENABLED", "0")
# A private local cluster; 2 logical CPUs so fractional tasks and shards fit without deadlocking.
RAY_FOR_TESTS = {"address": "local", "num_cpus": 2, "include_dashboard": False, "log_to_driver": False}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(url: str, timeout_s: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


class Simulator:
    """The project's OpenAI-compatible simulator in its own process (`evalscope-serve simulate`)."""

    def __init__(self, **options: float) -> None:
        self.port = free_port()
        flags = [f"--{name.replace('_', '-')}={value}" for name, value in options.items()]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "serve_app.cli", "simulate", "--port", str(self.port), *flags],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.chat_url = f"{self.base_url}/chat/completions"
        wait_until_healthy(f"http://127.0.0.1:{self.port}/health", 30, self.process)

    def requests_received(self) -> int:
        return httpx.get(f"http://127.0.0.1:{self.port}/stats").json()["requests_total"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="session")
def simulator():
    sim = Simulator()
    yield sim
    sim.stop()
