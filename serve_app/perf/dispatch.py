"""A shard's requests and evalscope's dispatch strategies, in memory that does not grow with the number of requests.

A million-request test point sends the same few dozen prompts over and over. evalscope's closed and open loops
collect every (request, is_warmup) pair into a list and keep the task of every request they sent until the point
ends, a few hundred bytes per request; its open loop also wants a body of its own per request, carrying the
request's send offset. Here the requests are the distinct bodies plus one small integer per request (and, with a
rate, 8 bytes of offset), and the dispatch keeps only the tasks still in flight.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Iterator, Sequence

import numpy as np
from evalscope.perf.core.strategies import ClosedLoopStrategy, OpenLoopStrategy
from evalscope.perf.core.strategies.closed_loop import _send_request
from evalscope.perf.core.strategies.open_loop import _send_request_open_loop


class RequestSequence(Sequence):
    """(body, is_warmup) pairs in order: each distinct body once, then a 32-bit index and a warm-up flag per request.

    `share_limit` bounds the distinct bodies remembered for sharing, so random prompts (every body differs) cost one
    body each and no memo of them."""

    def __init__(self, share_limit: int = 10_000) -> None:
        self.bodies: list[dict] = []
        self._order = array("i")
        self._warmup = array("b")
        self._shared: dict[str, int] = {}
        self._share_limit = share_limit

    def append(self, body: dict, is_warmup: bool, share_key: str | None = None) -> None:
        """Add a request; bodies with one `share_key` are held once (None: never shared)."""
        index = self._shared.get(share_key) if share_key is not None else None
        if index is None:
            index = len(self.bodies)
            self.bodies.append(body)
            if share_key is not None and len(self._shared) < self._share_limit:
                self._shared[share_key] = index
        self._order.append(index)
        self._warmup.append(is_warmup)

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, position: int) -> tuple[dict, bool]:  # type: ignore[override]
        return self.bodies[self._order[position]], bool(self._warmup[position])

    def __iter__(self) -> Iterator[tuple[dict, bool]]:
        bodies = self.bodies
        for index, is_warmup in zip(self._order, self._warmup):
            yield bodies[index], bool(is_warmup)


class BoundedClosedLoop(ClosedLoopStrategy):
    """evalscope's closed loop (its semaphore of `parallel`, its bound on tasks created ahead, warm-up handed over
    without a barrier, the duration armed by the first measured send, evalscope's own per-request coroutine),
    reading the shard's RequestSequence as it goes and keeping only the tasks in flight. Without a rate: a shard
    with a rate runs evalscope's open loop."""

    def __init__(self, args, api_plugin, client, queue, requests: RequestSequence) -> None:
        if args.rate != -1:
            raise ValueError("a rate is run by the open loop")
        super().__init__(args, api_plugin, client, queue, request_generator=None)
        self._requests = requests

    async def run(self) -> None:
        await self._run_phase(self._requests, duration=self.args.duration)

    async def _run_phase(self, requests: Sequence[tuple[dict, bool]], duration: float | None = None) -> None:
        semaphore = asyncio.Semaphore(self.args.parallel)
        max_in_flight = self.args.parallel * self.args.in_flight_task_multiplier
        in_flight: set[asyncio.Future] = set()
        deadline: float | None = None

        def arm_deadline() -> None:
            nonlocal deadline
            if deadline is None and duration is not None:
                deadline = self._compute_deadline(duration)

        try:
            for request, is_warmup in requests:
                if deadline is not None and time.perf_counter() >= deadline:
                    break
                if len(in_flight) >= max_in_flight:
                    done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    await asyncio.gather(*done)  # a request's error ends the point, as in evalscope
                in_flight.add(asyncio.ensure_future(_send_request(
                    semaphore, request, is_warmup, self.queue, self.client, self.track_gpu_memory,
                    on_send=None if is_warmup else arm_deadline,
                )))
            await asyncio.gather(*in_flight)
        finally:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)


class BoundedOpenLoop(OpenLoopStrategy):
    """evalscope's open loop on a replayed schedule (each request sent at its offset from the start, whether or not
    the earlier ones have finished; warm-up ones outside the duration, which the first measured request arms and
    which stops the sending, not what is in flight; evalscope's own per-request coroutine), reading the shard's
    RequestSequence and `offsets` (seconds from the start, one a request) as it goes and keeping only the tasks in
    flight."""

    def __init__(self, args, api_plugin, client, queue, requests: RequestSequence, offsets: np.ndarray) -> None:
        if len(offsets) != len(requests):
            raise ValueError(f"{len(offsets)} send offsets for {len(requests)} requests")
        super().__init__(args, api_plugin, client, queue, request_generator=None)
        self._requests = requests
        self._offsets = offsets

    async def run(self) -> None:
        in_flight: set[asyncio.Future] = set()

        def release(task: asyncio.Future) -> None:
            if task.cancelled() or task.exception() is None:  # a failed one stays, for the gather below to raise
                in_flight.discard(task)

        armed, deadline = False, None
        target_times = self._offsets + time.perf_counter()
        try:
            for (request, is_warmup), target in zip(self._requests, target_times):
                if not is_warmup and not armed:
                    armed, deadline = True, self._compute_deadline(self.args.duration)
                sleep_s = target - time.perf_counter()
                if not is_warmup and deadline is not None:
                    sleep_s = min(sleep_s, deadline - time.perf_counter())
                if sleep_s > 0:
                    await asyncio.sleep(sleep_s)
                if not is_warmup and deadline is not None and time.perf_counter() >= deadline:
                    break
                task = asyncio.ensure_future(_send_request_open_loop(
                    request, is_warmup, self.queue, self.client, self.track_gpu_memory))
                in_flight.add(task)
                task.add_done_callback(release)
            await asyncio.gather(*in_flight)  # a request's error ends the point, as in evalscope
        finally:
            for task in list(in_flight):
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
