"""Load shapes and saturation through the real HTTP API: the achieved send times of every shard, pooled, against
the schedule asked for, and a target of known capacity that saturates."""

import sqlite3
from pathlib import Path

import numpy as np

from tests.conftest import SimulatorProcess
from tests.integration.conftest import report_when_written
from tests.integration.test_jobs import wait_for
from tests.integration.test_perf import perf_body


def send_times(output_dir: str, point: str) -> np.ndarray:
    """When each measured request of a point went out, from evalscope's benchmark_data.db (merged over shards)."""
    (database,) = Path(output_dir).rglob(f"{point}/benchmark_data.db")
    with sqlite3.connect(database) as connection:
        return np.sort([row[0] for row in connection.execute("SELECT start_time FROM result")])


def test_an_open_loop_rate_sweep_of_evenly_spaced_arrivals_is_sent_on_schedule_and_drawn_against_the_rate(
        service, simulator):
    body = perf_body(simulator, open_loop=True, rate=[20, 40], number=[30, 60], arrival="constant", shards=2)
    accepted = service.post("/api/v1/perf?wait=false", json=body)
    job = wait_for(service, accepted.json()["job_id"], {"succeeded", "failed"})
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]
    assert list(result["results"]) == ["rate_20_number_30", "rate_40_number_60"]
    for rate, point in ((20, "rate_20_number_30"), (40, "rate_40_number_60")):
        outcome = result["results"][point]
        assert [shard["parallel"] for shard in outcome["shards"]] == [None, None]  # an open loop without a cap
        # The two shards' arrivals, pooled, are one stream every 1/rate s: shards in phase would put every other
        # send half a gap (25 ms at 20 req/s) from its slot; a busy event loop only delays a few by tens of ms.
        sent = send_times(result["output_dir"], point)
        late = np.abs(sent - (sent[0] + np.arange(len(sent)) / rate))
        assert np.median(late) < 0.01 and np.percentile(late, 90) < 0.05, np.round(late, 3)
        saturation = outcome["saturation"]
        assert not saturation["saturated"] and saturation["not_sent"] == 0
        assert abs(saturation["achieved_req_per_s"] - rate) < 0.05 * rate
    series = result["series"]
    assert series["load"] == "rate" and series["loads"] == [20, 40]
    assert len(series["metrics"]["TTFT (ms)@99%"]) == 2 and series["metrics"]["Requested (req/s)"][0] == 20
    report = report_when_written(service, job["job_id"])
    assert 'id="section-load"' in report.text and 'id="chart-load-ttft"' in report.text


def test_an_open_loop_past_a_targets_capacity_is_saturated_and_stops_early(service):
    # 2 slots of 0.1 s: 20 req/s served; 60 asked for, so the requests in flight grow by ~40 a second.
    with SimulatorProcess(max_concurrency=2, ttft_ms=100) as target:
        body = perf_body(target, open_loop=True, rate=60, number=600, shards=1, stop_on_saturation=True)
        response = service.post("/api/v1/perf", json=body)
        received = target.requests_received()
    assert response.status_code == 200, response.text
    (outcome,) = response.json()["results"].values()
    saturation = outcome["saturation"]
    assert saturation["saturated"] and saturation["stopped_early"], saturation
    assert saturation["in_flight_end"] > saturation["in_flight_start"] + 10
    assert any(reason.startswith("shard 0: stopped on saturation after") for reason in saturation["reasons"])
    # It stopped within seconds instead of sending the 10 s planned: the rest never reached the target.
    assert saturation["not_sent"] > 300 and received < 300
    assert outcome["shards"][0]["sent"] == 600 - saturation["not_sent"]
