"""Asynchronous jobs through real HTTP on Ray Serve: submit, follow, cancel, restart, idempotency, admission."""

import asyncio
import json
import threading
import time
import uuid

import httpx
import pytest
import ray
from ray import serve

from serve_app.admission import admit_perf
from serve_app.app import build_app
from serve_app.config import ServiceArgs
from serve_app.jobs.actor import job_manager
from serve_app.perf.service import cluster_cpus
from serve_app.principals import ANONYMOUS
from serve_app.schemas import PerfRequest
from tests.conftest import SAMPLES, SimulatorProcess
from tests.integration.conftest import placement_states, report_when_written, second_application

TERMINAL = {"succeeded", "failed", "cancelled", "interrupted"}


def perf_body(simulator, **fields):
    return {"model": "simulator", "url": simulator.chat_url, "dataset_path": "perf/openqa.jsonl", "max_tokens": 4,
            **fields}


def wait_for(service, job_id, statuses, timeout=120, prefix=""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = service.get(f"{prefix}/api/v1/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} never reached {statuses}: {job}")


def test_async_eval_gives_the_synchronous_result_shape(service, simulator):
    body = {"model": "simulator", "api_url": simulator.base_url, "datasets": ["iquiz"], "limit": 2,
            "dataset_args": {"iquiz": {"local_path": str(SAMPLES / "iquiz")}}}
    accepted = service.post("/api/v1/eval?wait=false", json=body)
    assert accepted.status_code == 202
    job = wait_for(service, accepted.json()["job_id"], TERMINAL)
    assert job["status"] == "succeeded", job
    assert job["result"]["status"] == "success" and job["result"]["scores"] == {"iquiz": 1.0}
    assert job["progress"]["done"] == job["progress"]["total"] > 0
    report = service.get(f"/api/v1/jobs/{job['job_id']}/report")
    assert report.status_code == 200 and "<html" in report.text.lower()
    archive = service.get(f"/api/v1/jobs/{job['job_id']}/artifacts")
    assert archive.status_code == 200 and archive.content[:2] == b"PK"


def test_perf_events_arrive_in_order_and_end_with_the_job(service, simulator):
    # 2 s of traffic: a running phase that progress reports and events (every 0.5 s) cannot miss.
    accepted = service.post("/api/v1/perf", json=perf_body(simulator, number=300, parallel=4, shards=2, rate=150),
                            headers={"Prefer": "respond-async"})
    assert accepted.status_code == 202
    events = []
    with service.stream("GET", f"/api/v1/jobs/{accepted.json()['job_id']}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    order = {"queued": 0, "running": 1, "succeeded": 2}
    assert [order[e["status"]] for e in events] == sorted(order[e["status"]] for e in events)
    assert events[-1]["status"] == "succeeded"
    done = [e["progress"]["done"] for e in events]
    assert done == sorted(done) and done[-1] == 300
    # The phases say why done stays 0 at first: workers start and request bodies are built before anything is sent.
    phase_order = ["queued", "preparing", "running", "reporting", "done"]
    phases = [phase_order.index(e["progress"]["phase"]) for e in events]
    assert phases == sorted(phases) and phases[-1] == 4, events
    assert {"preparing", "running"} <= {e["progress"]["phase"] for e in events}, events
    assert events[0]["progress"]["total"] == 300  # known before the run starts, never 0/0
    job = service.get(f"/api/v1/jobs/{accepted.json()['job_id']}").json()
    assert job["result"]["results"]["parallel_4_number_300"]["metrics"]["Total Requests"] == 300
    # The result is there as soon as it is merged; the HTML report follows within seconds, and says so meanwhile.
    report = report_when_written(service, job["job_id"])
    assert report.status_code == 200 and "<html" in report.text.lower()
    log = service.get(f"/api/v1/jobs/{job['job_id']}/log").json()
    assert [line.split(" ", 2)[2] for line in log["lines"]][:2] == ["submitted perf job for model simulator", "started"]


def test_cancel_stops_the_traffic_within_seconds(service):
    with SimulatorProcess() as target:  # a target of its own: only this job's requests reach it
        accepted = service.post("/api/v1/perf?wait=false", json=perf_body(target, number=200000, parallel=4))
        job_id = accepted.json()["job_id"]
        wait_for(service, job_id, {"running"})
        deadline = time.monotonic() + 60
        while service.get(f"/api/v1/jobs/{job_id}").json()["progress"]["done"] < 50:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        cancelled = service.post(f"/api/v1/jobs/{job_id}/cancel").json()
        assert cancelled["status"] == "cancelled"
        assert placement_states(cancelled) == {"REMOVED"}  # its shards' CPUs are free again
        time.sleep(1.0)
        settled = target.requests_received()
        time.sleep(2.0)
        assert target.requests_received() == settled  # nothing reaches the target after cancel
    again = service.post(f"/api/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert again.json()["message"] == f"job {job_id} already ended (cancelled)"


def test_idempotent_resubmission_returns_the_same_job(service, simulator):
    key = str(uuid.uuid4())
    body = perf_body(simulator, number=5, model=f"idem-{key}")
    first = service.post("/api/v1/perf", json=body, headers={"Idempotency-Key": key})
    second = service.post("/api/v1/perf", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    jobs = service.get("/api/v1/jobs", params={"model": f"idem-{key}"}).json()
    assert jobs["total"] == 1
    other = service.post("/api/v1/perf", json={**body, "number": 6}, headers={"Idempotency-Key": key})
    assert other.status_code == 409
    assert other.json()["message"] == (
        f"Idempotency-Key {key!r} was used for another request (job {jobs['jobs'][0]['job_id']})"
    )


def test_full_service_answers_429_and_concurrent_clients_are_all_accounted_for(service, simulator, tmp_path):
    # An application of its own, so jobs other tests left running take none of its 2 running and 3 queued places.
    limits = {"outputs_root": str(tmp_path / "outputs"), "datasets_root": str(service.datasets_root),
              "max_running_jobs": 2, "max_queued_jobs": 3}
    outcomes = []

    def client(prefix, i):
        body = perf_body(simulator, number=20000, parallel=2)
        with httpx.Client(base_url=str(service.base_url), timeout=120) as http:
            response = http.post(f"{prefix}/api/v1/perf?wait=false", json=body,
                                 headers={"Idempotency-Key": f"crowd-{i}"})
            outcomes.append((response.status_code, response.headers.get("retry-after"), response.json()))

    with second_application("crowd", **limits) as prefix:
        threads = [threading.Thread(target=client, args=(prefix, i)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        accepted = [body["job_id"] for code, _, body in outcomes if code == 202]
        rejected = [(code, retry, body["message"]) for code, retry, body in outcomes if code != 202]
        assert len(accepted) + len(rejected) == 20
        assert len(accepted) == 5  # 2 running + 3 queued
        assert all(code == 429 and retry == "5" and message.startswith("the service is full")
                   for code, retry, message in rejected), outcomes
        listed = service.get(f"{prefix}/api/v1/jobs", params={"limit": 100}).json()
        assert sorted(job["job_id"] for job in listed["jobs"]) == sorted(accepted)
        cancelled = [service.post(f"{prefix}/api/v1/jobs/{job_id}/cancel").json()["status"] for job_id in accepted]
        assert cancelled == ["cancelled"] * 5


def test_a_redeploy_with_new_settings_reaches_the_job_manager_and_keeps_its_jobs(service, simulator, tmp_path):
    settings = {"outputs_root": str(tmp_path / "outputs"), "datasets_root": str(service.datasets_root),
                "max_running_jobs": 1}
    slow = perf_body(simulator, number=100_000, parallel=1, rate=2)  # runs until cancelled
    with second_application("redeployed", **settings) as prefix:
        first, second = (service.post(f"{prefix}/api/v1/perf?wait=false", json=slow).json()["job_id"]
                         for _ in range(2))
        assert wait_for(service, second, {"queued"}, prefix=prefix)["status"] == "queued"
        serve.run(build_app({**settings, "max_running_jobs": 2}), name="redeployed", route_prefix=prefix)
        # The queued job starts under the new limit; the running one was never interrupted.
        assert wait_for(service, second, {"running"}, prefix=prefix)["status"] == "running"
        assert service.get(f"{prefix}/api/v1/jobs/{first}").json()["status"] == "running"
        for job_id in (first, second):
            assert service.post(f"{prefix}/api/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"


def test_a_redeploy_with_new_code_takes_the_queue_over_and_lets_the_running_job_finish(service, simulator,
                                                                                         tmp_path):
    settings = {"outputs_root": str(tmp_path / "outputs"), "datasets_root": str(service.datasets_root),
                "max_running_jobs": 1}
    args = ServiceArgs(**settings)
    old = job_manager(args, version="earlier-code")  # the manager an earlier deploy of other code started

    def submit_to_old(**fields):
        request = PerfRequest(**perf_body(simulator, **fields))
        plan = asyncio.run(admit_perf(request, args, cluster_cpus(args)))
        return ray.get(old.submit.remote(request, plan, None, ANONYMOUS))[0].id

    finished = submit_to_old(number=3)
    finished_job = ray.get(old.wait.remote(finished, ANONYMOUS))
    # About 12 s of traffic: it must still run once the new application is deployed (seconds on a busy machine).
    running = submit_to_old(number=72, parallel=1, rate=6)
    queued = [submit_to_old(number=3) for _ in range(2)]
    try:
        with second_application("newcode", **{**settings, "max_running_jobs": 2}) as prefix:
            ended = {job_id: wait_for(service, job_id, TERMINAL, prefix=prefix) for job_id in [running, *queued]}
            assert {job_id: job["status"] for job_id, job in ended.items()} == dict.fromkeys(ended, "succeeded")
            # The new limit of 2 let a queued job start beside the job the old manager still ran.
            assert ended[queued[0]]["started_at"] < ended[running]["finished_at"]
            listed = service.get(f"{prefix}/api/v1/jobs", params={"status": "succeeded"}).json()["jobs"]
            assert [job for job in listed if job["job_id"] == finished] == [
                service.get(f"{prefix}/api/v1/jobs/{finished}").json()]
            assert ray.get(old.retired.remote())
            # A replica of the old deployment still calling the old manager reaches the new one.
            forwarded = submit_to_old(number=2)
            assert wait_for(service, forwarded, TERMINAL, prefix=prefix)["status"] == "succeeded"
    finally:
        ray.kill(old)
    assert finished_job.status == "succeeded"


def test_a_restarted_job_manager_keeps_history_and_interrupts_running_jobs(service, simulator):
    finished = service.post("/api/v1/perf?wait=false", json=perf_body(simulator, number=3)).json()["job_id"]
    finished_job = wait_for(service, finished, TERMINAL)
    with SimulatorProcess() as target:  # a target of its own: only the interrupted job's requests reach it
        running = service.post("/api/v1/perf?wait=false", json=perf_body(target, number=200000, parallel=2))
        running_id = running.json()["job_id"]
        wait_for(service, running_id, {"running"})
        # This service's manager (named by its outputs root), not another application's.
        ray.kill(job_manager(ServiceArgs(outputs_root=(service.root / "outputs").resolve())), no_restart=False)
        interrupted = wait_for(service, running_id, TERMINAL, timeout=60)
        assert interrupted["status"] == "interrupted" and "restarted" in interrupted["error"]
        assert service.get(f"/api/v1/jobs/{finished}").json() == finished_job
        settled = target.requests_received()
        time.sleep(2.0)
        assert target.requests_received() == settled  # the lost manager's shards went with it
    again = service.post("/api/v1/perf", json=perf_body(simulator, number=3))
    assert again.json()["results"]["parallel_1_number_3"]["metrics"]["Success Requests"] == 3, again.text


@pytest.mark.parametrize("path", ["", "/events", "/log", "/report", "/artifacts"])
def test_unknown_job_is_a_404(service, path):
    response = service.get(f"/api/v1/jobs/job-ffffffffffff{path}")
    assert response.status_code == 404
    assert response.json()["message"] == "no job 'job-ffffffffffff'"


def test_health_answers_at_once_while_synchronous_submissions_wait(service, simulator):
    model = f"waiting-{uuid.uuid4().hex[:8]}"
    body = perf_body(simulator, number=100, parallel=1, rate=50, model=model)  # 2 s of traffic each; 2 run, 3 queue
    submissions = [
        threading.Thread(target=httpx.post, args=(f"{service.base_url}/api/v1/perf",), kwargs={"json": body,
                                                                                            "timeout": 300})
        for _ in range(5)
    ]
    for submission in submissions:
        submission.start()
    time.sleep(1.5)  # all five are open at the ingress, waiting for their runs
    started = time.monotonic()
    assert service.get("/health").json()["status"] == "ok"
    assert time.monotonic() - started < 1.0
    # Asserted; the runs themselves are of no further interest, so they are cancelled rather than waited for.
    deadline = time.monotonic() + 60
    while len(jobs := service.get("/api/v1/jobs", params={"model": model}).json()["jobs"]) < 5:
        assert time.monotonic() < deadline, jobs
        time.sleep(0.2)
    for job in jobs:
        service.post(f"/api/v1/jobs/{job['job_id']}/cancel")
    for submission in submissions:
        submission.join(300)
