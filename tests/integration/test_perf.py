"""Perf through the real HTTP API on Ray Serve: sharded runs, exact totals, failures that name their shard."""

import re
import shutil
import time
from datetime import datetime

import pytest
import ray
from ray.exceptions import RayActorError

from tests.conftest import SimulatorProcess
from tests.integration.conftest import placement_states, second_application

SECRET = "sk-integration-perf-77d2e0"


def perf_body(simulator, **fields):
    return {
        "model": "simulator",
        "url": simulator.chat_url,
        "api_key": SECRET,
        "dataset": "openqa",
        "dataset_path": "perf/openqa.jsonl",  # relative to the service's datasets root
        "max_tokens": 8,
        **fields,
    }


def test_sharded_sweep_sends_exactly_the_requested_load(service, simulator):
    before = simulator.requests_received()
    response = service.post("/api/v1/perf", json=perf_body(simulator, number=[30, 41], parallel=[4, 6], shards=2))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == "Performance test completed"
    assert list(body["results"]) == ["parallel_4_number_30", "parallel_6_number_41"]
    for (parallel, number), point in zip([(4, 30), (6, 41)], body["results"].values()):
        metrics = point["metrics"]
        assert metrics["Total Requests"] == number and metrics["Success Requests"] == number
        assert metrics["Concurrency"] == parallel
        assert metrics["Avg Output Tokens"] == 8
        assert [row["Percentiles"] for row in point["percentiles"]][:2] == ["min", "1%"]
        assert [s["shard"] for s in point["shards"]] == [0, 1]
        assert sum(s["parallel"] for s in point["shards"]) == parallel
        assert sum(s["requests"] for s in point["shards"]) == number
    # Every measured request reached the target, plus one connection probe per shard and point.
    assert simulator.requests_received() - before == 30 + 41 + 2 * 2
    run_dir = service.root / "outputs" / "perf"
    assert any(run_dir.glob("*/simulator/parallel_6_number_41/benchmark_percentile.json"))
    assert all(
        SECRET not in path.read_text(errors="ignore") for path in run_dir.rglob("*.json") if path.is_file()
    )
    assert SECRET not in response.text


def test_a_multi_turn_load_keeps_each_conversation_on_one_shard_and_counts_turns_as_evalscope(service, simulator):
    """perf/conversations.jsonl: 8 conversations of 3, 4, 2, 3, 2, 4, 3 and 2 user turns (23 turns in all). Each
    shard runs 4 of them, each worker sending a conversation's turns one after the other with the history."""
    before = simulator.stats()
    response = service.post("/api/v1/perf", json=perf_body(
        simulator, dataset="custom_multi_turn", dataset_path="perf/conversations.jsonl", multi_turn=True, number=8,
        parallel=4, shards=2))
    assert response.status_code == 200, response.text
    (point,) = response.json()["results"].values()
    assert point["metrics"]["Total Requests"] == point["metrics"]["Success Requests"] == 23
    assert [(s["conversations"], s["requests"]) for s in point["shards"]] == [(4, 3 + 4 + 2 + 3), (4, 2 + 4 + 3 + 2)]
    # Turn k of a conversation is its k-th place in it: 47 places over 23 turns.
    assert point["metrics"]["Avg Turns/Request"] == pytest.approx(47 / 23, abs=0.01)
    assert point["conversations"]["n_traces"] == 8
    assert {row["metric"] for row in point["conversations"]["rows"]} >= {"Latency (s)", "First-Turn TTFT (s)"}
    # Turn k carries the k user messages so far and the k - 1 replies between them (a probe per shard: 1 message).
    after = simulator.stats()
    sent = {int(n): after["chat_lengths"][n] - before["chat_lengths"].get(n, 0) for n in after["chat_lengths"]}
    assert {n: count for n, count in sent.items() if count} == {1: 8 + 2, 3: 8, 5: 5, 7: 2}
    job = service.get("/api/v1/jobs", params={"kind": "perf", "limit": 1}).json()["jobs"][0]
    assert job["progress"]["done"] == job["progress"]["total"] == 8  # conversations, not turns


def test_a_repeated_sweep_point_runs_and_is_reported_each_time(service, simulator):
    before = simulator.requests_received()
    response = service.post("/api/v1/perf", json=perf_body(simulator, number=[12, 12], parallel=[2, 2], shards=2))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert list(results) == ["parallel_2_number_12", "parallel_2_number_12_2"]
    assert [point["metrics"]["Success Requests"] for point in results.values()] == [12, 12]
    assert simulator.requests_received() - before == 2 * 12 + 2 * 2  # both runs, a probe per shard and point


def test_a_point_ends_by_its_duration_before_its_number_is_sent(service, simulator):
    body = perf_body(simulator, number=2000, parallel=2, rate=20, shards=2, duration_s=1.5)
    response = service.post("/api/v1/perf", json=body)
    assert response.status_code == 200, response.text
    metrics = response.json()["results"]["parallel_2_number_2000"]["metrics"]
    assert 15 <= metrics["Total Requests"] <= 45  # about 1.5 s at 20 req/s, not 2000
    assert metrics["Test Duration (s)"] < 4


def test_unreachable_target_fails_fast_naming_the_shard(service):
    started = time.monotonic()
    response = service.post(
        "/api/v1/perf",
        json={"model": "m", "url": "http://127.0.0.1:9/v1/chat/completions", "dataset_path": "perf/openqa.jsonl",
              "number": 4, "parallel": 2, "shards": 2},
    )
    assert response.status_code == 500
    assert "probe request to http://127.0.0.1:9" in response.json()["message"]
    assert "shard" in response.json()["message"]
    assert time.monotonic() - started < 30


def test_perf_dataset_that_needs_a_file_is_a_400(service, simulator):
    body = perf_body(simulator, number=2)
    del body["dataset_path"]
    response = service.post("/api/v1/perf", json=body)
    assert response.status_code == 400
    assert "dataset_path" in response.json()["message"]


def _shard_workers(service, job_id) -> dict[int, str]:
    """The Ray actor each shard of a job runs in, as the job's log names it (shard number -> actor name)."""
    lines = service.get(f"/api/v1/jobs/{job_id}/log", params={"limit": 10000}).json()["lines"]
    return {int(found[1]): found[2] for line in lines
            if (found := re.match(r"\[\S+ shard (\d+)\] runs in (perf-shard/\w+) ", line))}


def _alive(actor_names):
    return [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"] in actor_names]


@pytest.fixture
def own_target():
    """A simulator of the test's own: every request it counts was sent by that test."""
    with SimulatorProcess() as target:
        yield target


def test_killed_shard_fails_the_test_by_name_stops_the_traffic_and_the_service_stays_healthy(
    service, simulator, own_target
):
    accepted = service.post("/api/v1/perf?wait=false", json=perf_body(own_target, number=20000, parallel=4, shards=2))
    job_id = accepted.json()["job_id"]
    deadline = time.monotonic() + 60
    while service.get(f"/api/v1/jobs/{job_id}").json()["progress"]["done"] < 100:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    shards = _shard_workers(service, job_id)
    assert sorted(shards) == [0, 1] and len(_alive(shards.values())) == 2
    (victim,) = _alive([shards[1]])
    ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]))
    killed_at = time.monotonic()
    job = service.get(f"/api/v1/jobs/{job_id}").json()
    while job["status"] not in ("succeeded", "failed", "cancelled", "interrupted"):
        assert time.monotonic() < killed_at + 15, "the job did not end within 15 s of the kill"
        time.sleep(0.2)
        job = service.get(f"/api/v1/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert re.match(r"shard 1 \(node \S+\) failed: its worker process died", job["error"]), job["error"]
    assert placement_states(job) == {"REMOVED"}  # its shards' CPUs are free again
    # The surviving shard is stopped too: its traffic ends within seconds of the failure (ray.kill takes effect
    # asynchronously, so a few requests may still land), and then stays ended.
    received = own_target.requests_received()
    while (settled := _settled_count(own_target)) != received:
        assert time.monotonic() < killed_at + 20, "the target kept receiving requests after the job failed"
        received = settled
    time.sleep(2)
    assert own_target.requests_received() == received
    assert not _alive(shards.values())
    assert service.get("/health").json()["status"] == "ok"
    after = service.post("/api/v1/perf", json=perf_body(simulator, number=6, parallel=2))
    assert after.status_code == 200
    assert after.json()["results"]["parallel_2_number_6"]["metrics"]["Total Requests"] == 6


def _settled_count(target, quiet_s: float = 1.0) -> int:
    """The target's request count after `quiet_s`: equal to the count before when no request came meanwhile."""
    time.sleep(quiet_s)
    return target.requests_received()


def test_each_job_gets_shard_processes_started_before_it_and_never_reused(service, simulator):
    """The shards of consecutive jobs run in warm workers (processes started, evalscope imported, before the job
    was submitted), each process used for one job only (the test service keeps one warm shard)."""
    workers, started = [], []
    for _ in range(2):
        _wait_until_started_shard_processes_are_ready()
        accepted = service.post("/api/v1/perf?wait=false", json=perf_body(simulator, number=8, parallel=2, shards=1))
        job_id = accepted.json()["job_id"]
        submitted = datetime.fromisoformat(service.get(f"/api/v1/jobs/{job_id}").json()["created_at"]).timestamp()
        while (job := service.get(f"/api/v1/jobs/{job_id}").json())["status"] in ("queued", "running"):
            time.sleep(0.2)
        assert job["status"] == "succeeded", job
        shards = job["result"]["results"]["parallel_2_number_8"]["shards"]
        workers += [shard["worker"] for shard in shards]
        started += [shard["worker_started_at"] < submitted for shard in shards]
        assert sorted(_shard_workers(service, job_id).values()) == sorted(shard["worker"] for shard in shards)
    assert len(set(workers)) == 2 and all(name.startswith("perf-shard/") for name in workers)
    assert all(started), "a shard's process was started for its job, not ahead of it"


def _wait_until_started_shard_processes_are_ready():
    """The pool refills after every test point, while the job merges: a job submitted at once would find those
    processes still starting (then it takes them anyway, but a process started after its submission)."""
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["name"].startswith("perf-shard/"):
            try:
                ray.get(ray.get_actor(actor["name"], namespace=actor["namespace"]).__ray_ready__.remote(), timeout=60)
            except (ValueError, RayActorError):
                pass  # an earlier job's shard, stopped meanwhile


@pytest.fixture(scope="module")
def staged_tokenizer(service, smollm_tokenizer) -> str:
    """SmolLM2's tokenizer staged under the service's datasets root, as an operator would stage one."""
    shutil.copytree(smollm_tokenizer, service.datasets_root / "tokenizers" / "smollm2")
    return "tokenizers/smollm2"


def test_random_prompts_with_evalscope_options_reach_the_target_and_credential_headers_stay_secret(
        service, simulator, staged_tokenizer):
    credential = "tenant-key-3f9a1c"
    stats = simulator.stats()
    response = service.post("/api/v1/perf", json=perf_body(
        simulator, dataset="random", dataset_path=None, tokenizer_path=staged_tokenizer, min_prompt_length=32,
        max_prompt_length=32, number=6, parallel=2, shards=2, seed=7, extra_args={"ignore_eos": True},
        headers={"X-Tenant-Key": credential, "X-Route": "canary"}))
    assert response.status_code == 200, response.text
    point = response.json()["results"]["parallel_2_number_6"]
    assert point["metrics"]["Success Requests"] == 6
    after = simulator.stats()
    for counts, name in [("body_fields", "ignore_eos"), ("headers", "x-tenant-key"), ("headers", "x-route")]:
        assert after[counts][name] - stats[counts].get(name, 0) == 6 + 2  # each shard's probe request too
    job = service.get("/api/v1/jobs", params={"model": "simulator", "kind": "perf", "limit": 1}).json()["jobs"][0]
    assert job["request"]["headers"] == {"X-Tenant-Key": "**********", "X-Route": "canary"}
    log = service.get(f"/api/v1/jobs/{job['job_id']}/log", params={"limit": 10000}).text
    assert credential not in response.text + log


def test_random_prompts_without_a_tokenizer_or_outside_the_roots_are_refused(service, simulator):
    body = perf_body(simulator, dataset="random", dataset_path=None)
    assert "give tokenizer_path" in service.post("/api/v1/perf", json=body).json()["message"]
    escaped = service.post("/api/v1/perf", json={**body, "tokenizer_path": "/etc"})
    assert escaped.status_code == 400 and "tokenizer_path '/etc' is outside the allowed directories" in escaped.text


def test_shards_the_cluster_could_never_hold_are_a_400_before_a_job_exists(service, simulator):
    jobs_before = service.get("/api/v1/jobs").json()["total"]
    response = service.post("/api/v1/perf", json=perf_body(simulator, number=10, parallel=5, shards=5))
    assert response.status_code == 400
    assert response.json()["message"] == (
        "shards=5 needs 2.5 CPUs (5 shards x perf_shard_num_cpus=0.5), more than the cluster's 2 CPUs at most "
        "(max_cluster_cpus, else the CPUs the cluster has now)"
    )
    assert service.get("/api/v1/jobs").json()["total"] == jobs_before


def test_a_point_without_room_waits_visibly_then_fails_naming_the_cpus_and_reserves_nothing_after(
    service, simulator, tmp_path
):
    # max_cluster_cpus: an autoscaling cluster's maximum, which admits 6 shards of 0.5 CPU; this 2-CPU cluster never
    # grows, so their placement waits until placement_timeout_s.
    settings = {"outputs_root": str(tmp_path / "outputs"), "datasets_root": str(service.datasets_root),
                "max_cluster_cpus": 8, "placement_timeout_s": 5}
    body = perf_body(simulator, number=12, parallel=6, shards=6)
    with second_application("autoscaling", **settings) as prefix:
        submitted = time.monotonic()
        timed_out, cancelled = [service.post(f"{prefix}/api/v1/perf?wait=false", json=body).json()["job_id"]
                                for _ in range(2)]
        for job_id in (timed_out, cancelled):
            while (job := service.get(f"{prefix}/api/v1/jobs/{job_id}").json())["progress"]["phase"] != \
                    "waiting for resources":
                assert job["status"] in ("queued", "running") and time.monotonic() < submitted + 30, job
                time.sleep(0.1)
        job = service.post(f"{prefix}/api/v1/jobs/{cancelled}/cancel").json()
        assert job["status"] == "cancelled" and placement_states(job) == {"REMOVED"}

        while (job := service.get(f"{prefix}/api/v1/jobs/{timed_out}").json())["status"] == "running":
            assert time.monotonic() < submitted + 30, job
            time.sleep(0.2)
        assert job["status"] == "failed", job
        assert time.monotonic() - submitted >= 5  # it waited out placement_timeout_s
        assert re.fullmatch(
            r"the cluster could not place this test point's shards within placement_timeout_s=5 s: they need 3 CPUs "
            r"\(6 shards x perf_shard_num_cpus=0\.5\) at once, and [\d.]+ of the cluster's 2 CPUs are free \(other "
            r"jobs or workers hold the rest\)", job["error"]), job["error"]
        assert placement_states(job) == {"REMOVED"}
