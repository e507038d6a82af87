"""SIGTERM, what `docker stop` and Kubernetes send, stops the container's command as Ctrl-C does."""

import os
import signal
import subprocess

import httpx
import pytest

from tests.e2e.conftest import BIN, service_started

pytestmark = pytest.mark.slow

STOP_WITHIN_S = 30  # under the 30 s Kubernetes waits before SIGKILL (Docker waits 10 s: our runs take about 5)
# What a crash handler prints: Ray's native one ("*** SIGTERM received at time=...", "@ 0x7f..." frames), Python's.
DUMP_MARKERS = ("SIGTERM received", "@ 0x", "Fatal Python error", "Traceback (most recent call last)")


def test_sigterm_shuts_serve_down_and_exits_0_without_a_stack_dump(tmp_path):
    with service_started(tmp_path, [str(BIN / "evalscope-serve"), "run"]) as (client, process):
        os.kill(process.pid, signal.SIGTERM)
        try:
            status = process.wait(STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_WITHIN_S} s after SIGTERM")
        with pytest.raises(httpx.TransportError):  # Serve was shut down, not left behind on the cluster
            client.get("/health", timeout=5)
        output = (tmp_path / "serve.log").read_text(errors="replace")  # before the Ray head stops and adds its own
    assert status == 0, output[-3000:]
    assert not [marker for marker in DUMP_MARKERS if marker in output], output[-3000:]
    assert "Got KeyboardInterrupt, shutting down" in output, f"not serve run's Ctrl-C path: {output[-3000:]}"
