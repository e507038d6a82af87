"""The CLI as a pipeline runs it, against the real service: gates and exit codes, JUnit XML and the run page summary,
--json, --no-wait, the signals CI runners stop a step with, --wait-timeout."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from xml.etree import ElementTree

import pytest

from tests.conftest import SAMPLES, SimulatorProcess, assert_valid_junit


def cli(service, *args, **options):
    """Run to its end."""
    return subprocess.run(_command(service, args), capture_output=True, text=True, timeout=300, **options)


def start_cli(service, *args, **options):
    return subprocess.Popen(_command(service, args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **options)


def _command(service, args):
    return [sys.executable, "-m", "serve_app.cli", *args, "--server", str(service.base_url)]


def eval_args(simulator, *extra):
    return ("eval", "--model", "simulator", "--api-url", simulator.base_url, "--datasets", "iquiz", "--limit", "2",
            "--dataset-args", json.dumps({"iquiz": {"local_path": str(SAMPLES / "iquiz")}}), *extra)


def perf_args(simulator, *extra):
    return ("perf", "--model", "simulator", "--url", simulator.chat_url, "--dataset-path", "perf/openqa.jsonl",
            "--max-tokens", "4", *extra)


def test_a_gate_that_holds_exits_0_and_one_that_fails_exits_2_saying_by_how_much(service, simulator):
    passing = cli(service, *eval_args(simulator, "--min-score", "iquiz=0.7"))
    assert passing.returncode == 0, passing.stderr
    assert "iquiz" in passing.stdout and "1.0000" in passing.stdout
    failing = cli(service, *perf_args(simulator, "--number", "20", "--parallel", "2", "--max", "TTFT (ms)@99%=0.001",
                                      "--min", "Req Throughput (req/s)=1"))
    assert failing.returncode == 2, failing.stderr
    assert "gate failed: parallel_2_number_20: TTFT (ms)@99% = " in failing.stderr
    assert "above the maximum 0.001 by" in failing.stderr
    assert "Req Throughput" not in failing.stderr  # the gate that held is not reported
    assert "TTFT p99 ms" in failing.stdout  # the summary table


def test_gates_become_junit_test_cases_and_a_summary_on_the_run_page(service, simulator, tmp_path):
    summary = tmp_path / "step-summary.md"
    perf = cli(service, *perf_args(simulator, "--number", "10", "20", "--parallel", "1", "2",
                                   "--max", "TTFT (ms)@99%=0.001", "--min", "Req Throughput (req/s)=0.1",
                                   "--junit-xml", str(tmp_path / "perf.xml")),
               env={**os.environ, "GITHUB_STEP_SUMMARY": str(summary)})
    assert perf.returncode == 2, perf.stderr
    job_id = perf.stderr.split()[1]
    job = service.get(f"/api/v1/jobs/{job_id}").json()
    report = (tmp_path / "perf.xml").read_bytes()
    assert_valid_junit(report)
    suite = ElementTree.fromstring(report).find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("5", "2", "0")
    job_url = f"{str(service.base_url).rstrip('/')}/api/v1/jobs/{job_id}"
    assert {p.get("name"): p.get("value") for p in suite.iter("property")}["job_url"] == job_url
    job_case, *gate_cases = suite.iter("testcase")
    assert job_case.get("name") == "job succeeded" and job_case.find("failure") is None
    for case in gate_cases:  # one per gate and test point, with the value the result holds
        gate, point = case.get("name").split(" at ")
        measured = case.find("system-out").text
        if gate.startswith("TTFT"):
            ttft = next(r for r in job["result"]["results"][point]["percentiles"] if r["Percentiles"] == "99%")
            assert measured.startswith(f"measured {ttft['TTFT (ms)']:.6g}; limit <= 0.001; margin -")
            assert "above the maximum 0.001 by" in case.find("failure").get("message")
        else:
            throughput = job["result"]["results"][point]["metrics"]["Req Throughput (req/s)"]
            assert measured == f"measured {throughput:.6g}; limit >= 0.1; margin {throughput - 0.1:+.6g}"
            assert case.find("failure") is None
    assert {case.get("name") for case in gate_cases} == {
        f"{gate} at {point}" for gate in ("TTFT (ms)@99% <= 0.001", "Req Throughput (req/s) >= 0.1")
        for point in ("parallel_1_number_10", "parallel_2_number_20")}

    passing = cli(service, *eval_args(simulator, "--min-score", "iquiz=0.7", "--summary-md", str(summary)))
    assert passing.returncode == 0, passing.stderr
    eval_id = passing.stderr.split()[1]
    page = summary.read_text()  # both steps' sections, the perf one first
    assert page.index("### ❌ evalscope-serve perf `simulator`: 2 of 4 gate checks failed") < page.index(
        "### ✅ evalscope-serve eval `simulator`: passed, 1 of 1 gate checks held")
    assert f"Job [`{job_id}`]({job_url}) ([report]({job_url}/report)): succeeded after" in page
    assert "| test point | requests | failed | req/s |" in page and "| parallel_2_number_20 | 20 | 0 |" in page
    assert "| TTFT (ms)@99% | parallel_1_number_10 |" in page and "| <= 0.001 | -" in page and "❌ fail |" in page
    assert "| iquiz | 1.0000 |" in page and "| iquiz |  | 1 | >= 0.7 | +0.3 | ✅ pass |" in page
    assert f"Job [`{eval_id}`]" in page


def test_json_output_is_the_job_result(service, simulator):
    run = cli(service, *perf_args(simulator, "--number", "10", "--parallel", "2", "--json"))
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    job_id = run.stderr.split()[1]
    assert document == service.get(f"/api/v1/jobs/{job_id}").json()["result"]
    assert document["results"]["parallel_2_number_10"]["metrics"]["Total Requests"] == 10


def test_no_wait_prints_the_job_id_then_jobs_show_and_list_find_it(service, simulator):
    run = cli(service, *perf_args(simulator, "--number", "10", "--no-wait"))
    assert run.returncode == 0, run.stderr
    job_id = run.stdout.strip()
    assert job_id.startswith("job-")
    shown = cli(service, "jobs", "show", job_id)
    assert shown.returncode == 0 and json.loads(shown.stdout)["job_id"] == job_id
    listed = cli(service, "jobs", "list", "--kind", "perf")
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:5] == ["job", "kind", "status", "model", "owner"]
    assert any(row.split()[0] == job_id and row.split()[4] == "default" for row in rows), listed.stdout


TERMINAL = {"succeeded", "failed", "cancelled", "interrupted"}
STOP_BOUND_S = 15  # the CLI's cancel bound (5 s), the service's answer and a loaded machine's slack


@contextmanager
def following_a_long_perf_job(service, target, *extra, **popen):
    """The CLI following a perf job that would run for hours, once the target gets its traffic. Whatever the test
    did, neither the CLI nor the job outlives it."""
    process = start_cli(service, *perf_args(target, "--number", "200000", "--parallel", "2", *extra), **popen)
    job_id = None
    try:
        line = process.stderr.readline()
        assert line.startswith("job "), line
        job_id = line.split()[1]
        deadline = time.monotonic() + 60
        while target.requests_received() < 20:
            assert time.monotonic() < deadline, "no traffic reached the target"
            time.sleep(0.2)
        yield process, job_id
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        if job_id and service.get(f"/api/v1/jobs/{job_id}").json()["status"] not in TERMINAL:
            service.post(f"/api/v1/jobs/{job_id}/cancel")


def assert_traffic_stopped(target):
    time.sleep(1)  # what was on the wire when the job's processes ended reaches a busy target late
    received = target.requests_received()
    time.sleep(2)
    assert target.requests_received() == received


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("sigint_at_start", [signal.SIG_DFL, signal.SIG_IGN], ids=["default", "SIGINT-ignored"])
def test_a_signal_while_waiting_cancels_the_job_and_the_traffic_stops(service, signum, sigint_at_start):
    """As CI runners stop a step: SIGTERM, or SIGINT, to a CLI that may have started with SIGINT ignored (a step
    launched in the background by a non-interactive shell)."""
    with SimulatorProcess() as target, following_a_long_perf_job(
        service, target, preexec_fn=lambda: signal.signal(signal.SIGINT, sigint_at_start)
    ) as (process, job_id):
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=STOP_BOUND_S)
        assert service.get(f"/api/v1/jobs/{job_id}").json()["status"] == "cancelled", stderr
        assert_traffic_stopped(target)
        assert process.returncode == 128 + signum, stderr
        assert f"interrupted by {signum.name}: job {job_id} cancelled" in stderr


def test_a_job_still_running_at_the_wait_timeout_is_cancelled_and_the_cli_exits_4(service, tmp_path):
    with SimulatorProcess() as target:
        started = time.monotonic()
        run = cli(service, *perf_args(target, "--number", "200000", "--parallel", "2", "--wait-timeout", "10",
                                      "--max", "TTFT (ms)@99%=500", "--junit-xml", str(tmp_path / "perf.xml")))
        assert run.returncode == 4, run.stderr
        assert time.monotonic() - started < 10 + STOP_BOUND_S
        job_id = run.stderr.split()[1]
        assert f"--wait-timeout 10 s reached: job {job_id} cancelled" in run.stderr
        assert service.get(f"/api/v1/jobs/{job_id}").json()["status"] == "cancelled"
        assert target.requests_received() > 0
        assert_traffic_stopped(target)
    report = (tmp_path / "perf.xml").read_bytes()
    assert_valid_junit(report)
    job_case, gate_case = ElementTree.fromstring(report).iter("testcase")
    assert job_case.find("failure").get("message") == "--wait-timeout 10 s reached; job cancelled: " + \
        service.get(f"/api/v1/jobs/{job_id}").json()["error"]
    assert gate_case.get("name") == "TTFT (ms)@99% <= 500"
    assert gate_case.find("skipped").get("message") == "not checked: --wait-timeout 10 s reached; job cancelled"


def test_unreachable_server_is_a_usage_error_after_the_retries_asked_for(simulator):
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "serve_app.cli", "jobs", "list", "--server", "http://127.0.0.1:9",
                          "--http-retries", "1"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 3 and "cannot reach" in run.stderr
    assert time.monotonic() - started < 15  # one retry after 1 s, not the default's 30 s of them


def test_a_misspelt_benchmark_exits_3_naming_the_one_meant_and_submits_nothing(service, simulator):
    model = f"misspelt-{uuid.uuid4().hex[:8]}"
    run = cli(service, "eval", "--model", model, "--api-url", simulator.base_url, "--datasets", "iquiz", "gsm8kk")
    assert run.returncode == 3
    assert "the service has no benchmark 'gsm8kk': did you mean gsm8k" in run.stderr  # the closest first
    assert service.get("/api/v1/jobs", params={"model": model}).json()["total"] == 0


def test_the_benchmarks_command_lists_what_runs_here_and_says_why_the_rest_does_not(service):
    runnable = cli(service, "benchmarks")
    assert runnable.returncode == 0, runnable.stderr
    names = {line.split()[0] for line in runnable.stdout.splitlines()[2:]}
    assert {"gsm8k", "iquiz", "ceval"} <= names and "humaneval" not in names  # code execution, no sandbox here
    everything = cli(service, "benchmarks", "--all")
    assert "humaneval: dataset 'humaneval' executes the code the model writes" in everything.stdout
