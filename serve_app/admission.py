"""What a caller may make this cluster do, decided in one place: the only way from a request to a plan.

Each step refuses with a RequestError (a 400 naming the field and the setting) before a job exists; they run in
this order, cheapest first:

eval  1. limits            sizes within the operator's `max_*` settings               (serve_app.limits)
      2. generation        generation_config fields evalscope's GenerateConfig takes  (serve_app.eval.generation)
      3. target            the endpoint host is in `allowed_targets`                  (serve_app.targets)
      4. benchmarks        known to evalscope; no agent loops; code-executing ones
                           only in the operator's `code_sandbox`                      (serve_app.eval.code_execution)
      5. plan              `dataset_args` keys on the allowlist, names are names,
                           every path confined to the datasets/samples roots, a new
                           run directory inside the outputs root                      (serve_app.eval.plan)
      6. hub               a dataset neither given nor staged needs a reachable hub
perf  1. limits, 2. target as for eval
      3. dataset           an evalscope perf plugin that needs neither a hub nor a
                           tokenizer here                                            (serve_app.perf.datasets)
      4. plan              its data confined to the roots, no more shards than the
                           cluster could hold at its most (max_cluster_cpus), a new
                           run directory                                             (serve_app.perf.service)

Who may see and act on a job once it exists (owners, per-principal limits) is the job manager's (serve_app.jobs).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from serve_app.config import ServiceArgs
from serve_app.errors import RequestError
from serve_app.eval.code_execution import check_known_benchmarks, check_refusals
from serve_app.eval.generation import check_generation_config
from serve_app.eval.judge import check_judge_targets
from serve_app.eval.plan import EvalPlan, plan_eval
from serve_app.limits import check_eval_limits, check_perf_limits
from serve_app.perf.datasets import check_perf_dataset
from serve_app.perf.service import PerfPlan, plan_perf
from serve_app.schemas import EvalRequest, PerfRequest
from serve_app.targets import check_target, unreachable_reason

# evalscope downloads datasets from ModelScope by default; probing it first turns a 15-45 s retry loop into seconds.
HUB_URL = "https://www.modelscope.cn"
_HUB_PROBE_TIMEOUT_S = 3.0


async def admit_eval(request: EvalRequest, args: ServiceArgs, resumed_dir: Path | None = None) -> EvalPlan:
    """`resumed_dir`: the run directory of the job the request resumes (the backend found it, and the caller may
    see it)."""
    check_eval_limits(request, args)
    await check_generation_config(request)
    await check_target(request.api_url, args.allowed_targets)
    await check_judge_targets(request, args)
    check_known_benchmarks(request)
    check_refusals(request, args)
    plan = plan_eval(request, args, resumed_dir)
    from_hub = [task.dataset for task in plan.tasks if task.source.origin == "hub"]
    if from_hub and await unreachable_reason(HUB_URL, _HUB_PROBE_TIMEOUT_S):
        raise RequestError(
            f"dataset(s) {', '.join(from_hub)} are not staged under the datasets root ({args.datasets_root}) "
            f"and the dataset hub ({HUB_URL}) cannot be reached: stage them there or pass "
            "dataset_args.<name>.local_path"
        )
    return plan


async def admit_perf(request: PerfRequest, args: ServiceArgs, cluster_cpus: float) -> PerfPlan:
    check_perf_limits(request, args)
    await check_target(request.url, args.allowed_targets)
    # The first call lists evalscope's plugins in a subprocess (~2 s): off the event loop.
    dataset = await asyncio.to_thread(check_perf_dataset, request)
    return plan_perf(request, args, dataset, cluster_cpus)
