"""Every metric the service exports, named once, through Ray's metrics system.

Ray serves them on each node's metrics export port (Prometheus format, names prefixed `ray_`), so Prometheus
scrapes every node and replica correctly. Labels are bounded: kind, status, outcome, dataset names from
evalscope's registry, and model names through a LabelBudget; never URLs, prompts, keys or job ids. Create the
recorders inside Ray processes (actors, tasks).
"""

from __future__ import annotations

from ray.util.metrics import Counter, Gauge, Histogram

PREFIX = "evalscope_serve_"
# Latency buckets in seconds: from sub-millisecond token gaps to minute-long requests.
LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
JOB_DURATION_BUCKETS = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600]
# Streamed token gaps recorded per request: enough for the histogram's shape, bounded cost per request.
ITL_SAMPLES_PER_REQUEST = 4

# name -> (type, labels); what the Grafana dashboard and the tests check their queries against.
METRICS = {
    "jobs_submitted": ("counter", ("kind",)),
    "jobs_finished": ("counter", ("kind", "status")),
    "jobs_running": ("gauge", ("kind",)),
    "job_duration_seconds": ("histogram", ("kind",)),
    "perf_requests": ("counter", ("model", "outcome")),
    "perf_ttft_seconds": ("histogram", ("model",)),
    "perf_itl_seconds": ("histogram", ("model",)),
    "perf_latency_seconds": ("histogram", ("model",)),
    "perf_output_tokens": ("counter", ("model",)),
    "eval_samples": ("counter", ("model", "dataset")),
    "eval_score": ("gauge", ("model", "dataset")),
}


LABEL_MAX_CHARS = 64
OTHER_LABEL = "other"


class LabelBudget:
    """Bounds the values one label takes, whatever callers send: each value cut to LABEL_MAX_CHARS, and once
    `max_values` distinct values are in use every new one is exported as "other" (Prometheus keeps one series per
    value, so an unbounded label would grow its memory without end)."""

    def __init__(self, max_values: int) -> None:
        self.max_values = max_values
        self._values: set[str] = set()

    def label(self, value: str) -> str:
        value = value[:LABEL_MAX_CHARS]
        if value not in self._values and len(self._values) >= self.max_values:
            return OTHER_LABEL
        self._values.add(value)
        return value


class JobMetrics:
    """Job lifecycle metrics, recorded by the job manager."""

    def __init__(self) -> None:
        self.submitted = Counter(PREFIX + "jobs_submitted", "Jobs accepted.", tag_keys=("kind",))
        self.finished = Counter(PREFIX + "jobs_finished", "Jobs ended, by status.", tag_keys=("kind", "status"))
        self.running = Gauge(PREFIX + "jobs_running", "Jobs running now.", tag_keys=("kind",))
        self.duration = Histogram(
            PREFIX + "job_duration_seconds", "Start to end of finished jobs.", JOB_DURATION_BUCKETS, ("kind",)
        )

    def job_submitted(self, kind: str) -> None:
        self.submitted.inc(1, {"kind": kind})

    def job_finished(self, kind: str, status: str, duration_s: float | None) -> None:
        self.finished.inc(1, {"kind": kind, "status": status})
        if duration_s is not None:
            self.duration.observe(duration_s, {"kind": kind})

    def jobs_running(self, kind: str, count: int) -> None:
        self.running.set(count, {"kind": kind})


class PerfMetrics:
    """Per-request metrics recorded live by each perf shard as its requests complete."""

    def __init__(self, model: str) -> None:
        self.tags = {"model": model}
        self.requests = Counter(PREFIX + "perf_requests", "Perf requests completed.", tag_keys=("model", "outcome"))
        self.ttft = Histogram(PREFIX + "perf_ttft_seconds", "Time to first token.", LATENCY_BUCKETS, ("model",))
        self.itl = Histogram(PREFIX + "perf_itl_seconds", "Time between streamed tokens.", LATENCY_BUCKETS, ("model",))
        self.latency = Histogram(PREFIX + "perf_latency_seconds", "Request latency.", LATENCY_BUCKETS, ("model",))
        self.output_tokens = Counter(PREFIX + "perf_output_tokens", "Tokens generated.", tag_keys=("model",))

    def record(self, success: bool, ttft_s: float, itl_s: list[float], latency_s: float, tokens: int | None) -> None:
        self.requests.inc(1, {**self.tags, "outcome": "success" if success else "failure"})
        if not success:
            return
        self.ttft.observe(ttft_s, self.tags)
        self.latency.observe(latency_s, self.tags)
        step = max(1, len(itl_s) // ITL_SAMPLES_PER_REQUEST)
        for gap in itl_s[::step][:ITL_SAMPLES_PER_REQUEST]:
            self.itl.observe(gap, self.tags)
        if tokens:
            self.output_tokens.inc(tokens, self.tags)


class EvalMetrics:
    """Eval progress and scores, recorded by the job manager as datasets advance and finish."""

    def __init__(self) -> None:
        self.samples = Counter(PREFIX + "eval_samples", "Eval samples processed.", tag_keys=("model", "dataset"))
        self.score = Gauge(PREFIX + "eval_score", "Primary score of the last eval.", tag_keys=("model", "dataset"))

    def samples_done(self, model: str, dataset: str, count: int) -> None:
        if count > 0:
            self.samples.inc(count, {"model": model, "dataset": dataset})

    def scored(self, model: str, dataset: str, score: float) -> None:
        self.score.set(score, {"model": model, "dataset": dataset})


def exported_series() -> set[str]:
    """The Prometheus series names Ray exports for METRICS (counters gain _total, histograms three series)."""
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}
    return {f"ray_{PREFIX}{name}{suffix}" for name, (kind, _) in METRICS.items() for suffix in suffixes[kind]}
