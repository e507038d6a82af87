"""A succeeded job's scores (eval) or key perf metrics, kept in a column of their own so that history and the
leaderboard read a few numbers per job instead of whole results."""

from __future__ import annotations

from typing import Any

from serve_app.gates import perf_value

# Named as the CLI's gates name them: a summary metric, or a percentile column @ its row.
KEY_PERF_METRICS = ("Req Throughput (req/s)", "Output Throughput (tok/s)", "Failed Requests", "TTFT (ms)@50%",
                    "TTFT (ms)@99%", "ITL (ms)@99%", "Latency (s)@99%")


def job_summary(kind: str, result: dict[str, Any]) -> dict[str, Any]:
    """eval: {"scores": {dataset: primary score}}; perf: {"points": {test point: {key metric: value}}}."""
    if kind == "eval":
        return {"scores": dict(result.get("scores") or {})}
    return {"points": {point: {name: perf_value(outcome, *_split(name)) for name in KEY_PERF_METRICS}
                       for point, outcome in (result.get("results") or {}).items()}}


def _split(name: str) -> tuple[str, str]:
    metric, _, percentile = name.partition("@")
    return metric, percentile
