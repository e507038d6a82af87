"""The job store on a real SQLite file: round trips, listing, updates, idempotency, restarts and threads."""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from serve_app.jobs.store import STATUSES, TERMINAL, DuplicateKey, JobRecord, SqliteJobStore


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "outputs" / "state" / "jobs.sqlite3"


@pytest.fixture
def store(db: Path):
    s = SqliteJobStore(db)
    yield s
    s.close()


def make(store: SqliteJobStore, kind: str = "eval", model: str = "m1", **kw) -> JobRecord:
    return store.create(kind=kind, model=model, request={"model": model}, output_dir=f"/out/{model}", **kw)


def test_constants_are_consistent():
    assert TERMINAL < set(STATUSES)
    assert set(STATUSES) - TERMINAL == {"queued", "running"}


def test_create_and_get_round_trip_every_field(store: SqliteJobStore, db: Path):
    assert db.exists()  # parent directories were created
    request = {"model": "qwen", "api_key": "***", "datasets": ["gsm8k"], "nested": {"n": 1, "ü": "ß"}}
    job = store.create(
        kind="perf", model="qwen", request=request, output_dir="/out/x", idempotency_key="k1", body_digest="d" * 64
    )
    assert job.id.startswith("job-") and len(job.id) == 16
    int(job.id[4:], 16)
    assert job.status == "queued" and job.progress == {} and job.result is None and job.error is None
    assert job.started_at is None and job.finished_at is None
    assert abs(job.created_at - time.time()) < 5

    updated = store.update(
        job.id,
        status="failed",
        started_at=1.5,
        finished_at=2.5,
        progress={"done": 3, "total": 10, "percent": 30.0, "req_per_s": 12.5},
        result={"report": [1, 2, {"a": None}]},
        error="boom",
    )
    fetched = store.get(job.id)
    assert fetched == updated
    assert fetched == JobRecord(
        id=job.id,
        kind="perf",
        status="failed",
        model="qwen",
        request=request,
        output_dir="/out/x",
        created_at=job.created_at,
        started_at=1.5,
        finished_at=2.5,
        progress={"done": 3, "total": 10, "percent": 30.0, "req_per_s": 12.5},
        result={"report": [1, 2, {"a": None}]},
        error="boom",
        idempotency_key="k1",
        body_digest="d" * 64,
    )
    assert store.find_by_idempotency_key("default", "k1") == fetched


def test_get_and_find_missing_return_none(store: SqliteJobStore):
    assert store.get("job-000000000000") is None
    assert store.find_by_idempotency_key("default", "nope") is None


def test_create_rejects_unknown_kind(store: SqliteJobStore):
    with pytest.raises(ValueError):
        make(store, kind="train")


def test_ids_are_unique(store: SqliteJobStore):
    ids = {make(store).id for _ in range(50)}
    assert len(ids) == 50


def test_list_newest_first_with_filters_and_pagination(store: SqliteJobStore):
    jobs = []
    for i in range(7):
        jobs.append(make(store, kind="eval" if i % 2 == 0 else "perf", model="a" if i < 4 else "b"))
        time.sleep(0.002)  # distinct created_at, so the order is by time and not only by id
    store.update(jobs[1].id, status="running")
    store.update(jobs[5].id, status="succeeded")
    newest_first = [j.id for j in reversed(jobs)]

    items, total = store.list()
    assert total == 7 and [j.id for j in items] == newest_first

    items, total = store.list(kind="eval")
    assert total == 4 and [j.id for j in items] == [jobs[i].id for i in (6, 4, 2, 0)]
    items, total = store.list(model="b")
    assert total == 3 and [j.id for j in items] == [jobs[i].id for i in (6, 5, 4)]
    items, total = store.list(status="running")
    assert total == 1 and items[0].id == jobs[1].id
    items, total = store.list(kind="perf", model="b", status="succeeded")
    assert total == 1 and items[0].id == jobs[5].id
    assert store.list(kind="perf", model="nobody") == ([], 0)

    page1, total1 = store.list(limit=3)
    page2, total2 = store.list(limit=3, offset=3)
    page3, total3 = store.list(limit=3, offset=6)
    assert total1 == total2 == total3 == 7
    assert [j.id for j in page1 + page2 + page3] == newest_first
    assert len(page3) == 1
    assert store.list(limit=3, offset=50) == ([], 7)


def test_list_breaks_created_at_ties_by_id_desc(store: SqliteJobStore, db: Path):
    jobs = [make(store) for _ in range(5)]
    with closing(sqlite3.connect(db)) as conn, conn:  # force identical timestamps
        conn.execute("UPDATE jobs SET created_at = 100.0")
    items, _ = store.list()
    assert [j.id for j in items] == sorted((j.id for j in jobs), reverse=True)


def test_count_by_status(store: SqliteJobStore):
    a, b, _ = make(store), make(store), make(store)
    store.update(a.id, status="running")
    store.update(b.id, status="running")
    assert store.count(status="running") == 2
    assert store.count(status="queued") == 1
    assert store.count(status="failed") == 0


def test_update_progress_then_result_and_status(store: SqliteJobStore):
    job = make(store)
    store.update(job.id, status="running", started_at=10.0)
    store.update(job.id, progress={"done": 1, "total": 4, "percent": 25.0})
    mid = store.update(job.id, progress={"done": 4, "total": 4, "percent": 100.0})
    assert mid.status == "running" and mid.started_at == 10.0 and mid.progress["done"] == 4
    done = store.update(job.id, status="succeeded", finished_at=20.0, result={"score": 0.9})
    assert done.status == "succeeded" and done.result == {"score": 0.9} and done.progress["percent"] == 100.0
    assert store.get(job.id) == done
    # Clearing a value with None works, and progress stays a dict.
    cleared = store.update(job.id, result=None, progress=None)
    assert cleared.result is None and cleared.progress == {}


def test_update_with_no_fields_returns_the_record(store: SqliteJobStore):
    job = make(store)
    assert store.update(job.id) == job


def test_update_errors(store: SqliteJobStore):
    job = make(store)
    with pytest.raises(KeyError):
        store.update("job-ffffffffffff", status="running")
    with pytest.raises(KeyError):
        store.update("job-ffffffffffff")
    with pytest.raises(ValueError):
        store.update(job.id, status="done")
    with pytest.raises(ValueError):
        store.update(job.id, model="other")  # not updatable
    with pytest.raises(ValueError):
        store.update(job.id, colour="red")
    assert store.get(job.id) == job  # nothing changed


def test_duplicate_idempotency_key_raises_with_first_job(store: SqliteJobStore):
    first = make(store, idempotency_key="same", body_digest="abc")
    with pytest.raises(DuplicateKey) as info:
        make(store, model="other", idempotency_key="same", body_digest="xyz")
    assert info.value.existing == first
    assert store.list() == ([first], 1)
    # Jobs without a key never collide.
    make(store)
    make(store)
    assert store.list()[1] == 3


def test_data_survives_restart(db: Path):
    store = SqliteJobStore(db)
    job = make(store, idempotency_key="k")
    done = store.update(job.id, status="succeeded", finished_at=5.0, result={"ok": True})
    store.close()

    reopened = SqliteJobStore(db)
    try:
        assert reopened.get(job.id) == done
        assert reopened.find_by_idempotency_key("default", "k") == done
        assert reopened.list() == ([done], 1)
        with pytest.raises(DuplicateKey):  # the unique index survives as well
            make(reopened, idempotency_key="k")
    finally:
        reopened.close()


def test_interrupt_unfinished_on_restart(db: Path):
    store = SqliteJobStore(db)
    queued, running, succeeded, failed, cancelled = (make(store) for _ in range(5))
    store.update(running.id, status="running", started_at=1.0)
    finished = {
        succeeded.id: store.update(succeeded.id, status="succeeded", finished_at=2.0, result={"r": 1}),
        failed.id: store.update(failed.id, status="failed", finished_at=3.0, error="bad"),
        cancelled.id: store.update(cancelled.id, status="cancelled", finished_at=4.0),
    }
    store.close()

    store = SqliteJobStore(db)
    try:
        before = time.time()
        ids = store.interrupt_unfinished("service restarted")
        assert sorted(ids) == sorted([queued.id, running.id])
        for job_id in ids:
            job = store.get(job_id)
            assert job.status == "interrupted" and job.error == "service restarted"
            assert job.finished_at is not None and job.finished_at >= before
        assert store.get(running.id).started_at == 1.0
        for job_id, record in finished.items():
            assert store.get(job_id) == record
        assert store.interrupt_unfinished("again") == []  # nothing left to interrupt
        assert store.count(status="interrupted") == 2
    finally:
        store.close()


def test_concurrent_creates_lose_nothing(store: SqliteJobStore):
    per_thread = 100
    errors: list[BaseException] = []
    created: list[list[str]] = [[], []]

    def worker(n: int) -> None:
        try:
            for i in range(per_thread):
                job = make(store, kind="eval" if n == 0 else "perf", model=f"t{n}", idempotency_key=f"{n}-{i}")
                created[n].append(job.id)
                store.update(job.id, progress={"done": i})
                store.list(limit=5)
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    items, total = store.list(limit=1000)
    assert total == 2 * per_thread
    assert {j.id for j in items} == set(created[0]) | set(created[1])
    assert store.list(kind="perf")[1] == per_thread


def test_database_is_in_wal_mode(store: SqliteJobStore, db: Path):
    make(store)
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_store_from_before_owners_gives_its_jobs_to_the_default_principal(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as old:
        old.executescript(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL, model TEXT NOT NULL,"
            " request TEXT NOT NULL, output_dir TEXT NOT NULL, created_at REAL NOT NULL, started_at REAL,"
            " finished_at REAL, progress TEXT NOT NULL DEFAULT '{}', result TEXT, error TEXT, idempotency_key TEXT,"
            " body_digest TEXT);"
            "CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key);"
            "INSERT INTO jobs (id, kind, status, model, request, output_dir, created_at, idempotency_key)"
            " VALUES ('job-000000000001', 'eval', 'succeeded', 'm', '{}', '/o', 1.0, 'k');"
        )
    old.close()
    store = SqliteJobStore(path)
    assert store.get("job-000000000001").owner == "default"
    assert store.find_by_idempotency_key("default", "k").id == "job-000000000001"
    # The key is now per principal: another one may use it.
    other = store.create(kind="eval", model="m", request={}, output_dir="/p", idempotency_key="k", owner="team-b")
    assert store.list(owner="team-b") == ([other], 1)
