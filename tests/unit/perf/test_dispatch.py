import asyncio
import time
from collections import Counter
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest
from evalscope.perf.core.strategies import ClosedLoopStrategy, OpenLoopStrategy
from evalscope.perf.utils.benchmark_util import BenchmarkData
from evalscope.perf.utils.body_meta import BODY_META_ARRIVAL_OFFSET, BODY_META_IS_WARMUP

from serve_app.perf.dispatch import BoundedClosedLoop, BoundedOpenLoop, RequestSequence


def test_equal_bodies_are_held_once_and_the_requests_keep_their_order_and_warm_up_flags():
    requests = RequestSequence(share_limit=2)
    a, b, c, own = {"p": "a"}, {"p": "b"}, {"p": "c"}, {"p": "a", "id": 1}
    for body, is_warmup, key in [(a, True, "a"), (b, False, "b"), ({"p": "a"}, False, "a"), (c, False, "c"),
                                 ({"p": "c"}, False, "c"), (own, False, None)]:
        requests.append(body, is_warmup, key)
    assert list(requests) == [(a, True), (b, False), (a, False), (c, False), ({"p": "c"}, False), (own, False)]
    assert requests[2][0] is a  # shared
    assert requests[4][0] is not c  # past the share limit: held as built
    assert len(requests) == 6 and len(requests.bodies) == 5


def test_a_million_requests_over_a_few_prompts_cost_a_few_bytes_each():
    prompts = [{"messages": [{"role": "user", "content": f"question {i}"}]} for i in range(30)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    requests = RequestSequence()
    for i in range(1_000_000):
        requests.append(prompts[i % 30], i < 10, str(i % 30))
    per_request = (tracemalloc.get_traced_memory()[0] - before) / len(requests)
    tracemalloc.stop()
    assert per_request < 8, per_request  # a 4-byte index and a 1-byte flag, and the arrays' headroom


class InstantClient:
    """Answers each request after `latency_s`, counting what is in flight at once (and keeping what was sent, if
    asked: the memory test must not)."""

    def __init__(self, latency_s: float = 0.0, keep_sent: bool = False) -> None:
        self.latency_s, self.in_flight, self.most_in_flight = latency_s, 0, 0
        self.sent: list[dict] | None = [] if keep_sent else None

    async def post(self, body: dict) -> BenchmarkData:
        if self.sent is not None:
            self.sent.append(body)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(self.latency_s)
        self.in_flight -= 1
        return BenchmarkData(success=True)


def arguments(parallel: int = 4, duration: float | None = None, rate: float = -1) -> SimpleNamespace:
    return SimpleNamespace(parallel=parallel, in_flight_task_multiplier=2, duration=duration, rate=rate, api="openai")


def requests_of(count: int, warmup: int = 0) -> RequestSequence:
    requests = RequestSequence()
    for i in range(count):
        requests.append({"i": i}, i < warmup, None)
    return requests


async def dispatched(strategy_class, args, requests, client, offsets=None) -> tuple[Counter, float]:
    """Run the strategy while draining its queue; how many records it queued, by is_warmup, and the peak traced
    memory above the start. With `offsets`, an open loop: evalscope's takes them in a copy of each body, as it
    replays a trace (built here, before the memory is traced)."""
    queue: asyncio.Queue = asyncio.Queue()
    records: Counter = Counter()

    async def drain():
        while True:
            records[(await queue.get()).is_warmup] += 1
            queue.task_done()

    if strategy_class is BoundedClosedLoop:
        sources = (requests,)
    elif strategy_class is BoundedOpenLoop:
        sources = (requests, offsets)
    elif offsets is None:
        sources = (_generator(requests),)
    else:
        sources = (_generator([({**body, BODY_META_ARRIVAL_OFFSET: offset, **({BODY_META_IS_WARMUP: True} if warmup
                                                                             else {})}, False)
                               for (body, warmup), offset in zip(requests, offsets.tolist())]),)
    drainer = asyncio.create_task(drain())
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    await strategy_class(args, None, client, queue, *sources).run()
    await queue.join()
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    drainer.cancel()
    return records, peak


async def _generator(requests):
    for item in requests:
        yield item


def test_every_request_goes_out_in_order_with_its_warm_up_flag_and_at_most_parallel_at_once():
    client = InstantClient(latency_s=0.001, keep_sent=True)
    records, _ = asyncio.run(dispatched(BoundedClosedLoop, arguments(parallel=4), requests_of(200, warmup=8),
                                        client))
    assert [body["i"] for body in client.sent] == list(range(200))
    assert records == {True: 8, False: 192}
    assert client.most_in_flight == 4


def test_memory_does_not_grow_with_the_requests_sent_while_evalscopes_closed_loop_does():
    def growth_per_request(strategy_class) -> float:
        small = asyncio.run(dispatched(strategy_class, arguments(), requests_of(2_000), InstantClient()))[1]
        large = asyncio.run(dispatched(strategy_class, arguments(), requests_of(20_000), InstantClient()))[1]
        return (large - small) / 18_000

    # The request bodies themselves are built beforehand and not counted: only what the dispatch holds on to.
    assert growth_per_request(ClosedLoopStrategy) > 100  # evalscope keeps every task it created
    assert growth_per_request(BoundedClosedLoop) < 10


def test_a_duration_stops_dispatching_once_it_has_passed_since_the_first_measured_send():
    client, requests = InstantClient(latency_s=0.01), requests_of(100_000, warmup=4)
    started = time.perf_counter()
    records, _ = asyncio.run(dispatched(BoundedClosedLoop, arguments(parallel=2, duration=0.3), requests, client))
    assert time.perf_counter() - started < 3
    assert 4 < records[False] < 1000  # ~2 per 10 ms for 0.3 s, then what was in flight


class FailingAtFive(InstantClient):
    """Raises on the request numbered 5."""

    async def post(self, body):
        if body["i"] == 5:
            raise ConnectionError("refused")
        return await super().post(body)


def test_a_request_that_raises_ends_the_dispatch_with_its_error():
    with pytest.raises(ConnectionError, match="refused"):
        asyncio.run(dispatched(BoundedClosedLoop, arguments(), requests_of(50), FailingAtFive()))


def test_a_rate_is_refused_it_is_the_open_loops():
    with pytest.raises(ValueError, match="open loop"):
        BoundedClosedLoop(arguments(rate=10.0), None, InstantClient(), asyncio.Queue(), requests_of(1))


def bursts(count: int, size: int = 50, gap_s: float = 0.01) -> np.ndarray:
    """Send offsets in bursts of `size` requests every `gap_s`: the loop waits between bursts (traced, a burst takes
    a few ms to send), so the requests sent so far can finish."""
    return np.arange(count) // size * gap_s


def test_the_open_loop_sends_each_request_at_its_offset_with_its_warm_up_flag_whatever_is_in_flight():
    client = InstantClient(latency_s=0.05, keep_sent=True)
    offsets = np.arange(40) * 0.005  # a request every 5 ms, each answered in 50 ms: ~10 in flight
    started = time.perf_counter()
    records, _ = asyncio.run(dispatched(BoundedOpenLoop, arguments(rate=200.0), requests_of(40, warmup=4), client,
                                        offsets))
    assert [body["i"] for body in client.sent] == list(range(40))
    assert records == {True: 4, False: 36}
    assert client.most_in_flight >= 5  # not waiting for replies
    assert 0.2 <= time.perf_counter() - started < 2  # the last offset, 195 ms, then its reply


def test_the_open_loops_memory_does_not_grow_with_the_requests_sent_while_evalscopes_does():
    def growth_per_request(strategy_class) -> float:
        def peak(count: int) -> float:
            return asyncio.run(dispatched(strategy_class, arguments(rate=100.0), requests_of(count), InstantClient(),
                                          bursts(count)))[1]
        return (peak(5_000) - peak(500)) / 4_500

    # evalscope's keeps every task it created, and wants a copy of each body (which is built beforehand and not
    # counted here: only what the dispatch holds on to).
    assert growth_per_request(OpenLoopStrategy) > 100
    assert growth_per_request(BoundedOpenLoop) < 10


def test_the_open_loops_duration_stops_the_measured_sends_not_the_warm_up():
    client, requests = InstantClient(latency_s=0.01), requests_of(1000, warmup=4)
    offsets = np.arange(1000) * 0.002  # 2 s of arrivals
    records, _ = asyncio.run(dispatched(BoundedOpenLoop, arguments(rate=500.0, duration=0.3), requests, client,
                                        offsets))
    assert records[True] == 4
    assert 50 < records[False] < 300  # ~0.3 s of arrivals at 500/s, give or take the loop's timer resolution


def test_an_open_loop_request_that_raises_ends_the_dispatch_with_its_error():
    with pytest.raises(ConnectionError, match="refused"):
        asyncio.run(dispatched(BoundedOpenLoop, arguments(rate=100.0), requests_of(50), FailingAtFive(),
                               bursts(50, 10, 0.001)))


def test_an_open_loop_needs_an_offset_for_each_request():
    with pytest.raises(ValueError, match="3 send offsets for 4 requests"):
        BoundedOpenLoop(arguments(rate=10.0), None, InstantClient(), asyncio.Queue(), requests_of(4), np.zeros(3))


def test_cancelling_the_open_loop_cancels_the_requests_in_flight():
    """What a shard's stop on saturation does: the requests still out are abandoned, not waited for."""
    class Hanging(InstantClient):
        def __init__(self):
            super().__init__()
            self.cancelled = 0

        async def post(self, body):
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise

    async def scenario(client) -> None:
        strategy = BoundedOpenLoop(arguments(rate=100.0), None, client, asyncio.Queue(), requests_of(20), np.zeros(20))
        dispatch = asyncio.create_task(strategy.run())
        await asyncio.sleep(0.05)
        dispatch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await dispatch

    client = Hanging()
    started = time.perf_counter()
    asyncio.run(scenario(client))
    assert client.cancelled == 20 and time.perf_counter() - started < 5
