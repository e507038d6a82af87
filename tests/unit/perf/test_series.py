"""The series of a result: each metric against the load, in load order, null where evalscope has no value."""

from types import SimpleNamespace

from serve_app.perf.series import load_series
from serve_app.schemas import Goodput, PerfPointResult, PointSaturation, Slo


def outcome(ttft_p99: float, throughput: float, achieved: float | None = None, good: float | None = None):
    saturation = achieved and PointSaturation(
        saturated=False, requested_req_per_s=10.0, achieved_req_per_s=achieved, in_flight_start=1.0,
        in_flight_end=1.0, in_flight_trend_per_s=0.0, reasons=[], stopped_early=False, not_sent=0)
    goodput = good and Goodput(good=1, good_fraction=good, goodput_req_per_s=good * throughput,
                               slo=Slo(e2e_ms=500))
    return PerfPointResult(
        metrics={"Req Throughput (req/s)": throughput},
        percentiles=[{"Percentiles": "99%", "TTFT (ms)": ttft_p99, "TPOT (ms)": float("nan")}],
        shards=[], saturation=saturation, goodput=goodput)


def test_a_searchs_probes_are_drawn_in_load_order_not_the_order_they_ran():
    points = [SimpleNamespace(name="rate_1_number_5", load=1.0), SimpleNamespace(name="rate_64_number_5", load=64.0),
              SimpleNamespace(name="rate_8_number_5", load=8.0)]
    results = {"rate_1_number_5": outcome(10, 1, 1.0, 1.0), "rate_64_number_5": outcome(900, 20, 30.0, 0.2),
               "rate_8_number_5": outcome(40, 8, 8.0, 1.0)}
    series = load_series(points, results, "rate")
    assert series.loads == [1.0, 8.0, 64.0]
    assert series.points == ["rate_1_number_5", "rate_8_number_5", "rate_64_number_5"]
    assert series.metrics["TTFT (ms)@99%"] == [10, 40, 900]
    assert series.metrics["TPOT (ms)@99%"] == [None, None, None]  # NaN: no value, and JSON has no NaN
    assert series.metrics["TTFT (ms)@50%"] == [None, None, None]  # a row the table does not have
    assert series.metrics["Achieved (req/s)"] == [1.0, 8.0, 30.0]
    assert series.metrics["Good fraction"] == [1.0, 1.0, 0.2]


def test_one_point_is_no_series_and_a_sweep_without_rate_or_slo_draws_latency_and_throughput_only():
    one = [SimpleNamespace(name="a", load=1)]
    assert load_series(one, {"a": outcome(10, 1)}, "parallel") is None
    two = one + [SimpleNamespace(name="b", load=2)]
    series = load_series(two, {"a": outcome(10, 1), "b": outcome(20, 2)}, "parallel")
    assert "Achieved (req/s)" not in series.metrics and "Goodput (req/s)" not in series.metrics
    assert series.metrics["Req Throughput (req/s)"] == [1, 2]
