"""HTTP translation without Ray: status codes, error bodies, async jobs and docs, over a real job manager."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from serve_app.api import create_api
from serve_app.errors import RunError
from tests.unit.fakes import FakeRun, ManagerBackend

# Some tests end with jobs still running; their coroutines are dropped when the test's event loop closes.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

EVAL = {"model": "m", "datasets": ["gsm8k"], "api_url": "http://127.0.0.1:8801/v1"}
PERF = {"model": "m", "url": "http://127.0.0.1:8801/v1/chat/completions", "number": 4}


@pytest.fixture
def backend(tmp_path):
    return ManagerBackend(tmp_path)


_open_clients = []


def client(backend, debug=False):
    """A client that keeps one event loop for the test, so background jobs live across requests."""
    test_client = TestClient(create_api(backend, debug=debug), raise_server_exceptions=False)
    _open_clients.append(test_client.__enter__())
    return test_client


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    while _open_clients:
        _open_clients.pop().__exit__(None, None, None)


def test_health_reports_service_and_iso_timestamp(backend):
    body = client(backend).get("/health").json()
    assert body["status"] == "ok" and body["service"] == "evalscope"
    assert "T" in body["timestamp"]


def test_synchronous_eval_returns_the_result_itself(backend):
    response = client(backend).post("/api/v1/eval", json=EVAL)
    assert response.status_code == 200
    assert response.json()["scores"] == {"gsm8k": 0.5}
    assert response.json()["status"] == "success"


@pytest.mark.parametrize(
    "path,body,fragment",
    [
        ("/api/v1/eval", {**EVAL, "datasets": []}, "datasets"),
        ("/api/v1/eval", {"datasets": ["gsm8k"], "api_url": "x"}, "model: Field required"),
        ("/api/v1/perf", {**PERF, "number": -1}, "number"),
        ("/api/v1/perf", {**PERF, "parallel": "many"}, "parallel"),
        ("/api/v1/perf", {"model": "m"}, "url"),
        ("/api/v1/perf", {**PERF, "url": "localhost:8000/v1"}, "url: Value error, must be an http:// or https:// URL"),
        ("/api/v1/perf", {**PERF, "max_tokens": 0}, "max_tokens: Input should be greater than 0"),
        ("/api/v1/eval", {**EVAL, "limit": 1.5}, "limit: Value error, a fractional limit must be in (0, 1]"),
        ("/api/v1/eval", {**EVAL, "generation_config": {"retries": 0}}, "generation_config.retries"),
        ("/api/v1/eval", {**EVAL, "typo_field": 1}, "typo_field: Extra inputs are not permitted"),
        ("/api/v1/perf", {**PERF, "multi_turn": True, "rate": 2}, "rate schedule requests at a rate; a multi_turn load"),
        ("/api/v1/eval", {**EVAL, "judge_strategy": "llm"}, "judge: Value error, strategy llm needs at least one judge"),
        ("/api/v1/eval", {**EVAL, "eval_type": "llm_ckpt"}, "eval_type: Input should be 'openai_api' or 'openai_comp"),
        ("/api/v1/eval", ["not", "an", "object"], "Input should be a valid dictionary"),
    ],
)
def test_invalid_input_is_a_400_naming_the_field(backend, path, body, fragment):
    response = client(backend).post(path, json=body)
    assert response.status_code == 400
    assert response.json()["status"] == "error"
    assert fragment in response.json()["message"]
    assert not backend.runs


@pytest.mark.parametrize(
    "change,message",
    [
        ({"open_loop": True}, "open_loop shape arrivals at a rate: give a rate (req/s)"),
        ({"arrival": "constant", "ramp_up_s": 5}, "arrival, ramp_up_s shape arrivals at a rate: give a rate (req/s)"),
        ({"rate": [5, 10], "parallel": [1, 2]}, "sweep either parallel or rate, not both"),
        ({"rate": 5, "open_loop": True, "parallel": [1, 2]}, "an open loop sweeps rate: parallel is one cap"),
        ({"rate": [5, 10], "number": [100, 200, 300]}, "number and rate lists must have the same length (got 3 and 2)"),
        ({"rate": 5, "burstiness": 0.5}, "burstiness is the shape of gamma arrivals: it needs arrival: gamma"),
        ({"rate": 5, "ramp_up_s": 10, "duration_s": 10}, "ramp_up_s (10) must be shorter than duration_s (10)"),
        ({"rate": [5, -1]}, "rate: Value error, every rate of a sweep must be > 0"),
        ({"rate": 5, "arrival": "uniform"}, "arrival: Input should be 'poisson', 'constant' or 'gamma'"),
        ({"rate": 5, "arrival": "gamma", "burstiness": 0}, "burstiness: Input should be greater than 0"),
    ],
)
def test_impossible_load_shapes_are_a_400_saying_why(backend, change, message):
    response = client(backend).post("/api/v1/perf", json={**PERF, **change})
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert not backend.runs


def test_a_number_json_reads_as_infinity_is_a_400(backend):
    body = b'{"model": "m", "url": "http://127.0.0.1:8801/v1/chat/completions", "rate": 1e400}'
    response = client(backend).post("/api/v1/perf", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["message"] == "invalid request: rate: Input should be a finite number"


def test_non_json_body_is_a_400(backend):
    response = client(backend).post("/api/v1/perf", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["message"]


def test_unknown_path_and_unknown_job_are_404s(backend):
    unknown_path = client(backend).get("/api/v1/nothing").json()
    assert unknown_path == {"status": "error", "message": "no such path: /api/v1/nothing"}
    response = client(backend).get("/api/v1/jobs/job-000000000000")
    assert response.status_code == 404 and "job-000000000000" in response.json()["message"]


def test_failed_run_is_a_500_with_traceback_only_in_debug(tmp_path):
    failing = ManagerBackend(tmp_path, make_run=lambda kind, r: FakeRun(kind, failure=RunError("shard 1 failed: died")))
    quiet = client(failing).post("/api/v1/perf", json=PERF)
    assert quiet.status_code == 500
    assert quiet.json()["message"] == "shard 1 failed: died"
    assert "traceback" not in quiet.json()
    loud = client(failing).post("/api/v1/perf", json={**PERF, "debug": True})
    assert "RunError" in loud.json()["traceback"]


def test_async_submission_answers_202_with_a_location_then_the_job_carries_the_result(backend):
    api = client(backend)
    accepted = api.post("/api/v1/perf?wait=false", json={**PERF, "api_key": "sk-hidden"})
    assert accepted.status_code == 202
    job = accepted.json()
    assert accepted.headers["location"] == f"/api/v1/jobs/{job['job_id']}"
    assert job["status"] in ("queued", "running") and job["kind"] == "perf"
    assert job["request"]["api_key"] == "**********"
    events = api.get(f"/api/v1/jobs/{job['job_id']}/events")
    assert events.headers["content-type"].startswith("text/event-stream")
    statuses = [json.loads(line[5:])["status"] for line in events.text.splitlines() if line.startswith("data:")]
    assert statuses[-1] == "succeeded"
    finished = api.get(accepted.headers["location"]).json()
    assert finished["result"]["status"] == "success"
    assert finished["progress"]["percent"] == 100.0
    assert finished["started_at"] and finished["finished_at"]
    assert "sk-hidden" not in json.dumps(finished)


def test_prefer_respond_async_is_the_same_as_wait_false(backend):
    response = client(backend).post("/api/v1/eval", json=EVAL, headers={"Prefer": "respond-async"})
    assert response.status_code == 202


def test_idempotency_key_returns_the_same_job_and_refuses_another_body(backend):
    api = client(backend)
    first = api.post("/api/v1/perf?wait=false", json=PERF, headers={"Idempotency-Key": "k1"}).json()
    again = api.post("/api/v1/perf?wait=false", json=PERF, headers={"Idempotency-Key": "k1"}).json()
    assert again["job_id"] == first["job_id"]
    other = api.post("/api/v1/perf?wait=false", json={**PERF, "number": 5}, headers={"Idempotency-Key": "k1"})
    assert other.status_code == 409 and "k1" in other.json()["message"]
    assert len(backend.runs) == 3 and api.get("/api/v1/jobs").json()["total"] == 1


def test_full_service_answers_429_with_retry_after(tmp_path):
    slow = ManagerBackend(tmp_path, make_run=lambda kind, r: FakeRun(kind, total=500, step_s=0.01))
    api = client(slow)
    codes = [api.post("/api/v1/perf?wait=false", json=PERF).status_code for _ in range(5)]
    assert codes == [202, 202, 202, 202, 429]
    rejected = api.post("/api/v1/perf?wait=false", json=PERF)
    assert rejected.headers["retry-after"] == "5"
    jobs = api.get("/api/v1/jobs").json()
    assert jobs["total"] == 4
    assert sorted(j["status"] for j in jobs["jobs"]) == ["queued", "queued", "running", "running"]


def test_cancel_stops_the_run_and_a_finished_job_cannot_be_cancelled(tmp_path):
    slow = ManagerBackend(tmp_path, make_run=lambda kind, r: FakeRun(kind, total=500, step_s=0.01))
    api = client(slow)
    job = api.post("/api/v1/perf?wait=false", json=PERF).json()
    (run,) = slow.runs
    deadline = time.monotonic() + 10
    while run.done == 0:  # cancel a run that is under way, so stopping it is what the test sees
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.01)
    cancelled = api.post(f"/api/v1/jobs/{job['job_id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    stopped_at = run.done
    time.sleep(0.2)  # twenty steps of a run that went on
    assert run.cancelled and run.done == stopped_at < run.total
    again = api.post(f"/api/v1/jobs/{job['job_id']}/cancel")
    assert again.status_code == 409
    log = api.get(f"/api/v1/jobs/{job['job_id']}/log").json()
    assert any("cancelled" in line for line in log["lines"]) and log["total"] == len(log["lines"])


def test_a_synchronous_submission_whose_job_is_cancelled_answers_409_naming_the_job(tmp_path):
    slow = ManagerBackend(tmp_path, make_run=lambda kind, r: FakeRun(kind, total=500, step_s=0.01))
    api = client(slow)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(api.post, "/api/v1/perf", json=PERF)
        deadline = time.monotonic() + 10
        while not slow.runs or slow.runs[0].done == 0:
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.01)
        (job,) = api.get("/api/v1/jobs").json()["jobs"]
        assert api.post(f"/api/v1/jobs/{job['job_id']}/cancel").status_code == 200
        answer = waiting.result(timeout=10)
    assert answer.status_code == 409
    assert answer.json()["message"].startswith(f"job {job['job_id']} was cancelled")


def test_job_list_filters_and_pages_newest_first(backend):
    api = client(backend)
    ids = [api.post("/api/v1/perf", json={**PERF, "model": f"m{i}"}).status_code for i in range(3)]
    assert ids == [200, 200, 200]
    api.post("/api/v1/eval", json=EVAL)
    page = api.get("/api/v1/jobs?kind=perf&limit=2").json()
    assert page["total"] == 3 and [j["model"] for j in page["jobs"]] == ["m2", "m1"]
    assert api.get("/api/v1/jobs?kind=perf&offset=2").json()["jobs"][0]["model"] == "m0"
    assert api.get("/api/v1/jobs?model=m1").json()["total"] == 1
    assert api.get("/api/v1/jobs?status=failed").json()["total"] == 0
    bogus = api.get("/api/v1/jobs?status=bogus")
    assert bogus.status_code == 400 and bogus.json()["message"].startswith("invalid request: status: Input should be")


def test_report_of_a_job_without_one_is_a_404(backend):
    api = client(backend)
    job = api.post("/api/v1/perf?wait=false", json=PERF).json()
    response = api.get(f"/api/v1/jobs/{job['job_id']}/report")
    assert response.status_code == 404 and "no report" in response.json()["message"]


def test_openapi_documents_every_request_field(backend):
    schema = client(backend).get("/openapi.json").json()
    components = schema["components"]["schemas"]
    for field in ("model", "datasets", "api_url", "api_key", "limit", "dataset_args"):
        assert components["EvalRequest"]["properties"][field]["description"]
    for field in ("number", "parallel", "rate", "dataset_path", "stream", "shards", "warmup"):
        assert components["PerfRequest"]["properties"][field]["description"]
    assert "/api/v1/jobs/{job_id}/events" in schema["paths"]
    docs = client(backend).get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text


def test_the_benchmark_catalogue_lists_evalscope_benchmarks_with_what_is_staged_and_what_is_refused(backend):
    (backend.root / "datasets" / "iquiz").mkdir(parents=True)
    listed = client(backend).get("/api/v1/benchmarks")
    assert listed.status_code == 200
    by_name = {benchmark["name"]: benchmark for benchmark in listed.json()["benchmarks"]}
    assert by_name["iquiz"]["staged"] and not by_name["gsm8k"]["staged"]
    assert by_name["gsm8k"]["subsets"] == ["main"] and by_name["gsm8k"]["refused"] is None
    assert "code_sandbox" in by_name["humaneval"]["refused"]


def test_resume_answers_404_for_no_job_and_409_saying_why_a_job_does_not_resume(backend):
    api = client(backend)
    assert api.post("/api/v1/jobs/job-ffffffffffff/resume", json={}).status_code == 404
    assert api.post("/api/v1/perf", json=PERF).status_code == 200
    perf_job = api.get("/api/v1/jobs?kind=perf").json()["jobs"][0]["job_id"]
    refused = api.post(f"/api/v1/jobs/{perf_job}/resume", json={"api_key": "k"})
    assert refused.status_code == 409 and refused.json()["message"].endswith("only eval jobs resume (they reuse "
                                                                             "predictions)")
    api.post("/api/v1/eval", json=EVAL)
    succeeded = api.get("/api/v1/jobs?kind=eval").json()["jobs"][0]["job_id"]
    assert "is succeeded; only a job that failed" in api.post(f"/api/v1/jobs/{succeeded}/resume", json={}).text
