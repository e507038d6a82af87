"""A planted api_key appears nowhere the service writes or answers: responses, job listings and logs, events,
artifacts, files under the outputs root, the Ray session's logs, and metrics; on success and failure paths,
with debug on."""

import io
import time
import uuid
import zipfile
from pathlib import Path

import httpx
import ray

from tests.conftest import SAMPLES

SECRET = f"sk-audit-{uuid.uuid4().hex}"
TERMINAL = {"succeeded", "failed", "cancelled", "interrupted"}


def eval_body(api_url, **fields):
    return {"model": "audit", "api_url": api_url, "api_key": SECRET, "debug": True, "datasets": ["iquiz"],
            "limit": 1, "dataset_args": {"iquiz": {"local_path": str(SAMPLES / "iquiz")}},
            "generation_config": {"max_tokens": 16, "retries": 1}, **fields}


def perf_body(url, **fields):
    return {"model": "audit", "url": url, "api_key": SECRET, "debug": True, "dataset_path": "perf/openqa.jsonl",
            "number": 4, "parallel": 2, "max_tokens": 4, **fields}


def test_a_planted_api_key_is_never_answered_written_logged_or_exported(service, simulator, faulty):
    answers: list[bytes] = []

    def call(method, path, **kwargs):
        response = service.request(method, path, **kwargs)
        answers.append(response.content)
        return response

    assert call("POST", "/api/v1/eval", json=eval_body(simulator.base_url)).status_code == 200
    assert call("POST", "/api/v1/eval", json=eval_body(faulty.url("error", "/v1"))).status_code == 500
    assert call("POST", "/api/v1/perf", json=perf_body(simulator.chat_url)).status_code == 200
    assert call("POST", "/api/v1/perf", json=perf_body(faulty.url("error"))).status_code == 500
    assert call("POST", "/api/v1/perf", json=perf_body(simulator.chat_url, number=-1)).status_code == 400
    flaky = call("POST", "/api/v1/perf?wait=false", json=perf_body(faulty.url("flaky"), number=6),
                 headers={"Idempotency-Key": str(uuid.uuid4())})
    assert flaky.status_code == 202
    deadline = time.monotonic() + 120
    while call("GET", f"/api/v1/jobs/{flaky.json()['job_id']}").json()["status"] not in TERMINAL:
        assert time.monotonic() < deadline
        time.sleep(0.5)

    jobs = call("GET", "/api/v1/jobs", params={"model": "audit", "limit": 500}).json()["jobs"]
    assert len(jobs) == 5  # the 400 never became a job
    for job in jobs:
        for link in ("self", "log", "events", "report"):
            call("GET", job["links"][link])
        artifacts = call("GET", job["links"]["artifacts"])
        with zipfile.ZipFile(io.BytesIO(artifacts.content)) as archive:
            answers.extend(archive.read(name) for name in archive.namelist())

    written = [service.root / "outputs", Path(ray._private.worker._global_node.get_logs_dir_path())]
    files = {str(path): path.read_bytes() for root in written for path in root.rglob("*") if path.is_file()}
    metrics = httpx.get(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=30).content
    searched = {**{f"response #{i}": body for i, body in enumerate(answers)}, **files, "metrics": metrics}
    # The search looks where request data does land: the failing target's URL is in logs and outputs.
    assert sum(faulty.url("error").encode() in content for content in files.values()) >= 2
    assert [where for where, content in searched.items() if SECRET.encode() in content] == []
