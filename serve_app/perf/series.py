"""Each metric of a sweep's or a search's test points against their load: the `series` of a perf result, and what
the HTML report draws (serve_app.perf.report)."""

from __future__ import annotations

import math
from typing import Protocol

from serve_app.gates import perf_value
from serve_app.schemas import LoadSeries, PerfPointResult

# Percentile columns of evalscope's table drawn against the load, with the rows drawn.
LATENCIES = ("TTFT (ms)", "TPOT (ms)", "ITL (ms)", "Latency (s)")
PERCENTILES = ("50%", "90%", "99%")
THROUGHPUT = "Req Throughput (req/s)"


def _finite(value: float | None) -> float | None:
    """A percentile with no value (evalscope's NaN: no streamed reply with a second token, say) is null in JSON."""
    return value if value is not None and math.isfinite(value) else None


class _Point(Protocol):
    name: str
    load: float


def load_series(points: list[_Point], results: dict[str, PerfPointResult], load: str) -> LoadSeries | None:
    """The points that ran, in load order (a search's probes run out of order); None for fewer than two."""
    ran = sorted((point for point in points if point.name in results), key=lambda point: point.load)
    if len(ran) < 2:
        return None
    outcomes = [results[point.name] for point in ran]
    tables = [outcome.model_dump(include={"metrics", "percentiles"}) for outcome in outcomes]
    metrics: dict[str, list[float | None]] = {
        f"{column}@{row}": [_finite(perf_value(table, column, row)) for table in tables]
        for column in LATENCIES for row in PERCENTILES
    }
    metrics[THROUGHPUT] = [outcome.metrics.get(THROUGHPUT) for outcome in outcomes]
    if any(outcome.saturation for outcome in outcomes):
        metrics["Requested (req/s)"] = [o.saturation and o.saturation.requested_req_per_s for o in outcomes]
        metrics["Achieved (req/s)"] = [o.saturation and o.saturation.achieved_req_per_s for o in outcomes]
    if any(outcome.goodput for outcome in outcomes):
        metrics["Goodput (req/s)"] = [o.goodput and o.goodput.goodput_req_per_s for o in outcomes]
        metrics["Good fraction"] = [o.goodput and o.goodput.good_fraction for o in outcomes]
    return LoadSeries(load=load, loads=[point.load for point in ran], points=[point.name for point in ran],
                      metrics=metrics)
