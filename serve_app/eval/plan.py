"""Turn an eval request into one evalscope task per dataset: pure, no Ray, no evalscope import."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serve_app.config import ServiceArgs
from serve_app.eval.code_execution import sandbox_task_config
from serve_app.eval.dataset_args import check_dataset_args
from serve_app.eval.judge import judge_task_config
from serve_app.paths import new_run_dir
from serve_app.schemas import DatasetSource, EvalRequest
from serve_app.targets import normalize_api_url

PARTS_DIR = "parts"  # each dataset's own evalscope run, before the combine step folds it into the run directory


def part_dir(output_dir: Path, dataset: str) -> Path:
    return output_dir / PARTS_DIR / dataset


@dataclass(frozen=True)
class EvalTask:
    dataset: str
    task_config: dict[str, Any]  # TaskConfig fields, without the api key (it travels separately, never stored)
    source: DatasetSource
    reuse_from: str | None = None  # a resumed job's run directory (or part) whose predictions this one takes over


@dataclass(frozen=True)
class EvalPlan:
    output_dir: Path
    tasks: list[EvalTask]


def plan_eval(request: EvalRequest, args: ServiceArgs, resumed_dir: Path | None = None) -> EvalPlan:
    """One task per dataset of an admitted request (serve_app.admission runs the checks before this one).

    `resumed_dir`: the run directory of the job `request.resume_from` names; each dataset reuses what it left
    there, from its part when that job never combined them."""
    output_dir = new_run_dir(args, "eval", request.model, request.work_dir)
    tasks = []
    for dataset in request.datasets:
        dataset_args = check_dataset_args(dataset, request.dataset_args.get(dataset, {}), args)
        dataset_args, source = _locate_dataset(dataset, dataset_args, args)
        task_config = _task_config(request, args, dataset, dataset_args, part_dir(output_dir, dataset))
        reuse_from = None
        if resumed_dir is not None:
            unfinished = part_dir(resumed_dir, dataset)
            reuse_from = str(unfinished if unfinished.is_dir() else resumed_dir)
            task_config["use_cache"] = task_config["work_dir"]  # evalscope then works in that directory as is
        tasks.append(EvalTask(dataset=dataset, task_config=task_config, source=source, reuse_from=reuse_from))
    return EvalPlan(output_dir=output_dir, tasks=tasks)


def _locate_dataset(dataset: str, dataset_args: dict[str, Any], args: ServiceArgs) -> tuple[dict, DatasetSource]:
    """The request's local_path (already checked), else a copy the operator staged under the datasets root, else
    the hub."""
    if "local_path" in dataset_args:
        return dataset_args, DatasetSource(origin="request", path=dataset_args["local_path"])
    staged = args.datasets_root / dataset
    if staged.is_dir():
        return {**dataset_args, "local_path": str(staged)}, DatasetSource(origin="datasets_root", path=str(staged))
    return dataset_args, DatasetSource(origin="hub")


def _task_config(
    request: EvalRequest, args: ServiceArgs, dataset: str, dataset_args: dict, work_dir: Path
) -> dict[str, Any]:
    service_defaults = {
        "timeout": args.eval_timeout_s,
        "retries": args.eval_retries,
        "retry_interval": args.eval_retry_interval_s,
    }
    sandbox = sandbox_task_config(dataset, args)
    return {
        "model": request.model,
        "api_url": normalize_api_url(request.api_url),
        "eval_type": request.eval_type,
        "datasets": [dataset],
        "dataset_args": {dataset: dataset_args} if dataset_args else {},
        # evalscope's TaskConfig turns 1.0 into the count 1; the whole of each subset is no limit at all.
        "limit": None if isinstance(request.limit, float) and request.limit == 1.0 else request.limit,
        "eval_batch_size": request.eval_batch_size,
        "repeats": request.repeats,
        "ignore_errors": request.ignore_errors,
        "generation_config": service_defaults | request.generation_config.model_dump(exclude_none=True),
        # The OpenAI SDK retries twice more on its own, with backoff: `retries` alone should count attempts.
        "model_args": {"max_retries": 0},
        "work_dir": str(work_dir),
        "no_timestamp": True,
        "debug": request.debug,
        "seed": request.seed,
        "enable_progress_tracker": True,  # progress.json in the part, read for the job's progress
    } | ({"sandbox": sandbox} if sandbox else {}) | (
        {"judge": judge_task_config(request.judge, service_defaults)} if request.judge else {}
    )
