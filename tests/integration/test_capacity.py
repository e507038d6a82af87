"""The capacity search through the real API, against a simulator whose capacity is known."""

from tests.conftest import SimulatorProcess


def test_a_parallel_search_finds_the_capacity_of_a_target_that_serves_four_at_once(service):
    # 4 slots, 200 ms a reply: 4 concurrent requests all finish in 200 ms; a 5th waits one reply (400 ms), so at
    # 5 about 4 in 5 meet a 300 ms limit.
    with SimulatorProcess(max_concurrency=4, ttft_ms=200, output_tokens=1) as target:
        body = {"model": "simulator", "url": target.chat_url, "dataset_path": "perf/openqa.jsonl", "max_tokens": 1,
                "number": 400, "slo": {"e2e_ms": 300},
                "search": {"vary": "parallel", "low": 1, "high": 16, "min_goodput": 0.9, "probe_duration_s": 2}}
        response = service.post("/api/v1/perf", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    search = result["search"]
    assert (search["max_passing"], search["min_failing"]) == (4, 5), search
    assert search["verdict"].startswith("capacity 4 concurrent requests: the SLO holds there and fails at 5")
    assert len(search["probes"]) <= 6
    # Every probe is a test point of the result, measured like any other.
    assert [probe["point"] for probe in search["probes"]] == list(result["results"])
    passed = {probe["load"]: probe["passed"] for probe in search["probes"]}
    assert passed[4] and not passed[5]
    at_capacity = next(probe for probe in search["probes"] if probe["load"] == 4)
    assert at_capacity["achieved_req_per_s"] > 4 / 0.2 * 0.7  # near the 20 req/s the target can serve
