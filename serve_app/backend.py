"""The Ray-backed implementation of the API's Backend: validate and plan here, run in the job manager actor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.exceptions import RayActorError, RayTaskError

from serve_app.admission import admit_eval, admit_perf
from serve_app.config import ServiceArgs
from serve_app.eval.catalogue import describe_benchmarks
from serve_app.eval.resume import check_resumable
from serve_app.jobs.actor import job_manager
from serve_app.jobs.store import JobRecord, JobSummary, LatestScore
from serve_app.perf.service import cluster_cpus
from serve_app.principals import Principal
from serve_app.schemas import BenchmarkInfo, EvalRequest, PerfRequest


class RayBackend:
    def __init__(self, args: ServiceArgs) -> None:
        self.args = args
        self._manager = job_manager(args)
        # A manager that outlived an earlier deployment of this application takes this one's settings. Calls from
        # one caller run in order, so every later call sees them.
        self._manager.configure.remote(args)

    async def submit(
        self, request: EvalRequest | PerfRequest, idempotency_key: str | None, caller: Principal
    ) -> tuple[JobRecord, bool]:
        # Admission refuses bad requests (400) before a job exists; no evalscope in this process.
        if isinstance(request, EvalRequest):
            resumed_dir = None
            if request.resume_from is not None:
                previous = await self.get(request.resume_from, caller)  # another principal's job: not found
                check_resumable(previous)
                resumed_dir = Path(previous.output_dir)
            plan = await admit_eval(request, self.args, resumed_dir)
        else:
            plan = await admit_perf(request, self.args, cluster_cpus(self.args))
        return await self._call("submit", request, plan, idempotency_key, caller)

    async def get(self, job_id: str, caller: Principal) -> JobRecord:
        return await self._call("get", job_id, caller)

    async def list(self, caller: Principal, **filters: Any) -> tuple[list[JobRecord], int]:
        return await self._call("list", caller, **filters)

    async def leaderboard(self, caller: Principal, models: list[str], datasets: list[str]) -> list[LatestScore]:
        return await self._call("leaderboard", caller, models, datasets)

    async def history(self, caller: Principal, model: str, **filters: Any) -> tuple[list[JobSummary], int]:
        return await self._call("history", caller, model, **filters)

    async def wait(self, job_id: str, caller: Principal) -> JobRecord:
        return await self._call("wait", job_id, caller)

    async def cancel(self, job_id: str, caller: Principal) -> JobRecord:
        return await self._call("cancel", job_id, caller)

    def benchmarks(self) -> list[BenchmarkInfo]:
        return describe_benchmarks(self.args)

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call the manager; its own exceptions come back as themselves, and a lost manager is found again."""
        for attempt in range(2):
            try:
                return await getattr(self._manager, method).remote(*args, **kwargs)
            except RayTaskError as exc:
                raise (exc.cause or exc) from None
            except RayActorError:
                if attempt:
                    raise
                self._manager = job_manager(self.args)  # a new manager marks the lost one's jobs interrupted
