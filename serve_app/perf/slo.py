"""Which requests of a test point met the request's SLO, and the goodput they add up to.

Counted exactly over the merged records of every shard (the records evalscope's own metrics are computed from), so
the good fraction of a point is that of one process sending every request; each shard's share is its own count.
"""

from __future__ import annotations

from evalscope.perf.utils.benchmark_util import BenchmarkData

from serve_app.schemas import Goodput, Slo


def is_good(record: BenchmarkData, slo: Slo) -> bool:
    """Succeeded and within every limit given; a value exactly at its limit meets it."""
    if not record.success:
        return False
    # evalscope records latencies in seconds.
    measured_ms = {
        "ttft_ms": record.first_chunk_latency * 1000,
        "tpot_ms": record.time_per_output_token * 1000,
        "e2e_ms": record.query_latency * 1000,
        "itl_ms": max(record.inter_chunk_latency, default=0.0) * 1000,  # the longest gap holds for every gap
    }
    return all(measured_ms[name] <= limit for name, limit in slo.limits().items())


def goodput(good: int, total: int, slo: Slo, duration_s: float) -> Goodput:
    """The point's goodput: `good` of its `total` requests (every shard's, failed ones included) met `slo`."""
    return Goodput(
        good=good,
        good_fraction=good / total if total else 0.0,
        goodput_req_per_s=good / duration_s if duration_s > 0 else 0.0,
        slo=slo,
    )
