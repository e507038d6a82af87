"""End-to-end: the service started with `serve run` of configs/serve.yaml as a user would, and a real small model.

Nothing here reaches beyond what it started: the service gets a free port and a Ray head of its own, and stopping
them signals only their own process groups, so another Ray cluster or server on this machine is left alone."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest
import yaml

from tests.conftest import REPO, free_port, wait_until_healthy

BIN = Path(sys.executable).parent


@pytest.fixture(scope="package")  # stopped before the integration tests, not after every test
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


def stop_process_group(leader: subprocess.Popen, sig: signal.Signals, timeout_s: float) -> None:
    """Send `sig` to the process group `leader` started, wait for it, then kill what is left of the group."""
    with contextlib.suppress(ProcessLookupError):  # the group may be gone already
        os.killpg(leader.pid, sig)
    try:
        leader.wait(timeout_s)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader.pid, signal.SIGKILL)


@contextlib.contextmanager
def ray_head_of_its_own(workdir: Path, env: dict[str, str], log: IO[str], metrics_port: int) -> Iterator[str]:
    """A Ray head on free ports with its own temp dir (and address file), so `serve run` neither joins another
    cluster on this machine nor leaves one behind; yields its address."""
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray-e2e-")  # short: Ray's socket paths must fit in 107 bytes
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", f"--temp-dir={temp_dir}",
         f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
         f"--metrics-export-port={metrics_port}", "--include-dashboard=false", "--disable-usage-stats"],
        cwd=workdir,  # its workers start here, so the config's relative roots resolve as for a user in workdir
        # On SIGTERM a Ray head drains for up to 30 s first, for proxies of a cluster that lives on; this one's
        # service has stopped by then, and nothing here checks how its head stops.
        env={**env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop_process_group(head, signal.SIGTERM, 60)  # `ray start --block` stops every process it started
        shutil.rmtree(temp_dir, ignore_errors=True)


@contextlib.contextmanager
def service_started(workdir: Path, command: list[str]) -> Iterator[tuple[httpx.Client, subprocess.Popen]]:
    """`<command> --address <head> serve.yaml` of configs/serve.yaml (`serve run`, or `evalscope-serve run` as the
    container does) from `workdir`, so its outputs land there, on a free port; its output goes to workdir/serve.log.
    Yields a client of the service and the command's process, which is stopped with Ctrl-C at the end."""
    # The shipped samples where the config's relative samples_root finds them, as in the repository root.
    (workdir / "examples").symlink_to(REPO / "examples")
    port = free_port()
    config = yaml.safe_load((REPO / "configs" / "serve.yaml").read_text())
    config["http_options"].update(host="127.0.0.1", port=port)
    (workdir / "serve.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "SERVE_SOCKET_REUSE_PORT_ENABLED": "0"}
    metrics_port = free_port()
    with open(workdir / "serve.log", "w") as log, ray_head_of_its_own(workdir, env, log, metrics_port) as address:
        process = subprocess.Popen(
            [*command, "--address", address, str(workdir / "serve.yaml")],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until_healthy(f"http://127.0.0.1:{port}/health", 180, process)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
                health = client.get("/health").json()
                assert health["service"] == "evalscope" and process.poll() is None, f"not our service: {health}"
                client.workdir, client.metrics_port = workdir, metrics_port
                yield client, process
        finally:
            stop_process_group(process, signal.SIGINT, 60)  # serve run shuts Serve down on Ctrl-C


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`serve run` of configs/serve.yaml, as the README starts it."""
    with service_started(tmp_path_factory.mktemp("serve-run"), [str(BIN / "serve"), "run"]) as (client, _):
        yield client
