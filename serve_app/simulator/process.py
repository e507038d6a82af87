"""Run the simulator in its own process, as `evalscope-serve simulate` would: for tests, demos and benchmarks."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(url: str, timeout_s: float, process: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers 200; fail early if `process` exits first."""
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


class SimulatorProcess:
    """`evalscope-serve simulate` on a free port; options are the CLI's (ttft_ms, itl_ms, output_tokens, model)."""

    def __init__(self, **options: float | str) -> None:
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
        return self.stats()["requests_total"]

    def stats(self) -> dict:
        """requests_total, requests_in_flight, how many requests carried each top-level body field (body_fields)
        and each header (headers, by lower-case name), and how many chat requests carried n messages (chat_lengths,
        keyed by n as a string)."""
        return httpx.get(f"http://127.0.0.1:{self.port}/stats").json()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
