"""Run an eval request on the cluster: each dataset in a worker process of its own (one job's only), then combine."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError

from serve_app.config import ServiceArgs
from serve_app.errors import PartialRunError, RunError, storage_error
from serve_app.eval import runner
from serve_app.eval.plan import EvalPlan, EvalTask, part_dir
from serve_app.jobs.workers import WorkerPools, kill_and_wait
from serve_app.metrics import EvalMetrics
from serve_app.schemas import EvalRequest, EvalResponse
from serve_app.targets import unreachable_reason


@dataclass
class EvalRun:
    """One eval on the cluster; `progress()` may be called while `execute()` runs, cancelling stops the workers."""

    plan: EvalPlan
    request: EvalRequest
    args: ServiceArgs
    workers: WorkerPools  # each dataset's worker process comes from here; all are killed when the run ends
    metrics: EvalMetrics | None = None
    metrics_model: str = ""  # the `model` label (bounded by the job manager's LabelBudget)
    _reported: dict[str, int] = field(default_factory=dict)  # samples per dataset already counted in metrics
    _combining: bool = False  # the parts are being folded into the run directory: the "reporting" phase

    async def execute(self) -> EvalResponse:
        # A dead endpoint would otherwise cost every sample its timeouts and retries before the run gives up.
        problem = await unreachable_reason(self.request.api_url, self.args.connect_timeout_s)
        if problem:
            raise RunError(f"cannot reach the model endpoint: {problem}")
        # evalscope's state is process-wide, so each dataset gets a process of this job's only. Killing them stops
        # the target receiving requests at once, also on cancel.
        workers = {task.dataset: self.workers.take_task_worker() for task in self.plan.tasks}
        taken = list(workers.values())
        try:
            outcomes, failures, combiner = await self._evaluate(workers)
            self._combining = True
            if combiner is None:  # no dataset scored: a fresh process folds what they left
                taken.append(combiner := self.workers.take_task_worker())
            await self._combine(combiner)
        except BaseException:  # cancelled or failed: the status says so once the target gets no more requests
            await kill_and_wait(taken)
            raise
        for worker in taken:
            ray.kill(worker)
        if self.metrics:
            await self.progress()  # the last samples
            for dataset, outcome in outcomes.items():
                if outcome["score"] is not None:
                    self.metrics.scored(self.metrics_model, dataset, outcome["score"])
        response = EvalResponse(
            result={dataset: outcome["report"] for dataset, outcome in outcomes.items()},
            scores={dataset: outcome["score"] for dataset, outcome in outcomes.items()},
            failures=failures,
            dataset_sources={task.dataset: task.source for task in self.plan.tasks},
            output_dir=str(self.plan.output_dir),
            resumed_from=self.request.resume_from,
            reused_predictions={dataset: outcome["reused"] for dataset, outcome in outcomes.items()
                                if self.request.resume_from},
        )
        if not failures:
            return response
        reasons = "; ".join(f"{dataset}: {reason}" for dataset, reason in failures.items())
        message = f"evaluation failed ({reasons}); partial outputs in {self.plan.output_dir}"
        if not outcomes:
            raise RunError(message)
        # The datasets that scored are kept in the job's result beside the failure, not left only on disk.
        scored = ", ".join(f"{dataset} {outcome['score']}" for dataset, outcome in outcomes.items())
        raise PartialRunError(f"{message}; scored: {scored}", response.model_copy(
            update={"status": "partial", "message": f"Evaluation failed for {len(failures)} of "
                    f"{len(self.plan.tasks)} datasets"}))

    async def _evaluate(self, workers: dict[str, ray.actor.ActorHandle]) -> tuple[dict, dict[str, str], Any]:
        """Every dataset at once: each one's outcome or why it failed, and the worker kept to combine them.

        The first process to score a dataset has evalscope loaded and this job's state only: it is kept for the
        combine. Every other one is killed as its dataset ends, so datasets still waiting for CPUs get its share.
        """
        api_key = self.request.api_key.get_secret_value()
        judge_api_keys = tuple(self.request.judge_api_keys())
        done, failed, combiner = {}, {}, None

        async def evaluate(task: EvalTask) -> None:
            nonlocal combiner
            dataset, worker = task.dataset, workers[task.dataset]
            try:
                done[dataset] = await worker.call.remote(runner.run_dataset, task.task_config, api_key,
                                                         self.plan.output_dir, task.reuse_from, judge_api_keys)
            except RayError as exc:
                failed[dataset] = _reason(exc)
            if combiner is None and dataset in done:
                combiner = worker
            else:
                ray.kill(worker)

        await asyncio.gather(*(evaluate(task) for task in self.plan.tasks))
        in_plan_order = [task.dataset for task in self.plan.tasks]
        outcomes = {dataset: done[dataset] for dataset in in_plan_order if dataset in done}
        return outcomes, {dataset: failed[dataset] for dataset in in_plan_order if dataset in failed}, combiner

    async def _combine(self, worker: ray.actor.ActorHandle) -> None:
        try:
            await worker.call.remote(runner.combine_parts, self.plan.output_dir, [t.dataset for t in self.plan.tasks])
        except RayTaskError as exc:
            if isinstance(exc.cause, OSError):  # a full or read-only volume: say so, not "internal error" + traceback
                raise storage_error(f"the run directory {self.plan.output_dir}", exc.cause) from exc
            raise

    async def progress(self) -> dict:
        """Samples done over samples planned, from the progress.json evalscope writes in each dataset's part."""
        done = total = 0
        for task in self.plan.tasks:
            path = part_dir(self.plan.output_dir, task.dataset) / "progress.json"
            try:
                snapshot = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            processed = int(snapshot.get("processed_count") or 0)
            done += processed
            total += int(snapshot.get("total_count") or 0)
            if self.metrics:
                newly_done = processed - self._reported.get(task.dataset, 0)
                self.metrics.samples_done(self.metrics_model, task.dataset, newly_done)
                self._reported[task.dataset] = processed
        phase = "reporting" if self._combining else "running" if total else "preparing"
        return {"phase": phase, "done": done, "total": total, "percent": round(100 * done / total, 2) if total else 0.0}


def _reason(exc: RayError) -> str:
    if isinstance(exc, RayTaskError) and exc.cause is not None:
        return f"{type(exc.cause).__name__}: {exc.cause}"
    return str(exc).strip().splitlines()[-1]
