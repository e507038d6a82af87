"""The workload throughput of a merged point must be evalscope's WorkloadTimeline over the union of the shards'
requests, fed in completion order as one process's collector feeds it."""

import json
import random

import numpy as np
import pytest
from evalscope.perf.arguments import Arguments
from evalscope.perf.utils.benchmark_util import BenchmarkData
from evalscope.perf.utils.workload_timeline import WorkloadTimeline

from serve_app.perf.workload import Timeline, workload_timeline
from tests.unit.perf.test_merge import DEFAULT_RATE, merge_records, write_shards

ARGS = Arguments(model="m", url="http://127.0.0.1/v1/chat/completions")


def _request(rng: random.Random, start: float, latency: float) -> BenchmarkData:
    prompt = rng.randint(1, 400)
    record = BenchmarkData(start_time=start, completed_time=start + latency, success=rng.random() > 0.1,
                           is_stream=True, first_chunk_latency=latency / 3, query_latency=latency,
                           inter_chunk_latency=[latency / 3] * 2, prompt_tokens=prompt,
                           completion_tokens=rng.randint(1, 64),
                           # some servers count more cached tokens than the prompt had
                           cached_tokens=rng.choice([0, rng.randint(0, prompt), prompt + 5]))
    if not record.success:
        record.error = "HTTP 503"
    elif rng.random() < 0.02:  # times never set: evalscope's feed skips it
        record.completed_time = 0.0
    return record


def _evalscope_timeline(shards) -> WorkloadTimeline:
    timeline = WorkloadTimeline()
    for record in sorted((r for shard in shards for r in shard), key=lambda r: r.completed_time):
        timeline.feed(record)
    return timeline


def _random_shards(seed: int, span_s: float):
    rng = random.Random(seed)
    epoch = 1_800_000_000.0
    records = [_request(rng, epoch + rng.uniform(0, span_s), rng.lognormvariate(-1, 1))
               for _ in range(rng.randint(20, 600))]
    count = rng.randint(1, 4)
    return [records[i::count] for i in range(count)]


# Runs shorter than the last window (its rates are the overall ones) and longer (its own anchor).
@pytest.mark.parametrize("span_s", [5.0, 120.0])
@pytest.mark.parametrize("seed", range(4))
def test_the_workload_throughput_is_evalscopes_over_the_union(seed, span_s, tmp_path):
    shards = _random_shards(seed, span_s)
    paths, _ = write_shards(shards, ARGS, tmp_path)
    ours = workload_timeline(paths, rows=sum(map(len, shards)))
    theirs = _evalscope_timeline(shards)

    assert ours.summary().to_dict() == theirs.to_summary().to_dict()
    ours.write_points(tmp_path / "workload_timeline.json")
    assert json.loads((tmp_path / "workload_timeline.json").read_text()) == theirs.to_raw_points_dict()


def test_requests_that_complete_together_anchor_the_windows_as_evalscope_does(tmp_path):
    rng = random.Random(7)
    # Many completions at one instant, 5 s after the first start, then a tail to 8 s: the steady state starts
    # (at 20 % of 8 s) before them all, and evalscope anchors it on the first of the ties.
    together = [_request(rng, 100.0, 5.0) for _ in range(30)]
    tail = [_request(rng, 100.0 + i, 2.0) for i in range(4, 7)]
    for record in together + tail:
        record.success, record.error = True, None
    shards = [together[::2] + tail, together[1::2]]
    paths, _ = write_shards(shards, ARGS, tmp_path)

    timeline = workload_timeline(paths, rows=len(together) + len(tail))
    assert timeline.summary().to_dict() == _evalscope_timeline(shards).to_summary().to_dict()


def test_a_single_request_reports_its_own_rates_in_every_window(tmp_path):
    record = _request(random.Random(1), 100.0, 2.0)
    record.success, record.error = True, None
    paths, _ = write_shards([[record]], ARGS, tmp_path)
    summary = workload_timeline(paths, rows=1).summary()
    assert summary.to_dict() == _evalscope_timeline([[record]]).to_summary().to_dict()
    completion = summary.rows[-1]
    assert completion.overall == completion.last_window == completion.steady_state == record.completion_tokens / 2.0


def test_a_point_where_no_request_succeeded_has_no_workload_files(tmp_path):
    rng = random.Random(2)
    failed = [_request(rng, 100.0 + i, 1.0) for i in range(5)]
    for record in failed:
        record.success, record.error = False, "HTTP 500"
    args = Arguments(model="m", url="http://127.0.0.1/v1/chat/completions")
    args.number, args.parallel, args.rate = 5, 1, DEFAULT_RATE

    merged = merge_records([failed], args, tmp_path / "point")

    assert merged.workload is None
    assert not (tmp_path / "point" / "workload_throughput.json").exists()
    assert not (tmp_path / "point" / "workload_timeline.json").exists()


def test_a_merged_point_writes_evalscopes_workload_files(tmp_path):
    shards = _random_shards(11, 60.0)
    args = Arguments(model="m", url="http://127.0.0.1/v1/chat/completions")
    args.number, args.parallel, args.rate = sum(map(len, shards)), 8, DEFAULT_RATE

    merged = merge_records(shards, args, tmp_path / "point")

    expected = _evalscope_timeline(shards)
    assert merged.workload == expected.to_summary().to_dict()
    written = json.loads((tmp_path / "point" / "workload_throughput.json").read_text())
    assert written == json.loads(json.dumps(merged.workload))
    points = json.loads((tmp_path / "point" / "workload_timeline.json").read_text())
    assert points == expected.to_raw_points_dict()


def test_timeline_times_are_written_rounded_as_pythons_round_even_next_to_a_half(tmp_path):
    # k + 0.5 millionths, where scaling by 1e6 could round either way; and times of a long test.
    halves = (np.arange(1, 20_000) + 0.5) / 1e6
    times = np.sort(np.concatenate([halves, np.random.default_rng(3).uniform(0, 20_000, 20_000)]))
    counts = np.arange(len(times))
    Timeline(wall_start=1.0, t=times, cum_completion=counts, cum_new_prompt=counts,
             cum_cached_prompt=counts).write_points(tmp_path / "points.json")

    written = json.loads((tmp_path / "points.json").read_text())["points"]
    assert [point["t"] for point in written] == [round(time, 6) for time in times.tolist()]
