"""Python client of the service for scripts and CI pipelines, typed with the server's own schemas.

`AsyncClient` does the work; `Client` is the same API for synchronous code (it drives an AsyncClient on a
private event loop thread). Every submission carries an Idempotency-Key, so a retried submit never starts a
second run; 429 and 503 answers are retried after the Retry-After the service sends, with backoff, and so are
answers the service itself did not write (Serve's proxy's 404 while the application is still deploying, its 5xx
while Serve replaces a replica), for about half a minute in all.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import re
import uuid
from urllib.parse import quote
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, TypeVar

import httpx
from anyio.from_thread import start_blocking_portal

from serve_app.schemas import (
    BenchmarkCatalogue,
    Comparison,
    EvalRequest,
    EvalResponse,
    JobList,
    JobLog,
    JobView,
    Leaderboard,
    ModelHistory,
    PerfRequest,
    PerfResponse,
)

TOKEN_ENV = "EVALSCOPE_SERVE_TOKEN"
_ROOT_RELATIVE_SCRIPT = re.compile(r'<script src="(/[^/"][^"]*)"')
_RETRIED_STATUSES = {429, 502, 503, 504}
_TERMINAL = {"succeeded", "failed", "cancelled", "interrupted"}
# How often a synchronous call looks whether it should stop (Client.interruptible): a stop signal's latency.
CHECK_INTERVAL_S = 0.1
Result = TypeVar("Result")


class ServiceError(Exception):
    """The service answered with an error; `status` is the HTTP status, the message is the service's."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


class JobFailed(Exception):
    """The job ended without a result (failed, cancelled or interrupted)."""

    def __init__(self, job: JobView) -> None:
        super().__init__(f"job {job.job_id} {job.status}: {job.error or 'no reason given'}")
        self.job = job


class AsyncClient:
    def __init__(
        self,
        server: str,
        token: str | None = None,
        timeout_s: float = 30.0,
        retries: int = 5,
        backoff_s: float = 1.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        token = token or os.environ.get(TOKEN_ENV)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.retries, self.backoff_s = retries, backoff_s
        self.http = httpx.AsyncClient(base_url=server, headers=headers, timeout=timeout_s, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    async def submit_eval(self, request: EvalRequest | dict[str, Any], idempotency_key: str | None = None) -> JobView:
        return await self._submit("/api/v1/eval", EvalRequest.model_validate(request), idempotency_key)

    async def submit_perf(self, request: PerfRequest | dict[str, Any], idempotency_key: str | None = None) -> JobView:
        return await self._submit("/api/v1/perf", PerfRequest.model_validate(request), idempotency_key)

    async def job(self, job_id: str) -> JobView:
        return JobView.model_validate(await self._json("GET", f"/api/v1/jobs/{job_id}"))

    async def wait(
        self,
        job_id: str,
        on_update: Callable[[JobView], None] | None = None,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
    ) -> JobView:
        """Follow the job until it ends: its Server-Sent Events, or polling where a proxy drops the stream.
        TimeoutError when it has not ended within timeout_s (the job goes on)."""
        async with asyncio.timeout(timeout_s):
            return await self._follow(job_id, on_update, poll_s)

    async def _follow(self, job_id: str, on_update: Callable[[JobView], None] | None, poll_s: float) -> JobView:
        try:
            async with self.http.stream("GET", f"/api/v1/jobs/{job_id}/events", timeout=None) as stream:
                if stream.status_code == 200:
                    async for line in stream.aiter_lines():
                        if line.startswith("data:") and on_update is not None:
                            on_update(await self.job(job_id))
                        if line.startswith("data:") and json.loads(line[5:])["status"] in _TERMINAL:
                            return await self.job(job_id)
        except httpx.HTTPError:
            pass  # fall through to polling
        while (job := await self.job(job_id)).status not in _TERMINAL:
            if on_update is not None:
                on_update(job)
            await asyncio.sleep(poll_s)
        return job

    async def result(self, job_id: str) -> EvalResponse | PerfResponse:
        """The job's result, typed; raises JobFailed when it ended without one."""
        job = await self.job(job_id)
        if job.status != "succeeded":
            raise JobFailed(job)
        return (EvalResponse if job.kind == "eval" else PerfResponse).model_validate(job.result)

    async def cancel(self, job_id: str, timeout_s: float | None = None) -> JobView:
        """TimeoutError when the service has not confirmed within timeout_s, retries included."""
        async with asyncio.timeout(timeout_s):
            return JobView.model_validate(await self._json("POST", f"/api/v1/jobs/{job_id}/cancel"))

    async def benchmarks(self) -> BenchmarkCatalogue:
        return BenchmarkCatalogue.model_validate(await self._json("GET", "/api/v1/benchmarks"))

    async def list_jobs(self, **filters: Any) -> JobList:
        return JobList.model_validate(await self._json("GET", "/api/v1/jobs", params=_given(filters)))

    async def compare(self, baseline: str, candidate: str, tolerance: str | None = None) -> Comparison:
        params = {"baseline": baseline, "candidate": candidate, "tolerance": tolerance}
        return Comparison.model_validate(await self._json("GET", "/api/v1/compare", params=_given(params)))

    async def leaderboard(self, datasets: list[str] | None = None, models: list[str] | None = None) -> Leaderboard:
        params = {"datasets": ",".join(datasets or []) or None, "models": ",".join(models or []) or None}
        return Leaderboard.model_validate(await self._json("GET", "/api/v1/leaderboard", params=_given(params)))

    async def history(self, model: str, kind: str | None = None, mine: bool = False, limit: int = 50,
                      offset: int = 0) -> ModelHistory:
        params = {"kind": kind, "mine": mine, "limit": limit, "offset": offset}
        path = f"/api/v1/models/{quote(model, safe='')}/history"
        return ModelHistory.model_validate(await self._json("GET", path, params=_given(params)))

    async def log(self, job_id: str, offset: int = 0, limit: int = 1000) -> JobLog:
        params = {"offset": offset, "limit": limit}
        return JobLog.model_validate(await self._json("GET", f"/api/v1/jobs/{job_id}/log", params=params))

    async def report(self, job_id: str) -> str:
        """The job's HTML report, with the scripts it loads from the service addressed absolutely, so a copy saved
        to a file still draws its charts wherever the service can be reached."""
        html = (await self._send("GET", f"/api/v1/jobs/{job_id}/report")).text
        return _ROOT_RELATIVE_SCRIPT.sub(
            lambda match: f'<script src="{self.http.base_url.join(match.group(1))}"', html
        )

    async def _submit(self, path: str, request: EvalRequest | PerfRequest, idempotency_key: str | None) -> JobView:
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        # A dump masks secrets on purpose; this one is what the service must be sent.
        body = json.loads(request.model_dump_json(exclude_unset=True, context={"reveal_secrets": True}))
        if request.api_key is not None:
            body["api_key"] = request.api_key.get_secret_value()
        return JobView.model_validate(await self._json("POST", path, params={"wait": "false"}, json=body,
                                                       headers=headers))

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self._send(method, path, **kwargs)).json()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call, retried on 429/5xx after Retry-After (or exponential backoff) and on dropped connections.

        A 500 in the service's own error shape is a real failure (a run failed) and is not retried; a 500 without
        it comes from Serve's proxy, whose replica was lost, and is.

        Retrying a submission is safe: it carries its Idempotency-Key, so the service returns the first job.
        """
        for attempt in range(self.retries + 1):
            try:
                response = await self.http.request(method, path, **kwargs)
            except httpx.TransportError:
                if attempt == self.retries:
                    raise
                await asyncio.sleep(self.backoff_s * 2**attempt)
                continue
            if _transient(response) and attempt < self.retries:
                await asyncio.sleep(_retry_after(response) or self.backoff_s * 2**attempt)
                continue
            if response.is_error:
                raise ServiceError(response.status_code, _message(response))
            return response
        raise AssertionError("unreachable")


class Client:
    """The AsyncClient's API for synchronous code."""

    def __init__(self, server: str, **options: Any) -> None:
        self._stack = ExitStack()
        self._portal = self._stack.enter_context(start_blocking_portal())
        self._async = self._portal.call(_open, server, options)
        self._check: Callable[[], None] | None = None  # see interruptible

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._portal.call(self._async.close)
        self._stack.close()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._async, name)
        return lambda *args, **kwargs: self._call(lambda: method(*args, **kwargs))

    @contextmanager
    def interruptible(self, check: Callable[[], None]) -> Iterator[None]:
        """While open, `check` runs every CHECK_INTERVAL_S while a call is waited for, and what it raises abandons the
        call. How a signal stops a call: a signal handler that raised would do so wherever the main thread is, even
        inside a lock's release, and the exception would be lost (RuntimeError: cannot release un-acquired lock)."""
        self._check = check
        try:
            yield
        finally:
            self._check = None

    def _call(self, call: Callable[[], Awaitable[Result]]) -> Result:
        future = self._portal.start_task_soon(call)
        try:
            while not concurrent.futures.wait([future], timeout=CHECK_INTERVAL_S).done:
                if self._check is not None:
                    self._check()
            return future.result()
        except BaseException:
            # Interrupted here (Ctrl-C, a signal handler's exception): stop the call on the loop too, or it would
            # go on following a job behind the caller's back and keep close() waiting for it.
            future.cancel()
            raise


async def _open(server: str, options: dict[str, Any]) -> AsyncClient:
    return AsyncClient(server, **options)  # created on the portal's loop, where it will be used


def _given(params: dict[str, Any]) -> dict[str, Any]:
    """Query parameters without those left unset (the service's defaults apply)."""
    return {name: value for name, value in params.items() if value is not None}


def _transient(response: httpx.Response) -> bool:
    """Worth retrying: the service is busy, or something in front of it answered while the service is starting or
    replacing a replica: Serve's proxy answers 404 before the application is deployed and 500 when a replica is lost,
    in plain text, never in the service's own error shape (whose 404s and 500s are final)."""
    if response.status_code in _RETRIED_STATUSES:
        return True
    if response.status_code not in (404, 500):
        return False
    try:
        return response.json().get("status") != "error"
    except (ValueError, AttributeError):
        return True


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


def _message(response: httpx.Response) -> str:
    try:
        return response.json()["message"]
    except (ValueError, KeyError, TypeError):
        return response.text[:500] or response.reason_phrase
