"""A shard's per-request records, streamed to a Parquet file of its own as they complete, and read back in batches.

A record leaves the shard's memory within a batch of its completion, so a shard's footprint does not grow with
the number of requests, and the merge reads the files from the shared outputs root instead of receiving records
through Ray's object store. Parquet (pyarrow comes with evalscope) because it is columnar: each step of the merge
reads only the columns it needs, and the inter-chunk gaps are a list column rather than text to parse.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Iterator
from itertools import repeat
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from evalscope.perf.utils.benchmark_util import BenchmarkData
from evalscope.perf.utils.db_util import DatabaseColumns, create_result_table, encode_data

from serve_app.errors import RunError
from serve_app.perf.shard import ClockPair, ShardStats

# A shard writes its buffered records out as one row group at BATCH_RECORDS records or BATCH_GAPS inter-chunk gaps,
# whichever comes first (long replies carry thousands of gaps each: about 8 MB of Python floats a batch at most);
# the merge reads a row group at a time, so these bound its batches too.
BATCH_RECORDS = 4096
BATCH_GAPS = 256 * 1024
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
    # A multi_turn load's: the turn's place in its conversation and the conversation's id (evalscope's turn and
    # per-conversation metrics); 0, false and null otherwise.
    ("input_num_turns", pa.int64()),
    ("is_first_turn", pa.bool_()),
    ("trace_id", pa.string()),
])


def shard_records_path(point_dir: str | Path, shard_index: int) -> Path:
    return Path(point_dir) / "records" / f"shard-{shard_index}.parquet"


# Why a shard's file would be missing on another node.
_NOT_SHARED = "outputs_root must be one directory shared by every Ray node (on KubeRay, a ReadWriteMany volume)"


def check_point_directory(point_dir: str | Path) -> None:
    """Before a shard sends anything: the point's directory, which the coordinator made, is on this node too, else
    the merge could not read this shard's records."""
    if not Path(point_dir).is_dir():
        raise RunError(f"the test point's directory {point_dir}, made by the coordinator, is not on this node: "
                       f"{_NOT_SHARED}")


def check_record_files(shards: list[ShardStats], node: str) -> None:
    """Fail, saying why, when the merge on `node` cannot read every shard's record file."""
    missing = [shard for shard in shards if not Path(shard.records_path).is_file()]
    if missing:
        named = ", ".join(f"shard {shard.index} (node {shard.node}) at {shard.records_path}" for shard in missing)
        raise RunError(f"the merge on node {node} cannot read the records of {named}: {_NOT_SHARED}")


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
        self._pending_gaps = 0
        self.requests = 0
        self.succeeded = 0
        self.conversations = 0  # a multi_turn load's conversations that ended (their last turn recorded)
        self._first_start = math.inf
        self._last_completed = -math.inf

    def add(self, record: BenchmarkData) -> None:
        start = self._clock.to_coordinator(record.start_time)
        completed = self._clock.to_coordinator(record.completed_time)
        self.requests += 1
        self.succeeded += bool(record.success)
        self.conversations += record.is_last_turn
        if completed >= start > 0:  # what evalscope counts in the test duration
            self._first_start = min(self._first_start, start)
            self._last_completed = max(self._last_completed, completed)
        # One tuple per record, columns built at the flush: the cheapest way through the shard's event loop.
        self._pending.append((
            start, completed, record.success, record.is_stream, record.query_latency, record.first_chunk_latency,
            record.time_per_output_token, record.inter_chunk_latency, record.prompt_tokens, record.completion_tokens,
            record.cached_tokens, record.n_decode_chunks, record.max_gpu_memory_cost,
            record.error[:ERROR_CHARS] if record.error else None, record.request_id, record.input_num_turns,
            record.is_first_turn, record.trace_id,
        ))
        self._pending_gaps += len(record.inter_chunk_latency)
        if len(self._pending) >= BATCH_RECORDS or self._pending_gaps >= BATCH_GAPS:
            self._flush()

    @property
    def span_s(self) -> float:
        """First request start to last completion, on the coordinator's clock."""
        return self._last_completed - self._first_start if self._last_completed >= self._first_start else 0.0

    def _flush(self) -> None:
        if self._pending:
            columns = [pa.array(values, type=field.type) for values, field in zip(zip(*self._pending), SCHEMA)]
            self._writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=SCHEMA))
            self._pending, self._pending_gaps = [], 0

    def close(self) -> None:
        self._flush()
        self._writer.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *_) -> None:
        self.close()


def read_batches(paths: Iterable[Path], columns: list[str] | None = None) -> Iterator[pa.Table]:
    """Every file's rows in order (file by file, each in completion order), a row group (a shard's batch) at a
    time."""
    for path in paths:
        with pq.ParquetFile(path) as file:
            for index in range(file.num_row_groups):
                yield file.read_row_group(index, columns=columns)


def read_columns(paths: Iterable[Path], columns: list[str]) -> pa.Table:
    """These columns of every file's rows, all at once: for columns of a few numbers a record."""
    return pa.concat_tables([pq.read_table(path, columns=columns) for path in paths])


def send_and_completion_times(paths: Iterable[Path]) -> tuple[np.ndarray, np.ndarray]:
    """When every request in the files went out and when it ended (coordinator clock), 16 bytes a request."""
    sent, completed = [], []
    for batch in read_batches(paths, ["start_time", "completed_time"]):
        sent.append(batch.column("start_time").to_numpy(zero_copy_only=False))
        completed.append(batch.column("completed_time").to_numpy(zero_copy_only=False))
    return (np.concatenate(sent), np.concatenate(completed)) if sent else (np.empty(0), np.empty(0))


def each_record(batch: pa.Table) -> Iterator[BenchmarkData]:
    """Each row of `batch` as an evalscope record (without bodies, replies and text, which were never kept).

    One object, refilled row after row (building a BenchmarkData per row took a third of the merge): use each record
    before taking the next.
    """
    names = batch.schema.names
    columns = [batch.column(name).to_pylist() for name in names]
    record = BenchmarkData()
    blank = dict(record.__dict__)
    for values in zip(*columns):
        record.__dict__.update(blank)  # what finalize derived for the previous row
        record.__dict__.update(zip(names, values))
        yield record


def result_table_path(records_path: Path) -> Path:
    return records_path.with_suffix(".db")


def unsynced_database(path: Path) -> sqlite3.Connection:
    """A connection for a database written in one go and only then read: no journal and no waiting for the disk
    (two fsyncs a database, a tenth of a small point's merge). A crash while it is written ends the job that writes
    it anyway."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode = OFF")
    connection.execute("PRAGMA synchronous = OFF")
    return connection


class ResultTable:
    """A shard's rows of evalscope's benchmark_data.db, in a database of its own beside its record file.

    Written by each shard once its load has ended, so that the shards build their rows in parallel and the merge
    copies them within SQLite: building them (the gaps as JSON text) in the merge took most of its time.
    """

    def __init__(self, records_path: Path) -> None:
        path = result_table_path(records_path)
        path.unlink(missing_ok=True)
        self._connection = unsynced_database(path)
        create_result_table(self._connection.cursor())

    def insert(self, rows: Iterable[tuple]) -> None:
        """`rows` from database_rows, a batch per statement."""
        self._connection.executemany(_INSERT, rows)

    def close(self) -> None:
        self._connection.commit()
        self._connection.close()

    def __enter__(self) -> ResultTable:
        return self

    def __exit__(self, *_) -> None:
        self.close()


# A failed request leaves these NULL: benchmark_data.db's column -> the record column it is read from.
_MEASURED = {
    DatabaseColumns.LATENCY: "query_latency", DatabaseColumns.FIRST_CHUNK_LATENCY: "first_chunk_latency",
    DatabaseColumns.PROMPT_TOKENS: "prompt_tokens", DatabaseColumns.COMPLETION_TOKENS: "completion_tokens",
    DatabaseColumns.MAX_GPU_MEMORY_COST: "max_gpu_memory_cost",
    DatabaseColumns.TIME_PER_OUTPUT_TOKEN: "time_per_output_token",
}
# The rows of evalscope's insert_benchmark_data, a batch per statement.
_COLUMNS = [
    DatabaseColumns.REQUEST, DatabaseColumns.START_TIME, DatabaseColumns.INTER_TOKEN_LATENCIES,
    DatabaseColumns.SUCCESS, DatabaseColumns.RESPONSE_MESSAGES, DatabaseColumns.COMPLETED_TIME,
    DatabaseColumns.REQUEST_ID, DatabaseColumns.IS_STREAM, *_MEASURED,
]
_INSERT = f"INSERT INTO result({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
_NO_RESPONSE_MESSAGES = encode_data([])  # the shards keep no reply bodies


# What a row of benchmark_data.db is made of, in the record file.
DATABASE_COLUMNS = ["start_time", "inter_chunk_latency", "success", "completed_time", "request_id", "is_stream",
                    *_MEASURED.values()]


def database_rows(batch: pa.Table) -> Iterator[tuple]:
    """The rows evalscope's insert_benchmark_data writes for the records of `batch` (its DATABASE_COLUMNS), built
    a column at a time rather than from a record object per row. The gaps are the same JSON list, written by orjson
    (a tenth of the json module's time): it spells some numbers differently (no space after a comma, 0.00001 for
    1e-05) but they read back as the same floats. No request or reply bodies: a shard never kept them."""
    success = batch.column("success")

    def values(name: str) -> list:
        return batch.column(name).to_pylist()

    def measured(name: str) -> list:
        column = batch.column(name)
        return pc.if_else(success, column, pa.scalar(None, column.type)).to_pylist()

    gaps = [orjson.dumps(request_gaps).decode() for request_gaps in values("inter_chunk_latency")]
    is_stream = pc.cast(batch.column("is_stream"), pa.int64()).to_pylist()
    return zip(repeat(None), values("start_time"), gaps, success.to_pylist(), repeat(_NO_RESPONSE_MESSAGES),
               values("completed_time"), values("request_id"), is_stream,
               *(measured(name) for name in _MEASURED.values()))
