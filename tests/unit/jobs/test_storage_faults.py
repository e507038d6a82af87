"""A full or unwritable outputs root: submissions are refused with the reason, and no job hangs or vanishes."""

import asyncio
import sqlite3

import pytest
from fastapi.testclient import TestClient

from serve_app.api import create_api
from serve_app.errors import StorageError
from serve_app.jobs.manager import JobManager, Submission
from serve_app.jobs.store import SqliteJobStore
from serve_app.principals import ANONYMOUS
from tests.unit.fakes import FakeRun, ManagerBackend

PERF = {"model": "m", "url": "http://127.0.0.1:8801/v1/chat/completions", "number": 4}


def submission(output_dir, run=None):
    return Submission(kind="perf", model="m", request_view={}, output_dir=str(output_dir), run=run or FakeRun("perf"))


def test_an_unwritable_run_directory_is_refused_before_a_job_exists(tmp_path):
    (tmp_path / "blocked").write_text("a file where a directory should be")
    store = SqliteJobStore(tmp_path / "jobs.db")

    async def scenario():
        manager = JobManager(store, max_running=1, max_queued=1)
        with pytest.raises(StorageError) as refused:
            manager.submit(submission(tmp_path / "blocked" / "run"))
        return refused.value

    error = asyncio.run(scenario())
    assert str(error) == f"the run directory {tmp_path}/blocked/run cannot be written: Not a directory"
    assert not error.full
    assert store.list() == ([], 0)


def test_a_full_disk_answers_507_and_the_service_keeps_serving(tmp_path, monkeypatch):
    def disk_full(self, record):
        raise sqlite3.OperationalError("database or disk is full")

    backend = ManagerBackend(tmp_path)
    with TestClient(create_api(backend), raise_server_exceptions=False) as client:
        with monkeypatch.context() as patched:
            patched.setattr(SqliteJobStore, "_insert", disk_full)
            response = client.post("/api/v1/perf", json=PERF)
        assert response.status_code == 507
        assert response.json()["message"] == (
            f"the job store {tmp_path}/jobs.sqlite3 cannot be written: database or disk is full"
        )
        assert client.get("/health").json()["status"] == "ok"
        assert client.post("/api/v1/perf", json=PERF).status_code == 200  # space is back
        assert client.get("/api/v1/jobs").json()["total"] == 1  # the job that could be stored


def test_a_job_whose_ending_cannot_be_stored_still_ends_for_whoever_waits(tmp_path, monkeypatch):
    store = SqliteJobStore(tmp_path / "jobs.db")
    save = store.update

    def update_until_full(job_id, **fields):
        if fields.get("status") == "succeeded":
            raise StorageError("the job store cannot be written: database or disk is full", full=True)
        return save(job_id, **fields)

    monkeypatch.setattr(store, "update", update_until_full)

    async def scenario():
        manager = JobManager(store, max_running=1, max_queued=1)
        job, _ = manager.submit(submission(tmp_path / "run"))
        return (await asyncio.wait_for(manager.wait(job.id, ANONYMOUS), 5), manager.get(job.id, ANONYMOUS),
                manager.list(ANONYMOUS)[0])

    waited, seen, (listed,) = asyncio.run(scenario())
    assert waited.status == seen.status == listed.status == "succeeded" and waited.finished_at is not None
