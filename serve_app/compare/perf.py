"""Two perf runs of the same load: per test point, metric and percentile, the change and whether it is a regression."""

from __future__ import annotations

import math
import re
from typing import Any

from serve_app.errors import RequestError
from serve_app.schemas import PerfComparison

DEFAULT_TOLERANCE = "5%"

# evalscope's names (evalscope.perf.utils.perf_constants: Metrics, then PercentileMetrics), by the way a change is a
# regression; the rest (counts, token sizes, the load asked for) have no better or worse.
WORSE_WHEN_HIGHER = frozenset({
    "Failed Requests", "Avg Latency (s)", "Avg TTFT (ms)", "Avg TPOT (ms)", "Avg ITL (ms)", "Avg Steady ITL (ms)",
    "Avg PD Handoff Latency (ms)", "Avg PD Handoff Overhead (ms)", "Avg First-Turn TTFT (ms)",
    "Avg Subsequent-Turn TTFT (ms)",
    "TTFT (ms)", "ITL (ms)", "Steady ITL (ms)", "PD Handoff Latency (ms)", "PD Handoff Overhead (ms)", "TPOT (ms)",
    "Latency (s)",
})
WORSE_WHEN_LOWER = frozenset({
    "Success Requests", "Req Throughput (req/s)", "Output Throughput (tok/s)", "Total Throughput (tok/s)",
    "Input Throughput (tok/s)", "KV Cache Hit Rate (%)", "Spec. Accept Rate", "Avg Decoded Tok/Iter",
    "Output (tok/s)", "Input (tok/s)", "Total (tok/s)", "Decode (tok/s)",
})
_PERCENT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%\s*")


def parse_tolerance(text: str) -> float:
    """`5%` -> 5.0; a bare number is refused, since 0.05 could mean 5 % or 0.05 %."""
    match = _PERCENT.fullmatch(text)
    if not match:
        raise RequestError(f"tolerance is a percentage such as 5%, not {text!r}")
    return float(match.group(1))


def worse_when(metric: str) -> str | None:
    if metric in WORSE_WHEN_HIGHER:
        return "higher"
    if metric in WORSE_WHEN_LOWER:
        return "lower"
    return None


def compare_points(baseline: dict[str, Any], candidate: dict[str, Any], tolerance_pct: float) -> list[PerfComparison]:
    """Every numeric summary metric and percentile cell of each test point both results have."""
    rows = []
    for point, base in baseline.get("results", {}).items():
        cand = candidate.get("results", {}).get(point)
        if cand is None:
            continue
        for metric, value in base.get("metrics", {}).items():
            rows += _cell(point, metric, None, value, cand.get("metrics", {}).get(metric), tolerance_pct)
        candidate_rows = {row.get("Percentiles"): row for row in cand.get("percentiles", [])}
        for row in base.get("percentiles", []):
            percentile = row.get("Percentiles")
            for metric, value in row.items():
                if metric != "Percentiles":
                    other = candidate_rows.get(percentile, {}).get(metric)
                    rows += _cell(point, metric, percentile, value, other, tolerance_pct)
    return rows


def _cell(point: str, metric: str, percentile: str | None, baseline: Any, candidate: Any,
          tolerance_pct: float) -> list[PerfComparison]:
    if not (_number(baseline) and _number(candidate)):
        return []
    difference = candidate - baseline
    pct = None if baseline == 0 else difference / abs(baseline) * 100
    direction = worse_when(metric)
    return [PerfComparison(point=point, metric=metric, percentile=percentile, baseline=baseline, candidate=candidate,
                           difference=difference, difference_pct=pct, worse_when=direction,
                           verdict=_verdict(difference, pct, direction, tolerance_pct))]


def _verdict(difference: float, pct: float | None, direction: str | None, tolerance_pct: float) -> str | None:
    if direction is None:
        return None
    # From a baseline of 0 (no failed requests) any change is past a relative tolerance.
    if difference == 0 or (pct is not None and abs(pct) <= tolerance_pct):
        return "within tolerance"
    went_up = difference > 0
    return "worse" if went_up == (direction == "higher") else "better"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
