"""Background tasks that outlive the call that started them (a report written after its result, a handover)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine

_running: set[asyncio.Task] = set()


def keep_running(work: Coroutine) -> asyncio.Task:
    """Run `work` on this event loop and hold its task until it ends (the loop keeps only weak references)."""
    task = asyncio.get_running_loop().create_task(work)
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task
