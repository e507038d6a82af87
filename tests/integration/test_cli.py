"""The CLI as a pipeline runs it, against the real service: gates and exit codes, --json, --no-wait, Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time

from tests.conftest import SAMPLES


def cli(service, *args, **popen):
    command = [sys.executable, "-m", "serve_app.cli", *args, "--server", str(service.base_url)]
    if popen:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


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


def test_ctrl_c_while_waiting_cancels_the_job(service, simulator):
    process = cli(service, *perf_args(simulator, "--number", "200000", "--parallel", "2"), env=os.environ)
    job_id = None
    deadline = time.monotonic() + 60
    while job_id is None and time.monotonic() < deadline:
        line = process.stderr.readline()
        if line.startswith("job "):
            job_id = line.split()[1]
    while service.get(f"/api/v1/jobs/{job_id}").json()["progress"]["done"] < 20:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr
    assert f"interrupted: job {job_id} cancelled" in stderr
    assert service.get(f"/api/v1/jobs/{job_id}").json()["status"] == "cancelled"


def test_unreachable_server_is_a_usage_error(simulator):
    run = subprocess.run([sys.executable, "-m", "serve_app.cli", "jobs", "list", "--server", "http://127.0.0.1:9"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 3 and "cannot reach" in run.stderr
