"""What a shard is given and what it reports back to the coordinator; free of evalscope so the ingress can hold it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from serve_app.perf.plan import ShardPlan
from serve_app.schemas import Slo


@dataclass(frozen=True)
class ShardSpec:
    """Everything a shard needs: the request's target and workload, and its own share of the load."""

    plan: ShardPlan
    model: str
    url: str
    api: str
    api_key: str | None
    dataset: str
    dataset_path: str | None
    max_tokens: int
    temperature: float
    stream: bool
    debug: bool
    connect_timeout_s: float
    request_timeout_s: float
    work_dir: str
    lean_client: bool = True  # evalscope's plugin with the cheaper stream reader (serve_app.perf.plugin)
    # Record each request in Ray's metrics as it completes, under this `model` label (None: off; needs a Ray process).
    metrics_model: str | None = None
    slo: Slo | None = None  # the request's per-request limits: the merge counts the requests that met them
    duration_s: float | None = None  # the shard also stops sending after this long (a search's probe)
    # evalscope Arguments fields the request gives as they are (prompt lengths, extra body fields, headers, ...)
    evalscope_args: dict[str, Any] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()  # masked wherever the shard prints (the key, credential headers)


@dataclass(frozen=True)
class ShardTotals:
    """A shard's share of its point's merge, kept by the shard as its records complete
    (serve_app.perf.merge.RunningTotals)."""

    sums: dict[str, float | int | None]  # evalscope's MetricsAccumulator fields (counts, sums, time window)
    good: int | None = None  # with an SLO: its requests that met it


@dataclass(frozen=True)
class ShardStats:
    """A finished shard in a few numbers; its records are in the file at `records_path`, for the merge."""

    index: int
    node: str
    requests: int
    succeeded: int
    span_s: float  # first request start to last completion, on the coordinator's clock
    cpu_s: float  # CPU time this load generator spent dispatching and reading replies
    worker: str = ""  # the Ray actor (process) it ran in
    worker_started_at: float = 0.0  # unix time that process was started
    records_path: str = ""  # the shard's record file, under the point's directory on the shared outputs root
    sent: int | None = None  # measured requests that went out (with a rate), abandoned ones in flight included
    stopped: str | None = None  # why it stopped sending early (stop_on_saturation), if it did
    conversations: int | None = None  # a multi_turn load's conversations that ended (`requests` counts turns)
    totals: ShardTotals | None = None

    @property
    def done(self) -> int:
        """What the job's progress counts: requests, or a multi_turn load's conversations."""
        return self.requests if self.conversations is None else self.conversations

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu_s / self.requests if self.requests else 0.0

    @property
    def req_per_s(self) -> float:
        return self.requests / self.span_s if self.span_s > 0 else 0.0


@dataclass(frozen=True)
class ClockPair:
    """One reading of a process's wall clock and monotonic clock, plus how far its wall clock is from the
    coordinator's. Monotonic timestamps are precise but process-local; this maps them onto one shared axis."""

    wall: float
    monotonic: float
    offset_s: float  # this process's wall clock minus the coordinator's

    def to_coordinator(self, monotonic_time: float) -> float:
        return self.wall + (monotonic_time - self.monotonic) - self.offset_s

    def from_coordinator(self, coordinator_wall_time: float) -> float:
        return self.monotonic + (coordinator_wall_time + self.offset_s - self.wall)
