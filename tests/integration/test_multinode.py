"""The service on a Ray cluster of three nodes (tests/integration/multinode_cluster.py, one cluster for this module):
a test point's shards are placed together over the nodes, an eval's datasets run on several nodes into one outputs
root, two jobs that together need more than the cluster run one after the other, and a lost node fails only the
job whose shard it ran.

Every test leaves both worker nodes up and no placement group behind, so the tests pass in any order.
"""

import json
import re
import selectors
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from serve_app.perf.placement import placement_name
from tests.conftest import REPO, SAMPLES
from tests.integration.multinode_cluster import WORKER_NODE_ADDRESSES

TERMINAL = {"succeeded", "failed", "cancelled", "interrupted"}
STARTUP_TIMEOUT_S = 180
ANSWER_TIMEOUT_S = 180  # above the cluster process's own waits (warm shards: 120 s), for a busy machine


class MultiNodeService:
    def __init__(self, root: Path, datasets_root: Path) -> None:
        self.stderr = open(root / "cluster.err", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.multinode_cluster", str(root / "outputs"), str(datasets_root)],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
        )
        self.stderr_path = root / "cluster.err"
        self._lines = selectors.DefaultSelector()
        self._lines.register(self.process.stdout, selectors.EVENT_READ)
        self.http = httpx.Client(base_url=self._line("ready ", STARTUP_TIMEOUT_S), timeout=120)

    def _line(self, prefix: str, timeout_s: float) -> str:
        """The next line that starts with `prefix` (Ray prints lines of its own there too), without it."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self._lines.select(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"the cluster process said nothing for {timeout_s} s: {self.stderr_tail()}")
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"the cluster process ended: {self.stderr_tail()}")
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def stderr_tail(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-3000:]

    def command(self, line: str):
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return json.loads(self._line("answer ", ANSWER_TIMEOUT_S))

    def placement_states(self, job: dict) -> set[str]:
        """The states of the placement groups of this job's test points (named after its run directory)."""
        prefix = placement_name(Path(job["output_dir"]), "")
        return {group["state"] for group in self.command("placement-groups") if group["name"].startswith(prefix)}

    def wait(self, job_id: str, timeout_s: float = 120, seen_phases: set | None = None) -> dict:
        deadline = time.monotonic() + timeout_s
        while (job := self.http.get(f"/api/v1/jobs/{job_id}").json())["status"] not in TERMINAL:
            if seen_phases is not None:
                seen_phases.add(job["progress"]["phase"])
            assert time.monotonic() < deadline, f"job {job_id} did not end within {timeout_s} s: {job}"
            time.sleep(0.1)
        return job

    def close(self) -> None:
        self.http.close()
        self.process.stdin.close()  # the end of its commands: it stops Serve and the cluster
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.stderr.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("multinode")
    datasets_root = root / "datasets"
    shutil.copytree(SAMPLES / "perf", datasets_root / "perf")
    service = MultiNodeService(root, datasets_root)
    assert service.command("warm-shards") == 2
    yield service
    service.close()


def perf_body(simulator, **fields):
    return {"model": "simulator", "url": simulator.chat_url, "dataset_path": "perf/openqa.jsonl", "max_tokens": 4,
            "stream": False, **fields}


def submit(cluster, path, body) -> str:
    response = cluster.http.post(f"{path}?wait=false", json=body)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def shard_nodes(job: dict) -> list[str]:
    (point,) = job["result"]["results"].values()
    return [shard["node"] for shard in point["shards"]]


def test_the_shards_of_one_point_run_on_different_nodes_and_their_records_merge_exactly(cluster, simulator):
    submitted_at = time.time()
    job = cluster.wait(submit(cluster, "/api/v1/perf", perf_body(simulator, number=40, parallel=4, shards=2)))
    assert job["status"] == "succeeded", job["error"]
    point = job["result"]["results"]["parallel_4_number_40"]
    # Two bundles of perf_shard_num_cpus, SPREAD: one on each worker node (the head has no CPUs).
    assert sorted(shard_nodes(job)) == sorted(WORKER_NODE_ADDRESSES)
    assert [shard["requests"] for shard in point["shards"]] == [20, 20]
    assert (point["metrics"]["Total Requests"], point["metrics"]["Success Requests"]) == (40, 40)
    # Warm shards reserve no CPU but wait on the worker nodes, so the point found one where its CPUs were placed.
    assert any(shard["worker_started_at"] < submitted_at for shard in point["shards"]), point["shards"]
    assert cluster.placement_states(job) == {"REMOVED"}


def test_pack_places_the_shards_of_one_point_on_one_node(cluster, simulator):
    response = cluster.http.post("/pack/api/v1/perf", json=perf_body(simulator, number=20, parallel=2, shards=2))
    assert response.status_code == 200, response.text
    (point,) = response.json()["results"].values()
    (node,) = {shard["node"] for shard in point["shards"]}  # 2 x 0.5 CPU fit on either worker node
    assert node in WORKER_NODE_ADDRESSES
    assert point["metrics"]["Success Requests"] == 20


def test_explicit_shards_beyond_the_whole_cluster_are_refused_before_a_job_exists(cluster, simulator):
    jobs_before = cluster.http.get("/api/v1/jobs").json()["total"]
    response = cluster.http.post("/api/v1/perf", json=perf_body(simulator, number=10, parallel=5, shards=5))
    assert response.status_code == 400
    assert response.json()["message"] == (
        "shards=5 needs 5 CPUs (5 shards x perf_shard_num_cpus=1), more than the cluster's 4 CPUs at most "
        "(max_cluster_cpus, else the CPUs the cluster has now)"
    )
    assert cluster.http.get("/api/v1/jobs").json()["total"] == jobs_before


def test_an_evals_datasets_run_on_different_nodes_and_write_into_one_outputs_root(cluster, simulator):
    body = {"model": "simulator", "api_url": simulator.chat_url, "datasets": ["gsm8k", "iquiz"], "limit": 2,
            "generation_config": {"max_tokens": 64},
            "dataset_args": {"gsm8k": {"local_path": str(SAMPLES / "gsm8k")},
                             "iquiz": {"local_path": str(SAMPLES / "iquiz")}}}
    job_id = submit(cluster, "/api/v1/eval", body)
    job = cluster.wait(job_id, timeout_s=180)
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["scores"] == {"gsm8k": 1.0, "iquiz": 1.0}
    lines = cluster.http.get(f"/api/v1/jobs/{job_id}/log").json()["lines"]
    nodes = dict(re.findall(r"\[(gsm8k|iquiz)\] runs in job-worker/\w+ \(pid \d+ on (\S+)\)", "\n".join(lines)))
    assert sorted(nodes.values()) == sorted(WORKER_NODE_ADDRESSES), lines
    run_dir = Path(job["output_dir"])
    for dataset in ("gsm8k", "iquiz"):  # each written from its own node, folded into the one run directory
        assert (run_dir / "reports" / "simulator" / f"{dataset}.json").is_file()


def test_two_jobs_that_together_need_more_than_the_cluster_run_one_after_the_other(cluster, simulator):
    # Each needs 2 of the cluster's 4 CPUs (2 shards of 1 CPU); idle task workers hold 0.5, so both cannot run at
    # once. Placement is all or nothing: neither holds one shard's CPUs while it waits for the other's.
    body = perf_body(simulator, number=40, parallel=2, shards=2, rate=20)  # about 2 s of traffic each
    job_ids = [submit(cluster, "/api/v1/perf", body) for _ in range(2)]
    polls = []  # (phase of each job) at each poll
    deadline = time.monotonic() + 120
    while True:
        jobs = [cluster.http.get(f"/api/v1/jobs/{job_id}").json() for job_id in job_ids]
        polls.append(tuple(job["progress"]["phase"] if job["status"] == "running" else job["status"] for job in jobs))
        if all(job["status"] in TERMINAL for job in jobs):
            break
        assert time.monotonic() < deadline, polls
        time.sleep(0.1)
    assert [job["status"] for job in jobs] == ["succeeded", "succeeded"], jobs
    assert any("waiting for resources" in poll for poll in polls), polls
    assert ("running", "running") not in polls  # their timed windows never overlapped
    for job in jobs:
        assert sorted(shard_nodes(job)) == sorted(WORKER_NODE_ADDRESSES)
        assert cluster.placement_states(job) == {"REMOVED"}


def test_a_lost_node_fails_the_job_naming_shard_and_node_and_the_next_jobs_run_on_the_nodes_left(cluster, simulator):
    lost, left = WORKER_NODE_ADDRESSES[1], WORKER_NODE_ADDRESSES[0]
    job_id = submit(cluster, "/api/v1/perf", perf_body(simulator, number=400, parallel=2, shards=2, rate=20))
    deadline = time.monotonic() + 60
    while cluster.http.get(f"/api/v1/jobs/{job_id}").json()["progress"]["done"] < 10:
        assert time.monotonic() < deadline, "the job never got going"
        time.sleep(0.2)
    assert cluster.command(f"remove-node {lost}") == "removed"
    try:
        job = cluster.wait(job_id, timeout_s=30)
        assert job["status"] == "failed", (job, cluster.http.get(f"/api/v1/jobs/{job_id}/log").json()["lines"],
                                           cluster.stderr_tail())
        assert re.match(rf"shard \d \(node {re.escape(lost)}\) failed: its worker process died", job["error"]), job
        assert cluster.placement_states(job) == {"REMOVED"}
        assert cluster.http.get("/health").json()["status"] == "ok"

        # The node left has 2 CPUs, 0.5 of them held by idle task workers: room for one shard of 1 CPU.
        after = cluster.wait(submit(cluster, "/api/v1/perf", perf_body(simulator, number=10, parallel=1, shards=1)))
        assert after["status"] == "succeeded", after["error"]
        assert shard_nodes(after) == [left]
    finally:
        assert cluster.command(f"add-node {lost}") == "added"
    # A replacement node takes shards again (and the warm workers spread over both nodes again).
    replaced = cluster.wait(submit(cluster, "/api/v1/perf", perf_body(simulator, number=10, parallel=2, shards=2)))
    assert replaced["status"] == "succeeded", replaced["error"]
    assert sorted(shard_nodes(replaced)) == sorted(WORKER_NODE_ADDRESSES)
