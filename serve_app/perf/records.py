"""A shard's per-request records, streamed to a Parquet file of its own as they complete, and read back in batches.

A record leaves the shard's memory within a batch of its completion, so a shard's footprint does not grow with
the number of requests, and the merge reads the files from the shared outputs root instead of receiving records
through Ray's object store. Parquet (pyarrow comes with evalscope) because it is columnar: each step of the merge
reads only the columns it needs, and the inter-chunk gaps are a list column rather than text to parse.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from evalscope.perf.utils.benchmark_util import BenchmarkData

from serve_app.perf.shard import ClockPair

# Records a shard buffers before writing them out as one row group (a few hundred KiB), and the merge's batch.
BATCH_RECORDS = 4096
# Longest error text kept per failed request: enough to act on, bounded in the file and the database.
ERROR_CHARS = 500

# What the merge (evalscope's accumulator and percentiles, benchmark_data.db) and the SLO count read, named as
# BenchmarkData names them so a row becomes a record again without a mapping.
SCHEMA = pa.schema([
    ("start_time", pa.float64()),  # on the coordinator's wall clock
    ("completed_time", pa.float64()),
    ("success", pa.bool_()),
    ("is_stream", pa.bool_()),
    ("query_latency", pa.float64()),
    ("first_chunk_latency", pa.float64()),
    ("time_per_output_token", pa.float64()),
    ("inter_chunk_latency", pa.list_(pa.float64())),
    ("prompt_tokens", pa.int64()),
    ("completion_tokens", pa.int64()),
    ("cached_tokens", pa.int64()),  # evalscope's summary reports the cache hit rate from it
    ("n_decode_chunks", pa.int64()),  # and the decoded tokens per iteration from this
    ("max_gpu_memory_cost", pa.float64()),
    ("error", pa.string()),
    ("request_id", pa.string()),
])
# A class attribute of BenchmarkData rather than a dataclass field: set after construction.
_NOT_A_FIELD = "max_gpu_memory_cost"


def shard_records_path(point_dir: str | Path, shard_index: int) -> Path:
    return Path(point_dir) / "records" / f"shard-{shard_index}.parquet"


class RecordWriter:
    """Appends finished records to a shard's file, a row group every BATCH_RECORDS, and keeps the shard's counts.

    Times are converted to the coordinator's clock on the way in, so every shard's file is on one time axis.
    """

    def __init__(self, path: Path, clock: ClockPair) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._clock = clock
        self._writer = pq.ParquetWriter(path, SCHEMA)
        self._pending: list[tuple] = []  # rows in SCHEMA's order
        self.requests = 0
        self.succeeded = 0
        self._first_start = math.inf
        self._last_completed = -math.inf

    def add(self, record: BenchmarkData) -> None:
        start = self._clock.to_coordinator(record.start_time)
        completed = self._clock.to_coordinator(record.completed_time)
        self.requests += 1
        self.succeeded += bool(record.success)
        if completed >= start > 0:  # what evalscope counts in the test duration
            self._first_start = min(self._first_start, start)
            self._last_completed = max(self._last_completed, completed)
        # One tuple per record, columns built at the flush: the cheapest way through the shard's event loop.
        self._pending.append((
            start, completed, record.success, record.is_stream, record.query_latency, record.first_chunk_latency,
            record.time_per_output_token, record.inter_chunk_latency, record.prompt_tokens, record.completion_tokens,
            record.cached_tokens, record.n_decode_chunks, record.max_gpu_memory_cost,
            record.error[:ERROR_CHARS] if record.error else None, record.request_id,
        ))
        if len(self._pending) >= BATCH_RECORDS:
            self._flush()

    @property
    def span_s(self) -> float:
        """First request start to last completion, on the coordinator's clock."""
        return self._last_completed - self._first_start if self._last_completed >= self._first_start else 0.0

    def _flush(self) -> None:
        if self._pending:
            columns = [pa.array(values, type=field.type) for values, field in zip(zip(*self._pending), SCHEMA)]
            self._writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=SCHEMA))
            self._pending = []

    def close(self) -> None:
        self._flush()
        self._writer.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *_) -> None:
        self.close()


def read_batches(paths: Iterable[Path], columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Every file's rows in order (file by file, each in completion order), BATCH_RECORDS at a time."""
    for path in paths:
        with pq.ParquetFile(path) as file:
            yield from file.iter_batches(batch_size=BATCH_RECORDS, columns=columns)


def to_records(batch: pa.RecordBatch) -> list[BenchmarkData]:
    """A batch's rows as evalscope's records again (without bodies, replies and text, which were never kept)."""
    columns = {name: batch.column(name).to_pylist() for name in batch.schema.names}
    gpu_costs = columns.pop(_NOT_A_FIELD)
    names = list(columns)
    records = [BenchmarkData(**dict(zip(names, values))) for values in zip(*columns.values())]
    for record, gpu_cost in zip(records, gpu_costs):
        if gpu_cost:
            record.max_gpu_memory_cost = gpu_cost
    return records
