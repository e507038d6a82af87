"""Merge the shards' record files into one test result with evalscope's own metric and percentile code.

The records of every shard are pooled and evalscope's numbers are recomputed over the pool, as if one process had
sent every request; shard percentiles are never averaged. The work is split where it can be: each shard keeps
evalscope's MetricsAccumulator over its own records as they complete (`RunningTotals`) and writes its rows of
benchmark_data.db once its load has ended (every shard at once, while the merge runs), and the merge adds those
counts and sums, then builds each percentile column from the files (see `percentile_result`). The files are read
out of core, a batch of records at a time, so no process holds every record.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from evalscope.perf.arguments import Arguments
from evalscope.perf.utils.benchmark_util import BenchmarkData, MetricsAccumulator
from evalscope.perf.utils.db_util import (
    calculate_percentiles,
    create_result_table,
    speed_benchmark_result,
    write_json_file,
)
from evalscope.perf.utils.perf_constants import Metrics, PercentileMetrics
from evalscope.perf.utils.perf_models import BenchmarkSummary, PercentileResult
from evalscope.perf.utils.trace_metrics import TraceAccumulator, TraceLevelSummary
from evalscope.utils.logger import get_logger

from serve_app.perf.records import (
    DATABASE_COLUMNS,
    ResultTable,
    database_rows,
    each_record,
    read_batches,
    read_columns,
    result_table_path,
    unsynced_database,
)
from serve_app.perf.shard import ClockPair, ShardTotals
from serve_app.perf.slo import goodput, is_good
from serve_app.perf.workload import workload_timeline
from serve_app.schemas import Goodput, Slo

logger = get_logger()

# evalscope's get_percentile_results: these percentiles, with 0 and 100 reported as min and max.
_PERCENTILES = [0, 1, 5, 10, 25, 50, 75, 90, 95, 99, 100]
_LABELS = ["min"] + [f"{p}%" for p in _PERCENTILES[1:-1]] + ["max"]


@dataclasses.dataclass(frozen=True)
class MergedPoint:
    metrics: dict[str, Any]  # evalscope's benchmark_summary.json
    percentiles: list[dict[str, Any]]  # evalscope's benchmark_percentile.json
    goodput: Goodput | None = None  # with an SLO
    conversations: dict[str, Any] | None = None  # a multi_turn load's: evalscope's trace_summary.json
    workload: dict[str, Any] | None = None  # evalscope's workload_throughput.json

    @property
    def duration_s(self) -> float:
        """First request start to last completion over every shard."""
        return self.metrics.get(Metrics.TIME_TAKEN_FOR_TESTS, 0.0)


# MetricsAccumulator fields that are the test's settings rather than sums over its records: the merge sets them.
_SETTINGS = {"concurrency", "rate", "enable_pd_metrics"}


class RunningTotals:
    """A shard's share of its point's merge, kept as its records complete, as evalscope's own collector keeps its
    accumulator: evalscope's MetricsAccumulator over the shard's records (~2.5 us a record) and how many met the
    SLO. Once the load ends only the rows of benchmark_data.db are left to the shard (`write_result_table`), and
    the merge adds the shards' sums."""

    def __init__(self, args: Arguments, slo: Slo | None) -> None:
        self._accumulator = MetricsAccumulator(enable_pd_metrics=args.enable_pd_metrics)
        self._slo = slo
        self._good = 0

    def add(self, record: BenchmarkData) -> None:
        """A finished measured record, finalized (token counts set), its times on the shard's monotonic clock."""
        self._accumulator.update(record, api_plugin=None)
        self._good += self._slo is not None and is_good(record, self._slo)

    def totals(self, clock: ClockPair) -> ShardTotals:
        """The sums, the time window moved to the coordinator's clock as the record file's times are: the map is
        increasing, so the earliest start and the latest completion stay the file's."""
        sums = {field.name: getattr(self._accumulator, field.name) for field in dataclasses.fields(self._accumulator)
                if field.name not in _SETTINGS}
        for bound in ("_wall_start", "_wall_end"):
            if sums[bound] is not None:
                sums[bound] = clock.to_coordinator(sums[bound])
        return ShardTotals(sums=sums, good=self._good if self._slo is not None else None)


def write_result_table(records_path: Path) -> None:
    """A shard's rows of benchmark_data.db (records.ResultTable) from its record file, once its load has ended:
    every shard at once, so that the merge only has SQLite copy them."""
    with ResultTable(records_path) as table:
        for batch in read_batches([records_path], DATABASE_COLUMNS):
            table.insert(database_rows(batch))


def pooled_accumulator(totals: list[ShardTotals], args: Arguments) -> MetricsAccumulator:
    """evalscope's accumulator over every shard's records: counts and sums added, the time window widened.

    A float sum is added shard by shard, where one evalscope process adds record by record: the two can differ in
    their last bit, which evalscope's rounding of every figure (to 2 or 4 decimals) hides.
    """
    accumulator = MetricsAccumulator(concurrency=args.parallel, rate=args.rate,
                                     enable_pd_metrics=args.enable_pd_metrics)
    for shard in totals:
        for name, value in shard.sums.items():
            if name in ("_wall_start", "_wall_end"):
                pooled = getattr(accumulator, name)
                if value is not None:
                    widest = min if name == "_wall_start" else max
                    setattr(accumulator, name, value if pooled is None else widest(pooled, value))
            elif name.startswith(("n_", "total_")):
                setattr(accumulator, name, getattr(accumulator, name) + value)
            else:  # a field of a newer evalscope that this merge does not know how to pool: refuse, not drop it
                raise ValueError(f"cannot pool evalscope's MetricsAccumulator field {name!r}")
    return accumulator


def merge_record_files(paths: list[Path], totals: list[ShardTotals], args: Arguments, output_dir: Path,
                       slo: Slo | None = None, rows_written: Callable[[], object] = lambda: None) -> MergedPoint:
    """Write evalscope's result files for one test point into `output_dir` and return its summary.

    `paths` are the shards' record files and `totals` what each shard kept over its records (RunningTotals), in
    shard order. Each shard's rows of benchmark_data.db are written beside its file (write_result_table), maybe
    while this runs: `rows_written` returns once they all are. Both files are removed once merged, as
    benchmark_data.db then holds the same rows for evalscope's tools. `args` describes the whole point (total
    parallel, total rate); its secrets are masked by evalscope's own serialisation when benchmark_args.json is
    written.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    accumulator = pooled_accumulator(totals, args)
    db_path = output_dir / "benchmark_data.db"
    db_path.unlink(missing_ok=True)
    # The shards write their rows while the summary and the percentiles are computed here, and SQLite copies them
    # without the GIL.
    with ThreadPoolExecutor(1) as concatenation:
        concatenated = concatenation.submit(_concatenate_result_tables, [result_table_path(path) for path in paths],
                                            db_path, rows_written)
        summary, percentiles, conversations, workload = _summarize(paths, accumulator, args, output_dir)
        concatenated.result()
    if args.dataset.startswith("speed_benchmark"):
        speed_benchmark_result(str(db_path))
    for path in paths:
        path.unlink()
        result_table_path(path).unlink()
    for directory in {path.parent for path in paths}:
        with contextlib.suppress(OSError):  # not empty: files this merge was not given stay
            directory.rmdir()
    merged = MergedPoint(metrics=summary.to_dict(), percentiles=percentiles.to_list(), conversations=conversations,
                         workload=workload)
    if slo is None:
        return merged
    good = sum(shard.good or 0 for shard in totals)
    return dataclasses.replace(merged, goodput=goodput(good, accumulator.n_total, slo, merged.duration_s))


def _summarize(
    paths: list[Path], accumulator: MetricsAccumulator, args: Arguments, output_dir: Path,
) -> tuple[BenchmarkSummary, PercentileResult, dict[str, Any] | None, dict[str, Any] | None]:
    """evalscope's summary, percentiles, (a multi_turn load's) conversation summary and workload throughput, written
    as its files."""
    # What evalscope's summary_result writes, without its percentile query, which loads every row at once.
    write_json_file(args.to_dict(), output_dir / "benchmark_args.json")
    summary = BenchmarkSummary.from_dict(
        accumulator.to_result().create_message(api_type=args.api, enable_pd_metrics=args.enable_pd_metrics)
    )
    write_json_file(summary.to_dict(), output_dir / "benchmark_summary.json")
    logger.info("\nBenchmarking summary:\n" + summary.to_table())
    percentiles = percentile_result(paths, accumulator, args.api)
    if percentiles.rows:
        write_json_file(percentiles.to_list(), output_dir / "benchmark_percentile.json")
        logger.info("\nPercentile results:\n" + percentiles.to_table())
    conversations = None
    if args.multi_turn:
        trace_summary = _conversations(paths)
        if trace_summary.n_traces:
            conversations = trace_summary.to_dict()
            write_json_file(conversations, output_dir / "trace_summary.json")
            logger.info(f"\nPer-trace summary ({trace_summary.n_traces} traces):\n" + trace_summary.to_table())
    workload = None
    timeline = workload_timeline(paths, rows=accumulator.n_total)
    if timeline is not None:
        throughput = timeline.summary()
        workload = throughput.to_dict()
        write_json_file(workload, output_dir / "workload_throughput.json")
        timeline.write_points(output_dir / "workload_timeline.json")
        logger.info(f"\nWorkload throughput ({throughput.n_samples} samples):\n" + throughput.to_table())
    return summary, percentiles, conversations, workload


def _conversations(paths: list[Path]) -> TraceLevelSummary:
    """evalscope's per-conversation metrics of a multi_turn load, as its multi-turn benchmark computes them (a few
    numbers per turn of each conversation)."""
    traces = TraceAccumulator()
    for batch in read_batches(paths, _TRACE_COLUMNS):
        for record in each_record(batch):
            traces.feed(record)
    return traces.to_summary()


# What TraceAccumulator.feed reads of a record.
_TRACE_COLUMNS = ["success", "trace_id", "start_time", "completed_time", "first_chunk_latency", "query_latency",
                  "prompt_tokens", "completion_tokens", "cached_tokens"]


def _concatenate_result_tables(shard_tables: list[Path], db_path: Path, rows_written: Callable[[], object]) -> None:
    """benchmark_data.db, for evalscope's own tools: the shards' rows (serve_app.perf.records.ResultTable),
    in shard order, copied by SQLite once written."""
    with contextlib.closing(unsynced_database(db_path)) as connection:
        create_result_table(connection.cursor())
        rows_written()
        for table in shard_tables:
            connection.execute("ATTACH DATABASE ? AS shard", (str(table),))
            connection.execute("INSERT INTO result SELECT * FROM shard.result")
            connection.commit()  # a database in a transaction cannot be detached
            connection.execute("DETACH DATABASE shard")


# A percentile column: the record columns it reads, which rows (all successful ones, or only streamed ones when
# there are any, as evalscope does), and the values from a batch of those rows.
@dataclasses.dataclass(frozen=True)
class _Column:
    reads: tuple[str, ...]
    streamed_only: bool
    values: Callable[[pa.Table], np.ndarray]


def _array(batch: pa.Table, name: str) -> np.ndarray:
    return batch.column(name).to_numpy(zero_copy_only=False)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator where the denominator is positive, else NaN (evalscope's "no value")."""
    return np.divide(numerator, denominator, out=np.full(len(denominator), np.nan), where=denominator > 0)


def _columns(api: str, no_streamed_rows: bool) -> dict[str, _Column]:
    """evalscope's get_percentile_results, column for column and in its order, on numpy arrays: the same IEEE
    operations on the same doubles (x * 1000, 1.0 / x, int / float), so the same values."""
    latency = _Column(("query_latency",), False, lambda b: _array(b, "query_latency"))
    input_tokens = _Column(("prompt_tokens",), False, lambda b: _array(b, "prompt_tokens"))
    if Metrics.is_input_only(api):
        return {
            PercentileMetrics.LATENCY: latency,
            PercentileMetrics.INPUT_TOKENS: input_tokens,
            PercentileMetrics.INPUT_THROUGHPUT: _Column(
                ("prompt_tokens", "query_latency"), False,
                lambda b: _ratio(_array(b, "prompt_tokens"), _array(b, "query_latency"))),
        }

    def tpot_ms(batch: pa.Table) -> np.ndarray:
        tpot = _array(batch, "time_per_output_token")
        # A streamed one-token reply has no decode phase, so no TPOT; a run without streamed replies keeps 0.
        return tpot * 1000 if no_streamed_rows else np.where(tpot > 0, tpot * 1000, np.nan)

    def total_throughput(batch: pa.Table) -> np.ndarray:
        tokens = _array(batch, "prompt_tokens") + _array(batch, "completion_tokens")
        return _ratio(tokens, _array(batch, "query_latency"))

    return {
        PercentileMetrics.TTFT: _Column(
            ("first_chunk_latency",), True, lambda b: _array(b, "first_chunk_latency") * 1000),
        # Every gap of every successful request (non-stream ones have none).
        PercentileMetrics.ITL: _Column(
            ("inter_chunk_latency",), False,
            lambda b: pc.list_flatten(b.column("inter_chunk_latency")).to_numpy(zero_copy_only=False) * 1000),
        PercentileMetrics.TPOT: _Column(("time_per_output_token",), True, tpot_ms),
        PercentileMetrics.DECODE_THROUGHPUT: _Column(
            ("time_per_output_token",), True,
            lambda b: _ratio(np.ones(b.num_rows), _array(b, "time_per_output_token"))),
        PercentileMetrics.LATENCY: latency,
        PercentileMetrics.INPUT_TOKENS: input_tokens,
        PercentileMetrics.OUTPUT_TOKENS: _Column(
            ("completion_tokens",), False, lambda b: _array(b, "completion_tokens")),
        PercentileMetrics.OUTPUT_THROUGHPUT: _Column(
            ("completion_tokens", "query_latency"), False,
            lambda b: _ratio(_array(b, "completion_tokens"), _array(b, "query_latency"))),
        PercentileMetrics.TOTAL_THROUGHPUT: _Column(
            ("prompt_tokens", "completion_tokens", "query_latency"), False, total_throughput),
    }


def percentile_result(paths: list[Path], accumulator: MetricsAccumulator, api: str) -> PercentileResult:
    """evalscope's percentile table over every successful record in `paths`, bit for bit.

    Exact nearest rank needs every value of a column at once; a column at a time, in a numpy array of the
    exact size (the accumulator has counted the rows and the gaps), costs 8 bytes a value: 120 MB for the ITL
    column of a million 16-token replies, the largest. A bounded-memory selection (histogram passes over the
    files) would save that at the price of several passes and much more code, for a value evalscope must reproduce
    exactly; the gaps alone, before the others, is what keeps the peak to that one column.
    """
    streamed_rows = accumulator.n_stream_success
    rows = {False: accumulator.n_success, True: streamed_rows or accumulator.n_success}  # by `streamed_only`
    columns = _columns(api, no_streamed_rows=not streamed_rows)
    by_column: dict[str, list] = {}

    def rank(name: str, batches: Iterable[pa.Table], size: int) -> None:
        column = columns[name]
        values = _fill(batches, column, streamed_rows > 0 and column.streamed_only, size)
        by_percentile = _nearest_ranks(values)
        by_column[name] = [by_percentile[p] for p in _PERCENTILES]

    # The gaps first and alone, the largest column; then every other column from one read of the few numbers per
    # record they need (8 bytes a row a column, less than the gaps, in memory the gaps left free): a read per
    # column and file cost more than the sorting.
    if PercentileMetrics.ITL in columns:
        rank(PercentileMetrics.ITL, read_batches(paths, ["success", "inter_chunk_latency"]),
             accumulator.n_inter_token_latencies)
    others = [name for name in columns if name != PercentileMetrics.ITL]
    needed = sorted({read for name in others for read in columns[name].reads})
    per_record = read_columns(paths, ["success", "is_stream", *needed])
    for name in others:  # only the columns it reads are copied by its row filter
        reads = ["success", "is_stream", *columns[name].reads]
        rank(name, [per_record.select(reads)], rows[columns[name].streamed_only])
    # Arrow's allocator keeps what the columns were read into (~100 MB at 1M requests): give it back, or what the
    # merge reads next comes on top of it and raises its peak.
    pa.default_memory_pool().release_unused()
    transposed = {PercentileMetrics.PERCENTILES: _LABELS} | {name: by_column[name] for name in columns}
    return PercentileResult.from_transposed(transposed)


def _fill(batches: Iterable[pa.Table], column: _Column, streamed_only: bool, size: int) -> np.ndarray:
    values: np.ndarray | None = None
    filled = 0
    for batch in batches:
        keep = pc.and_(batch.column("success"), batch.column("is_stream")) if streamed_only else batch.column("success")
        part = column.values(batch.filter(keep))
        if values is None:
            values = np.empty(size, dtype=part.dtype)  # int64 for token counts, as evalscope keeps them ints
        values[filled:filled + len(part)] = part
        filled += len(part)
    if filled != size:
        raise RuntimeError(f"the record files hold {filled} values where the merge counted {size}")
    return values if values is not None else np.empty(0)


def _nearest_ranks(values: np.ndarray) -> dict[int, float | int]:
    """evalscope's calculate_percentiles over `values` (NaN: no value), without sorting the whole column: a first
    pass of evalscope's own code learns which ranks it reads (its nearest-rank rule stays its own), numpy's
    introselect puts the value of each of those ranks where a full sort would (a third of a sort's time for the 15M
    gaps of 1M 16-token replies), and a second pass reads them."""
    column = _RankedColumn(values)
    calculate_percentiles(column, _PERCENTILES)
    column.select()
    return calculate_percentiles(column, _PERCENTILES)


class _RankedColumn:
    """A numpy column in the shape of the list evalscope's calculate_percentiles takes: NaN ("no value") left out as
    evalscope does (numpy ranks NaN last, beyond the length), items read back as Python numbers so that its round()
    is Python's. Until `select`, reading an item only notes its rank."""

    def __init__(self, values: np.ndarray) -> None:
        self._values = values
        self._length = len(values) - (int(np.count_nonzero(np.isnan(values))) if values.dtype.kind == "f" else 0)
        self._ranks: set[int] | None = set()  # the ranks read so far, until `select`

    def __len__(self) -> int:
        return self._length

    def sort(self) -> None:
        """Nothing: `select` has ordered what is read."""

    def select(self) -> None:
        if self._ranks:
            self._values.partition(sorted(self._ranks))
        self._ranks = None

    def __getitem__(self, index: int) -> float | int:
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError(index)
        if self._ranks is not None:
            self._ranks.add(index)
            return 0
        return self._values[index].item()
