"""The Ray-backed implementation of the API's Backend: what the ingress replica calls."""

from __future__ import annotations

from serve_app.config import ServiceArgs
from serve_app.eval.service import run_eval
from serve_app.perf.service import run_perf
from serve_app.schemas import EvalRequest, EvalResponse, PerfRequest, PerfResponse


class RayBackend:
    def __init__(self, args: ServiceArgs) -> None:
        self.args = args

    async def run_eval(self, request: EvalRequest) -> EvalResponse:
        return await run_eval(request, self.args)

    async def run_perf(self, request: PerfRequest) -> PerfResponse:
        return await run_perf(request, self.args)
