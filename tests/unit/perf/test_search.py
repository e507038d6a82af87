"""The capacity search finds the highest passing load in few probes, against targets of known capacity."""

import re

import pytest
from pydantic import ValidationError

from serve_app.config import ServiceArgs
from serve_app.errors import RequestError
from serve_app.limits import check_perf_limits
from serve_app.perf.search import CapacitySearch
from serve_app.schemas import PerfRequest


def closed_loop_fraction(capacity: int):
    """A target serving `capacity` requests at once: of P concurrent ones, about capacity / P are in time."""
    return lambda parallel: min(1.0, capacity / parallel)


def run(search: CapacitySearch, fraction) -> CapacitySearch:
    while (load := search.next_load()) is not None:
        search.record(load, fraction(load))
    return search


@pytest.mark.parametrize("capacity", [1, 3, 17, 40, 99, 128, 200])
@pytest.mark.parametrize("min_goodput", [0.9, 0.99])
def test_a_parallel_search_finds_the_exact_highest_passing_load_in_at_most_8_probes(capacity, min_goodput):
    fraction = closed_loop_fraction(capacity)
    truth = max(p for p in range(1, 257) if fraction(p) >= min_goodput)
    search = run(CapacitySearch(low=1, high=256, min_goodput=min_goodput, max_probes=8, integer=True), fraction)
    assert (search.max_passing, search.min_failing) == (truth, truth + 1), search.probes
    assert len(search.probes) <= 8


@pytest.mark.parametrize("capacity", [0.7, 12.5, 48.0, 333.0])
def test_a_rate_search_is_within_the_tolerance_where_estimates_mislead(capacity):
    # An open loop past capacity: the good share collapses faster than capacity / rate (queues grow), so the
    # estimates undershoot and the search must still narrow the bracket.
    fraction = lambda rate: 1.0 if rate <= capacity else (capacity / rate) ** 4  # noqa: E731
    truth = capacity * 0.95 ** -0.25  # the highest rate whose good fraction is 0.95
    search = run(CapacitySearch(low=0.5, high=500, min_goodput=0.95, max_probes=12, integer=False), fraction)
    assert search.max_passing <= truth < search.min_failing <= search.max_passing * 1.05, search.probes


def test_a_load_that_fails_at_the_lowest_probe_ends_the_search_at_once():
    search = run(CapacitySearch(low=4, high=64, min_goodput=0.99, max_probes=8, integer=True),
                 closed_loop_fraction(2))
    assert len(search.probes) == 1 and search.max_passing is None and search.min_failing == 4
    assert search.verdict("concurrent requests") == "even the lowest load, 4 concurrent requests, misses the SLO (1 probe)"


def test_a_target_that_passes_the_highest_load_says_capacity_is_higher():
    search = run(CapacitySearch(low=1, high=64, min_goodput=0.99, max_probes=8, integer=True),
                 closed_loop_fraction(1000))
    assert [p.load for p in search.probes] == [1, 64] and search.min_failing is None
    assert "capacity is higher" in search.verdict("concurrent requests")


def test_the_probe_budget_bounds_the_search_and_the_verdict_says_so():
    search = run(CapacitySearch(low=1, high=1000, min_goodput=0.99, max_probes=3, integer=False),
                 lambda rate: 1.0 if rate <= 10 else 0.0)  # no estimate to go by: bisection only
    assert len(search.probes) == 3
    assert search.verdict("req/s").endswith("not narrowed to 5% within 3 probes)")


URL = "http://127.0.0.1/v1/chat/completions"


@pytest.mark.parametrize("body, message", [
    ({"search": {"vary": "rate", "low": 1, "high": 10}}, "a search needs an slo"),
    ({"search": {"vary": "rate", "low": 10, "high": 1}, "slo": {"e2e_ms": 500}}, "low (10) must be below high (1)"),
    ({"search": {"vary": "parallel", "low": 1.5, "high": 8}, "slo": {"e2e_ms": 500}}, "whole numbers"),
    ({"search": {"vary": "parallel", "low": 1, "high": 8}, "slo": {"e2e_ms": 500}, "number": [10, 20]},
     "number (the most requests per probe) and parallel are single values"),
    ({"search": {"vary": "rate", "low": 1, "high": 8}, "slo": {"e2e_ms": 500}, "rate": 5}, "leave it unset"),
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
