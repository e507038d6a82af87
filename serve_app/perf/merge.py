"""Merge shard records into one test result with evalscope's own metric and percentile code.

The records of every shard are pooled and evalscope recomputes the summary and the percentiles over the pool,
exactly as if one process had sent every request; shard percentiles are never averaged.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalscope.perf.arguments import Arguments
from evalscope.perf.utils.benchmark_util import BenchmarkData, MetricsAccumulator
from evalscope.perf.utils.db_util import create_result_table, insert_benchmark_data, summary_result
from evalscope.perf.utils.perf_constants import Metrics


@dataclass(frozen=True)
class MergedPoint:
    metrics: dict[str, Any]  # evalscope's benchmark_summary.json
    percentiles: list[dict[str, Any]]  # evalscope's benchmark_percentile.json

    @property
    def duration_s(self) -> float:
        """First request start to last completion over every shard."""
        return self.metrics.get(Metrics.TIME_TAKEN_FOR_TESTS, 0.0)


def merge_records(records: list[BenchmarkData], args: Arguments, output_dir: Path) -> MergedPoint:
    """Write evalscope's result files for one test point into `output_dir` and return its summary.

    `args` describes the whole point (total parallel, total rate); its secrets are masked by evalscope's own
    serialisation when benchmark_args.json is written.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    accumulator = MetricsAccumulator(concurrency=args.parallel, rate=args.rate)
    for record in records:
        # Records arrive finalized (token counts set), so no API plugin is needed to re-parse replies.
        accumulator.update(record, api_plugin=None)
    db_path = output_dir / "benchmark_data.db"
    db_path.unlink(missing_ok=True)
    with sqlite3.connect(db_path) as connection:
        cursor = connection.cursor()
        create_result_table(cursor)
        for record in records:
            insert_benchmark_data(cursor, record)
    summary, percentiles, _, _ = summary_result(args, accumulator.to_result(), str(db_path))
    return MergedPoint(metrics=summary.to_dict(), percentiles=percentiles.to_list())
