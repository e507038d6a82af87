"""Shard record files (written as requests complete, read back in batches) and the out-of-core merge over them,
checked against evalscope's own accumulator, database and percentile query on crafted records."""

import copy
import json
import sqlite3

import pyarrow.parquet as pq
import pytest
from evalscope.perf.arguments import Arguments
from evalscope.perf.utils.benchmark_util import BenchmarkData, MetricsAccumulator
from evalscope.perf.utils.db_util import (
    DatabaseColumns,
    create_result_table,
    get_percentile_results,
    insert_benchmark_data,
)
from evalscope.perf.utils.perf_models import BenchmarkSummary

from serve_app.errors import RunError
from serve_app.perf import records as records_module
from serve_app.perf.merge import merge_record_files
from serve_app.perf.records import (
    ERROR_CHARS,
    RecordWriter,
    check_point_directory,
    check_record_files,
    each_record,
    read_batches,
    shard_records_path,
)
from serve_app.perf.shard import ClockPair, ShardStats
from tests.unit.perf.test_merge import SAME_CLOCK, write_shards


def request(*, success=True, stream=True, ttft=0.1, gaps=(0.01, 0.02), latency=None, prompt=10, completion=None,
            start=100.0, decode_chunks=0) -> BenchmarkData:
    """A finished request as a shard's HTTP client leaves it (finalized: TPOT derived from the token count)."""
    latency = ttft + sum(gaps) if latency is None else latency
    record = BenchmarkData(start_time=start, completed_time=start + latency, success=success, is_stream=stream,
                           first_chunk_latency=ttft, query_latency=latency, inter_chunk_latency=list(gaps),
                           prompt_tokens=prompt, completion_tokens=len(gaps) + 1 if completion is None else completion,
                           n_decode_chunks=decode_chunks)
    if success:
        record.finalize(api_plugin=None)
    else:
        record.error, record.prompt_tokens, record.completion_tokens = "HTTP 503", None, None
    return record


def write(path, records, clock=SAME_CLOCK) -> RecordWriter:
    """What a shard does: each record to its file as it completes."""
    with RecordWriter(path, clock) as writer:
        for record in records:
            writer.add(record)
    return writer


def read_back(path) -> list[BenchmarkData]:
    return [copy.copy(record) for batch in read_batches([path]) for record in each_record(batch)]


def test_a_shard_file_holds_each_record_on_the_coordinators_clock_without_bodies(tmp_path):
    # This process's wall clock runs 0.5 s ahead of the coordinator's; its monotonic clock read 10 at wall 1000.
    clock = ClockPair(wall=1000.0, monotonic=10.0, offset_s=0.5)
    sent = request(start=12.0, ttft=0.2, gaps=(0.01, 0.03), prompt=7)
    sent.request, sent.response_messages, sent.generated_text = '{"body": "BODY-7f"}', ["REPLY-7f"] * 3, "TEXT-7f"
    sent.request_id, sent.cached_tokens, sent.n_decode_chunks = "trace-1", 4, 3
    failed = request(success=False, start=13.0, latency=1.0)
    failed.error = "x" * (ERROR_CHARS + 100)
    path = shard_records_path(tmp_path / "point", 3)
    writer = write(path, [sent, failed], clock)

    assert path == tmp_path / "point" / "records" / "shard-3.parquet"
    (back, back_failed) = read_back(path)
    assert back.start_time == pytest.approx(1001.5) and back.completed_time == pytest.approx(1001.5 + 0.24)
    assert (back.success, back.is_stream, back.prompt_tokens, back.completion_tokens) == (True, True, 7, 3)
    assert (back.first_chunk_latency, back.query_latency, back.inter_chunk_latency) == (0.2, sent.query_latency,
                                                                                        [0.01, 0.03])
    assert back.time_per_output_token == sent.time_per_output_token
    assert (back.request_id, back.cached_tokens, back.n_decode_chunks) == ("trace-1", 4, 3)
    assert (back.request, back.response_messages, back.generated_text) == (None, [], "")  # never written
    assert not back_failed.success and back_failed.error == "x" * ERROR_CHARS
    assert not [marker for marker in (b"BODY-7f", b"REPLY-7f", b"TEXT-7f") if marker in path.read_bytes()]
    # The shard's counts, kept as records were written rather than from a list.
    assert (writer.requests, writer.succeeded) == (2, 1)
    assert writer.span_s == pytest.approx(1.0 + 1.0)  # 12.0 to 13.0 + 1.0 on its clock


NOT_SHARED = "outputs_root must be one directory shared by every Ray node (on KubeRay, a ReadWriteMany volume)"


def test_a_shard_on_a_node_that_does_not_share_the_outputs_root_fails_before_sending(tmp_path):
    check_point_directory(tmp_path)  # the coordinator's directory is here: nothing to say
    elsewhere = tmp_path / "made-on-another-node"
    with pytest.raises(RunError) as refused:
        check_point_directory(elsewhere)
    assert str(refused.value) == (
        f"the test point's directory {elsewhere}, made by the coordinator, is not on this node: {NOT_SHARED}")


def test_a_merge_that_cannot_read_a_shards_records_names_the_shard_and_says_why(tmp_path):
    paths = [shard_records_path(tmp_path, index) for index in range(2)]
    for path in paths:
        write(path, [request()])
    shards = [ShardStats(index, f"10.0.0.{index + 1}", 1, 1, 1.0, 0.1, records_path=str(path))
              for index, path in enumerate(paths)]
    check_record_files(shards, "10.0.0.1")  # both readable: nothing to say

    paths[1].unlink()  # as if written to shard 1's node's own disk
    with pytest.raises(RunError) as refused:
        check_record_files(shards, "10.0.0.1")
    assert str(refused.value) == (
        f"the merge on node 10.0.0.1 cannot read the records of shard 1 (node 10.0.0.2) at {paths[1]}: {NOT_SHARED}")


def test_records_are_written_in_batches_as_they_complete(tmp_path, monkeypatch):
    monkeypatch.setattr(records_module, "BATCH_RECORDS", 4)
    path = tmp_path / "shard.parquet"
    writer = RecordWriter(path, SAME_CLOCK)
    sizes = []  # of the file on disk after each record
    for index in range(9):
        writer.add(request(start=100.0 + index))
        sizes.append(path.stat().st_size)
    writer.close()
    file = pq.ParquetFile(path)
    assert [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)] == [4, 4, 1]
    # Each batch is on disk once its last record completed, long before the shard ends.
    assert sizes[0] == sizes[2] < sizes[3] == sizes[6] < sizes[7] == sizes[8]
    assert [len(batch) for batch in read_batches([path, path])] == [4, 4, 1, 4, 4, 1]


def test_long_replies_are_written_in_smaller_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(records_module, "BATCH_GAPS", 10)
    path = tmp_path / "shard.parquet"
    sent = [request(gaps=[0.001 * i] * 4, start=100.0 + i) for i in range(5)]
    write(path, sent)  # a batch once 10 gaps are waiting: 3 records
    assert [len(batch) for batch in read_batches([path])] == [3, 2]
    back = read_back(path)  # each row its own values, nothing left over from the row before
    assert [(r.start_time, r.inter_chunk_latency) for r in back] == [
        (r.start_time, r.inter_chunk_latency) for r in sent]


def test_an_empty_shard_writes_an_empty_file_the_merge_can_read(tmp_path):
    writer = write(tmp_path / "empty.parquet", [])
    assert (writer.requests, writer.succeeded, writer.span_s) == (0, 0, 0.0)
    assert list(read_batches([tmp_path / "empty.parquet"])) == []


def test_untimed_records_count_but_do_not_stretch_the_span(tmp_path):
    backwards = request(start=200.0)
    backwards.completed_time = 50.0  # a completion before its start: evalscope leaves it out of the duration
    writer = write(tmp_path / "shard.parquet", [request(start=100.0, latency=0.5), backwards])
    assert (writer.requests, writer.span_s) == (2, 0.5)


def one_token_replies():
    # Streamed replies of one token: no gap, no TPOT, no decode rate (NaN in evalscope's columns, left out).
    return [request(gaps=(), ttft=0.05 + i / 100) for i in range(3)]


CASES = {
    "mixed": lambda: (
        [request(ttft=0.1 + (i % 7) / 50, gaps=[0.01 * (1 + i % 3)] * (i % 5)) for i in range(40)]
        + [request(stream=False, ttft=0.3, gaps=(), latency=0.3, completion=12) for _ in range(5)]
        + [request(success=False) for _ in range(4)] + one_token_replies()
        + [request(ttft=0.0, gaps=(), latency=0.0, completion=1)]  # a zero latency: no throughput, NaN
    ),
    # Many equal values (ties) around the nearest ranks.
    "ties": lambda: [request(ttft=0.125, gaps=(0.005, 0.005, 0.005), prompt=16) for _ in range(97)]
    + [request(ttft=0.25, gaps=(0.01,), prompt=16) for _ in range(3)],
    # No streamed reply: TTFT, TPOT and decode over every row, and TPOT keeps its 0 for one-token replies.
    "non_stream": lambda: [request(stream=False, ttft=0.2 + i / 100, gaps=(), latency=0.2 + i / 100,
                                   completion=1 + i % 4) for i in range(30)],
    # Speculative decoding (3 tokens a chunk: evalscope averages the tokens per iteration) between replies that have
    # no such figure, which must not inherit one.
    "speculative": lambda: [
        request(gaps=(0.01, 0.01), completion=4 + i, decode_chunks=3) if i % 2 else
        request(stream=False, gaps=(), latency=0.3, completion=12) for i in range(12)
    ],
    "only_failures": lambda: [request(success=False) for _ in range(5)],
    "nothing": lambda: [],
    "single": lambda: [request()],
}


def evalscope_reference(records, args, tmp_path):
    """evalscope over the same records: its accumulator and summary (as summary_result writes it), its database rows
    and its percentile query."""
    accumulator = MetricsAccumulator(concurrency=args.parallel, rate=args.rate)
    db_path = tmp_path / "reference.db"
    with sqlite3.connect(db_path) as connection:
        create_result_table(connection.cursor())
        for record in records:
            accumulator.update(record, api_plugin=None)
            insert_benchmark_data(connection.cursor(), record)
    percentiles = get_percentile_results(str(db_path), api_type=args.api).to_list()
    summary = BenchmarkSummary.from_dict(accumulator.to_result().create_message(api_type=args.api))
    return summary.to_dict(), percentiles, table(db_path)


def table(db_path):
    """The rows, each gap list read back from its JSON text (the shards' encoder spells some numbers otherwise)."""
    with sqlite3.connect(db_path) as connection:
        cursor = connection.execute("SELECT * FROM result")
        gaps = [column[0] for column in cursor.description].index(DatabaseColumns.INTER_TOKEN_LATENCIES)
        return [row[:gaps] + (json.loads(row[gaps]),) + row[gaps + 1:] for row in cursor.fetchall()]


@pytest.mark.parametrize("api", ["openai", "openai_embedding"])
@pytest.mark.parametrize("case", CASES)
def test_the_out_of_core_merge_is_evalscope_on_crafted_records(case, api, tmp_path, monkeypatch):
    monkeypatch.setattr(records_module, "BATCH_RECORDS", 8)  # every case spans batches and files
    records = CASES[case]()
    for record in records:  # what a shard keeps; evalscope's side gets the same
        record.request, record.response_messages = None, []
    shards = [records[i::3] for i in range(3)]
    args = Arguments(model="m", url="http://x/v1/chat/completions", api=api)
    args.number, args.parallel, args.rate = len(records), 4, -1.0

    merged = merge_record_files(*write_shards(shards, args, tmp_path / "point"), args, tmp_path / "point")
    metrics, percentiles, rows = evalscope_reference([r for shard in shards for r in shard], args, tmp_path)

    # NaN (a column with no value) compares unequal to itself: compare the JSON evalscope writes.
    assert json.dumps(merged.percentiles) == json.dumps(percentiles)
    assert merged.metrics == metrics
    assert table(tmp_path / "point" / "benchmark_data.db") == rows
    written = json.loads((tmp_path / "point" / "benchmark_summary.json").read_text())
    assert written == json.loads(json.dumps(metrics))
    assert not (tmp_path / "point" / "records").exists()  # benchmark_data.db holds the rows now
