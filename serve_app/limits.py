"""What one request may ask of the service (ServiceArgs `max_*`): beyond a limit, a 400 that names it."""

from __future__ import annotations

from serve_app.config import ServiceArgs
from serve_app.errors import RequestError
from serve_app.schemas import EvalRequest, PerfRequest


def check_eval_limits(request: EvalRequest, args: ServiceArgs) -> None:
    if args.max_limit is not None:
        if request.limit is None:
            raise RequestError(f"limit is required by this service (at most {args.max_limit} samples per subset)")
        if isinstance(request.limit, float):  # its sample count depends on each subset's size, unknown here
            raise RequestError(
                f"limit={request.limit} is a fraction, but this service caps samples per subset at {args.max_limit} "
                "(max_limit): give an integer count"
            )
        _at_most("limit", request.limit, args.max_limit, "max_limit")
    generation = request.generation_config
    _at_most("eval_batch_size", request.eval_batch_size, args.max_eval_batch_size, "max_eval_batch_size")
    _at_most("repeats", request.repeats, args.max_eval_repeats, "max_eval_repeats")
    _at_most("generation_config.timeout", generation.timeout, args.request_timeout_s, "request_timeout_s")
    _at_most("generation_config.retries", generation.retries, args.max_eval_retries, "max_eval_retries")


def check_perf_limits(request: PerfRequest, args: ServiceArgs) -> None:
    numbers = request.number if isinstance(request.number, list) else [request.number]
    parallels = request.parallel if isinstance(request.parallel, list) else [request.parallel]
    _at_most("number", max(numbers), args.max_number, "max_number")
    _at_most("warmup", request.warmup, args.max_number, "max_number")
    _at_most("parallel", max(parallels), args.max_parallel, "max_parallel")
    _at_most("rate", max(request.rates()), args.max_rate, "max_rate")
    for field in ("total_timeout", "connect_timeout", "read_timeout"):
        _at_most(field, getattr(request, field), args.request_timeout_s, "request_timeout_s")
    if request.search is not None:
        limit, setting = ((args.max_parallel, "max_parallel") if request.search.vary == "parallel"
                          else (args.max_rate, "max_rate"))
        _at_most("search.high", request.search.high, limit, setting)


def _at_most(field: str, value: float | None, limit: float, setting: str) -> None:
    if value is not None and value > limit:
        raise RequestError(f"{field}={value} is over this service's limit of {limit} ({setting})")
