"""The job manager as a named, detached Ray actor: one owner of job state for every ingress replica.

Detached, so it outlives the replica that created it; restarted by Ray if its process dies, and then it marks
the jobs it was running as interrupted. The runs it starts, and their worker actors (also those it keeps started
ahead of need), are owned by it: they die with it.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import ray

from serve_app.config import ServiceArgs
from serve_app.errors import StorageError
from serve_app.eval.plan import EvalPlan
from serve_app.eval.service import EvalRun
from serve_app.jobs.digest import body_digest, service_secret
from serve_app.jobs.manager import JobManager, Submission
from serve_app.jobs.store import JobRecord, SqliteJobStore
from serve_app.jobs.workers import WorkerPools
from serve_app.metrics import EvalMetrics, JobMetrics, LabelBudget
from serve_app.perf.service import PerfPlan, PerfRun
from serve_app.principals import Principal
from serve_app.schemas import EvalRequest, PerfRequest

JOBS_DB = "jobs.sqlite3"  # under the outputs root

logger = logging.getLogger("serve_app.jobs")
_SERVICE_LOG_FORMAT = "%(levelname)s %(asctime)s %(name)s -- %(message)s"  # like Serve's own lines


def _print_to_service_log() -> None:
    """The service's lines (one per job event, warnings, errors) on this process's stderr, which Ray forwards to
    the service log; unconfigured, Python would drop the info lines and print the others without a time."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(_SERVICE_LOG_FORMAT))
    service_logger = logging.getLogger("serve_app")
    service_logger.addHandler(handler)
    service_logger.setLevel(logging.INFO)
    service_logger.propagate = False  # evalscope, once loaded here, gives the root logger a console handler too


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class JobManagerActor:
    def __init__(self, args: ServiceArgs) -> None:
        _print_to_service_log()
        self.args = args
        self.eval_metrics = EvalMetrics()
        self.model_labels = LabelBudget(args.max_metric_models)  # the one place every job's model passes
        self.workers = WorkerPools(args)
        self._manager: JobManager | None = None
        self._secret: bytes | None = None
        try:
            self._manager = self._open()  # at once, so a restart marks its predecessor's jobs interrupted now
        except StorageError as exc:
            logger.error("the job store cannot be opened yet: %s", exc)

    @property
    def manager(self) -> JobManager:
        """The job manager; while its store cannot be opened every call fails with why, and the next call tries
        again, so fixing the outputs root needs no restart (an actor whose __init__ raised would be dead)."""
        if self._manager is None:
            self._manager = self._open()
        return self._manager

    @property
    def secret(self) -> bytes:
        if self._secret is None:
            self._secret = service_secret(self.args.outputs_root, self.args.idempotency_secret_env)
        return self._secret

    def _open(self) -> JobManager:
        return JobManager(SqliteJobStore(self.args.outputs_root / JOBS_DB), **self._limits(), events=JobMetrics())

    def _limits(self) -> dict:
        return {
            "max_running": self.args.max_running_jobs,
            "max_queued": self.args.max_queued_jobs,
            "max_running_per_principal": self.args.max_running_jobs_per_principal,
            "max_queued_per_principal": self.args.max_queued_jobs_per_principal,
            "retry_after_s": self.args.retry_after_s,
            "progress_interval_s": self.args.progress_interval_s,
        }

    def configure(self, args: ServiceArgs) -> None:
        """The settings of a redeployed application (same outputs root, so the same actor): new jobs run under them
        and changed limits apply at once; jobs already queued or running carry on."""
        self.args = args
        self.model_labels.max_values = args.max_metric_models
        self.workers = self.workers.configured(args)
        self._secret = None  # read again: the operator may have set idempotency_secret_env
        if self._manager is not None:
            self._manager.configure(**self._limits())

    async def submit(
        self,
        request: EvalRequest | PerfRequest,
        plan: EvalPlan | PerfPlan,
        idempotency_key: str | None,
        caller: Principal,
    ) -> tuple[JobRecord, bool]:
        metrics_model = self.model_labels.label(request.model)
        if isinstance(request, EvalRequest):
            kind, run = "eval", EvalRun(plan, request, self.args, self.workers, self.eval_metrics, metrics_model)
        else:
            kind, run = "perf", PerfRun(plan, request, self.args, self.workers, metrics_model)
        return self.manager.submit(
            Submission(
                kind=kind,
                model=request.model,
                request_view=request.model_dump(mode="json"),  # SecretStr fields dump masked
                output_dir=str(plan.output_dir),
                run=run,
                idempotency_key=idempotency_key,
                body_digest=body_digest(request, self.secret),
                secrets=(request.api_key.get_secret_value(),) if request.api_key else (),
                owner=caller.name,
                planned_total=getattr(plan, "total_requests", 0),  # an eval learns its total as datasets load
            )
        )

    async def get(self, job_id: str, caller: Principal) -> JobRecord:
        return self.manager.get(job_id, caller)

    async def list(self, caller: Principal, **filters: Any) -> tuple[list[JobRecord], int]:
        return self.manager.list(caller, **filters)

    async def wait(self, job_id: str, caller: Principal) -> JobRecord:
        return await self.manager.wait(job_id, caller)

    async def cancel(self, job_id: str, caller: Principal) -> JobRecord:
        return await self.manager.cancel(job_id, caller)


def job_manager(args: ServiceArgs) -> ray.actor.ActorHandle:
    """The cluster's job manager for these outputs, created on first use (also after it was lost)."""
    name = "evalscope-jobs-" + hashlib.sha256(str(args.outputs_root).encode()).hexdigest()[:12]
    return JobManagerActor.options(
        name=name, namespace="evalscope", lifetime="detached", get_if_exists=True, max_concurrency=1000
    ).remote(args)
