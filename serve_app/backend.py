"""The Ray-backed implementation of the API's Backend: validate and plan here, run in the job manager actor."""

from __future__ import annotations

import asyncio
from typing import Any

from ray.exceptions import RayActorError, RayTaskError

from serve_app.config import ServiceArgs
from serve_app.eval.service import prepare_eval
from serve_app.jobs.actor import job_manager
from serve_app.jobs.store import JobRecord
from serve_app.perf.datasets import perf_datasets
from serve_app.perf.service import cluster_workers, plan_perf
from serve_app.principals import Principal
from serve_app.schemas import EvalRequest, PerfRequest
from serve_app.targets import check_target


class RayBackend:
    def __init__(self, args: ServiceArgs) -> None:
        self.args = args
        self._manager = job_manager(args)

    async def submit(
        self, request: EvalRequest | PerfRequest, idempotency_key: str | None, caller: Principal
    ) -> tuple[JobRecord, bool]:
        # Planning refuses bad requests (400) before a job exists; it is pure and cheap, no evalscope here.
        if isinstance(request, EvalRequest):
            await check_target(request.api_url, self.args.allowed_targets)
            plan = await prepare_eval(request, self.args)
        else:
            await check_target(request.url, self.args.allowed_targets)
            await asyncio.to_thread(perf_datasets)  # the first call lists evalscope's plugins in a subprocess (~2 s)
            plan = plan_perf(request, self.args, cluster_workers())
        return await self._call("submit", request, plan, idempotency_key, caller)

    async def get(self, job_id: str, caller: Principal) -> JobRecord:
        return await self._call("get", job_id, caller)

    async def list(self, caller: Principal, **filters: Any) -> tuple[list[JobRecord], int]:
        return await self._call("list", caller, **filters)

    async def wait(self, job_id: str, caller: Principal) -> JobRecord:
        return await self._call("wait", job_id, caller)

    async def cancel(self, job_id: str, caller: Principal) -> JobRecord:
        return await self._call("cancel", job_id, caller)

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
