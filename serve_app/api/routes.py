"""Thin routers: parse, hand the validated request to the backend, translate its answer into HTTP."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from serve_app.api.pages import root_path
from serve_app.assets import offline_report
from serve_app.auth import caller
from serve_app.compare.jobs import compare_jobs
from serve_app.compare.perf import DEFAULT_TOLERANCE
from serve_app.errors import JobEndedUnfinished, RunError
from serve_app.eval.resume import resume_request
from serve_app.jobs.store import TERMINAL, JobRecord, JobSummary, LatestScore
from serve_app.paths import JOB_LOG
from serve_app.principals import Principal
from serve_app.schemas import (
    BenchmarkCatalogue,
    BenchmarkInfo,
    CallerView,
    Comparison,
    ErrorResponse,
    EvalRequest,
    EvalResponse,
    HealthResponse,
    HistoryEntry,
    JobList,
    JobLog,
    JobProgress,
    JobStatus,
    JobView,
    Leaderboard,
    LeaderboardEntry,
    ModelHistory,
    PerfRequest,
    PerfResponse,
    ResumeRequest,
)


class Backend(Protocol):
    """Submits and follows jobs; the Ray implementation lives in serve_app.backend."""

    async def submit(
        self, request: EvalRequest | PerfRequest, idempotency_key: str | None, caller: Principal
    ) -> tuple[JobRecord, bool]: ...

    # Each call acts only on jobs `caller` may see: another principal's job is not found.
    async def get(self, job_id: str, caller: Principal) -> JobRecord: ...

    async def list(self, caller: Principal, **filters: Any) -> tuple[list[JobRecord], int]: ...

    async def wait(self, job_id: str, caller: Principal) -> JobRecord: ...

    async def cancel(self, job_id: str, caller: Principal) -> JobRecord: ...

    async def leaderboard(self, caller: Principal, models: list[str], datasets: list[str]) -> list[LatestScore]: ...

    async def history(self, caller: Principal, model: str, **filters: Any) -> tuple[list[JobSummary], int]: ...

    def benchmarks(self) -> list[BenchmarkInfo]: ...


_ERRORS = {
    400: {"model": ErrorResponse, "description": "Invalid parameters"},
    409: {"model": ErrorResponse, "description": "Idempotency-Key reused with another body, or the job waited on "
          "was cancelled or interrupted by a restart (submit it again under a new key)"},
    429: {"model": ErrorResponse, "description": "Too many jobs running and queued; see Retry-After"},
    500: {"model": ErrorResponse, "description": "The run failed, or the outputs root cannot be written"},
    507: {"model": ErrorResponse, "description": "The outputs root is full"},
}
# Spelled out on an HTML route: with a model, FastAPI would document the error as HTML too.
_JSON_NOT_FOUND = {404: {"description": "Not Found",
                         "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}}
_ACCEPTED = {202: {"model": JobView, "description": "Accepted (?wait=false or Prefer: respond-async)"}}
_EVENT_POLL_S = 0.5
_MAX_OFFSET = 2**62  # SQLite integers are 64-bit

router = APIRouter()


@router.get("/health", response_model=HealthResponse, tags=["health"])
async def health() -> HealthResponse:
    return HealthResponse(timestamp=datetime.now(timezone.utc).isoformat())


WaitQuery = Annotated[bool, Query(description="false: answer 202 with the job at once instead of its result.")]
PreferHeader = Annotated[str | None, Header(description="`respond-async` does what wait=false does.")]
KeyHeader = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=255, description="A retried submission with the "
           "same key and body returns the same job instead of starting another run."),
]


@router.post("/api/v1/eval", response_model=EvalResponse, responses={**_ACCEPTED, **_ERRORS}, tags=["eval"])
async def evaluate(
    body: EvalRequest, request: Request, wait: WaitQuery = True, prefer: PreferHeader = None,
    idempotency_key: KeyHeader = None,
) -> Any:
    return await _submit(body, request, wait, prefer, idempotency_key)


@router.post("/api/v1/perf", response_model=PerfResponse, responses={**_ACCEPTED, **_ERRORS}, tags=["perf"])
async def perf(
    body: PerfRequest, request: Request, wait: WaitQuery = True, prefer: PreferHeader = None,
    idempotency_key: KeyHeader = None,
) -> Any:
    return await _submit(body, request, wait, prefer, idempotency_key)


@router.post("/api/v1/jobs/{job_id}/resume", response_model=EvalResponse, tags=["eval"],
             responses={**_ACCEPTED, **_ERRORS, 404: {"model": ErrorResponse},
                        409: {"model": ErrorResponse, "description": "The job cannot be resumed (why), or the "
                              "Idempotency-Key was used with another body"}})
async def resume_job(
    job_id: str, body: ResumeRequest, request: Request, wait: WaitQuery = True, prefer: PreferHeader = None,
    idempotency_key: KeyHeader = None,
) -> Any:
    """Run a failed, cancelled or interrupted eval again as a new job that reuses its predictions. Resuming one job
    twice returns the first resumed job (the key defaults to one per job resumed); resume that one to go on."""
    resumed = resume_request(await request.app.state.backend.get(job_id, caller(request)), body)
    return await _submit(resumed, request, wait, prefer, idempotency_key or f"resume-of-{job_id}")


async def _submit(body: EvalRequest | PerfRequest, request: Request, wait: bool, prefer: str | None,
                  idempotency_key: str | None) -> JSONResponse:
    request.state.debug = body.debug
    backend: Backend = request.app.state.backend
    job, _ = await backend.submit(body, idempotency_key, caller(request))
    if not wait or "respond-async" in (prefer or "").lower():
        return JSONResponse(status_code=202, content=job_view(job).model_dump(mode="json"),
                            headers={"Location": f"/api/v1/jobs/{job.id}"})
    job = await backend.wait(job.id, caller(request))
    if job.status in ("cancelled", "interrupted"):
        raise JobEndedUnfinished(f"job {job.id} was {job.status}" + (f": {job.error}" if job.error else ""))
    if job.status != "succeeded":
        raise RunError(job.error or f"the job ended {job.status}")
    return JSONResponse(content=job.result)


@router.get("/api/v1/me", response_model=CallerView, tags=["jobs"])
async def whoami(request: Request) -> CallerView:
    """The principal the caller's token stands for, whether it is an admin, and whether tokens are required."""
    who = caller(request)
    return CallerView(principal=who.name, admin=who.admin, auth=request.app.state.auth)


@router.get("/api/v1/benchmarks", response_model=BenchmarkCatalogue, tags=["eval"])
async def list_benchmarks(request: Request) -> BenchmarkCatalogue:
    """evalscope's benchmarks: their subsets and metrics, whether this service refuses them and why, and whether
    each is staged under the datasets root (runs with no dataset hub)."""
    return BenchmarkCatalogue(benchmarks=request.app.state.backend.benchmarks())


@router.get("/api/v1/jobs", response_model=JobList, tags=["jobs"])
async def list_jobs(
    request: Request,
    kind: Annotated[str | None, Query(pattern="^(eval|perf)$")] = None,
    status: JobStatus | None = None,
    model: str | None = None,
    owner: Annotated[str | None, Query(description="An admin's filter; others always see their own jobs.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=_MAX_OFFSET)] = 0,
) -> JobList:
    jobs, total = await request.app.state.backend.list(caller(request), kind=kind, status=status, model=model,
                                                        owner=owner, limit=limit, offset=offset)
    return JobList(jobs=[job_view(job) for job in jobs], total=total, limit=limit, offset=offset)


@router.get("/api/v1/jobs/{job_id}", response_model=JobView, responses={404: {"model": ErrorResponse}},
            tags=["jobs"])
async def get_job(job_id: str, request: Request) -> JobView:
    return job_view(await request.app.state.backend.get(job_id, caller(request)))


@router.post("/api/v1/jobs/{job_id}/cancel", response_model=JobView, tags=["jobs"],
             responses={404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}})
async def cancel_job(job_id: str, request: Request) -> JobView:
    return job_view(await request.app.state.backend.cancel(job_id, caller(request)))


@router.get("/api/v1/jobs/{job_id}/events", tags=["jobs"], responses={404: {"model": ErrorResponse}},
            response_class=StreamingResponse)
async def job_events(job_id: str, request: Request) -> StreamingResponse:
    """Server-Sent Events: one `job` event per change of status or progress, until the job ends."""
    backend: Backend = request.app.state.backend
    who = caller(request)
    first = await backend.get(job_id, who)  # a 404 before the stream starts

    async def stream():
        job, last = first, None
        while True:
            view = job_view(job)
            snapshot = (view.status, view.progress)
            if snapshot != last:
                last = snapshot
                data = {"job_id": job.id, "status": view.status, "progress": view.progress.model_dump()}
                if job.status in TERMINAL:
                    data.update(error=view.error)
                yield f"event: job\ndata: {json.dumps(data)}\n\n"
            if job.status in TERMINAL:
                return
            await asyncio.sleep(_EVENT_POLL_S)
            job = await backend.get(job_id, who)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get("/api/v1/jobs/{job_id}/log", response_model=JobLog, responses={404: {"model": ErrorResponse}},
            tags=["jobs"])
async def job_log(
    job_id: str, request: Request, offset: Annotated[int, Query(ge=0, le=_MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> JobLog:
    job = await request.app.state.backend.get(job_id, caller(request))
    path = Path(job.output_dir) / JOB_LOG
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines() if path.is_file() else []
    page = lines[offset : offset + limit]
    return JobLog(job_id=job.id, offset=offset, lines=page, next_offset=offset + len(page), total=len(lines))


@router.get("/api/v1/jobs/{job_id}/report", tags=["jobs"], response_class=HTMLResponse, responses=_JSON_NOT_FOUND)
async def job_report(job_id: str, request: Request) -> HTMLResponse:
    """evalscope's HTML report: the eval report over every dataset, or the perf report over every test point; its
    charts' script comes from this service, not evalscope's CDN."""
    job = await request.app.state.backend.get(job_id, caller(request))
    output = Path(job.output_dir)
    report = output / "reports" / "report.html" if job.kind == "eval" else output / "perf_report.html"
    if not report.is_file() and job.status == "succeeded":
        return _not_found(f"the report of job {job.id} is still being written (it follows the result); try again "
                          "in a few seconds")
    if not report.is_file():
        return _not_found(f"job {job.id} has no report ({job.status}); reports are written when a job succeeds")
    html = await asyncio.to_thread(report.read_text, encoding="utf-8")
    return HTMLResponse(offline_report(html, root_path(request)))


@router.get("/api/v1/jobs/{job_id}/artifacts", tags=["jobs"], response_class=FileResponse,
            responses={404: {"model": ErrorResponse}})
async def job_artifacts(job_id: str, request: Request) -> FileResponse:
    """The job's output directory as a zip (partial outputs too, for failed and cancelled jobs)."""
    job = await request.app.state.backend.get(job_id, caller(request))
    if not Path(job.output_dir).is_dir():
        return _not_found(f"job {job.id} has no outputs yet")
    scratch = tempfile.mkdtemp(prefix="artifacts-")
    archive = await asyncio.to_thread(shutil.make_archive, str(Path(scratch) / job.id), "zip", job.output_dir)
    return FileResponse(archive, media_type="application/zip", filename=f"{job.id}.zip",
                        background=BackgroundTask(shutil.rmtree, scratch, ignore_errors=True))


@router.get("/api/v1/compare", response_model=Comparison, tags=["history"],
            responses={400: {"model": ErrorResponse, "description": "Jobs of two kinds, or a malformed tolerance"},
                       404: {"model": ErrorResponse},
                       409: {"model": ErrorResponse, "description": "A job that has not succeeded"}})
async def compare(
    request: Request,
    baseline: Annotated[str, Query(description="The job to compare against (production's, say).")],
    candidate: Annotated[str, Query(description="The job compared with it.")],
    tolerance: Annotated[str, Query(description="perf: a change within this percentage is within tolerance.")]
    = DEFAULT_TOLERANCE,
) -> Comparison:
    """Two succeeded jobs of one kind. eval: per dataset and subset, the score difference with a 95 % paired
    bootstrap interval over the samples both jobs scored (unpaired samples counted and listed); perf: per test
    point, metric and percentile, the change against the tolerance. Request fields that differ are listed, and
    those that change what is measured make the jobs not comparable."""
    backend: Backend = request.app.state.backend
    jobs = [await backend.get(job_id, caller(request)) for job_id in (baseline, candidate)]
    return await asyncio.to_thread(compare_jobs, *jobs, tolerance)  # reads review files, resamples


def _names(text: str | None) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


@router.get("/api/v1/leaderboard", response_model=Leaderboard, tags=["history"])
async def leaderboard(
    request: Request,
    datasets: Annotated[str | None, Query(description="Comma-separated; default: every dataset.")] = None,
    models: Annotated[str | None, Query(description="Comma-separated; default: every model.")] = None,
) -> Leaderboard:
    """The newest score of each model on each dataset, from the succeeded evals the caller may see."""
    scores = await request.app.state.backend.leaderboard(caller(request), _names(models), _names(datasets))
    return Leaderboard(entries=[
        LeaderboardEntry(model=s.model, dataset=s.dataset, score=s.score, job_id=s.job_id,
                         finished_at=_iso(s.finished_at),
                         links={"job": f"/api/v1/jobs/{s.job_id}", "history": f"/api/v1/models/{s.model}/history"})
        for s in scores])


@router.get("/api/v1/models/{model:path}/history", response_model=ModelHistory, tags=["history"])
async def model_history(
    model: str,
    request: Request,
    kind: Annotated[str | None, Query(pattern="^(eval|perf)$")] = None,
    mine: Annotated[bool, Query(description="Only the caller's own jobs (an admin otherwise sees everyone's).")]
    = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=_MAX_OFFSET)] = 0,
) -> ModelHistory:
    """The model's succeeded jobs the caller may see, newest first: each eval's scores, each perf test point's key
    metrics."""
    jobs, total = await request.app.state.backend.history(caller(request), model, kind=kind, mine=mine, limit=limit,
                                                          offset=offset)
    return ModelHistory(model=model, jobs=[_history_entry(job) for job in jobs], total=total, limit=limit,
                        offset=offset)


def _history_entry(job: JobSummary) -> HistoryEntry:
    return HistoryEntry(job_id=job.id, kind=job.kind, owner=job.owner, created_at=_iso(job.created_at),
                        finished_at=_iso(job.finished_at), scores=job.summary.get("scores"),
                        perf=job.summary.get("points"), link=f"/api/v1/jobs/{job.id}")


def _not_found(message: str) -> JSONResponse:
    return JSONResponse(status_code=404, content=ErrorResponse(message=message).model_dump(exclude_none=True))


def job_view(job: JobRecord) -> JobView:
    base = f"/api/v1/jobs/{job.id}"
    return JobView(
        job_id=job.id,
        kind=job.kind,
        status=job.status,
        model=job.model,
        owner=job.owner,
        created_at=_iso(job.created_at),
        started_at=_iso(job.started_at),
        finished_at=_iso(job.finished_at),
        progress=JobProgress(**job.progress),
        request=job.request,
        result=job.result,
        error=job.error,
        output_dir=job.output_dir,
        links={name: f"{base}/{name}" if name != "self" else base
               for name in ("self", "events", "log", "report", "artifacts")},
    )


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, timezone.utc).isoformat()
