"""The capacity search finds the highest passing load in few probes, against targets of known capacity."""

import re

import pytest
from pydantic import ValidationError

from serve_app.config import ServiceArgs
from serve_app.errors import RequestError
from serve_app.limits import check_perf_limits
from serve_app.perf.search import CapacitySearch
from serve_app.schemas import PerfRequest


SERVICE_S = 0.2  # each request holds one of the target's slots this long


def closed_loop(capacity: int, limit_s: float = 0.3):
    """P concurrent requests on a target of `capacity` slots: past capacity, requests wait (P / capacity - 1) turns
    on average, and at most half of them meet a limit of 1.5 turns."""
    def probe(parallel: float) -> tuple[float, float, float]:
        served = min(parallel, capacity)
        latency = SERVICE_S * max(1.0, parallel / capacity)
        good = 1.0 if parallel <= capacity else 0.5 * capacity / parallel
        return good, served / SERVICE_S, latency
    return probe


def open_loop(capacity_per_s: float):
    """Arrivals at a rate past capacity queue without bound: almost no request meets its limit."""
    def probe(rate: float) -> tuple[float, float, float]:
        return (1.0, rate, SERVICE_S) if rate <= capacity_per_s else (0.01, capacity_per_s, 10 * SERVICE_S)
    return probe


def run(search: CapacitySearch, target) -> CapacitySearch:
    while (load := search.next_load()) is not None:
        search.record(load, *target(load))
    return search


@pytest.mark.parametrize("capacity", [1, 3, 17, 40, 99, 128, 200, 256])
@pytest.mark.parametrize("min_goodput", [0.9, 0.99])
def test_a_parallel_search_finds_the_exact_capacity_in_at_most_4_probes(capacity, min_goodput):
    search = run(CapacitySearch(low=1, high=256, min_goodput=min_goodput, max_probes=8, integer=True),
                 closed_loop(capacity))
    assert search.max_passing == capacity and search.min_failing in (capacity + 1, None), search.probes
    assert len(search.probes) <= 4


@pytest.mark.parametrize("capacity", [0.7, 12.5, 48.0, 333.0])
def test_a_rate_search_is_within_the_tolerance_in_at_most_4_probes(capacity):
    search = run(CapacitySearch(low=0.5, high=500, min_goodput=0.95, max_probes=8, integer=False),
                 open_loop(capacity))
    assert search.max_passing <= capacity < search.min_failing <= search.max_passing * 1.05, search.probes
    assert len(search.probes) <= 4


def test_estimates_that_fall_short_still_narrow_the_bracket():
    # A target whose throughput says little: it collapses past capacity (e.g. it thrashes), so every estimate is low.
    def thrashing(rate):
        return (1.0, rate, SERVICE_S) if rate <= 40 else (0.0, 1.0, 30.0)
    search = run(CapacitySearch(low=1, high=1000, min_goodput=0.99, max_probes=16, integer=False), thrashing)
    assert search.max_passing <= 40 < search.min_failing <= search.max_passing * 1.05, search.probes


def test_a_load_that_fails_at_the_lowest_probe_ends_the_search_at_once():
    search = run(CapacitySearch(low=4, high=64, min_goodput=0.99, max_probes=8, integer=True), closed_loop(2))
    assert len(search.probes) == 1 and search.max_passing is None and search.min_failing == 4
    assert search.verdict("concurrent requests") == (
        "even the lowest load, 4 concurrent requests, misses the SLO (1 probe)")


def test_a_target_that_passes_the_highest_load_says_capacity_is_higher():
    search = run(CapacitySearch(low=1, high=64, min_goodput=0.99, max_probes=8, integer=True), closed_loop(1000))
    assert [p.load for p in search.probes] == [1, 64] and search.min_failing is None
    assert "capacity is higher" in search.verdict("concurrent requests")


def test_the_probe_budget_bounds_the_search_and_the_verdict_says_so():
    search = run(CapacitySearch(low=1, high=1000, min_goodput=0.99, max_probes=3, integer=False),
                 lambda rate: (1.0, rate, 0.1) if rate <= 10 else (0.0, 0.0, 0.1))  # nothing served: bisection
    assert len(search.probes) == 3
    assert search.verdict("req/s").endswith("not narrowed to 5% within 3 probes)")


def test_a_probe_the_target_could_not_keep_up_with_fails_even_if_its_requests_met_the_slo():
    # Past 30 req/s the arrivals queue in the load generator's slots: the few that go out are served in time, but
    # the load measured is not the load asked for, so the saturation judgement fails the probe.
    search = CapacitySearch(low=10, high=100, min_goodput=0.99, max_probes=8, integer=False)
    while (load := search.next_load()) is not None:
        search.record(load, 1.0, min(load, 30.0), SERVICE_S, saturated=load > 30)
    assert search.max_passing <= 30 < search.min_failing <= search.max_passing * 1.05, search.probes


URL = "http://127.0.0.1/v1/chat/completions"


@pytest.mark.parametrize("body, message", [
    ({"search": {"vary": "rate", "low": 1, "high": 10}}, "a search needs an slo"),
    ({"search": {"vary": "rate", "low": 10, "high": 1}, "slo": {"e2e_ms": 500}}, "low (10) must be below high (1)"),
    ({"search": {"vary": "parallel", "low": 1.5, "high": 8}, "slo": {"e2e_ms": 500}}, "whole numbers"),
    ({"search": {"vary": "parallel", "low": 1, "high": 8}, "slo": {"e2e_ms": 500}, "number": [10, 20]},
     "number (the most requests per probe) and parallel are single values"),
    ({"search": {"vary": "rate", "low": 1, "high": 8}, "slo": {"e2e_ms": 500}, "rate": 5}, "leave it unset"),
    ({"search": {"vary": "parallel", "low": 1, "high": 8}, "slo": {"e2e_ms": 500}, "rate": [5, 10]},
     "rate is a single value"),
    ({"search": {"vary": "rate", "low": 1, "high": 8}, "slo": {"e2e_ms": 500}, "duration_s": 5},
     "leave duration_s unset"),
    ({"search": {"vary": "rate", "low": 1, "high": 8, "min_goodput": 1.5}, "slo": {"e2e_ms": 500}},
     "less than or equal to 1"),
])
def test_a_search_that_cannot_run_is_refused_saying_why(body, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        PerfRequest(model="m", url=URL, **body)


def test_a_search_beyond_the_services_limit_is_refused_naming_the_setting():
    request = PerfRequest(model="m", url=URL, slo={"ttft_ms": 500},
                          search={"vary": "parallel", "low": 1, "high": 512})
    with pytest.raises(RequestError, match=r"search.high=512.0 is over this service's limit of 256 \(max_parallel\)"):
        check_perf_limits(request, ServiceArgs(max_parallel=256))
