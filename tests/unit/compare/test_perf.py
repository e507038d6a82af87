import pytest

from serve_app.compare.perf import WORSE_WHEN_HIGHER, WORSE_WHEN_LOWER, compare_points, parse_tolerance
from serve_app.errors import RequestError
from serve_app.gates import _evalscope_metric_names
from tests.unit.compare.samples import perf_point


def cells(rows):
    return {(row.metric, row.percentile): row for row in rows}


def test_latency_up_and_throughput_down_are_worse_past_the_tolerance():
    baseline = {"results": {"p": perf_point(ttft_p99=100.0, req_per_s=50.0)}}
    candidate = {"results": {"p": perf_point(ttft_p99=120.0, req_per_s=40.0)}}
    rows = cells(compare_points(baseline, candidate, tolerance_pct=5))
    ttft = rows[("TTFT (ms)", "99%")]
    assert (ttft.difference, ttft.difference_pct, ttft.worse_when, ttft.verdict) == (20.0, 20.0, "higher", "worse")
    throughput = rows[("Req Throughput (req/s)", None)]
    assert (throughput.difference_pct, throughput.worse_when, throughput.verdict) == (-20.0, "lower", "worse")
    assert rows[("Output tokens", "99%")].verdict is None  # a size, neither better nor worse
    reversed_rows = cells(compare_points(candidate, baseline, tolerance_pct=5))
    assert reversed_rows[("TTFT (ms)", "99%")].verdict == "better"
    assert reversed_rows[("Req Throughput (req/s)", None)].verdict == "better"


def test_changes_within_the_tolerance_are_within_it():
    baseline = {"results": {"p": perf_point(ttft_p99=100.0, req_per_s=50.0)}}
    candidate = {"results": {"p": perf_point(ttft_p99=104.0, req_per_s=48.0)}}
    rows = cells(compare_points(baseline, candidate, tolerance_pct=5))
    assert rows[("TTFT (ms)", "99%")].verdict == "within tolerance"
    assert rows[("Req Throughput (req/s)", None)].verdict == "within tolerance"
    assert cells(compare_points(baseline, candidate, tolerance_pct=3))[("TTFT (ms)", "99%")].verdict == "worse"


def test_failures_from_none_are_worse_whatever_the_tolerance():
    baseline = {"results": {"p": perf_point(100.0, 50.0)}}
    candidate = {"results": {"p": perf_point(100.0, 50.0)}}
    candidate["results"]["p"]["metrics"]["Failed Requests"] = 1
    failed = cells(compare_points(baseline, candidate, tolerance_pct=50))[("Failed Requests", None)]
    assert failed.difference_pct is None and failed.verdict == "worse"


@pytest.mark.parametrize("text, pct", [("5%", 5.0), (" 0.5 % ", 0.5), ("10%", 10.0)])
def test_a_tolerance_is_a_percentage(text, pct):
    assert parse_tolerance(text) == pct


@pytest.mark.parametrize("text", ["0.05", "five%", "-5%", ""])
def test_a_tolerance_that_is_no_percentage_is_refused_naming_it(text):
    with pytest.raises(RequestError, match="tolerance is a percentage"):
        parse_tolerance(text)


def test_every_directed_metric_is_one_evalscope_names():
    summary, columns = _evalscope_metric_names()
    assert (WORSE_WHEN_HIGHER | WORSE_WHEN_LOWER) <= summary | columns
