"""Thin routers: parse, hand the validated request to the backend, return its response."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Protocol

from fastapi import APIRouter, Request

from serve_app.schemas import ErrorResponse, EvalRequest, EvalResponse, HealthResponse, PerfRequest, PerfResponse


class Backend(Protocol):
    """Runs validated requests; the Ray implementation lives in serve_app.backend."""

    async def run_eval(self, request: EvalRequest) -> EvalResponse: ...

    async def run_perf(self, request: PerfRequest) -> PerfResponse: ...


_ERRORS = {
    400: {"model": ErrorResponse, "description": "Invalid parameters"},
    500: {"model": ErrorResponse, "description": "The run failed"},
}

router = APIRouter()


@router.get("/health", response_model=HealthResponse, tags=["health"])
async def health() -> HealthResponse:
    return HealthResponse(timestamp=datetime.now(timezone.utc).isoformat())


@router.post("/api/v1/eval", response_model=EvalResponse, responses=_ERRORS, tags=["eval"])
async def evaluate(body: EvalRequest, request: Request) -> EvalResponse:
    request.state.debug = body.debug
    return await request.app.state.backend.run_eval(body)


@router.post("/api/v1/perf", response_model=PerfResponse, responses=_ERRORS, tags=["perf"])
async def perf(body: PerfRequest, request: Request) -> PerfResponse:
    request.state.debug = body.debug
    return await request.app.state.backend.run_perf(body)
