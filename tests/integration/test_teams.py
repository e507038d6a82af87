"""Teams on one service, as an operator sets them up: tokens in a file name principals, each principal sees and
acts on its own jobs, an admin on all, and per-principal limits keep one team from filling the queue."""

import io
import time
import uuid
import zipfile

import pytest

from tests.integration.conftest import second_application
from tests.integration.test_jobs import TERMINAL, perf_body

A, B, OPS = "team-a-token-1f9", "team-b-token-7c2", "ops-token-e41"


@pytest.fixture(scope="module")
def teams(service, tmp_path_factory):
    """A second application with its own outputs root (so its own job manager and limits), tokens from a file."""
    root = tmp_path_factory.mktemp("teams")
    tokens = root / "tokens"
    tokens.write_text(f"{A} team-a\n{B} team-b\n{OPS} ops admin\n")
    with second_application(
        "teams", outputs_root=str(root / "outputs"), datasets_root=str(service.datasets_root),
        auth_tokens_file=str(tokens), max_running_jobs_per_principal=1, max_queued_jobs_per_principal=0,
    ):
        yield root


def call(service, method, path, token, **kwargs):
    return service.request(method, f"/teams{path}", headers={"Authorization": f"Bearer {token}",
                                                            **kwargs.pop("headers", {})}, **kwargs)


def wait_for(service, job_id, token, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = call(service, "GET", f"/api/v1/jobs/{job_id}", token).json()
        if job["status"] in TERMINAL:
            return job
        time.sleep(0.2)
    raise TimeoutError(job)


def test_a_principal_sees_only_its_own_jobs_and_an_admin_sees_and_cancels_all(service, simulator, teams):
    slow = perf_body(simulator, number=100_000, parallel=1, rate=2)  # runs until cancelled
    job_a = call(service, "POST", "/api/v1/perf?wait=false", A, json=slow).json()
    assert job_a["owner"] == "team-a"
    done_b = call(service, "POST", "/api/v1/perf", B, json=perf_body(simulator, number=4, parallel=2))
    assert done_b.status_code == 200, done_b.text
    listing_b = call(service, "GET", "/api/v1/jobs", B).json()
    assert {job["owner"] for job in listing_b["jobs"]} == {"team-b"}
    job_b = listing_b["jobs"][0]

    # Team b cannot read, follow, download or cancel team a's job: it is "not found", as an unknown id is.
    for method, suffix in [("GET", ""), ("GET", "/events"), ("GET", "/log"), ("GET", "/report"),
                           ("GET", "/artifacts"), ("POST", "/cancel")]:
        response = call(service, method, f"/api/v1/jobs/{job_a['job_id']}{suffix}", B)
        assert response.status_code == 404, (suffix, response.text)
        assert response.json()["message"] == f"no job {job_a['job_id']!r}"
    # Its own job's artifacts hold its own files only.
    archive = call(service, "GET", f"/api/v1/jobs/{job_b['job_id']}/artifacts", B)
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
        assert "job.log" in zipped.namelist()
        assert job_a["job_id"] not in zipped.read("job.log").decode()

    everything = call(service, "GET", "/api/v1/jobs", OPS).json()
    assert {job["owner"] for job in everything["jobs"]} == {"team-a", "team-b"}
    cancelled = call(service, "POST", f"/api/v1/jobs/{job_a['job_id']}/cancel", OPS)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert call(service, "GET", f"/api/v1/jobs/{job_a['job_id']}", A).json()["status"] == "cancelled"


def test_one_team_at_its_limit_gets_429_while_another_still_runs(service, simulator, teams):
    slow = perf_body(simulator, number=100_000, parallel=1, rate=2)
    first = call(service, "POST", "/api/v1/perf?wait=false", A, json=slow).json()
    try:
        refused = call(service, "POST", "/api/v1/perf?wait=false", A, json=slow)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "5"
        assert "principal 'team-a'" in refused.json()["message"]
        assert "max_queued_jobs_per_principal=0" in refused.json()["message"]
        other = call(service, "POST", "/api/v1/perf", B, json=perf_body(simulator, number=4, parallel=2))
        assert other.status_code == 200, other.text
    finally:
        call(service, "POST", f"/api/v1/jobs/{first['job_id']}/cancel", A)


def test_idempotency_keys_are_per_principal_and_a_changed_key_is_a_conflict(service, simulator, teams):
    key = {"Idempotency-Key": f"nightly-{uuid.uuid4()}"}
    body = perf_body(simulator, number=4, parallel=2, api_key="sk-first-key-0001")
    first = call(service, "POST", "/api/v1/perf?wait=false", A, json=body, headers=key).json()
    again = call(service, "POST", "/api/v1/perf?wait=false", A, json=body, headers=key)
    assert again.status_code == 202 and again.json()["job_id"] == first["job_id"]
    # The same body under another api_key is another request (the keyed digest covers the key).
    rekeyed = call(service, "POST", "/api/v1/perf?wait=false", A, json={**body, "api_key": "sk-other-key-0002"},
                   headers=key)
    assert rekeyed.status_code == 409 and first["job_id"] in rekeyed.json()["message"]
    # Another team's key space is its own.
    theirs = call(service, "POST", "/api/v1/perf?wait=false", B, json=body, headers=key)
    assert theirs.status_code == 202 and theirs.json()["job_id"] != first["job_id"]
    for job_id, token in ((first["job_id"], A), (theirs.json()["job_id"], B)):
        assert wait_for(service, job_id, token)["status"] == "succeeded"
    secret = teams / "outputs" / ".idempotency-secret"
    assert secret.stat().st_mode & 0o077 == 0
