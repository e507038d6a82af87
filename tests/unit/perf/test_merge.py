"""The fan-out merge, read out of core from the shards' record files, must equal evalscope's own numbers over the
union of all requests."""

import json
import random
import sqlite3
import threading

import pytest
from evalscope.perf.arguments import Arguments
from evalscope.perf.utils.benchmark_util import BenchmarkData, MetricsAccumulator
from evalscope.perf.utils.db_util import create_result_table, get_percentile_results, insert_benchmark_data
from evalscope.perf.utils.perf_constants import Metrics
from evalscope.perf.utils.trace_metrics import TraceAccumulator

from serve_app.perf import merge as merge_module
from serve_app.perf.merge import RunningTotals, merge_record_files, pooled_accumulator, write_result_table
from serve_app.perf.records import RecordWriter, each_record, read_batches
from serve_app.perf.shard import ClockPair, ShardTotals
from serve_app.schemas import PerfRequest, Slo

# pydantic warns when evalscope dumps Arguments holding a value of another type than it declares (an int rate):
# those warnings filled the service log, so here they fail the test.
pytestmark = pytest.mark.filterwarnings("error::UserWarning")
# The rate of a request that sets none, as the service hands it to the merge.
DEFAULT_RATE = PerfRequest(model="m", url="http://127.0.0.1/v1/chat/completions").rate
SAME_CLOCK = ClockPair(wall=0.0, monotonic=0.0, offset_s=0.0)  # record times pass unchanged


def write_shards(shards, args, output_dir, slo=None, clock=SAME_CLOCK, rows=True):
    """What each shard does: its records to a file of its own and into its running totals as they complete, then
    (`rows`) its rows of benchmark_data.db from the file."""
    paths, totals = [], []
    for index, records in enumerate(shards):
        path = output_dir / "records" / f"shard-{index}.parquet"
        running = RunningTotals(args, slo)
        with RecordWriter(path, clock) as writer:
            for record in records:
                writer.add(record)
                running.add(record)
        if rows:
            write_result_table(path)
        paths.append(path)
        totals.append(running.totals(clock))
    return paths, totals


def merge_records(shards, args, output_dir, slo=None):
    """Each shard's records written and totalled as shards do, then merged from the files."""
    return merge_record_files(*write_shards(shards, args, output_dir, slo), args, output_dir, slo)


def _random_record(rng: random.Random, epoch: float) -> BenchmarkData:
    start = epoch + rng.uniform(0, 30)
    if rng.random() < 0.08:
        return BenchmarkData(start_time=start, completed_time=start + rng.uniform(0, 2), success=False,
                             is_stream=True, error="HTTP 500")
    ttft = rng.lognormvariate(-2.5, 0.6)
    itl = [rng.expovariate(80) for _ in range(rng.randint(1, 40))]
    latency = ttft + sum(itl)
    record = BenchmarkData(start_time=start, completed_time=start + latency, success=True, is_stream=True,
                           first_chunk_latency=ttft, query_latency=latency, inter_chunk_latency=itl,
                           prompt_tokens=rng.randint(5, 300), completion_tokens=len(itl) + 1)
    record.finalize(api_plugin=None)
    return record


def _evalscope_on_union(records, args, tmp_path):
    """What evalscope itself reports for these requests: its accumulator and its percentile query."""
    accumulator = MetricsAccumulator(concurrency=args.parallel, rate=args.rate)
    for record in records:
        accumulator.update(record, api_plugin=None)
    db = tmp_path / "union.db"
    with sqlite3.connect(db) as connection:
        create_result_table(connection.cursor())
        for record in records:
            insert_benchmark_data(connection.cursor(), record)
    return accumulator.to_result(), get_percentile_results(str(db)).to_list()


@pytest.mark.parametrize("seed", range(5))
def test_merged_shards_equal_evalscope_over_the_union(seed, tmp_path):
    rng = random.Random(seed)
    epoch = 1_800_000_000.0
    union = [_random_record(rng, epoch) for _ in range(rng.randint(50, 400))]
    shard_count = rng.randint(2, 6)
    shards = [union[i::shard_count] for i in range(shard_count)]
    args = Arguments(model="m", url="http://127.0.0.1/v1/chat/completions", number=len(union), parallel=64,
                     rate=DEFAULT_RATE)
    args.number, args.parallel, args.rate = len(union), 64, DEFAULT_RATE

    merged = merge_records(list(reversed(shards)), args, tmp_path / "merged")  # order must not matter
    expected_metrics, expected_percentiles = _evalscope_on_union(union, args, tmp_path)

    expected_summary = expected_metrics.create_message(api_type="openai")
    for key, value in expected_summary.items():
        assert merged.metrics[key] == pytest.approx(value), key
    assert merged.percentiles == expected_percentiles
    assert merged.metrics["Total Requests"] == len(union)
    assert merged.metrics["Concurrency"] == 64
    written = json.loads((tmp_path / "merged" / "benchmark_percentile.json").read_text())
    assert written == expected_percentiles


@pytest.mark.parametrize("seed", range(3))
def test_every_sum_and_count_of_evalscopes_accumulator_pools_over_shards(seed, tmp_path):
    """Each field of evalscope's accumulator, pooled from per-shard totals, is what one accumulator over every
    record holds: counts exactly, float sums but for their last bits, the time window exactly."""
    rng = random.Random(seed)
    union = [_random_record(rng, 1e9) for _ in range(rng.randint(50, 300))]
    shards = [union[i::3] for i in range(3)]
    args = Arguments(model="m", url="http://x/v1/chat/completions")
    args.number, args.parallel, args.rate = len(union), 8, DEFAULT_RATE
    _, totals = write_shards(shards, args, tmp_path)
    whole = MetricsAccumulator(concurrency=8, rate=DEFAULT_RATE)
    for record in [record for shard in shards for record in shard]:
        whole.update(record, api_plugin=None)

    pooled = pooled_accumulator(totals, args)

    for name in totals[0].sums:
        expected = getattr(whole, name)
        if isinstance(expected, int):
            assert getattr(pooled, name) == expected, name
        else:
            assert getattr(pooled, name) == pytest.approx(expected, rel=1e-12), name
    assert (pooled._wall_start, pooled._wall_end) == (whole._wall_start, whole._wall_end)
    assert pooled.n_success > 0 and pooled.total_latency > 0 and pooled.n_inter_token_latencies > 0


def test_a_field_the_merge_does_not_know_is_refused_rather_than_dropped():
    args = Arguments(model="m", url="http://x/v1/chat/completions")
    with pytest.raises(ValueError, match="mean_sq_latency"):
        pooled_accumulator([ShardTotals(sums={"n_total": 1, "mean_sq_latency": 0.5})], args)


def test_the_merge_computes_its_figures_while_the_shards_still_write_their_rows(tmp_path, monkeypatch):
    """Each shard writes its rows of benchmark_data.db once its load ends, while the merge runs: the merge must
    not wait for them before computing the point's figures, and must still copy every row."""
    rng = random.Random(3)
    shards = [[_random_record(rng, 1000.0) for _ in range(40)] for _ in range(3)]
    args = Arguments(model="m", url="http://x/v1/chat/completions")
    args.number, args.parallel, args.rate = 120, 6, DEFAULT_RATE
    paths, totals = write_shards(shards, args, tmp_path / "point", rows=False)
    figures_computed = threading.Event()
    compute = merge_module.percentile_result

    def computing(*given):
        figures = compute(*given)
        figures_computed.set()
        return figures

    def shards_write_their_rows():
        assert figures_computed.wait(timeout=60), "the merge waited for the rows before computing"
        for path in paths:
            write_result_table(path)

    monkeypatch.setattr(merge_module, "percentile_result", computing)
    merged = merge_record_files(paths, totals, args, tmp_path / "point", rows_written=shards_write_their_rows)

    assert merged.metrics[Metrics.TOTAL_REQUESTS] == 120
    with sqlite3.connect(tmp_path / "point" / "benchmark_data.db") as connection:
        starts = [start for (start,) in connection.execute("SELECT start_time FROM result")]
    assert starts == [record.start_time for shard in shards for record in shard]  # every row, in shard order


def test_averaging_shard_percentiles_would_be_wrong(tmp_path):
    """Guards the test above: on skewed shards the mean of shard p99s is far from the true p99."""
    rng = random.Random(7)
    fast = [_random_record(rng, 1e9) for _ in range(200)]
    slow = [_random_record(rng, 1e9) for _ in range(20)]
    for record in slow:
        record.first_chunk_latency *= 20
    args = Arguments(model="m", url="http://x/v1/chat/completions")
    args.number, args.parallel, args.rate = 220, 8, DEFAULT_RATE

    def p99(records, name):
        rows = merge_records([records], args, tmp_path / name).percentiles
        return next(row for row in rows if row["Percentiles"] == "99%")["TTFT (ms)"]

    true_p99 = p99(fast + slow, "all")
    averaged = (p99(fast, "fast") + p99(slow, "slow")) / 2
    assert abs(averaged - true_p99) / true_p99 > 0.2


def test_clock_pairs_put_two_processes_on_one_axis():
    # Two shards whose monotonic clocks started at different moments and whose wall clocks disagree by 250 ms
    # observe the same instant; after conversion they agree on when it happened.
    coordinator_instant = 1_800_000_100.0
    a = ClockPair(wall=1_800_000_000.0, monotonic=5.0, offset_s=0.0)
    b = ClockPair(wall=1_800_000_000.25 + 3.0, monotonic=900.0 + 3.0, offset_s=0.25)
    mono_a = a.from_coordinator(coordinator_instant)
    mono_b = b.from_coordinator(coordinator_instant)
    assert mono_a == pytest.approx(105.0)
    assert mono_b == pytest.approx(1000.0)
    assert a.to_coordinator(mono_a) == pytest.approx(coordinator_instant)
    assert b.to_coordinator(mono_b) == pytest.approx(coordinator_instant)


def test_goodput_counts_every_shards_file_over_the_points_duration(tmp_path):
    def record(start: float, ttft_s: float, success: bool = True) -> BenchmarkData:
        return BenchmarkData(start_time=start, completed_time=start + 0.5, success=success, is_stream=True,
                             first_chunk_latency=ttft_s, query_latency=0.5, inter_chunk_latency=[0.01],
                             prompt_tokens=5, completion_tokens=2)

    shards = [[record(100.0, 0.05), record(100.2, 0.2), record(100.4, 0.01, success=False)],  # 1 good of 3
              [record(100.6, 0.1), record(101.0, 0.09)]]  # 2 good of 2; the point lasts 100.0 to 101.5
    args = Arguments(model="m", url="http://x/v1/chat/completions")
    args.number, args.parallel, args.rate = 5, 2, DEFAULT_RATE
    slo = Slo(ttft_ms=100)
    paths, totals = write_shards(shards, args, tmp_path, slo)
    assert [shard.good for shard in totals] == [1, 2]
    merged = merge_record_files(paths, totals, args, tmp_path, slo)
    assert merged.goodput.good == 3 and merged.goodput.good_fraction == pytest.approx(3 / 5)
    assert merged.goodput.goodput_req_per_s == pytest.approx(3 / 1.5)
    assert merged.goodput.slo == slo
    assert merge_records(shards, args, tmp_path / "without").goodput is None


def test_the_time_window_is_on_the_coordinators_clock_like_the_record_files(tmp_path):
    """A shard keeps its totals on its own monotonic clock and moves the window once: the pooled window is, to the
    bit, evalscope's over the records as the files hold them (the coordinator's clock)."""
    rng = random.Random(5)
    shards = [[_random_record(rng, 800.0) for _ in range(60)] for _ in range(2)]
    args = Arguments(model="m", url="http://x/v1/chat/completions")
    args.number, args.parallel, args.rate = 120, 4, DEFAULT_RATE
    clock = ClockPair(wall=1.7e9 + 0.123, monotonic=750.5, offset_s=0.37)
    paths, totals = write_shards(shards, args, tmp_path, clock=clock)
    as_filed = MetricsAccumulator()
    for batch in read_batches(paths):
        for record in each_record(batch):
            as_filed.update(record, api_plugin=None)
    pooled = pooled_accumulator(totals, args)
    assert (pooled._wall_start, pooled._wall_end) == (as_filed._wall_start, as_filed._wall_end)
    assert pooled._wall_start > 1.7e9  # on the coordinator's wall clock, not the shard's monotonic one


def _conversation(rng: random.Random, trace_id: str, epoch: float) -> list[BenchmarkData]:
    """One conversation's turns as evalscope's multi-turn strategy records them: one after the other, each with
    the conversation's id, its place, and the context cached from the turns before."""
    turns, start, context = [], epoch + rng.uniform(0, 10), 0
    count = rng.randint(1, 4)
    for index in range(count):
        record = _random_record(rng, 0.0)
        latency = record.completed_time - record.start_time
        record.start_time, record.completed_time = start, start + latency
        record.input_num_turns, record.is_first_turn, record.trace_id = index + 1, index == 0, trace_id
        record.is_last_turn = index == count - 1 or not record.success
        if record.success:
            record.cached_tokens = context
            context = (record.prompt_tokens or 0) + (record.completion_tokens or 0)
        turns.append(record)
        start += latency + rng.uniform(0, 0.1)
        if not record.success:
            break
    return turns


@pytest.mark.parametrize("seed", range(3))
def test_a_multi_turn_merge_counts_turns_and_conversations_as_evalscope_does(seed, tmp_path):
    rng = random.Random(seed)
    shards = [[turn for c in range(rng.randint(3, 12)) for turn in _conversation(rng, f"shard-{s}/bench-{c}", 1e9)]
              for s in range(3)]
    union = [turn for shard in shards for turn in shard]
    args = Arguments(model="m", url="http://x/v1/chat/completions", multi_turn=True, max_turns=4,
                     dataset="custom_multi_turn", dataset_path="conversations.jsonl")
    args.number, args.parallel, args.rate = sum(t.is_last_turn for t in union), 6, DEFAULT_RATE

    merged = merge_records(shards, args, tmp_path / "merged")
    expected_metrics, _ = _evalscope_on_union(union, args, tmp_path)
    for key, value in expected_metrics.create_message(api_type="openai").items():
        assert merged.metrics[key] == pytest.approx(value), key
    turns = [t.input_num_turns for t in union if t.success]
    assert merged.metrics[Metrics.AVERAGE_INPUT_TURNS_PER_REQUEST] == pytest.approx(sum(turns) / len(turns), abs=0.01)
    assert Metrics.AVERAGE_FIRST_TURN_TTFT in merged.metrics and Metrics.AVERAGE_CACHED_PERCENT in merged.metrics
    traces = TraceAccumulator()
    for turn in union:
        traces.feed(turn)
    expected_conversations = traces.to_summary().to_dict()
    assert merged.conversations == expected_conversations
    assert merged.conversations["n_traces"] == len({t.trace_id for t in union if t.success})
    assert json.loads((tmp_path / "merged" / "trace_summary.json").read_text()) == merged.conversations


def test_a_single_turn_merge_writes_no_conversation_summary(tmp_path):
    args = Arguments(model="m", url="http://x/v1/chat/completions")
    args.number, args.parallel, args.rate = 20, 2, DEFAULT_RATE
    merged = merge_records([[_random_record(random.Random(1), 1e9) for _ in range(20)]], args, tmp_path)
    assert merged.conversations is None and not (tmp_path / "trace_summary.json").exists()
