"""The client's contract without a service: retries that honour Retry-After, idempotent submits, auth, errors."""

import asyncio
import json
import os
import signal
import threading
import time

import httpx
import pytest

from serve_app.client import CHECK_INTERVAL_S, Client, JobFailed, ServiceError

JOB = {"job_id": "job-1", "kind": "perf", "status": "queued", "model": "m", "created_at": "2026-01-01T00:00:00",
       "progress": {}, "request": {}, "output_dir": "/o", "links": {}}
PERF = {"model": "m", "url": "http://target/v1/chat/completions", "number": 3, "api_key": "sk-secret"}


def test_a_429_is_retried_after_the_retry_after_the_service_sends():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append((time.monotonic(), request.headers["Idempotency-Key"], json.loads(request.content)))
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "1"}, json={"status": "error", "message": "full"})
        return httpx.Response(202, json=JOB)

    with Client("http://service", transport=httpx.MockTransport(handler), token="tok") as client:
        job = client.submit_perf(PERF)
    assert job.job_id == "job-1"
    assert len(calls) == 2
    assert calls[1][0] - calls[0][0] >= 1.0  # waited as told
    assert calls[0][1] == calls[1][1]  # the same Idempotency-Key: a retry can never start a second run
    assert calls[1][2]["api_key"] == "sk-secret" and calls[1][2]["number"] == 3
    assert "parallel" not in calls[1][2]  # unset fields are left to the service's defaults


def test_every_submission_gets_its_own_idempotency_key_and_the_bearer_token():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers["Idempotency-Key"], request.headers.get("Authorization"), request.url.params))
        return httpx.Response(202, json=JOB)

    with Client("http://service", transport=httpx.MockTransport(handler), token="tok") as client:
        client.submit_perf(PERF)
        client.submit_perf(PERF)
    assert seen[0][0] != seen[1][0]
    assert seen[0][1] == "Bearer tok"
    assert seen[0][2]["wait"] == "false"


def test_errors_carry_the_service_message_and_failed_jobs_have_no_result():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/job-1"):
            return httpx.Response(200, json={**JOB, "status": "failed", "error": "shard 0 failed"})
        return httpx.Response(400, json={"status": "error", "message": "invalid request: number: must be > 0"})

    with Client("http://service", transport=httpx.MockTransport(handler), retries=0) as client:
        with pytest.raises(ServiceError, match="number: must be > 0") as error:
            client.submit_perf(PERF)
        assert error.value.status == 400
        with pytest.raises(JobFailed, match="shard 0 failed"):
            client.result("job-1")


def test_bad_input_is_refused_before_any_call():
    with Client("http://service", transport=httpx.MockTransport(lambda r: httpx.Response(500))) as client:
        with pytest.raises(Exception, match="number"):
            client.submit_perf({**PERF, "number": -1})


def test_a_proxy_500_is_retried_but_a_failed_run_is_not():
    answers = [httpx.Response(500, text="Internal Server Error"), httpx.Response(200, json=JOB),
               httpx.Response(500, json={"status": "error", "message": "shard 0 failed: died"})]
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return answers[len(calls) - 1]

    with Client("http://service", transport=httpx.MockTransport(handler), backoff_s=0.01) as client:
        assert client.job("job-1").job_id == "job-1"  # the replica was replaced between two calls
        with pytest.raises(ServiceError, match="shard 0 failed: died"):
            client.job("job-1")
    assert len(calls) == 3


def test_a_service_still_deploying_is_waited_for_and_its_own_404s_are_final():
    answers = iter([
        httpx.Response(404, text="Path '/api/v1/jobs' not found. Ping http://.../-/routes for available routes."),
        httpx.Response(200, json={"jobs": [JOB], "total": 1, "limit": 20, "offset": 0}),
    ])
    with Client("http://service", transport=httpx.MockTransport(lambda request: next(answers)),
                backoff_s=0.01) as client:
        assert client.list_jobs().total == 1

    missing = httpx.Response(404, json={"status": "error", "message": "no job 'job-x'"})
    with Client("http://service", transport=httpx.MockTransport(lambda request: missing), backoff_s=0.01) as client:
        with pytest.raises(ServiceError, match="no job 'job-x'"):
            client.job("job-x")


def test_a_saved_report_addresses_the_services_scripts_absolutely():
    page = '<html><script src="/teams/assets/plotly-7.1.0/plotly.min.js"></script><script>draw()</script></html>'
    with Client("http://service:9000/teams", transport=httpx.MockTransport(
            lambda request: httpx.Response(200, text=page))) as client:
        saved = client.report("job-1")
    assert '<script src="http://service:9000/teams/assets/plotly-7.1.0/plotly.min.js">' in saved
    assert "<script>draw()</script>" in saved


def test_wait_gives_up_after_its_timeout_and_cancel_after_its_own():
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/cancel"):
            await asyncio.sleep(10)  # a service that never confirms
        return httpx.Response(200, json={**JOB, "status": "running"})  # not an event stream: the client polls

    with Client("http://service", transport=httpx.MockTransport(handler)) as client:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            client.wait("job-1", poll_s=0.05, timeout_s=0.3)
        with pytest.raises(TimeoutError):
            client.cancel("job-1", timeout_s=0.3)
        assert time.monotonic() - started < 2


class Interrupted(BaseException):
    pass


def test_a_call_its_check_stops_stops_on_the_loop_too_within_the_check_interval():
    """What a stop signal does to the CLI's wait: its handler only notes the signal (an exception raised from a
    handler lands wherever the main thread is, even inside a lock's release), and the check raises. The call must
    stop soon after, and not go on behind the caller's back, keeping close() waiting for it."""
    async def never_answers(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(10)

    received = []

    def check():
        if received:
            raise Interrupted

    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    try:
        client = Client("http://service", transport=httpx.MockTransport(never_answers))
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        started = time.monotonic()
        with client.interruptible(check), pytest.raises(Interrupted):
            client.wait("job-1")
        assert received and time.monotonic() - started < 0.2 + 10 * CHECK_INTERVAL_S
        started = time.monotonic()
        client.close()
        assert time.monotonic() - started < 2
    finally:
        signal.signal(signal.SIGUSR1, previous)
