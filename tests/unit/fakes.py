"""Stand-ins for the Ray side, so the job manager and the HTTP layer are tested without a cluster."""

from __future__ import annotations

import asyncio
from pathlib import Path

from serve_app.config import ServiceArgs
from serve_app.eval.catalogue import describe_benchmarks
from serve_app.jobs.digest import body_digest, service_secret
from serve_app.jobs.manager import JobManager, Submission
from serve_app.jobs.store import SqliteJobStore
from serve_app.schemas import EvalRequest, EvalResponse, PerfResponse


class FakeRun:
    """A run that counts to `total` (one step per `step_s`), then answers or fails."""

    def __init__(self, kind: str, total: int = 3, step_s: float = 0.01, failure: Exception | None = None):
        self.kind, self.total, self.step_s, self.failure = kind, total, step_s, failure
        self.done = 0
        self.cancelled = False
        self.output_dir = Path("/o")  # the job's run directory, once submitted

    async def execute(self):
        try:
            for _ in range(self.total):
                await asyncio.sleep(self.step_s)
                self.done += 1
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.failure:
            raise self.failure
        if self.kind == "eval":
            return EvalResponse(result={"gsm8k": {}}, scores={"gsm8k": 0.5}, dataset_sources={},
                                output_dir=str(self.output_dir))
        return PerfResponse(output_dir=str(self.output_dir), results={})

    async def progress(self) -> dict:
        return {"done": self.done, "total": self.total, "percent": 100 * self.done / self.total}


class ManagerBackend:
    """The API's Backend over a real JobManager and SQLite store, running FakeRuns."""

    def __init__(self, root: Path, make_run=None, **limits):
        self.root = root
        self.make_run = make_run or (lambda kind, request: FakeRun(kind))
        self.limits = {"max_running": 2, "max_queued": 2, "progress_interval_s": 0.02, **limits}
        self.manager: JobManager | None = None
        self.runs: list[FakeRun] = []

    def _manager(self) -> JobManager:
        if self.manager is None:  # created inside the app's event loop, as the actor is
            self.manager = JobManager(SqliteJobStore(self.root / "jobs.sqlite3"), **self.limits)
        return self.manager

    async def submit(self, request, idempotency_key, caller):
        kind = "eval" if isinstance(request, EvalRequest) else "perf"
        run = self.make_run(kind, request)
        self.runs.append(run)
        run.output_dir = self.root / "out" / str(len(self.runs))
        return self._manager().submit(Submission(
            kind=kind, model=request.model, request_view=request.model_dump(mode="json"),
            output_dir=str(run.output_dir), run=run, idempotency_key=idempotency_key,
            body_digest=body_digest(request, service_secret(self.root, None)), owner=caller.name,
        ))

    async def get(self, job_id, caller):
        return self._manager().get(job_id, caller)

    async def list(self, caller, **filters):
        return self._manager().list(caller, **filters)

    async def leaderboard(self, caller, models, datasets):
        return self._manager().leaderboard(caller, models, datasets)

    async def history(self, caller, model, **filters):
        return self._manager().history(caller, model, **filters)

    async def wait(self, job_id, caller):
        return await self._manager().wait(job_id, caller)

    async def cancel(self, job_id, caller):
        return await self._manager().cancel(job_id, caller)

    def benchmarks(self):
        return describe_benchmarks(ServiceArgs(datasets_root=self.root / "datasets"))

