"""Logs that can be read: the service log says one line per job event, a job's log says what evalscope did for it,
and a normal run warns about nothing."""

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import ray

from tests.conftest import SAMPLES

MODEL = "readable-logs"
KEY = "sk-readable-logs-5b0e17c2"


def worker_log_sizes(logs_dir: Path) -> dict[Path, int]:
    return {path: path.stat().st_size for path in logs_dir.glob("worker-*")}


# Serve's access line: "INFO <time> <deployment> <replica> <request id> -- <METHOD> <route> <status> <ms>"
ACCESS_LINE = re.compile(r"^\S+ \S+ \S+ \S+ \S+ (\S+) -- [A-Z]+ /")


def service_log_since(logs_dir: Path, sizes: dict[Path, int], request_ids: set[str]) -> list[str]:
    """What the service's processes printed since `sizes` was taken: Ray forwards these files to the driver, so
    this is what `serve run` shows (Ray's own markers, ':job_id:...', name a process and are not forwarded).
    Access lines of requests other than `request_ids` are left out: an earlier test's request on this shared
    service may end while these jobs run."""
    lines = []
    for path in sorted(logs_dir.glob("worker-*")):
        with open(path, "rb") as log:
            log.seek(sizes.get(path, 0))
            lines += log.read().decode(errors="replace").splitlines()
    return [line for line in lines if line.strip() and not line.startswith(":")
            and (not (access := ACCESS_LINE.match(line)) or access.group(1) in request_ids)]


@dataclass(frozen=True)
class Logged:
    eval_job: dict
    perf_job: dict
    eval_log: list[str]
    perf_log: list[str]
    service_log: list[str]  # all of it while the two jobs ran


@pytest.fixture(scope="module")
def logged(service, simulator) -> Logged:
    """One eval job (two datasets) and one perf job (two shards), and the logs they left."""
    logs_dir = Path(ray._private.worker._global_node.get_logs_dir_path())
    sizes = worker_log_sizes(logs_dir)
    evaluated = service.post("/api/v1/eval", json={
        "model": MODEL, "api_url": simulator.base_url, "api_key": KEY, "datasets": ["iquiz", "gsm8k"], "limit": 2,
        "dataset_args": {"iquiz": {"local_path": str(SAMPLES / "iquiz")},
                         "gsm8k": {"local_path": str(SAMPLES / "gsm8k")}}})
    loaded = service.post("/api/v1/perf", json={
        "model": MODEL, "url": simulator.chat_url, "api_key": KEY, "dataset_path": "perf/openqa.jsonl",
        "number": 8, "parallel": 2, "shards": 2, "max_tokens": 4})  # the rate left to its default, as most are
    assert evaluated.status_code == loaded.status_code == 200, (evaluated.text, loaded.text)
    listed = service.get("/api/v1/jobs", params={"model": MODEL})
    perf_job, eval_job = listed.json()["jobs"]  # newest first
    logs = [service.get(f"/api/v1/jobs/{job['job_id']}/log", params={"limit": 10000}) for job in (eval_job, perf_job)]
    request_ids = {response.headers["x-request-id"] for response in [evaluated, loaded, listed, *logs]}
    return Logged(eval_job, perf_job, logs[0].json()["lines"], logs[1].json()["lines"],
                  service_log_since(logs_dir, sizes, request_ids))


def test_a_job_log_holds_its_lifecycle_and_what_evalscope_printed_for_each_dataset_and_shard(logged):
    for log, kind in [(logged.eval_log, "eval"), (logged.perf_log, "perf")]:
        events = [line.split(" ", 2)[2] for line in log if not line.startswith("[")]
        assert events == [f"submitted {kind} job for model {MODEL}", "started", "succeeded"], log
    for dataset in ("iquiz", "gsm8k"):
        assert any(line.startswith(f"[{dataset}]") and f"Finished evaluation for {MODEL}" in line
                   for line in logged.eval_log), logged.eval_log
    for shard in (0, 1):
        assert any(line.startswith(f"[parallel_2_number_8 shard {shard}]") for line in logged.perf_log)
    # Printed by the shard that merged the point: the first whose load ended.
    assert any(re.match(r"\[parallel_2_number_8 shard [01]\]", line) and "Benchmarking summary" in line
               for line in logged.perf_log), logged.perf_log


def test_the_service_log_says_one_line_per_job_event_and_nothing_from_inside_the_jobs(logged):
    for job in (logged.eval_job, logged.perf_job):
        assert [line.split(" -- ", 1)[-1] for line in logged.service_log if job["job_id"] in line] == [
            f"job {job['job_id']} submitted {job['kind']} job for model {MODEL}", f"job {job['job_id']} started",
            f"job {job['job_id']} succeeded"], logged.service_log
    # Beside those six, Serve's own line per request (two submissions, the listing, two logs); evalscope printed
    # hundreds of lines here, from every dataset and shard.
    assert len(logged.service_log) <= 12, "\n".join(logged.service_log)


def test_a_normal_run_warns_about_nothing_and_prints_the_key_nowhere(logged):
    for line in logged.eval_log + logged.perf_log + logged.service_log:
        assert not re.search(r"\w+Warning\b|PydanticSerializationUnexpectedValue", line), line
        assert "WARNING" not in line or "Remove `--limit`" in line, line  # evalscope's note on the limit asked for
        assert KEY not in line
