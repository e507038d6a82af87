import asyncio
import dataclasses
import itertools
import logging

import pytest

from serve_app.errors import RunError
from serve_app.jobs.manager import RESTART_MESSAGE, JobManager, JobNotFound, QueueFull, Submission
from serve_app.jobs.store import SqliteJobStore
from serve_app.principals import ANONYMOUS, Principal
from tests.unit.fakes import FakeRun



@pytest.fixture
def submission(tmp_path):
    """Makes submissions, each with a run directory of its own (the manager creates it fresh)."""
    run_dirs = itertools.count()

    def make(run, model="m", owner="default"):
        output_dir = tmp_path / "out" / str(next(run_dirs))
        return Submission(kind="perf", model=model, request_view={"model": model}, output_dir=str(output_dir),
                          run=run, owner=owner)

    return make


def test_queued_jobs_start_in_order_as_slots_free(tmp_path, submission):
    async def scenario():
        manager = JobManager(SqliteJobStore(tmp_path / "jobs.db"), max_running=1, max_queued=5,
                             progress_interval_s=0.01)
        jobs = [manager.submit(submission(FakeRun("perf", total=3), model=f"m{i}"))[0] for i in range(3)]
        assert [manager.get(j.id, ANONYMOUS).status for j in jobs] == ["running", "queued", "queued"]
        finished = [await manager.wait(j.id, ANONYMOUS) for j in jobs]
        return finished

    finished = asyncio.run(scenario())
    assert [j.status for j in finished] == ["succeeded"] * 3
    assert finished[0].finished_at <= finished[1].started_at <= finished[1].finished_at <= finished[2].started_at


def test_a_restart_keeps_finished_jobs_and_interrupts_unfinished_ones(tmp_path, submission):
    path = tmp_path / "jobs.db"

    async def scenario():
        old = JobManager(SqliteJobStore(path), max_running=1, max_queued=5)
        done = old.submit(submission(FakeRun("perf", total=1)))[0]
        await old.wait(done.id, ANONYMOUS)
        running = old.submit(submission(FakeRun("perf", total=10_000)))[0]
        queued = old.submit(submission(FakeRun("perf")))[0]
        await asyncio.sleep(0.05)
        # A new owner starts on the same database, as after the old one's process died mid-job.
        restarted = JobManager(SqliteJobStore(path), max_running=1, max_queued=5)
        seen = {job.id: restarted.get(job.id, ANONYMOUS) for job in (done, running, queued)}
        for task in list(old._tasks.values()):
            task.cancel()
        await asyncio.sleep(0)
        return done.id, seen

    done_id, seen = asyncio.run(scenario())
    assert seen.pop(done_id).status == "succeeded"
    for job in seen.values():
        assert job.status == "interrupted" and job.error == RESTART_MESSAGE and job.finished_at


def test_a_retiring_manager_hands_its_queue_over_and_its_running_job_carries_on(tmp_path, submission):
    """A redeploy with new code: the new manager runs the queue under its own limits, nothing is interrupted."""
    path = tmp_path / "jobs.db"

    async def scenario():
        old = JobManager(SqliteJobStore(path), max_running=1, max_queued=5)
        finished = await old.wait(old.submit(submission(FakeRun("perf", total=1)))[0].id, ANONYMOUS)
        running = old.submit(submission(FakeRun("perf", total=30)))[0]
        queued = [old.submit(dataclasses.replace(submission(FakeRun("perf")), resubmit=f"request {i}"))[0]
                  for i in range(2)]
        handoff = old.retire()
        assert old.retire().queued == []  # handed over once
        new = JobManager(SqliteJobStore(path), max_running=2, max_queued=5,
                         adopted=[(job, FakeRun("perf", total=20)) for job in handoff.queued],
                         running_elsewhere=handoff.running)
        # One slot of two is taken by the job the old manager still runs: one queued job starts.
        started = [new.get(job.id, ANONYMOUS).status for job in queued]
        await old.wait(running.id, ANONYMOUS)
        new.ended_elsewhere(running.id)
        ended = [await new.wait(job.id, ANONYMOUS) for job in queued]
        return finished, handoff, started, [new.get(job.id, ANONYMOUS) for job in (finished, running)], ended

    finished, handoff, started, (finished_after, running_after), ended = asyncio.run(scenario())
    assert [job.resubmit for job in handoff.queued] == ["request 0", "request 1"]  # in queue order
    assert list(handoff.running) == [running_after.id]
    assert started == ["running", "queued"]
    assert finished_after == finished and finished.status == "succeeded"
    assert running_after.status == "succeeded" and [job.status for job in ended] == ["succeeded", "succeeded"]


def test_a_job_lost_with_its_retiring_manager_ends_interrupted(tmp_path, submission):
    path = tmp_path / "jobs.db"

    async def scenario():
        old = JobManager(SqliteJobStore(path), max_running=1, max_queued=5)
        running = old.submit(submission(FakeRun("perf", total=10_000)))[0]
        handoff = old.retire()
        new = JobManager(SqliteJobStore(path), max_running=1, max_queued=5, running_elsewhere=handoff.running)
        waiting = new.submit(submission(FakeRun("perf", total=1)))[0]
        before = new.get(running.id, ANONYMOUS).status, new.get(waiting.id, ANONYMOUS).status
        new.ended_elsewhere(running.id, lost=True)  # the old manager's process died with the job
        lost, waited = new.get(running.id, ANONYMOUS), await new.wait(waiting.id, ANONYMOUS)
        for task in old._tasks.values():  # what is left of the old one here, in this test's one event loop
            task.cancel()
        await asyncio.gather(*old._tasks.values(), return_exceptions=True)
        return before, lost, waited

    before, lost, waited = asyncio.run(scenario())
    assert before == ("running", "queued")  # the job run elsewhere holds the only slot
    assert lost.status == "interrupted" and lost.error == RESTART_MESSAGE
    assert waited.status == "succeeded"


def test_progress_is_stored_with_a_request_rate(tmp_path, submission):
    async def scenario():
        manager = JobManager(SqliteJobStore(tmp_path / "jobs.db"), max_running=1, max_queued=1,
                             progress_interval_s=0.02)
        job = manager.submit(submission(FakeRun("perf", total=20, step_s=0.01)))[0]
        await asyncio.sleep(0.12)
        snapshot = manager.get(job.id, ANONYMOUS).progress
        await manager.wait(job.id, ANONYMOUS)
        return snapshot

    snapshot = asyncio.run(scenario())
    assert 0 < snapshot["done"] < 20 and snapshot["total"] == 20
    assert snapshot["req_per_s"] > 0


@pytest.mark.parametrize("failure,status", [(RuntimeError("boom"), "failed")])
def test_an_unexpected_failure_fails_the_job_with_its_reason(tmp_path, failure, status, submission):
    async def scenario():
        manager = JobManager(SqliteJobStore(tmp_path / "jobs.db"), max_running=1, max_queued=1)
        job = manager.submit(submission(FakeRun("perf", failure=failure)))[0]
        return await manager.wait(job.id, ANONYMOUS)

    job = asyncio.run(scenario())
    assert job.status == status and "RuntimeError: boom" in job.error


def test_a_key_the_target_echoes_in_an_error_is_masked_in_the_job(tmp_path, submission):
    key = "sk-echoed-0123456789"
    echoing = FakeRun("perf", failure=RunError(f"shard 0 failed: HTTP 401: invalid api key {key}"))

    async def scenario():
        manager = JobManager(SqliteJobStore(tmp_path / "jobs.db"), max_running=1, max_queued=1)
        job, _ = manager.submit(dataclasses.replace(submission(echoing), secrets=(key, "EMPTY")))
        return await manager.wait(job.id, ANONYMOUS)

    assert asyncio.run(scenario()).error == "shard 0 failed: HTTP 401: invalid api key ***"


def test_the_service_log_gets_one_line_per_job_event(tmp_path, submission, caplog):
    key = "sk-echoed-0123456789"

    async def scenario():
        manager = JobManager(SqliteJobStore(tmp_path / "jobs.db"), max_running=1, max_queued=1)
        good = manager.submit(submission(FakeRun("perf")))[0]
        bad = manager.submit(dataclasses.replace(submission(FakeRun("eval", failure=RunError(f"no {key}"))),
                                                 secrets=(key,)))[0]
        await manager.wait(bad.id, ANONYMOUS)
        return good.id, bad.id

    with caplog.at_level(logging.INFO, logger="serve_app.jobs"):
        good, bad = asyncio.run(scenario())
    assert [record.getMessage() for record in caplog.records] == [
        f"job {good} submitted perf job for model m", f"job {good} started",
        f"job {bad} submitted perf job for model m", f"job {good} succeeded",
        f"job {bad} started", f"job {bad} failed: no ***",
    ]


def test_each_principal_sees_only_its_own_jobs_and_an_admin_sees_all(tmp_path, submission):
    team_a, team_b, ops = Principal("a"), Principal("b"), Principal("ops", admin=True)

    async def scenario():
        manager = JobManager(SqliteJobStore(tmp_path / "jobs.db"), max_running=2, max_queued=5)
        job_a = manager.submit(submission(FakeRun("perf"), owner="a"))[0]
        job_b = manager.submit(submission(FakeRun("perf"), owner="b"))[0]
        assert manager.get(job_a.id, team_a).owner == "a"
        for call in (manager.get, manager.wait, manager.cancel):
            with pytest.raises(JobNotFound):
                result = call(job_a.id, team_b)
                if asyncio.iscoroutine(result):
                    await result
        assert [job.id for job in manager.list(team_b)[0]] == [job_b.id]
        assert {job.id for job in manager.list(ops)[0]} == {job_a.id, job_b.id}
        assert (await manager.cancel(job_b.id, ops)).status == "cancelled"
        await manager.wait(job_a.id, team_a)

    asyncio.run(scenario())


def test_a_principal_at_its_own_limits_is_refused_while_others_still_run(tmp_path, submission):
    async def scenario():
        manager = JobManager(SqliteJobStore(tmp_path / "jobs.db"), max_running=4, max_queued=10,
                             max_running_per_principal=1, max_queued_per_principal=1)
        running = manager.submit(submission(FakeRun("perf", total=10_000), owner="a"))[0]
        queued = manager.submit(submission(FakeRun("perf"), owner="a"))[0]
        with pytest.raises(QueueFull, match="principal 'a' .*max_queued_jobs_per_principal=1") as refused:
            manager.submit(submission(FakeRun("perf"), owner="a"))
        assert refused.value.retry_after_s == 5.0
        # Team b is not held up by team a's queue: its job starts at once, ahead of a's queued one.
        other = manager.submit(submission(FakeRun("perf", total=10_000), owner="b"))[0]
        assert [manager.get(job.id, ANONYMOUS).status for job in (running, queued, other)] == [
            "running", "queued", "running"]
        await manager.cancel(running.id, ANONYMOUS)
        assert manager.get(queued.id, ANONYMOUS).status in ("running", "succeeded")
        await manager.cancel(other.id, ANONYMOUS)
        await manager.wait(queued.id, ANONYMOUS)

    asyncio.run(scenario())


def test_a_partly_failed_run_fails_the_job_and_keeps_what_succeeded(tmp_path, submission):
    from serve_app.errors import PartialRunError
    from serve_app.schemas import EvalResponse

    scored = EvalResponse(status="partial", result={"gsm8k": {}}, scores={"gsm8k": 0.75},
                          failures={"ceval": "ValueError: bad data"}, dataset_sources={}, output_dir="/o")

    async def scenario():
        manager = JobManager(SqliteJobStore(tmp_path / "jobs.db"), max_running=1, max_queued=1)
        run = FakeRun("eval", failure=PartialRunError("evaluation failed (ceval: ValueError: bad data)", scored))
        job, _ = manager.submit(submission(run))
        return await manager.wait(job.id, ANONYMOUS)

    job = asyncio.run(scenario())
    assert job.status == "failed" and job.error.startswith("evaluation failed (ceval")
    assert job.result["status"] == "partial" and job.result["scores"] == {"gsm8k": 0.75}
    assert job.result["failures"] == {"ceval": "ValueError: bad data"}


def test_new_limits_apply_in_place_and_start_queued_jobs(tmp_path, submission):
    async def scenario():
        manager = JobManager(SqliteJobStore(tmp_path / "jobs.db"), max_running=1, max_queued=5)
        first = manager.submit(submission(FakeRun("perf", total=10_000)))[0]
        second = manager.submit(submission(FakeRun("perf", total=10_000)))[0]
        assert manager.get(second.id, ANONYMOUS).status == "queued"
        manager.configure(max_running=2, max_queued=5)
        statuses = [manager.get(job.id, ANONYMOUS).status for job in (first, second)]
        for job in (first, second):
            await manager.cancel(job.id, ANONYMOUS)
        return statuses

    assert asyncio.run(scenario()) == ["running", "running"]


def test_progress_says_which_phase_a_job_is_in(tmp_path, submission):
    async def scenario():
        manager = JobManager(SqliteJobStore(tmp_path / "jobs.db"), max_running=1, max_queued=5)
        running = manager.submit(dataclasses.replace(submission(FakeRun("perf", total=10_000)), planned_total=40))[0]
        queued = manager.submit(dataclasses.replace(submission(FakeRun("perf", total=2)), planned_total=20))[0]
        phases = {"queued": manager.get(queued.id, ANONYMOUS).progress,
                  "started": manager.get(running.id, ANONYMOUS).progress}
        await manager.cancel(running.id, ANONYMOUS)
        phases["ended"] = (await manager.wait(queued.id, ANONYMOUS)).progress
        return phases

    phases = asyncio.run(scenario())
    assert phases["queued"] == {"phase": "queued", "done": 0, "total": 20, "percent": 0.0}
    assert phases["started"]["phase"] == "preparing" and phases["started"]["total"] == 40
    assert phases["ended"]["phase"] == "done" and phases["ended"]["percent"] == 100.0
