"""Goodput: which requests met the slo, counted exactly over every shard's records."""

import pytest
from evalscope.perf.utils.benchmark_util import BenchmarkData
from pydantic import ValidationError

from serve_app.perf.slo import goodput, is_good
from serve_app.schemas import PerfRequest, Slo


def record(*, success=True, ttft_s=0.1, gaps_s=(0.01, 0.02), tpot_s=0.015, e2e_s=0.5) -> BenchmarkData:
    return BenchmarkData(success=success, first_chunk_latency=ttft_s, inter_chunk_latency=list(gaps_s),
                         time_per_output_token=tpot_s, query_latency=e2e_s)


@pytest.mark.parametrize("limit, measured, good", [
    ({"ttft_ms": 100}, {"ttft_s": 0.1}, True),  # exactly at the limit meets it
    ({"ttft_ms": 100}, {"ttft_s": 0.1001}, False),
    ({"tpot_ms": 15}, {"tpot_s": 0.015}, True),
    ({"tpot_ms": 15}, {"tpot_s": 0.016}, False),
    ({"e2e_ms": 500}, {"e2e_s": 0.5}, True),
    ({"e2e_ms": 500}, {"e2e_s": 0.51}, False),
    ({"itl_ms": 20}, {"gaps_s": (0.001, 0.02, 0.003)}, True),
    ({"itl_ms": 20}, {"gaps_s": (0.001, 0.021, 0.003)}, False),  # one slow gap is enough to miss it
    ({"itl_ms": 20}, {"gaps_s": ()}, True),  # a one-token reply has no gap to miss
])
def test_each_limit_holds_inclusively(limit, measured, good):
    assert is_good(record(**measured), Slo(**limit)) is good


def test_a_request_must_meet_every_limit_and_succeed():
    slo = Slo(ttft_ms=200, e2e_ms=400)
    assert is_good(record(ttft_s=0.1, e2e_s=0.4), slo)
    assert not is_good(record(ttft_s=0.1, e2e_s=0.41), slo)
    assert not is_good(record(success=False, ttft_s=0.0, e2e_s=0.0), slo)  # a fast failure is not good


def test_goodput_is_good_requests_over_all_requests_and_the_points_duration():
    slo = Slo(ttft_ms=100)
    point = goodput(good=3, total=5, slo=slo, duration_s=1.5)
    assert point.good == 3 and point.good_fraction == pytest.approx(3 / 5)
    assert point.goodput_req_per_s == pytest.approx(2.0)
    assert point.slo == slo


def test_no_requests_is_no_goodput_rather_than_a_division_by_zero():
    point = goodput(good=0, total=0, slo=Slo(e2e_ms=1), duration_s=0.0)
    assert (point.good, point.good_fraction, point.goodput_req_per_s) == (0, 0.0, 0.0)


@pytest.mark.parametrize("slo, stream, message", [
    ({}, True, "give at least one of ttft_ms"),
    ({"ttft_ms": 0}, True, "greater than 0"),
    ({"ttft": 500}, True, "Extra inputs are not permitted"),
    ({"ttft_ms": 500, "itl_ms": 50}, False, "slo itl_ms, ttft_ms need stream: true"),
])
def test_impossible_slos_are_refused_saying_why(slo, stream, message):
    with pytest.raises(ValidationError, match=message):
        PerfRequest(model="m", url="http://127.0.0.1/v1/chat/completions", slo=slo, stream=stream)


def test_an_end_to_end_limit_holds_without_a_stream():
    request = PerfRequest(model="m", url="http://127.0.0.1/v1/chat/completions", slo={"e2e_ms": 800}, stream=False)
    assert request.slo.limits() == {"e2e_ms": 800}
