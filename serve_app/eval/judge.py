"""LLM-as-judge scoring: the request's `judge` as evalscope's TaskConfig takes it. Pure, no evalscope import.

A judge's key is a secret like the endpoint's: the task config carries the judges without their keys (it is
written to the run directory by evalscope and kept by the job), and the worker puts the keys back just before
evalscope starts (`with_judge_keys`).
"""

from __future__ import annotations

import copy
from typing import Any

from serve_app.config import ServiceArgs
from serve_app.schemas import EvalRequest, Judge
from serve_app.targets import check_target, normalize_api_url


async def check_judge_targets(request: EvalRequest, args: ServiceArgs) -> None:
    """A judge's endpoint is a target like the model's: outside allowed_targets it is a 400."""
    for model in request.judge.models if request.judge else []:
        await check_target(model.api_url, args.allowed_targets)


def judge_task_config(judge: Judge, generation_defaults: dict[str, Any]) -> dict[str, Any]:
    """evalscope's `judge` for the TaskConfig, without keys; each judge's requests keep the service's timeout and
    retry bounds unless its generation_config sets its own."""
    config = judge.model_dump(exclude={"models"}, exclude_none=True)
    config["models"] = [
        {
            "model_id": model.model_id,
            "judge_id": model.judge_id or model.model_id,  # given, so that a judge_id on one entry is enough
            "api_url": normalize_api_url(model.api_url),
            "generation_config": generation_defaults | model.generation_config.model_dump(exclude_none=True),
            "model_args": {"max_retries": 0},  # as the eval's own model: `retries` alone counts the attempts
        }
        for model in judge.models
    ]
    return config


def with_judge_keys(task_config: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """The task config with each judge's key back in place (in the worker, for evalscope only)."""
    if "judge" not in task_config:
        return task_config
    filled = copy.deepcopy(task_config)
    for model, key in zip(filled["judge"]["models"], keys, strict=True):
        model["api_key"] = key
    return filled
