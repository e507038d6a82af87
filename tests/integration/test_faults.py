"""Faults through real HTTP: targets that fail, hang or answer garbage, a killed ingress, an unwritable disk.
Each job ends with a reason a user can act on, within its timeouts, and the service keeps serving."""

import re
import subprocess
import time
import uuid

import pytest
import ray

from tests.conftest import SAMPLES
from tests.integration.conftest import second_application

TERMINAL = {"succeeded", "failed", "cancelled", "interrupted"}


def perf_body(url, **fields):
    return {"model": "m", "url": url, "dataset_path": "perf/openqa.jsonl", "max_tokens": 4, "stream": False,
            "shards": 1, **fields}


def eval_body(api_url, **fields):
    return {"model": "m", "api_url": api_url, "datasets": ["gsm8k"], "limit": 2,
            "dataset_args": {"gsm8k": {"local_path": str(SAMPLES / "gsm8k"), "few_shot_num": 0}}, **fields}


def timed_post(service, path, body):
    started = time.monotonic()
    response = service.post(path, json=body)
    return response, time.monotonic() - started


def test_perf_against_a_target_answering_500_fails_fast_with_the_status(service, faulty):
    response, elapsed = timed_post(service, "/api/v1/perf", perf_body(faulty.url("error"), number=10))
    assert response.status_code == 500
    message = response.json()["message"]
    assert re.match(rf"shard 0 \(node \S+\) failed: probe request to {re.escape(faulty.url('error'))} failed "
                    r"\(HTTP 500\): ", message), message
    assert '"message": "injected failure"' in message
    assert elapsed < 20


def test_perf_against_a_flaky_target_records_every_failure_and_succeeds(service, faulty):
    # A counter of this test's own; parallel 1: the probe is its 1st request, then the 2nd..21st alternate
    # between failing and succeeding.
    flaky = faulty.url(f"flaky-{uuid.uuid4().hex}")
    response = service.post("/api/v1/perf", json=perf_body(flaky, number=20, parallel=1))
    assert response.status_code == 200, response.text
    metrics = response.json()["results"]["parallel_1_number_20"]["metrics"]
    assert (metrics["Total Requests"], metrics["Success Requests"], metrics["Failed Requests"]) == (20, 10, 10)


def test_goodput_counts_only_the_successes_within_the_slo(service, faulty):
    flaky = faulty.url(f"flaky-{uuid.uuid4().hex}")  # after the probe, every other request fails
    response = service.post("/api/v1/perf", json=perf_body(flaky, number=20, parallel=1, slo={"e2e_ms": 60_000}))
    assert response.status_code == 200, response.text
    point = response.json()["results"]["parallel_1_number_20"]
    metrics, goodput = point["metrics"], point["goodput"]
    assert goodput["good"] == metrics["Success Requests"] == 10  # the failures are not good, however fast
    assert goodput["good_fraction"] == 0.5
    assert goodput["goodput_req_per_s"] == pytest.approx(10 / metrics["Test Duration (s)"])
    assert goodput["slo"] == {"ttft_ms": None, "tpot_ms": None, "itl_ms": None, "e2e_ms": 60_000}


def test_goodput_is_counted_over_every_shard_and_each_shard_says_its_share(service, simulator):
    body = {"model": "simulator", "url": simulator.chat_url, "dataset_path": "perf/openqa.jsonl", "max_tokens": 4,
            "number": 10, "parallel": 2, "shards": 2, "slo": {"ttft_ms": 30_000, "itl_ms": 30_000}}
    point = service.post("/api/v1/perf", json=body).json()["results"]["parallel_2_number_10"]
    assert point["goodput"]["good"] == 10 and point["goodput"]["good_fraction"] == 1.0
    assert [shard["good"] for shard in point["shards"]] == [shard["requests"] for shard in point["shards"]] == [5, 5]


def test_perf_against_a_target_answering_garbage_fails_saying_so(service, faulty):
    response, elapsed = timed_post(service, "/api/v1/perf", perf_body(faulty.url("garbage"), number=10))
    assert response.status_code == 500
    assert re.match(rf"shard 0 \(node \S+\) failed: probe request to {re.escape(faulty.url('garbage'))} failed: "
                    "the reply is not an OpenAI-style completion", response.json()["message"])
    assert elapsed < 20


def test_perf_against_a_hanging_target_ends_by_its_timeout(service, faulty):
    response, elapsed = timed_post(service, "/api/v1/perf", perf_body(faulty.url("hang"), number=4, total_timeout=2))
    assert response.status_code == 500
    assert re.match(rf"shard 0 \(node \S+\) failed: probe request to {re.escape(faulty.url('hang'))} failed",
                    response.json()["message"])
    assert elapsed < 20


def test_eval_against_a_target_answering_500_ends_within_seconds_with_the_reason(service, faulty):
    body = eval_body(faulty.url("error", "/v1"), generation_config={"retries": 1, "max_tokens": 8})
    response, elapsed = timed_post(service, "/api/v1/eval", body)
    assert response.status_code == 500
    assert "injected failure" in response.json()["message"]
    assert elapsed < 60


def test_eval_against_a_target_answering_garbage_ends_within_seconds_saying_so(service, faulty):
    body = eval_body(faulty.url("garbage", "/v1"), generation_config={"retries": 1, "max_tokens": 8})
    response, elapsed = timed_post(service, "/api/v1/eval", body)
    assert response.status_code == 500
    assert response.json()["message"].startswith("evaluation failed (gsm8k: RuntimeError: No valid chat completion")
    assert elapsed < 60


def test_eval_against_a_hanging_target_ends_by_its_timeout(service, faulty):
    body = eval_body(faulty.url("hang", "/v1"), generation_config={"timeout": 2, "retries": 1, "max_tokens": 8})
    response, elapsed = timed_post(service, "/api/v1/eval", body)
    assert response.status_code == 500
    assert "timed out" in response.json()["message"].lower()
    assert elapsed < 60


def test_killing_the_ingress_replica_loses_no_job(service, simulator):
    body = {"model": "simulator", "url": simulator.chat_url, "dataset_path": "perf/openqa.jsonl", "max_tokens": 4,
            "number": 300, "parallel": 2, "rate": 60}  # about 5 s of traffic
    job_id = service.post("/api/v1/perf?wait=false", json=body).json()["job_id"]
    (replica,) = [a for a in ray.util.list_named_actors(all_namespaces=True) if "EvalscopeIngress" in a["name"]]
    ray.kill(ray.get_actor(replica["name"], namespace=replica["namespace"]), no_restart=True)
    deadline = time.monotonic() + 90
    job = None
    while job is None or job["status"] not in TERMINAL:  # Serve starts a new replica; the job ran on meanwhile
        assert time.monotonic() < deadline, job
        try:
            answer = service.get(f"/api/v1/jobs/{job_id}")
            job = answer.json() if answer.status_code == 200 else job
        except Exception:  # the proxy has no replica for a moment
            pass
        time.sleep(0.5)
    assert job["status"] == "succeeded"
    assert job["result"]["results"]["parallel_2_number_300"]["metrics"]["Total Requests"] == 300


@pytest.fixture
def tmpfs(service):
    """Mounts a small tmpfs with the given options inside the outputs root, unmounted after the test; needs the
    right to mount (root in a container)."""
    mount_points = []

    def mount(*options: str):
        mount_point = service.root / "outputs" / f"tmpfs-{uuid.uuid4().hex[:8]}"
        mount_point.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(mount_point)],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.strip()}")
        mount_points.append(mount_point)
        return mount_point

    yield mount
    for mount_point in mount_points:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def assert_run_directory_refused(service, simulator, volume, status: int, reason: str):
    """An eval into `volume` answers `status` naming its run directory and `reason`; then the service serves on:
    healthy, and an eval elsewhere scores the shipped samples."""
    response = service.post("/api/v1/eval", json=eval_body(simulator.base_url, work_dir=f"{volume.name}/run"))
    assert response.status_code == status
    message = response.json()["message"]
    assert message.startswith(f"the run directory {volume}/run/"), message
    assert message.endswith(f" cannot be written: {reason}"), message
    assert service.get("/health").json()["status"] == "ok"
    response = service.post("/api/v1/eval", json=eval_body(simulator.base_url))
    assert response.json()["scores"] == {"gsm8k": 1.0}, response.text


def test_a_read_only_run_directory_is_a_500_naming_it_and_the_service_stays_up(service, simulator, tmpfs):
    assert_run_directory_refused(service, simulator, tmpfs("ro", "size=1m"), 500, "Read-only file system")


# What a full disk answers depends on when it is found full: while the request is admitted (its run directory is
# made before the job exists) it is a 507; once the job runs, its failure is the run's and answers 500.


def test_a_disk_too_full_for_the_run_directory_is_a_507_naming_it(service, simulator, tmpfs):
    full = tmpfs("size=1m", "nr_inodes=16")
    with pytest.raises(OSError, match="No space left on device"):  # every inode used: not even a directory fits
        for number in range(16):
            (full / f"filler-{number}").touch()
    assert_run_directory_refused(service, simulator, full, 507, "No space left on device")


def test_a_disk_that_fills_up_during_the_run_fails_it_with_a_500_naming_the_run_directory(service, simulator, tmpfs):
    # Room for the run directory but none for its files: the run starts, then cannot write its results.
    full = tmpfs("size=1m")
    subprocess.run(["dd", "if=/dev/zero", f"of={full}/filler", "bs=64k"], capture_output=True)
    assert_run_directory_refused(service, simulator, full, 500, "No space left on device")


def test_an_outputs_root_that_cannot_be_written_is_a_clear_500_until_fixed(service, simulator):
    blocker = service.root / "not-a-directory"
    blocker.write_text("a file where the outputs root should be")
    args = {"outputs_root": str(blocker / "outputs"), "datasets_root": str(service.datasets_root)}
    with second_application("unwritable", **args) as prefix:
        listing = service.get(f"{prefix}/api/v1/jobs")
        assert listing.status_code == 500
        assert listing.json()["message"] == (
            f"the job store {blocker}/outputs/jobs.sqlite3 cannot be written: Not a directory"
        )
        assert service.get(f"{prefix}/health").json()["status"] == "ok"
        blocker.unlink()  # the operator fixes the volume; no restart needed
        body = {"model": "m", "url": simulator.chat_url, "dataset_path": "perf/openqa.jsonl", "number": 3}
        response = service.post(f"{prefix}/api/v1/perf", json=body)
        assert response.json()["results"]["parallel_1_number_3"]["metrics"]["Success Requests"] == 3, response.text
