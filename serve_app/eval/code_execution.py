"""Benchmarks that would run what the model answers on the cluster: refused, or run in evalscope's sandbox.

Whoever controls `api_url` writes the model's answers; a benchmark that executes them lets that caller run code
on a worker. Which benchmarks do is read from evalscope's own declarations (serve_app.eval.benchmarks).
"""

from __future__ import annotations

from typing import Any

from serve_app.config import ServiceArgs
from serve_app.errors import RequestError
from serve_app.eval.benchmarks import close_matches, is_agent_benchmark, known_benchmarks, runs_model_code
from serve_app.schemas import EvalRequest


def check_known_benchmarks(request: EvalRequest) -> None:
    unknown = [name for name in request.datasets if name not in known_benchmarks()]
    if unknown:
        guesses = [f"{name} (did you mean {' or '.join(close)}?)"
                   if (close := close_matches(name, known_benchmarks())) else name for name in unknown]
        raise RequestError(f"unknown dataset(s): {', '.join(guesses)}; GET /api/v1/benchmarks lists evalscope's")


def refusal(dataset: str, args: ServiceArgs) -> str | None:
    """Why this service will not evaluate a known benchmark, or None when it will."""
    if is_agent_benchmark(dataset):
        # Some run the model's shell commands on the worker even with the sandbox on.
        return (f"dataset {dataset!r} is an agent benchmark (evalscope category 'agent'): the model's tool calls "
                "run as commands on the worker, in Docker or on outside services, which this service does not offer")
    if runs_model_code(dataset) and args.code_sandbox is None:
        return (f"dataset {dataset!r} executes the code the model writes, which this service runs only in "
                "evalscope's sandbox; the sandbox is not configured here (service setting code_sandbox)")
    return None


def check_refusals(request: EvalRequest, args: ServiceArgs) -> None:
    """Refuse agent benchmarks, and benchmarks that execute the model's code unless the operator gave them
    evalscope's sandbox."""
    for dataset in request.datasets:
        if reason := refusal(dataset, args):
            raise RequestError(reason)


def sandbox_task_config(dataset: str, args: ServiceArgs) -> dict[str, Any] | None:
    """The TaskConfig `sandbox` of a benchmark that executes the model's code, None for any other.

    evalscope's nested `sandbox` replaces its deprecated `use_sandbox` / `sandbox_type` / `sandbox_manager_config`.
    """
    if args.code_sandbox is None or not runs_model_code(dataset):
        return None
    return {"enabled": True, **args.code_sandbox.model_dump(exclude_none=True)}
