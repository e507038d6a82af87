"""A few worker processes started ahead of need, each handed out once; plain Python (serve_app.workers is the Ray
glue).

A job's worker process pays its start and evalscope's import (seconds) before doing anything; a pool started
earlier hands out a process that has paid both. Each is handed out to one job only and never comes back: evalscope
keeps process-wide state (its logger, progress tracker, event loop policy, model cache), so a process never
serves two jobs. The holder stops it when its job is done with it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Generic, TypeVar

W = TypeVar("W")


class WarmPool(Generic[W]):
    """Up to `size` started workers, oldest handed out first; a taken one is replaced by a newly started one.

    `start` starts a worker and returns at once (the process gets ready in the background), given the idle ones (so it
    can put the new one where they are fewest); `stop` stops one.
    """

    def __init__(self, start: Callable[[Sequence[W]], W], stop: Callable[[W], None], size: int) -> None:
        self._start = start
        self._stop = stop
        self._size = size
        self._idle: deque[W] = deque()
        self._refills_held = 0
        self._closed = False
        self._refill()

    @property
    def idle(self) -> int:
        """Workers started and not yet handed out."""
        return len(self._idle)

    def take(self) -> W:
        """A started worker (the one started first: the furthest along), else a fresh one; the pool refills."""
        worker = self.take_fitting(lambda _: True)
        return self._start(tuple(self._idle)) if worker is None else worker

    def take_fitting(self, fits: Callable[[W], bool]) -> W | None:
        """The oldest started worker that `fits` (a perf shard: one on the node its CPUs were reserved on), else
        None: the caller starts one to its own measure. The pool refills."""
        worker = next((idle for idle in self._idle if fits(idle)), None)
        if worker is not None:
            self._idle.remove(worker)
        self._refill()
        return worker

    def drop(self, lost: Callable[[W], bool]) -> None:
        """Stop the idle workers that are `lost` (their node left the cluster) and start others in their place."""
        for worker in [idle for idle in self._idle if lost(idle)]:
            self._idle.remove(worker)
            self._stop(worker)
        self._refill()

    @contextmanager
    def refills_held(self) -> Iterator[None]:
        """Start no worker while this is open (the pool refills when the last one closes): a perf test's timed
        window, during which a process importing evalscope would take CPU from its load generators."""
        self._refills_held += 1
        try:
            yield
        finally:
            self._refills_held -= 1
            self._refill()

    def close(self) -> None:
        """Stop the idle workers; a later take starts a fresh one and the pool stays empty."""
        self._closed = True
        while self._idle:
            self._stop(self._idle.popleft())

    def _refill(self) -> None:
        if self._closed or self._refills_held:
            return
        while len(self._idle) < self._size:
            self._idle.append(self._start(tuple(self._idle)))
