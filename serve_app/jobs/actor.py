"""The job manager as a named, detached Ray actor: one owner of job state for every ingress replica.

Detached, so it outlives the replica that created it; restarted by Ray if its process dies, and then it marks
the jobs it was running as interrupted. The runs it starts, and their worker actors (also those it keeps started
ahead of need), are owned by it: they die with it.

Named after the outputs root and the code it runs: a redeploy with new code starts a new manager, which takes the
old one's queue over; the old one retires, runs its running jobs to their end and then exits. A redeploy with the
same code and new settings reaches the running manager through configure().
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib.metadata
import logging
import warnings
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

import serve_app
from serve_app.background import keep_running
from serve_app.config import ServiceArgs
from serve_app.errors import StorageError
from serve_app.eval.plan import EvalPlan
from serve_app.eval.service import EvalRun
from serve_app.jobs.digest import body_digest, service_secret
from serve_app.jobs.manager import Handoff, JobManager, JobRun, QueuedJob, Submission
from serve_app.jobs.store import TERMINAL, JobRecord, JobSummary, LatestScore, SqliteJobStore
from serve_app.jobs.workers import WorkerPools
from serve_app.metrics import EvalMetrics, JobMetrics, LabelBudget
from serve_app.perf.service import PerfPlan, PerfRun
from serve_app.principals import Principal
from serve_app.schemas import EvalRequest, PerfRequest

JOBS_DB = "jobs.sqlite3"  # under the outputs root
NAMESPACE = "evalscope"
HEAD_NODE_RESOURCE = "node:__internal_head__"  # Ray gives the head node one of it
# A retired manager outlives its last job this long: replicas of the old deployment may still call it meanwhile
# (Serve stops them within their graceful shutdown timeout, 20 s by default).
RETIRED_GRACE_S = 120.0
HANDOVER_TIMEOUT_S = 30.0
_SERVICE = Principal("job-manager", admin=True)  # the managers' own calls to each other see every job

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


@functools.cache
def code_version() -> str:
    """A digest of the code a job manager runs: this package's sources and the evalscope and Ray under them."""
    digest = hashlib.sha256()
    package = Path(serve_app.__file__).parent
    for source in sorted(package.rglob("*.py")):
        digest.update(str(source.relative_to(package)).encode() + b"\0" + source.read_bytes())
    for distribution in ("evalscope", "ray"):
        digest.update(importlib.metadata.version(distribution).encode())
    return digest.hexdigest()[:12]


def _outputs_key(args: ServiceArgs) -> str:
    return "evalscope-jobs-" + hashlib.sha256(str(args.outputs_root).encode()).hexdigest()[:12]


def _managers_of(args: ServiceArgs, excluding: str) -> list[ray.actor.ActorHandle]:
    """The other live job managers of these outputs: earlier code's, and one named by the outputs root alone (the
    name before managers carried their code's)."""
    key = _outputs_key(args)
    handles = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = entry["name"]
        if entry["namespace"] == NAMESPACE and name != excluding and (name == key or name.startswith(key + "-")):
            try:
                handles.append(ray.get_actor(name, namespace=NAMESPACE))
            except ValueError:  # it ended meanwhile
                continue
    return handles


def _was_restarted() -> bool:
    with warnings.catch_warnings():  # the property reads a deprecated field inside Ray
        warnings.simplefilter("ignore", DeprecationWarning)
        return ray.get_runtime_context().was_current_actor_reconstructed


async def _forward(ref: ray.ObjectRef) -> Any:
    """Another manager's answer; its own exceptions come back as themselves, as the backend expects."""
    try:
        return await ref
    except RayTaskError as exc:
        raise (exc.cause or exc) from None


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
        self._adopted: list[tuple[QueuedJob, JobRun]] = []  # the queues taken over, until the store opens
        self._predecessors: dict[str, ray.actor.ActorHandle] = {}  # job id -> the retiring manager running it
        self._running_elsewhere: dict[str, str] = {}  # job id -> owner, of the jobs in _predecessors
        self._successor: ray.actor.ActorHandle | None = None  # once retired: where new jobs go
        self._ready = asyncio.get_running_loop().create_task(self._take_over())

    async def _take_over(self) -> None:
        """Become the manager of these outputs: take the queues of the earlier managers, which retire. A manager
        whose process died and was restarted retires at once instead, should a newer one have taken over."""
        context = ray.get_runtime_context()
        others = _managers_of(self.args, excluding=context.get_actor_name())
        if _was_restarted():
            for other in others:
                try:
                    retired = await asyncio.wait_for(other.retired.remote(), HANDOVER_TIMEOUT_S)
                except (AttributeError, RayActorError, asyncio.TimeoutError):
                    continue
                if not retired:
                    self._successor = other
                    self.workers.close()
                    keep_running(self._exit_when_done([]))
                    return
        running: dict[str, str] = {}
        for other in others:
            try:
                handoff: Handoff = await asyncio.wait_for(other.retire.remote(context.current_actor),
                                                          HANDOVER_TIMEOUT_S)
            except AttributeError:  # a manager from before handovers: its unfinished jobs end as interrupted
                ray.kill(other, no_restart=True)
                continue
            except (RayActorError, RayTaskError, asyncio.TimeoutError) as exc:
                logger.warning("an earlier job manager did not hand its jobs over: %s", exc)
                continue
            self._adopted += [(job, self._make_run(*job.resubmit)) for job in handoff.queued]
            running.update(handoff.running)
            self._predecessors.update(dict.fromkeys(handoff.running, other))
            logger.info("took over %d queued jobs from an earlier job manager, which still runs %d",
                        len(handoff.queued), len(handoff.running))
        self._running_elsewhere = running
        try:
            self._manager = self._open()  # at once, so a restart marks its predecessor's jobs interrupted now
        except StorageError as exc:
            logger.error("the job store cannot be opened yet: %s", exc)
        for job_id, predecessor in self._predecessors.items():
            keep_running(self._follow(job_id, predecessor))

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
        manager = JobManager(SqliteJobStore(self.args.outputs_root / JOBS_DB), **self._limits(), events=JobMetrics(),
                             adopted=self._adopted, running_elsewhere=self._running_elsewhere)
        self._adopted = []
        return manager

    def _limits(self) -> dict:
        return {
            "max_running": self.args.max_running_jobs,
            "max_queued": self.args.max_queued_jobs,
            "max_running_per_principal": self.args.max_running_jobs_per_principal,
            "max_queued_per_principal": self.args.max_queued_jobs_per_principal,
            "retry_after_s": self.args.retry_after_s,
            "progress_interval_s": self.args.progress_interval_s,
        }

    def _make_run(self, request: EvalRequest | PerfRequest, plan: EvalPlan | PerfPlan) -> JobRun:
        metrics_model = self.model_labels.label(request.model)
        if isinstance(request, EvalRequest):
            return EvalRun(plan, request, self.args, self.workers, self.eval_metrics, metrics_model)
        return PerfRun(plan, request, self.args, self.workers, metrics_model)

    async def configure(self, args: ServiceArgs) -> None:
        """The settings of a redeployed application with the same code (so the same actor): new jobs run under
        them and changed limits apply at once; jobs already queued or running carry on."""
        await self._ready
        self.args = args
        self.model_labels.max_values = args.max_metric_models
        self.workers = self.workers.configured(args)
        self._secret = None  # read again: the operator may have set idempotency_secret_env
        if self._manager is not None:
            self._manager.configure(**self._limits())

    async def retire(self, successor: ray.actor.ActorHandle) -> Handoff:
        """Hand the queue to `successor`, a manager started for newer code, and run the running jobs to their end;
        from now on new jobs, and calls about jobs not run here, go to the successor."""
        await self._ready
        first_time = self._successor is None
        self._successor = successor
        handoff = self.manager.retire()
        self.workers.close()  # idle, they would only hold CPUs that the successor's jobs need
        if first_time:
            logger.info("retiring: %d queued jobs handed to the new job manager, %d running ones finish here",
                        len(handoff.queued), len(handoff.running))
            keep_running(self._exit_when_done(list(handoff.running)))
        return handoff

    async def retired(self) -> bool:
        await self._ready
        return self._successor is not None

    async def _exit_when_done(self, running: list[str]) -> None:
        for job_id in running:
            await self.manager.wait(job_id, _SERVICE)
        await asyncio.sleep(RETIRED_GRACE_S)
        logger.info("retired job manager exits")
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    async def _follow(self, job_id: str, predecessor: ray.actor.ActorHandle) -> None:
        """Free the run slot of a job the retiring predecessor runs once it ends; should the predecessor die
        first, the job ends as interrupted, as it would on a restart."""
        try:
            await predecessor.wait.remote(job_id, _SERVICE)
            lost = False
        except (RayActorError, RayTaskError):
            lost = True
        self._predecessors.pop(job_id, None)
        self.manager.ended_elsewhere(job_id, lost=lost)

    async def submit(
        self,
        request: EvalRequest | PerfRequest,
        plan: EvalPlan | PerfPlan,
        idempotency_key: str | None,
        caller: Principal,
    ) -> tuple[JobRecord, bool]:
        await self._ready
        if self._successor is not None:
            return await _forward(self._successor.submit.remote(request, plan, idempotency_key, caller))
        return self.manager.submit(
            Submission(
                kind="eval" if isinstance(request, EvalRequest) else "perf",
                model=request.model,
                request_view=request.model_dump(mode="json"),  # SecretStr fields dump masked
                output_dir=str(plan.output_dir),
                run=self._make_run(request, plan),
                idempotency_key=idempotency_key,
                body_digest=body_digest(request, self.secret),
                secrets=tuple(request.secret_values()),
                owner=caller.name,
                planned_total=getattr(plan, "total_requests", 0),  # an eval learns its total as datasets load
                resubmit=(request, plan),
            )
        )

    @property
    def _restarted_retired(self) -> bool:
        """Restarted after a newer manager took over: it holds no jobs and must not open (and so interrupt) the
        store's unfinished ones, so it passes every call on."""
        return self._manager is None and self._successor is not None

    def _holder(self, job_id: str) -> ray.actor.ActorHandle | None:
        """The other manager that holds this job (queued or running there), or None: this one or none."""
        if job_id in self._predecessors:
            return self._predecessors[job_id]
        if self._successor is not None and (self._restarted_retired or not self.manager.holds(job_id)):
            return self._successor
        return None

    async def _read(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A read of the one store that every manager of these outputs shares: here, or at the successor when
        this manager restarted after retiring."""
        await self._ready
        if self._restarted_retired:
            return await _forward(getattr(self._successor, method).remote(*args, **kwargs))
        return getattr(self.manager, method)(*args, **kwargs)

    async def get(self, job_id: str, caller: Principal) -> JobRecord:
        return await self._read("get", job_id, caller)

    async def list(self, caller: Principal, **filters: Any) -> tuple[list[JobRecord], int]:
        return await self._read("list", caller, **filters)

    async def leaderboard(self, caller: Principal, models: list[str], datasets: list[str]) -> list[LatestScore]:
        return await self._read("leaderboard", caller, models, datasets)

    async def history(self, caller: Principal, model: str, **filters: Any) -> tuple[list[JobSummary], int]:
        return await self._read("history", caller, model, **filters)

    async def wait(self, job_id: str, caller: Principal) -> JobRecord:
        await self._ready
        holder = self._holder(job_id)
        if holder is not None:
            try:
                return await _forward(holder.wait.remote(job_id, caller))
            except RayActorError:  # a predecessor died with the job; _follow ends it as interrupted
                self.manager.ended_elsewhere(job_id, lost=True)
        record = await self.manager.wait(job_id, caller)
        if record.status in TERMINAL or self._successor is None:
            return record
        return await _forward(self._successor.wait.remote(job_id, caller))  # handed over while it waited here

    async def cancel(self, job_id: str, caller: Principal) -> JobRecord:
        await self._ready
        holder = self._holder(job_id)
        if holder is not None:
            return await _forward(holder.cancel.remote(job_id, caller))
        return await self.manager.cancel(job_id, caller)


def job_manager(args: ServiceArgs, version: str | None = None) -> ray.actor.ActorHandle:
    """The cluster's job manager for these outputs and this code (`version`: another code's), created on first
    use (also after it was lost); a new one takes over from the managers of other code on the same outputs."""
    return JobManagerActor.options(
        name=f"{_outputs_key(args)}-{version or code_version()}",
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        max_concurrency=1000,
        # On the head node, which an autoscaler never removes and where no job runs: a worker node that goes would
        # take every job the manager runs with it. Ray's own head-node resource, not a soft affinity to the head's
        # id: that one let Ray start the manager on a worker node while the head was busy starting processes (seen
        # on a busy CI machine), and a restarted head has another id.
        resources={HEAD_NODE_RESOURCE: 0.001},
    ).remote(args)
