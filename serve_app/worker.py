"""A job's worker process: started with evalscope already imported, possibly before its job exists, then used for
that one job only (serve_app.warm_pool hands each out once; its holder kills it when done).

evalscope is imported in these processes only, never in the ingress or the job manager.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from typing import Any

import ray

from serve_app.jobs.output import hold_output

# What a job's steps import: evalscope's eval, its HTML reports, and its perf client (through the shard's runner).
# ~2.5 s of CPU in a process, paid before its job when it was started ahead of need.
_JOB_ENTRY_POINTS = (
    "evalscope.run",
    "evalscope.report",
    "evalscope.perf.utils.report.generate_report",
    "serve_app.perf.runner",
)


def where_this_runs() -> str:
    """This process, as a job's log names it: its Ray actor, pid and node."""
    actor = ray.get_runtime_context().get_actor_name()
    return f"runs in {actor} (pid {os.getpid()} on {ray.util.get_node_ip_address()})"


class JobWorker:
    """Imports evalscope at start; what it prints meanwhile waits for the job's log (`print_to_job_log`)."""

    def __init__(self) -> None:
        self.started_at = time.time()  # unix time: before its job's submission when it was started ahead of need
        hold_output()
        for module in _JOB_ENTRY_POINTS:
            importlib.import_module(module)

    def name(self) -> str:
        """The Ray actor's name, which `ray list actors` shows."""
        return ray.get_runtime_context().get_actor_name() or ""


class TaskWorker(JobWorker):
    """Runs one job's steps (an eval dataset, then its combine; a perf run's report, in its last shard 0), each a
    plain function that first sends this process's output to the job's log."""

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        return function(*args)


TaskWorkerActor = ray.remote(max_restarts=0, max_task_retries=0)(TaskWorker)
