"""The one owner of job state: admission, a FIFO queue, running, progress, cancel and recovery after a restart.

Plain asyncio: the Ray actor in serve_app.jobs.actor wraps it, and unit tests drive it with stand-in runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from serve_app.errors import PartialRunError, RequestError, RunError, StorageError, storage_error
from serve_app.jobs.output import secrets_to_mask
from serve_app.jobs.store import TERMINAL, DuplicateKey, JobRecord, JobStore, JobSummary, LatestScore
from serve_app.paths import JOB_LOG
from serve_app.principals import DEFAULT_PRINCIPAL, Principal

logger = logging.getLogger("serve_app.jobs")

CANCELLED_MESSAGE = "cancelled by request; partial outputs are kept"
RESTART_MESSAGE = "the service restarted before this job finished; its partial outputs are kept, submit it again"


class QueueFull(Exception):
    """No room for another job: the service's or the caller's own limit; the message says which."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message, retry_after_s)  # these args are what pickling (Ray) rebuilds it from
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return self.args[0]


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with another request body."""


class JobNotFound(KeyError):
    pass


class JobFinished(Exception):
    """The job already ended, so it cannot be cancelled."""


class JobRun(Protocol):
    """A prepared run; holds the request with its secrets, which never reach the store."""

    async def execute(self) -> Any: ...  # a pydantic response model

    async def progress(self) -> dict: ...  # {"done", "total", "percent"}


@dataclass(frozen=True)
class Submission:
    kind: str
    model: str
    request_view: dict  # the request with secrets masked: what the store keeps and the API shows
    output_dir: str
    run: JobRun
    idempotency_key: str | None = None
    body_digest: str | None = None
    secrets: tuple[str, ...] = ()  # masked in the job's error, should a target echo one back in its answer
    owner: str = DEFAULT_PRINCIPAL
    planned_total: int = 0  # requests or samples, where known before the run starts (perf)
    resubmit: Any = None  # what a successor manager rebuilds the run from, should this one retire while it waits


@dataclass(frozen=True)
class QueuedJob:
    """A job that waits in a retiring manager's queue, handed over to be run by its successor."""

    job_id: str
    owner: str
    resubmit: Any
    secrets: tuple[str, ...]


@dataclass(frozen=True)
class Handoff:
    """What a retiring manager gives its successor: its queue, and the jobs it still runs to their end."""

    queued: list[QueuedJob]
    running: dict[str, str]  # job id -> owner


class JobEvents(Protocol):
    """Where job lifecycle numbers go (serve_app.metrics.JobMetrics in the service)."""

    def job_submitted(self, kind: str) -> None: ...

    def job_finished(self, kind: str, status: str, duration_s: float | None) -> None: ...

    def jobs_running(self, kind: str, count: int) -> None: ...


class JobManager:
    def __init__(
        self,
        store: JobStore,
        *,
        events: JobEvents | None = None,
        adopted: Iterable[tuple[QueuedJob, JobRun]] = (),
        running_elsewhere: Mapping[str, str] | None = None,
        **limits: Any,
    ) -> None:
        """`limits` are configure()'s. A successor of a retiring manager `adopted` its queue (each job with a run
        rebuilt here) and counts the jobs still `running_elsewhere` (id -> owner) against its limits until
        ended_elsewhere() says they ended."""
        adopted = list(adopted)
        self.store = store
        self.events = events
        self._queue: deque[str] = deque()
        self._runs: dict[str, JobRun] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self._running_kinds: dict[str, str] = {}  # job id -> kind, for the running-jobs gauge without store reads
        self._owners: dict[str, str] = {}  # job id -> owner of every queued or running job
        self._resubmits: dict[str, Any] = {}  # job id -> Submission.resubmit of every queued job
        self._elsewhere: dict[str, str] = dict(running_elsewhere or {})  # job id -> owner
        self._ended: dict[str, asyncio.Event] = {}
        self._secrets: dict[str, tuple[str, ...]] = {}
        # Endings the store could not save (disk full): served from here, so waiters still learn how a job ended.
        self._unsaved_endings: dict[str, JobRecord] = {}
        self.configure(**limits)
        # Jobs a previous manager was running cannot resume (their secrets were never stored): say so, keep them.
        # Those it handed over, or still runs while it retires, carry on.
        handed_over = [job.job_id for job, _ in adopted]
        for job_id in store.interrupt_unfinished(RESTART_MESSAGE, keep=[*handed_over, *self._elsewhere]):
            self._log(store.get(job_id), "interrupted: " + RESTART_MESSAGE)
        for job, run in adopted:
            self._enqueue(job.job_id, run, job.secrets, job.owner, job.resubmit)
            self._log(store.get(job.job_id), "taken over from the retiring job manager")
        self._start_queued()

    def configure(
        self,
        *,
        max_running: int,
        max_queued: int,
        max_running_per_principal: int | None = None,
        max_queued_per_principal: int | None = None,
        retry_after_s: float = 5.0,
        progress_interval_s: float = 1.0,
    ) -> None:
        """New limits, applied in place (a redeploy with changed settings): queued and running jobs carry on, and
        a raised limit starts queued jobs at once."""
        self.max_running, self.max_queued = max_running, max_queued
        self.max_running_per_principal = max_running_per_principal
        self.max_queued_per_principal = max_queued_per_principal
        self.retry_after_s, self.progress_interval_s = retry_after_s, progress_interval_s
        self._start_queued()

    def submit(self, submission: Submission) -> tuple[JobRecord, bool]:
        """The job for this submission and whether it is new; a retried submission returns the first job."""
        if submission.idempotency_key is not None:
            existing = self.store.find_by_idempotency_key(submission.owner, submission.idempotency_key)
            if existing is not None:
                return self._same_submission(existing, submission), False
        self._admit(submission.owner)
        try:
            # Fresh: a job writes only into a directory of its own (planning picked a new name).
            Path(submission.output_dir).mkdir(parents=True, exist_ok=False)
        except OSError as exc:  # refused before a job exists: nothing to clean up, the caller learns why
            raise storage_error(f"the run directory {submission.output_dir}", exc) from exc
        try:
            record = self.store.create(
                kind=submission.kind,
                model=submission.model,
                request=submission.request_view,
                output_dir=submission.output_dir,
                idempotency_key=submission.idempotency_key,
                body_digest=submission.body_digest,
                owner=submission.owner,
                progress={"phase": "queued", "done": 0, "total": submission.planned_total, "percent": 0.0},
            )
        except DuplicateKey as duplicate:
            return self._same_submission(duplicate.existing, submission), False
        self._enqueue(record.id, submission.run, tuple(secrets_to_mask(submission.secrets)), record.owner,
                      submission.resubmit)
        self._log(record, f"submitted {record.kind} job for model {record.model}")
        if self.events:
            self.events.job_submitted(record.kind)
        self._start_queued()
        return self.store.get(record.id), True

    def retire(self) -> Handoff:
        """Stop starting jobs and hand the queue over (a successor with newer code or settings takes over); the
        running jobs run to their end here. Called again, it hands over nothing more."""
        queued = [QueuedJob(job_id, self._owners.pop(job_id), self._resubmits.pop(job_id),
                            self._secrets.pop(job_id, ())) for job_id in self._queue]
        for job in queued:
            self._runs.pop(job.job_id, None)
            self._ended.pop(job.job_id).set()  # a waiter here learns the job is still queued, and asks the successor
        self._queue.clear()
        return Handoff(queued=queued, running={job_id: self._owners[job_id] for job_id in self._tasks})

    def holds(self, job_id: str) -> bool:
        """The job waits or runs in this manager."""
        return job_id in self._tasks or job_id in self._queue

    def ended_elsewhere(self, job_id: str, *, lost: bool = False) -> None:
        """A job the retiring predecessor ran has ended, freeing its slot; `lost`: the predecessor died first."""
        if self._elsewhere.pop(job_id, None) is None:
            return
        if lost and self.store.get(job_id).status not in TERMINAL:
            self._end(job_id, "interrupted", error=RESTART_MESSAGE)
        self._start_queued()

    def get(self, job_id: str, caller: Principal) -> JobRecord:
        """The job, if `caller` may see it; another principal's job is "not found", so its existence stays hidden."""
        record = self._unsaved_endings.get(job_id) or self.store.get(job_id)
        if record is None or not caller.may_see(record.owner):
            raise JobNotFound(job_id)
        return record

    def list(self, caller: Principal, **filters: Any) -> tuple[list[JobRecord], int]:
        if not caller.admin:
            filters["owner"] = caller.name
        records, total = self.store.list(**filters)
        return [self._unsaved_endings.get(record.id, record) for record in records], total

    def leaderboard(self, caller: Principal, models: list[str], datasets: list[str]) -> list[LatestScore]:
        """The newest score of each model on each dataset, over the succeeded evals `caller` may see."""
        owner = None if caller.admin else caller.name
        return self.store.latest_scores(owner=owner, models=models, datasets=datasets)

    def history(self, caller: Principal, model: str, *, kind: str | None = None, mine: bool = False,
                limit: int = 50, offset: int = 0) -> tuple[list[JobSummary], int]:
        """The model's succeeded jobs that `caller` may see (`mine`: only its own, also for an admin)."""
        owner = caller.name if mine or not caller.admin else None
        return self.store.history(model=model, kind=kind, owner=owner, limit=limit, offset=offset)

    async def wait(self, job_id: str, caller: Principal) -> JobRecord:
        record = self.get(job_id, caller)
        if record.status not in TERMINAL and job_id in self._ended:
            await self._ended[job_id].wait()
        return self.get(job_id, caller)

    async def cancel(self, job_id: str, caller: Principal) -> JobRecord:
        record = self.get(job_id, caller)
        if record.status in TERMINAL:
            raise JobFinished(f"job {job_id} already ended ({record.status})")
        if job_id in self._queue:
            self._queue.remove(job_id)
            self._runs.pop(job_id, None)
            self._owners.pop(job_id, None)
            self._resubmits.pop(job_id, None)
            self._end(job_id, "cancelled", error="cancelled before it started")
        elif job_id in self._tasks:
            task = self._tasks[job_id]
            task.cancel()
            await asyncio.wait([task])  # the run stops its tasks and actors before the job reads cancelled
            if job_id in self._tasks:  # cancelled before its first step, so _run never ran to end it
                self._end(job_id, "cancelled", error=CANCELLED_MESSAGE)
                self._release(job_id)
        return self.get(job_id, caller)

    def _enqueue(self, job_id: str, run: JobRun, secrets: tuple[str, ...], owner: str, resubmit: Any) -> None:
        self._runs[job_id] = run
        self._secrets[job_id] = secrets
        self._ended[job_id] = asyncio.Event()
        self._owners[job_id] = owner
        self._resubmits[job_id] = resubmit
        self._queue.append(job_id)

    def _running_count(self) -> int:
        return len(self._tasks) + len(self._elsewhere)

    def _admit(self, owner: str) -> None:
        """Room for one more job of `owner`, or QueueFull naming the limit that is reached."""
        if self._running_count() >= self.max_running and len(self._queue) >= self.max_queued:
            raise QueueFull(
                f"the service is full ({self._running_count()} jobs running, {len(self._queue)} queued); retry later",
                self.retry_after_s,
            )
        if self.max_queued_per_principal is None or self._may_start(owner):
            return
        queued = sum(1 for job_id in self._queue if self._owners[job_id] == owner)
        if queued >= self.max_queued_per_principal:
            raise QueueFull(
                f"principal {owner!r} has {self._running_of(owner)} jobs running and {queued} queued, its limit "
                f"(max_queued_jobs_per_principal={self.max_queued_per_principal}); retry when one ends",
                self.retry_after_s,
            )

    def _running_of(self, owner: str) -> int:
        here = sum(1 for job_id in self._tasks if self._owners[job_id] == owner)
        return here + sum(1 for elsewhere_owner in self._elsewhere.values() if elsewhere_owner == owner)

    def _may_start(self, owner: str) -> bool:
        """A job of `owner` could start now: a free run slot, and the owner under its own running limit."""
        if self._running_count() >= self.max_running:
            return False
        return self.max_running_per_principal is None or self._running_of(owner) < self.max_running_per_principal

    def _same_submission(self, existing: JobRecord, submission: Submission) -> JobRecord:
        if existing.body_digest != submission.body_digest:
            raise IdempotencyConflict(
                f"Idempotency-Key {submission.idempotency_key!r} was used for another request (job {existing.id})"
            )
        return existing

    def _start_queued(self) -> None:
        """Start queued jobs in order, passing over those whose owner is at its running limit."""
        for job_id in list(self._queue):
            if self._running_count() >= self.max_running:
                return
            if not self._may_start(self._owners[job_id]):
                continue
            self._queue.remove(job_id)
            self._resubmits.pop(job_id, None)
            try:
                progress = {**self.store.get(job_id).progress, "phase": "preparing"}
                record = self.store.update(job_id, status="running", started_at=time.time(), progress=progress)
            except StorageError as exc:
                self._runs.pop(job_id, None)
                self._owners.pop(job_id, None)
                self._end(job_id, "failed", error=str(exc))
                continue
            self._log(record, "started")
            self._tasks[job_id] = asyncio.create_task(self._run(job_id))
            self._running_kinds[job_id] = record.kind
            self._count_running(record.kind)

    async def _run(self, job_id: str) -> None:
        run = self._runs[job_id]
        reporter = asyncio.create_task(self._report_progress(job_id, run))
        try:
            response = await run.execute()
        except asyncio.CancelledError:
            self._end(job_id, "cancelled", error=CANCELLED_MESSAGE)
        except PartialRunError as exc:
            self._end(job_id, "failed", error=str(exc), result=exc.result.model_dump(mode="json"))
        except (RequestError, RunError) as exc:
            self._end(job_id, "failed", error=str(exc))
        except Exception as exc:  # a bug or an unexpected failure: the job says so instead of vanishing
            logger.exception("job %s failed", job_id)
            self._end(job_id, "failed", error=f"internal error: {type(exc).__name__}: {exc}")
        else:
            progress = dict(self.store.get(job_id).progress)
            progress.update(phase="done", done=progress.get("total", 0), percent=100.0)
            self._end(job_id, "succeeded", result=response.model_dump(mode="json"), progress=progress)
        finally:
            reporter.cancel()
            self._release(job_id)

    def _release(self, job_id: str) -> None:
        """Free an ended job's run slot and start what the queue allows."""
        self._runs.pop(job_id, None)
        self._tasks.pop(job_id, None)
        self._owners.pop(job_id, None)
        self._count_running(self._running_kinds.pop(job_id))
        self._start_queued()

    async def _report_progress(self, job_id: str, run: JobRun) -> None:
        """Store the run's progress every interval, with the request rate since the previous report."""
        last_done, last_time = 0, time.monotonic()
        while True:
            await asyncio.sleep(self.progress_interval_s)
            try:
                progress = await run.progress()
            except Exception:  # progress is best effort; the run itself reports real failures
                continue
            now = time.monotonic()
            progress["req_per_s"] = round((progress["done"] - last_done) / (now - last_time), 2)
            last_done, last_time = progress["done"], now
            try:
                self.store.update(job_id, progress=progress)
            except StorageError as exc:  # progress is best effort; the job's ending is what must be kept
                logger.warning("cannot store the progress of job %s: %s", job_id, exc)

    def _end(self, job_id: str, status: str, **fields: Any) -> None:
        fields.update(status=status, finished_at=time.time())
        for secret in self._secrets.pop(job_id, ()):
            if fields.get("error"):
                fields["error"] = fields["error"].replace(secret, "***")
        try:
            record = self.store.update(job_id, **fields)
        except StorageError as exc:
            logger.error("job %s ended %s but the store cannot save it: %s", job_id, status, exc)
            record = dataclasses.replace(self.store.get(job_id), **fields)
            self._unsaved_endings[job_id] = record
        self._log(record, status + (f": {record.error}" if record.error else ""))
        if self.events:
            duration = record.finished_at - record.started_at if record.started_at else None
            self.events.job_finished(record.kind, status, duration)
        self._ended.pop(job_id, asyncio.Event()).set()

    def _count_running(self, kind: str) -> None:
        if self.events:
            self.events.jobs_running(kind, sum(1 for running in self._running_kinds.values() if running == kind))

    @staticmethod
    def _log(record: JobRecord | None, message: str) -> None:
        """One line per lifecycle event in the service log and in the job's own log file (served by
        GET /api/v1/jobs/<id>/log, where the job's worker processes add what they print)."""
        if record is None:
            return
        logger.info("job %s %s", record.id, message)
        try:
            path = Path(record.output_dir) / JOB_LOG
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as log:
                log.write(f"{datetime.now().isoformat(timespec='milliseconds')} {record.id} {message}\n")
        except OSError as exc:  # an unwritable disk must not take the job state down with it
            logger.warning("cannot write the log of job %s: %s", record.id, exc)
