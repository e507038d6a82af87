"""Benchmarks that would run what the model answers on the cluster: refused, or run in evalscope's sandbox.

Whoever controls `api_url` writes the model's answers; a benchmark that executes them lets that caller run code
on a worker. Which benchmarks do is read from evalscope's own declarations (serve_app.eval.benchmarks).
"""

from __future__ import annotations

from typing import Any

from serve_app.config import ServiceArgs
from serve_app.errors import RequestError
from serve_app.eval.benchmarks import is_agent_benchmark, known_benchmarks, runs_model_code
from serve_app.schemas import EvalRequest


def check_known_benchmarks(request: EvalRequest) -> None:
    unknown = [name for name in request.datasets if name not in known_benchmarks()]
    if unknown:
        raise RequestError(
            f"unknown dataset(s): {', '.join(unknown)}; evalscope benchmarks include gsm8k, iquiz, ceval, mmlu, arc"
        )


def check_code_execution(request: EvalRequest, args: ServiceArgs) -> None:
    """Refuse benchmarks that execute the model's code unless the operator gave them evalscope's sandbox."""
    if args.code_sandbox is not None:
        return
    for dataset in request.datasets:
        if runs_model_code(dataset):
            raise RequestError(
                f"dataset {dataset!r} executes the code the model writes, which this service runs only in "
                "evalscope's sandbox; the sandbox is not configured here (service setting code_sandbox)"
            )


def check_agent_benchmarks(request: EvalRequest) -> None:
    """Refuse agent benchmarks: some run the model's shell commands on the worker even with the sandbox on."""
    for dataset in request.datasets:
        if is_agent_benchmark(dataset):
            raise RequestError(
                f"dataset {dataset!r} is an agent benchmark (evalscope category 'agent'): the model's tool calls "
                "run as commands on the worker, in Docker or on outside services, which this service does not offer"
            )


def sandbox_task_config(dataset: str, args: ServiceArgs) -> dict[str, Any] | None:
    """The TaskConfig `sandbox` of a benchmark that executes the model's code, None for any other.

    evalscope's nested `sandbox` replaces its deprecated `use_sandbox` / `sandbox_type` / `sandbox_manager_config`.
    """
    if args.code_sandbox is None or not runs_model_code(dataset):
        return None
    return {"enabled": True, **args.code_sandbox.model_dump(exclude_none=True)}
