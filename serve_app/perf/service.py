"""Run a perf request on the cluster: plan shards, start them together, merge their records per test point."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from pydantic import SecretStr
from ray.exceptions import RayActorError, RayError, RayTaskError

from serve_app.background import keep_running
from serve_app.config import ServiceArgs
from serve_app.errors import RunError
from serve_app.jobs.workers import WorkerPools, kill_and_wait, worker_nodes
from serve_app.paths import confine_dataset_path, new_run_dir, resolve_dataset_file
from serve_app.perf.datasets import PerfDataset
from serve_app.perf.report import write_perf_report
from serve_app.perf.placement import ShardPlacement, cpus_free_and_total, placement_name
from serve_app.perf.arrivals import LoadShape
from serve_app.perf.plan import UNLIMITED_RATE, ShardPlan, choose_shard_count, plan_shards, unplaceable_message
from serve_app.perf.saturation import Saturation
from serve_app.perf.search import CapacitySearch
from serve_app.perf.series import load_series
from serve_app.perf.shard import ShardSpec, ShardStats
from serve_app.schemas import (
    LoadSeries,
    PerfPointResult,
    PerfRequest,
    PerfResponse,
    PointSaturation,
    SearchProbe,
    SearchResult,
    ShardSummary,
    is_credential_header,
)

logger = logging.getLogger("serve_app.perf")

_CLOCK_PROBES = 3


class PerfRunError(RunError):
    """A perf test failed; the message says which shard and why."""


@dataclass(frozen=True)
class PointPlan:
    name: str  # parallel_<p>_number_<n> or rate_<r>_number_<n>, evalscope's key (_2, _3, ... for a repeated point)
    shards: list[ShardPlan]
    rate: float = UNLIMITED_RATE  # the whole point's, as evalscope's arguments for it say
    duration_s: float | None = None  # a search's probe also ends after this long
    load: float = 0.0  # what the report draws it against: its parallel or its rate


@dataclass(frozen=True)
class PerfPlan:
    output_dir: Path
    dataset_path: str | None
    tokenizer_path: str | None
    points: list[PointPlan]  # a search's probes are added as it plans them
    cluster_cpus: float = 1.0  # the most CPUs the cluster can have: what shard counts are chosen against

    @property
    def total_requests(self) -> int:
        return sum(shard.number for point in self.points for shard in point.shards)


def point_names(sweep: list[tuple[int | None, int, float]], by_rate: bool = False) -> list[str]:
    """evalscope's key of each (parallel, number, rate) point (by rate: rate_<r>_number_<n>, as evalscope names an
    open loop's runs); a point repeated in the sweep runs again under the same key with `_2`, `_3`, ... appended
    (evalscope itself would overwrite the first), so each run is reported."""
    names, seen = [], Counter()
    for parallel, number, rate in sweep:
        key = f"rate_{rate:g}_number_{number}" if by_rate else f"parallel_{parallel}_number_{number}"
        seen[key] += 1
        names.append(key if seen[key] == 1 else f"{key}_{seen[key]}")
    return names


def plan_perf(request: PerfRequest, args: ServiceArgs, dataset: PerfDataset, cluster_cpus: float) -> PerfPlan:
    """The test points and shards of an admitted request (serve_app.admission runs the checks before this one)."""
    dataset_path = resolve_dataset_file(dataset, request.dataset_path, args)
    sweep = [] if request.search else request.sweep()  # a search plans each probe once the last one is measured
    points = [
        plan_point(name, parallel, number, rate, request, args, cluster_cpus, request.duration_s)
        for name, (parallel, number, rate) in zip(point_names(sweep, request.sweeps_rate), sweep)
    ]
    tokenizer_path = request.tokenizer_path and str(
        confine_dataset_path("tokenizer_path", request.tokenizer_path, args, "a directory"))
    return PerfPlan(new_run_dir(args, "perf", request.model), dataset_path, tokenizer_path, points, cluster_cpus)


def plan_point(
    name: str,
    parallel: int | None,
    number: int,
    rate: float,
    request: PerfRequest,
    args: ServiceArgs,
    cluster_cpus: float,
    duration_s: float | None = None,
    warmup: int | None = None,
) -> PointPlan:
    shards = choose_shard_count(
        parallel=parallel,
        number=number,
        rate=rate,
        requested=request.shards,
        max_parallel_per_shard=args.max_parallel_per_shard,
        max_rate_per_shard=args.max_rate_per_shard,
        max_shards=args.max_shards,
        cluster_cpus=cluster_cpus,
        shard_cpus=args.perf_shard_num_cpus,
    )
    warmup = request.warmup if warmup is None else warmup
    seed = 42 if request.seed is None else request.seed
    shape = LoadShape(request.arrival, request.burstiness or 1.0, request.ramp_up_s or 0.0)
    plans = plan_shards(parallel=parallel, number=number, rate=rate, shards=shards, warmup=warmup, seed=seed,
                        shape=shape, open_loop=request.open_loop, stop_on_saturation=request.stop_on_saturation)
    return PointPlan(name, plans, rate, duration_s, load=rate if request.sweeps_rate else parallel or 0)


def plan_probe(request: PerfRequest, args: ServiceArgs, cluster_cpus: float, load: float) -> PointPlan:
    """A search's probe at `load`: up to `number` requests, for probe_duration_s at most, after a warm-up of its own
    (a connection per slot, or a second of arrivals) so that set-up costs are not counted against the SLO. Named as
    evalscope names its runs, so that its report draws the probes."""
    search = request.search
    if search.vary == "parallel":
        parallel, rate = int(load), request.rate
        number = max(request.number, parallel)
        warmup, name = max(request.warmup, parallel), f"parallel_{parallel}_number_{number}"
    else:
        # Enough slots that they do not bound the rate (a late arrival waits for a free one): the request's
        # parallel where given, else none in an open loop, else the most one shard takes.
        parallel = request.parallel if "parallel" in request.model_fields_set else (
            None if request.open_loop else args.max_parallel_per_shard)
        rate, number = load, min(request.number, max(1, math.ceil(load * search.probe_duration_s)))
        parallel = parallel and min(parallel, number)
        warmup, name = max(request.warmup, math.ceil(load)), f"rate_{load:g}_number_{number}"
    point = plan_point(name, parallel, number, rate, request, args, cluster_cpus, search.probe_duration_s, warmup)
    return dataclasses.replace(point, load=load)


def cluster_cpus(args: ServiceArgs) -> float:
    """The most CPUs the cluster can have: the operator's max_cluster_cpus (an autoscaling cluster), else its own."""
    return args.max_cluster_cpus or ray.cluster_resources().get("CPU", 0.0)


@dataclass(frozen=True)
class _Shard:
    plan: ShardPlan
    actor: ray.actor.ActorHandle
    node: str  # the address of the node its CPUs were placed on


@dataclass
class PerfRun:
    """One perf test on the cluster; `progress()` may be called while `execute()` runs."""

    plan: PerfPlan
    request: PerfRequest
    args: ServiceArgs
    workers: WorkerPools  # shards come from here; each is killed when done
    metrics_model: str = ""  # the `model` label of live metrics (bounded by the job manager's LabelBudget)
    _finished: int = 0  # requests sent by the points already merged
    _live: list[_Shard] = field(default_factory=list)
    _last: tuple[list[_Shard], asyncio.TimerHandle] | None = None  # the last merged point's shards, their kill timer
    _phase: str = "preparing"

    async def execute(self) -> PerfResponse:
        results: dict[str, PerfPointResult] = {}
        search = None
        if self.request.search is None:
            for point in self.plan.points:
                results[point.name] = await self._run_point(point)
        else:
            search = await self._search(results)
        series = load_series(self.plan.points, results, "rate" if self.request.sweeps_rate or (
            search and search.vary == "rate") else "parallel")
        # The result is complete once merged: the HTML report (seconds) follows on its own.
        keep_running(self._write_report(series))
        return PerfResponse(output_dir=str(self.plan.output_dir), results=results, search=search, series=series)

    async def _search(self, results: dict[str, PerfPointResult]) -> SearchResult:
        """Probe loads, each a test point like any other, until the search has bracketed the capacity."""
        spec = self.request.search
        search = CapacitySearch(low=spec.low, high=spec.high, min_goodput=spec.min_goodput,
                                max_probes=spec.max_probes, integer=spec.vary == "parallel")
        probes = []
        while (load := search.next_load()) is not None:
            point = plan_probe(self.request, self.args, self.plan.cluster_cpus, load)
            self.plan.points.append(point)  # the progress total: the requests planned so far
            result = results[point.name] = await self._run_point(point)
            throughput = result.metrics.get("Req Throughput (req/s)", 0.0)
            saturated = bool(result.saturation and result.saturation.saturated)
            probe = search.record(load, result.goodput.good_fraction, throughput,
                                  result.metrics.get("Avg Latency (s)", 0.0), saturated)
            probes.append(SearchProbe(
                point=point.name, load=load, passed=probe.passed, good_fraction=result.goodput.good_fraction,
                goodput_req_per_s=result.goodput.goodput_req_per_s, achieved_req_per_s=throughput,
                saturated=saturated,
            ))
        unit = "concurrent requests" if spec.vary == "parallel" else "req/s"
        return SearchResult(vary=spec.vary, max_passing=search.max_passing, min_failing=search.min_failing,
                            probes=probes, verdict=search.verdict(unit))

    async def _write_report(self, series: LoadSeries | None) -> None:
        """In the last point's shard 0, which has evalscope loaded (as its every shard has), instead of a process
        started for it (seconds of CPU for the imports alone)."""
        shards, kill_timer = self._last
        kill_timer.cancel()
        try:
            await shards[0].actor.call.remote(write_perf_report, str(self.plan.output_dir), self.request.api, series)
        except RayError as exc:  # the HTML report is a convenience; the measured result stands without it
            logger.warning("no perf report for %s: %s", self.plan.output_dir, _reason(exc))
        finally:
            self._kill_after_their_last_metrics(shards)

    @staticmethod
    def _kill_after_their_last_metrics(shards: list[_Shard]) -> asyncio.TimerHandle:
        """Idle shards live one metrics report interval more, so their last requests reach Prometheus."""
        return asyncio.get_running_loop().call_later(ray._config.metrics_report_interval_ms() / 1000 + 1, _kill,
                                                     shards)

    async def progress(self) -> dict:
        done = self._finished
        if self._live:
            counts = await asyncio.gather(
                *(shard.actor.completed.remote() for shard in self._live), return_exceptions=True
            )
            done += sum(count for count in counts if isinstance(count, int))
        total = self.plan.total_requests
        return {"phase": self._phase, "done": done, "total": total,
                "percent": round(100 * done / total, 2) if total else 0.0}

    async def _run_point(self, point: PointPlan) -> PerfPointResult:
        output_dir = self.plan.output_dir / point.name
        shards: list[_Shard] = []
        placement = await self._place(point)
        try:
            # No worker process starts from here to the end of the timed window: its evalscope import would take
            # CPU from the load generators. The pools refill while the point merges.
            with self.workers.measuring():
                nodes, live = placement.nodes(), worker_nodes()
                shards = [_Shard(plan, actor, live.get(node, node)) for plan, actor, node in
                          zip(point.shards, self.workers.shards_on(nodes, live), nodes)]
                stats, ended, rows_written = await self._start_together(shards, point, output_dir)
            total = {
                "parallel": -1 if shards[0].plan.parallel is None else sum(s.plan.parallel for s in shards),
                "number": sum(s.plan.number for s in shards),
                "rate": point.rate,
                "warmup_num": sum(s.plan.warmup for s in shards),
                "seed": shards[0].plan.seed,  # the request's, whichever shard merges
                "dataset_offset": shards[0].plan.dataset_offset,
            }
            # Each shard wrote its records to a file under the point's directory (the outputs root is shared by
            # every node), and merges them from there, so no record passes through the object store. The first
            # shard whose load ended merges: it is the likeliest to have written its rows of benchmark_data.db
            # already, so the last shard's rows are written while it merges.
            self._phase = "reporting"
            merger = shards[ended[0]]
            try:
                merged = await merger.actor.merge.remote(total, str(output_dir), stats, point.shards, rows_written)
            except (RayActorError, RayTaskError) as exc:
                raise PerfRunError(f"the merge in shard {merger.plan.index} (node {merger.node}) failed: "
                                   f"{_reason(exc)}") from exc
        except BaseException:
            # This is what stops the traffic when a job is cancelled or fails: its status says so after this.
            await kill_and_wait([shard.actor for shard in shards])
            raise
        finally:
            self._live = []
            placement.remove()  # its CPUs go to the next point or job at once; idle shards hold none
        self._finished += sum(stat.done for stat in stats)  # what progress counted live, now merged
        self._last = shards, self._kill_after_their_last_metrics(shards)
        return PerfPointResult(
            metrics=merged["metrics"],
            percentiles=merged["percentiles"],
            shards=[_summarize(shard.plan, stat) for shard, stat in zip(shards, stats)],
            goodput=merged["goodput"],
            saturation=point_saturation(merged["saturation"], point, stats),
            conversations=merged["conversations"],
            workload_throughput=merged["workload"],
        )

    async def _place(self, point: PointPlan) -> ShardPlacement:
        """Reserve the CPUs of every shard of the point at once, waiting up to placement_timeout_s for room."""
        placement = ShardPlacement(placement_name(self.plan.output_dir, point.name), len(point.shards),
                                   self.args.perf_shard_num_cpus, self.args.shard_placement)
        self._phase = "waiting for resources"
        try:
            placed = await placement.placed(self.args.placement_timeout_s)
            if not placed:
                free, total = cpus_free_and_total()  # while this point's request is pending: it holds nothing
                raise PerfRunError(unplaceable_message(len(point.shards), self.args.perf_shard_num_cpus, free, total,
                                                       self.args.placement_timeout_s))
        except BaseException:  # also a cancelled job: its pending request must not take CPUs later
            placement.remove()
            raise
        self._phase = "preparing"
        return placement

    async def _start_together(self, shards: list[_Shard], point: PointPlan,
                              output_dir: Path) -> tuple[list[ShardStats], list[int], list[ray.ObjectRef]]:
        """Bind each shard to its share of this point, prepare all, then run all from one instant. Each shard
        begins writing its rows of benchmark_data.db as soon as its load ends (the calls are returned, not awaited),
        and the shards' indexes are returned in the order their loads ended."""
        job_dir = str(self.plan.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)  # every shard checks that it sees it (a shared outputs root)
        specs = [self._spec(shard.plan, output_dir, point.duration_s) for shard in shards]
        await _each_shard(shards, lambda shard: shard.actor.bind.remote(specs[shard.plan.index], job_dir))
        await _each_shard(shards, lambda shard: shard.actor.prepare.remote())
        offsets = [await _clock_offset(shard.actor) for shard in shards]
        # The barrier: every shard is ready, so all start at one instant and the merged duration is the real one.
        start_at = time.time() + self.args.shard_start_delay_s
        self._live, self._phase = shards, "running"
        ended: list[int] = []
        rows_written: dict[int, ray.ObjectRef] = {}

        async def run(shard: _Shard) -> ShardStats:
            stats = await shard.actor.run.remote(start_at, offsets[shard.plan.index])
            ended.append(shard.plan.index)
            rows_written[shard.plan.index] = shard.actor.write_rows.remote()
            return stats

        stats = await _each_shard(shards, run)
        return stats, ended, [rows_written[shard.plan.index] for shard in shards]

    def _spec(self, plan: ShardPlan, work_dir: Path, duration_s: float | None) -> ShardSpec:
        request = self.request
        return ShardSpec(
            plan=plan,
            model=request.model,
            url=request.url,
            api=request.api,
            api_key=request.api_key.get_secret_value() if request.api_key else None,
            dataset=request.dataset,
            dataset_path=self.plan.dataset_path,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            stream=request.stream,
            debug=request.debug,
            connect_timeout_s=request.connect_timeout or self.args.connect_timeout_s,
            request_timeout_s=request.total_timeout or self.args.request_timeout_s,
            work_dir=str(work_dir),
            metrics_model=self.metrics_model if self.args.perf_live_metrics else None,
            slo=request.slo,
            duration_s=duration_s,
            evalscope_args=evalscope_passthrough(request, self.plan.tokenizer_path),
            secrets=tuple(request.secret_values()),
        )


def evalscope_passthrough(request: PerfRequest, tokenizer_path: str | None) -> dict[str, Any]:
    """The request's fields that evalscope's Arguments takes as they are, where given; every shard sends the same
    (prompts are drawn per shard from its own seed)."""
    given = request.model_dump(include=_PASSTHROUGH, exclude_none=True)
    if request.headers:
        # The dump masks credentials, and evalscope must send them: as SecretStr, which it sends as they are but
        # writes masked (benchmark_args.json), as it does its own auth headers.
        given["headers"] = {name: SecretStr(value) if is_credential_header(name) else value
                            for name, value in request.headers.items()}
    if request.read_timeout is not None:
        given["read_timeout"] = max(1, math.ceil(request.read_timeout))  # evalscope's is whole seconds
    return given | ({"tokenizer_path": tokenizer_path} if tokenizer_path else {})


_PASSTHROUGH = {"min_prompt_length", "max_prompt_length", "prefix_length", "apply_chat_template", "min_tokens",
                "extra_args", "multi_turn", "min_turns", "max_turns"}


def _kill(shards: list[_Shard]) -> None:
    for shard in shards:
        ray.kill(shard.actor)


async def _each_shard(shards: list[_Shard], call) -> list:
    """Await one call per shard; the first failure cancels the rest and names its shard."""
    tasks = {asyncio.ensure_future(call(shard)): shard for shard in shards}
    try:
        for finished in asyncio.as_completed(list(tasks)):
            try:
                await finished
            except (RayActorError, RayTaskError) as exc:
                failed = next(
                    shard for task, shard in tasks.items() if task.done() and not task.cancelled() and task.exception()
                )
                raise PerfRunError(f"shard {failed.plan.index} (node {failed.node}) failed: {_reason(exc)}") from exc
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()


def _reason(exc: Exception) -> str:
    if isinstance(exc, RayTaskError):
        cause = exc.cause
        return str(cause) if cause is not None else str(exc).strip().splitlines()[-1]
    if isinstance(exc, RayActorError):
        return "its worker process died (killed, out of memory, or its node was lost)"
    return str(exc)


async def _clock_offset(actor: ray.actor.ActorHandle) -> float:
    """The actor's wall clock minus ours, taken at the probe with the shortest round trip (Cristian's method)."""
    best_rtt, best_offset = float("inf"), 0.0
    for _ in range(_CLOCK_PROBES):
        sent = time.time()
        remote = await actor.wall_clock.remote()
        received = time.time()
        if received - sent < best_rtt:
            best_rtt, best_offset = received - sent, remote - (sent + received) / 2
    return best_offset


def point_saturation(saturation: Saturation | None, point: PointPlan,
                     stats: list[ShardStats]) -> PointSaturation | None:
    """The point's saturation as its result says it: the merged judgement, and what the shards did not send."""
    if saturation is None:
        return None
    stopped = [f"shard {stat.index}: {stat.stopped}" for stat in stats if stat.stopped]
    return PointSaturation(
        saturated=saturation.saturated or bool(stopped),
        requested_req_per_s=round(saturation.requested_req_per_s, 4),
        achieved_req_per_s=round(saturation.achieved_req_per_s, 4),
        in_flight_start=round(saturation.trend.start, 2),
        in_flight_end=round(saturation.trend.end, 2),
        in_flight_trend_per_s=round(saturation.trend.per_s, 4),
        reasons=saturation.reasons() + stopped,
        stopped_early=bool(stopped),
        not_sent=sum(plan.number for plan in point.shards) - sum(stat.sent or 0 for stat in stats),
    )


def _summarize(plan: ShardPlan, stats: ShardStats) -> ShardSummary:
    return ShardSummary(
        shard=plan.index,
        parallel=plan.parallel,
        number=plan.number,
        rate=plan.rate,
        requests=stats.requests,
        succeeded=stats.succeeded,
        req_per_s=round(stats.req_per_s, 4),
        cpu_ms_per_request=round(stats.cpu_ms_per_request, 4),
        node=stats.node,
        worker=stats.worker,
        worker_started_at=stats.worker_started_at,
        good=stats.totals.good if stats.totals else None,
        sent=stats.sent,
        stopped=stats.stopped,
        conversations=stats.conversations,
    )
