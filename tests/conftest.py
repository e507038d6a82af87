"""Shared test helpers: free ports, and target servers started as separate processes like a user would."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from serve_app.simulator.process import SimulatorProcess, free_port, wait_until_healthy

__all__ = ["REPO", "SAMPLES", "RAY_FOR_TESTS", "SimulatorProcess", "assert_valid_junit", "free_port",
           "wait_until_healthy"]

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "examples" / "datasets"
JUNIT_XSD = Path(__file__).with_name("junit-10.xsd")

# The CLI appends a summary to $GITHUB_STEP_SUMMARY: never to the run page of a CI that runs these tests. The
# tests of that summary set it themselves.
os.environ.pop("GITHUB_STEP_SUMMARY", None)

# Ray in tests: no auth prompt, no dashboard, no port sharing with another Serve instance on this machine.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("SERVE_SOCKET_REUSE_PORT_ENABLED", "0")
# A private local cluster; 2 logical CPUs so fractional tasks and shards fit without deadlocking; metrics
# reported every second (Ray's default is 10 s) so the Prometheus test needs not wait long.
RAY_FOR_TESTS = {
    "address": "local",
    "num_cpus": 2,
    "include_dashboard": False,
    "log_to_driver": False,
    "_system_config": {"metrics_report_interval_ms": 1000},
}


@pytest.fixture(scope="session")
def smollm_tokenizer(tmp_path_factory) -> Path:
    """SmolLM2's tokenizer directory (tests/smollm_tokenizer.py), built once a session: reading the vocabulary out
    of the GGUF file takes seconds. Tests that stage it for a service copy it."""
    from tests.smollm_tokenizer import write_smollm_tokenizer

    return write_smollm_tokenizer(tmp_path_factory.mktemp("smollm2"))


@pytest.fixture(scope="session")
def simulator():
    with SimulatorProcess() as sim:
        yield sim


def assert_valid_junit(document: bytes) -> None:
    """Valid against the JUnit XML schema that Jenkins' xUnit plugin and pytest use (tests/junit-10.xsd)."""
    from lxml import etree

    etree.XMLSchema(etree.parse(str(JUNIT_XSD))).assertValid(etree.fromstring(document))
