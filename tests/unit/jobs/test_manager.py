import asyncio
import dataclasses

import pytest

from serve_app.errors import RunError
from serve_app.jobs.manager import RESTART_MESSAGE, JobManager, Submission
from serve_app.jobs.store import SqliteJobStore
from tests.unit.fakes import FakeRun


def submission(run, model="m"):
    return Submission(kind="perf", model=model, request_view={"model": model}, output_dir="/tmp/unused-out", run=run)


def test_queued_jobs_start_in_order_as_slots_free(tmp_path):
    async def scenario():
        manager = JobManager(SqliteJobStore(tmp_path / "jobs.db"), max_running=1, max_queued=5,
                             progress_interval_s=0.01)
        jobs = [manager.submit(submission(FakeRun("perf", total=3), model=f"m{i}"))[0] for i in range(3)]
        assert [manager.get(j.id).status for j in jobs] == ["running", "queued", "queued"]
        finished = [await manager.wait(j.id) for j in jobs]
        return finished

    finished = asyncio.run(scenario())
    assert [j.status for j in finished] == ["succeeded"] * 3
    assert finished[0].finished_at <= finished[1].started_at <= finished[1].finished_at <= finished[2].started_at


def test_a_restart_keeps_finished_jobs_and_interrupts_unfinished_ones(tmp_path):
    path = tmp_path / "jobs.db"

    async def scenario():
        old = JobManager(SqliteJobStore(path), max_running=1, max_queued=5)
        done = old.submit(submission(FakeRun("perf", total=1)))[0]
        await old.wait(done.id)
        running = old.submit(submission(FakeRun("perf", total=10_000)))[0]
        queued = old.submit(submission(FakeRun("perf")))[0]
        await asyncio.sleep(0.05)
        # A new owner starts on the same database, as after the old one's process died mid-job.
        restarted = JobManager(SqliteJobStore(path), max_running=1, max_queued=5)
        seen = {job.id: restarted.get(job.id) for job in (done, running, queued)}
        for task in list(old._tasks.values()):
            task.cancel()
        await asyncio.sleep(0)
        return done.id, seen

    done_id, seen = asyncio.run(scenario())
    assert seen.pop(done_id).status == "succeeded"
    for job in seen.values():
        assert job.status == "interrupted" and job.error == RESTART_MESSAGE and job.finished_at


def test_progress_is_stored_with_a_request_rate(tmp_path):
    async def scenario():
        manager = JobManager(SqliteJobStore(tmp_path / "jobs.db"), max_running=1, max_queued=1,
                             progress_interval_s=0.02)
        job = manager.submit(submission(FakeRun("perf", total=20, step_s=0.01)))[0]
        await asyncio.sleep(0.12)
        snapshot = manager.get(job.id).progress
        await manager.wait(job.id)
        return snapshot

    snapshot = asyncio.run(scenario())
    assert 0 < snapshot["done"] < 20 and snapshot["total"] == 20
    assert snapshot["req_per_s"] > 0


@pytest.mark.parametrize("failure,status", [(RuntimeError("boom"), "failed")])
def test_an_unexpected_failure_fails_the_job_with_its_reason(tmp_path, failure, status):
    async def scenario():
        manager = JobManager(SqliteJobStore(tmp_path / "jobs.db"), max_running=1, max_queued=1)
        job = manager.submit(submission(FakeRun("perf", failure=failure)))[0]
        return await manager.wait(job.id)

    job = asyncio.run(scenario())
    assert job.status == status and "RuntimeError: boom" in job.error


def test_a_key_the_target_echoes_in_an_error_is_masked_in_the_job(tmp_path):
    key = "sk-echoed-0123456789"
    echoing = FakeRun("perf", failure=RunError(f"shard 0 failed: HTTP 401: invalid api key {key}"))

    async def scenario():
        manager = JobManager(SqliteJobStore(tmp_path / "jobs.db"), max_running=1, max_queued=1)
        job, _ = manager.submit(dataclasses.replace(submission(echoing), secrets=(key, "EMPTY")))
        return await manager.wait(job.id)

    assert asyncio.run(scenario()).error == "shard 0 failed: HTTP 401: invalid api key ***"
