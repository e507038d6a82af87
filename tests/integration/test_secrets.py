"""Planted secrets appear nowhere the service writes or answers: responses, job listings and logs, events,
artifacts, files under the outputs root, the Ray session's logs, any file written during the test in the working
directory, the temp directory or the user's caches, and metrics; on success, failure and refusal paths, with debug
on. The secrets: a model api_key, an LLM judge's api_key, a credential header a perf test sends, the caller's bearer
token, and the server's idempotency secret."""

import io
import json
import os
import subprocess
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest
import ray

from serve_app.jobs.digest import SECRET_FILE
from tests.conftest import SAMPLES
from tests.integration.conftest import second_application

SECRET = f"sk-audit-{uuid.uuid4().hex}"
JUDGE_SECRET = f"sk-judge-audit-{uuid.uuid4().hex}"
TOKEN = f"bearer-audit-{uuid.uuid4().hex}"
HEADER_SECRET = f"tenant-audit-{uuid.uuid4().hex}"  # a credential the target needs in a header of its own
TERMINAL = {"succeeded", "failed", "cancelled", "interrupted"}


def eval_body(api_url, judge_url=None, **fields):
    """`judge_url`: every sample is also scored by an LLM judge there, whose key is a planted secret too."""
    judge = {"judge": {"strategy": "llm", "models": [{"model_id": "audit-judge", "api_url": judge_url,
                                                      "api_key": JUDGE_SECRET}]}} if judge_url else {}
    return {"model": "audit", "api_url": api_url, "api_key": SECRET, "debug": True, "datasets": ["iquiz"],
            "limit": 1, "dataset_args": {"iquiz": {"local_path": str(SAMPLES / "iquiz")}},
            "generation_config": {"max_tokens": 16, "retries": 1}, **judge, **fields}


def perf_body(url, **fields):
    return {"model": "audit", "url": url, "api_key": SECRET, "debug": True, "dataset_path": "perf/openqa.jsonl",
            "number": 4, "parallel": 2, "max_tokens": 4, "headers": {"X-Tenant-Token": HEADER_SECRET}, **fields}


@pytest.fixture(scope="module")
def audited(service, tmp_path_factory):
    """An application with auth on (the planted bearer token, from a file outside the outputs root); its root."""
    root = tmp_path_factory.mktemp("audited")
    (root / "tokens").write_text(f"{TOKEN} auditors\n")
    with second_application("audited", outputs_root=str(root / "outputs"), datasets_root=str(service.datasets_root),
                            samples_root=str(SAMPLES), auth_tokens_file=str(root / "tokens"), debug=True):
        yield root


def written_since(root: Path, since: float):
    """Files under `root` modified since `since` (the places a process writes scratch data), skipping what vanishes
    or cannot be read while other processes work beside the test. find(1) lists them: a walk in Python took over a
    minute over a temp directory of 100k+ files and a working directory holding its virtualenv."""
    listed = subprocess.run(["find", str(root), "-xdev", "-type", "f", "-newermt", f"@{since:.3f}", "-print0"],
                            capture_output=True, timeout=300)  # what vanishes mid-walk is an error it walks past
    for name in filter(None, listed.stdout.split(b"\0")):
        path = Path(os.fsdecode(name))
        try:
            yield path, path.read_bytes()
        except OSError:
            continue


def test_planted_secrets_are_never_answered_written_logged_or_exported(service, audited, simulator, faulty):
    started = time.time() - 1  # file times have coarse resolution on some file systems
    answers: list[bytes] = []

    def call(method, path, **kwargs):
        headers = {"Authorization": f"Bearer {TOKEN}", **kwargs.pop("headers", {})}
        response = service.request(method, f"/audited{path}", headers=headers, **kwargs)
        answers.append(response.content)
        return response

    judged = simulator.stats()["requests_total"]
    assert call("POST", "/api/v1/eval", json=eval_body(simulator.base_url, simulator.base_url)).status_code == 200
    assert simulator.stats()["requests_total"] - judged >= 2  # the sample, and its judge's verdict
    assert call("POST", "/api/v1/eval", json=eval_body(faulty.url("error", "/v1"), simulator.base_url)).status_code == 500
    # Refused before a job exists: an unknown benchmark, and a dataset path outside the roots.
    unknown = eval_body(simulator.base_url, simulator.base_url, datasets=["no_such_bench"])
    assert call("POST", "/api/v1/eval", json=unknown).status_code == 400
    outside = eval_body(simulator.base_url, simulator.base_url, dataset_args={"iquiz": {"local_path": "/etc"}})
    assert call("POST", "/api/v1/eval", json=outside).status_code == 400
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
    # A wrong token close to the real one is refused without echoing either.
    assert call("GET", "/api/v1/jobs", headers={"Authorization": f"Bearer {TOKEN[:-1]}"}).status_code == 401

    jobs = call("GET", "/api/v1/jobs", params={"model": "audit", "limit": 500}).json()["jobs"]
    assert len(jobs) == 5 and {job["owner"] for job in jobs} == {"auditors"}  # the 400s never became jobs
    for job in jobs:
        for link in ("self", "log", "events", "report"):
            call("GET", job["links"][link])
        artifacts = call("GET", job["links"]["artifacts"])
        with zipfile.ZipFile(io.BytesIO(artifacts.content)) as archive:
            answers.extend(archive.read(name) for name in archive.namelist())

    outputs = audited / "outputs"
    idempotency_secret = (outputs / SECRET_FILE).read_bytes()
    written = [outputs, Path(ray._private.worker._global_node.get_logs_dir_path())]
    files = {str(path): path.read_bytes() for root in written for path in root.rglob("*")
             if path.is_file() and path.name != SECRET_FILE}
    scratch = [Path.cwd(), Path(tempfile.gettempdir()), Path.home() / ".cache"]
    kept_on_purpose = {outputs / SECRET_FILE, audited / "tokens"}  # the secret's and the token's own files
    files.update({str(path): content for root in scratch for path, content in written_since(root, started)
                  if path not in kept_on_purpose})
    metrics = httpx.get(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=30).content
    searched = {**{f"response #{i}": body for i, body in enumerate(answers)}, **files, "metrics": metrics}
    # The search looks where request data does land: the failing target's URL is in logs and outputs.
    assert sum(faulty.url("error").encode() in content for content in files.values()) >= 2
    for secret in (SECRET.encode(), JUDGE_SECRET.encode(), TOKEN.encode(), HEADER_SECRET.encode(), idempotency_secret):
        assert [where for where, content in searched.items() if secret in content] == []


@pytest.mark.parametrize("kind", ["perf", "eval"])
def test_a_key_the_target_echoes_back_is_masked_in_every_answer(service, audited, faulty, kind):
    """The manager-level masking, through the real service: the target's error reaches the job's error and the
    synchronous answer with the key replaced by ***."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    # A model of its own, so the audit above counts only its own jobs whatever order the tests run in.
    body = perf_body(faulty.url("echo"), model="echoed") if kind == "perf" else eval_body(
        faulty.url("echo", "/v1"), model="echoed")
    answer = service.post(f"/audited/api/v1/{kind}", json=body, headers=headers)
    assert answer.status_code == 500 and "***" in answer.json()["message"], answer.text
    jobs = service.get("/audited/api/v1/jobs", params={"kind": kind, "model": "echoed", "limit": 1},
                       headers=headers).json()["jobs"]
    assert "***" in jobs[0]["error"]
    assert SECRET not in answer.text and SECRET not in json.dumps(jobs)
