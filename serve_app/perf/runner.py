"""One shard of a perf test, run with evalscope's own request generation, HTTP client and dispatch strategies.

Plain Python, no Ray: the worker actor wraps it. It replaces only evalscope's metrics consumer, which pickles
every response chunk into SQLite; a shard instead streams compact per-request records to a file of its own
(serve_app.perf.records), from which the merge recomputes the whole test's metrics with evalscope's code.
"""

from __future__ import annotations

import asyncio
import gc
import json
import netrc
import time
import urllib.request
from typing import Any, Callable

import numpy as np
from evalscope.perf.arguments import Arguments
from evalscope.perf.benchmark import get_requests
from evalscope.perf.core.http_client import AioHttpClient
from evalscope.perf.core.strategies import MultiTurnStrategy
from evalscope.perf.plugin import ApiRegistry, DatasetRegistry
from evalscope.perf.plugin.datasets.base import Conversation
from evalscope.perf.utils.benchmark_util import BenchmarkData
from evalscope.perf.utils.body_meta import BODY_META_PREFIX

from serve_app.metrics import PerfMetrics
from serve_app.perf.dispatch import BoundedClosedLoop, BoundedOpenLoop, RequestSequence
from serve_app.perf.plugin import LEAN_PLUGINS, resilient
from serve_app.perf.merge import RunningTotals, write_result_table
from serve_app.perf.records import ERROR_CHARS, RecordWriter, shard_records_path
from serve_app.perf.saturation import MIN_OBSERVED_S, behind_schedule, in_flight_trend
from serve_app.perf.shard import ClockPair, ShardSpec, ShardStats


# Distinct bodies remembered for sharing: bounds the memo when every body differs (random prompts).
_SHARED_BODIES = 10_000
# How often a shard that may stop on saturation looks at its sends and what is in flight.
_WATCH_INTERVAL_S = 0.25


class ShardError(RuntimeError):
    """A shard could not run; the message names the shard and the reason."""


def build_arguments(spec: ShardSpec) -> Arguments:
    plan = spec.plan
    parallel = plan.parallel or -1  # evalscope's "no cap" (its open loop sets -1 itself)
    args = Arguments(
        model=spec.model,
        url=spec.url,
        api=spec.api,
        api_key=spec.api_key,
        number=plan.number,
        parallel=parallel,
        rate=plan.rate,
        open_loop=plan.open_loop,
        warmup_num=plan.warmup,
        seed=plan.seed,
        dataset_offset=plan.dataset_offset,
        dataset=spec.dataset,
        dataset_path=spec.dataset_path,
        max_tokens=spec.max_tokens,
        temperature=spec.temperature,
        stream=spec.stream,
        debug=spec.debug,
        outputs_dir=spec.work_dir,
        no_test_connection=True,
        connect_timeout=max(1, round(spec.connect_timeout_s)),
        total_timeout=max(1, round(spec.request_timeout_s)),
        duration=spec.duration_s,
        **spec.evalscope_args,
    )
    # Arguments stores sweepable fields as lists; one run uses scalars, as evalscope's run_one_benchmark does.
    args.number, args.parallel, args.rate = plan.number, parallel, plan.rate
    return args


class ShardRunner:
    """Prepares a shard (arguments, API plugin, every request body) and runs it from a given start instant."""

    def __init__(self, spec: ShardSpec, node: str = "local") -> None:
        self.spec = spec
        self.node = node
        self.args = build_arguments(spec)
        plugin_name = LEAN_PLUGINS.get(self.args.api, self.args.api) if spec.lean_client else self.args.api
        self.api_plugin = resilient(ApiRegistry.get_class(plugin_name))(self.args)
        self.requests = RequestSequence(_SHARED_BODIES)
        self.conversations: list[Conversation] = []  # a multi_turn load's, instead of `requests`
        self.metrics = PerfMetrics(spec.metrics_model) if spec.metrics_model else None
        self._writer: RecordWriter | None = None  # the running (or last) point's record file
        self.stopped: str | None = None  # why the run stopped early (stop_on_saturation), if it did
        self.schedule: np.ndarray | None = None  # with a rate: each request's send offset from the start

    @property
    def completed(self) -> int:
        """Requests (a multi_turn load: conversations) recorded so far: read by progress reporting while the shard
        runs."""
        if self._writer is None:
            return 0
        return self._writer.conversations if self.args.multi_turn else self._writer.requests

    def prepare(self) -> None:
        """Build every request body (or conversation) up front, so the timed part starts with dispatching, and probe
        the target."""
        if self.args.multi_turn:
            self.conversations = self._load_conversations()
            first_turn = self.api_plugin.build_request([dict(m) for m in self.conversations[0][0].messages])
            asyncio.run(self._probe(first_turn))
        else:
            self.requests = asyncio.run(self._collect_requests())
            asyncio.run(self._probe(dict(self.requests[0][0]) if self.requests else None))
            self.schedule = self.spec.plan.arrival_offsets()  # with a rate; before the timed window
        # Everything allocated so far (evalscope, pandas, transformers... imported; the request bodies) is
        # long-lived: freezing it keeps the collector from walking it mid-test, which stalled the event loop for
        # 100+ ms at a time. Here rather than in `run`, so the start instant need not leave room for a collection.
        gc.collect()
        gc.freeze()

    async def _collect_requests(self) -> RequestSequence:
        """Every request body. A dataset's prompts repeat cyclically, yet evalscope builds a new body for each
        request: equal bodies are kept once (evalscope itself sends one body for a fixed prompt), so a million
        requests over a few dozen prompts hold a few dozen bodies and 5 bytes a request, not a million bodies
        (~0.5 KB each). Bodies that carry per-request metadata (trace replays; the client pops it as it sends) are
        never shared."""
        requests = RequestSequence(_SHARED_BODIES)
        async for body, is_warmup in get_requests(self.args, self.api_plugin):
            per_request = any(key.startswith(BODY_META_PREFIX) for key in body)
            requests.append(body, is_warmup, None if per_request else json.dumps(body, sort_keys=True, default=str))
        return requests

    def _load_conversations(self) -> list[Conversation]:
        """The conversations this shard runs, as evalscope's multi-turn benchmark loads them (as many as it sends,
        warm-up included), drawn from the shard's own seed and starting at its own offset of the dataset, so the
        shards hold different conversations; each conversation is run by one worker of one shard."""
        np.random.seed(self.spec.plan.seed)  # random_multi_turn draws turn counts and prompts from numpy's generator
        wanted = self.spec.plan.dataset_offset + self.args.total_count
        loaded: list[Conversation] = []
        for conversation in DatasetRegistry.get_class(self.args.dataset)(self.args).build_messages():
            if conversation:
                loaded.append(conversation)
            if len(loaded) >= wanted:
                break
        if not loaded:
            raise ShardError(f"the dataset {self.args.dataset!r} produced no conversation")
        start = self.spec.plan.dataset_offset % len(loaded)
        return loaded[start:] + loaded[:start]

    async def _probe(self, request: dict | None) -> None:
        """One request to the target, so an unreachable endpoint fails in seconds instead of per request."""
        timeout = min(self.spec.connect_timeout_s * 3, self.spec.request_timeout_s)
        probe_args = self.args.model_copy(update={"parallel": 1, "total_timeout": timeout})
        if request is None:
            raise ShardError("the dataset produced no request")
        self.api_plugin.set_request_max_tokens(request, 1)
        async with _http_client(probe_args, self.api_plugin) as client:
            outcome = self._finalized(await client.post(request))
        if not outcome.success:
            reason = (outcome.error or "no response").strip().splitlines()[-1][:ERROR_CHARS]
            status = f" (HTTP {outcome.status_code})" if outcome.status_code else ""
            raise ShardError(f"probe request to {self.spec.url} failed{status}: {reason}")

    def run(self, start_at: float, clock_offset_s: float = 0.0) -> ShardStats:
        """Start dispatching at `start_at` (coordinator wall clock), write every request's record to this shard's
        file (`records_path` in the answer) as it completes, keeping its share of the merge meanwhile (its
        `totals`), and return its counts once the load has ended.

        `clock_offset_s` is this process's wall clock minus the coordinator's; record times are converted to
        the coordinator's clock through one (wall, monotonic) pair, so shards on different processes and nodes
        land on one time axis with monotonic precision.
        """
        clock = ClockPair(wall=time.time(), monotonic=time.perf_counter(), offset_s=clock_offset_s)
        path = shard_records_path(self.spec.work_dir, self.spec.plan.index)
        self._writer = RecordWriter(path, clock)
        totals = RunningTotals(self.args, self.spec.slo)
        with self._writer as writer:
            cpu_s, sent = _run_loop(self._dispatch(clock.from_coordinator(start_at), writer, totals))
        return ShardStats(self.spec.plan.index, self.node, writer.requests, writer.succeeded, writer.span_s, cpu_s,
                          records_path=str(path), sent=sent, stopped=self.stopped,
                          conversations=writer.conversations if self.args.multi_turn else None,
                          totals=totals.totals(clock))

    def write_rows(self) -> None:
        """The shard's rows of benchmark_data.db, beside its record file, once `run` has returned: a step of its own,
        so that the merge can begin without them (merge.write_result_table)."""
        write_result_table(self._writer.path)

    async def _dispatch(self, start_mono: float, writer: RecordWriter,
                        totals: RunningTotals) -> tuple[float, int | None]:
        """Send every request, recording each into `writer` and `totals`; the CPU seconds this process spent sending
        them and reading the replies, and how many measured requests went out (None: not counted, without a
        rate)."""
        delay = start_mono - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        cpu_start = time.process_time()
        queue: asyncio.Queue[BenchmarkData] = asyncio.Queue()
        async with _http_client(self.args, self.api_plugin) as client:
            schedule = self.schedule
            sends = None if schedule is None else _PacedClient(client, self.spec.plan.parallel)
            if self.conversations:
                strategy = MultiTurnStrategy(self.args, self.api_plugin, client, queue, self.conversations)
            elif sends is None:
                strategy = BoundedClosedLoop(self.args, self.api_plugin, client, queue, self.requests)
            else:
                strategy = BoundedOpenLoop(self.args, self.api_plugin, sends, queue, self.requests, schedule)
            collector = asyncio.create_task(self._collect(queue, writer, totals))
            try:
                dispatch = asyncio.create_task(strategy.run())
                if sends is not None and self.spec.plan.stop_on_saturation:
                    await self._watch(dispatch, sends, schedule, time.perf_counter())
                await dispatch
                await queue.join()
            except asyncio.CancelledError:
                if self.stopped is None:  # cancelled from outside, not by the watch
                    raise
                await queue.join()
            finally:
                collector.cancel()
        sent = None if sends is None else max(0, sends.sent - self.spec.plan.warmup)
        return time.process_time() - cpu_start, sent

    async def _watch(self, dispatch: asyncio.Task, sends: _PacedClient, schedule: np.ndarray, start: float) -> None:
        """Stop sending once this shard sees the target saturated (serve_app.perf.saturation); requests still in
        flight are abandoned, not recorded: waiting for them is what the stop saves the target from."""
        times: list[float] = []
        in_flight: list[float] = []
        while not dispatch.done():
            await asyncio.wait([dispatch], timeout=_WATCH_INTERVAL_S)
            elapsed = time.perf_counter() - start
            due = int(np.searchsorted(schedule, elapsed, "right"))
            if sends.done:  # before the first completion the count only fills up to its steady level
                times.append(elapsed)
                in_flight.append(sends.sent - sends.done)
            trend = in_flight_trend(np.array(times), np.array(in_flight))
            if behind_schedule(elapsed, due, sends.sent):
                self.stopped = (f"stopped on saturation after {elapsed:.1f} s: {sends.sent} of the {due} requests "
                                "due had gone out")
            elif elapsed >= MIN_OBSERVED_S and trend.growing:
                self.stopped = (f"stopped on saturation after {elapsed:.1f} s: requests in flight grew from "
                                f"{trend.start:.3g} to {trend.end:.3g}")
            if self.stopped and not dispatch.done():
                print(self.stopped)
                dispatch.cancel()
                return

    async def _collect(self, queue: asyncio.Queue[BenchmarkData], writer: RecordWriter,
                       totals: RunningTotals) -> None:
        while True:
            record = await queue.get()
            try:
                if not record.is_warmup:
                    record = self._finalized(record)
                    if record.trace_id is not None:  # a conversation's id, unique in its shard only
                        record.trace_id = f"shard-{self.spec.plan.index}/{record.trace_id}"
                    if self.metrics:
                        self.metrics.record(record.success, record.first_chunk_latency, record.inter_chunk_latency,
                                            record.query_latency, record.completion_tokens)
                    writer.add(record)
                    totals.add(record)
            finally:
                queue.task_done()

    def _finalized(self, record: BenchmarkData) -> BenchmarkData:
        if record.success:
            try:
                record.finalize(self.api_plugin)
            except Exception as exc:  # e.g. a reply without usage and no tokenizer: a failed request, not a hang
                record.success = False
                record.error = f"the reply is not an OpenAI-style completion (no token counts: {exc})"
        return record


def _http_client(args: Arguments, api_plugin: Any) -> AioHttpClient:
    """evalscope's HTTP client, minus a per-request thread hop when the environment configures no proxy.

    evalscope opens its aiohttp session with trust_env=True, which makes aiohttp look the proxy up in a worker
    thread for every request: with no proxy variables and no .netrc that lookup finds nothing, yet it costs
    more CPU than reading the reply and delays the send. Where a proxy or .netrc exists it is kept as is.
    """
    client = AioHttpClient(args, api_plugin)
    if not _environment_sets_proxy_or_netrc():
        client.client._trust_env = False  # aiohttp exposes trust_env read-only; this is its backing field
    return client


def _environment_sets_proxy_or_netrc() -> bool:
    if urllib.request.getproxies():
        return True
    try:
        netrc.netrc()
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return True


class _PacedClient:
    """evalscope's HTTP client as the open-loop strategy sees it: a request waits for one of `cap` slots when capped
    (`parallel` bounds what is in flight, so an arrival beyond it goes out late), and sends and completions are
    counted for the saturation watch."""

    def __init__(self, client: AioHttpClient, cap: int | None) -> None:
        self._client = client
        self._slots = asyncio.Semaphore(cap) if cap else None
        self.sent = 0
        self.done = 0

    async def post(self, body: dict) -> BenchmarkData:
        if self._slots is None:
            return await self._send(body)
        async with self._slots:
            return await self._send(body)

    async def _send(self, body: dict) -> BenchmarkData:
        self.sent += 1
        try:
            return await self._client.post(body)
        finally:
            self.done += 1


def _run_loop(coroutine: Any) -> Any:
    """Run on uvloop when present: its timers and I/O dispatch keep the request schedule tighter."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coroutine)
