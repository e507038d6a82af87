"""The store's history queries: a job's summary and scores written when it succeeds, the newest score per model and
dataset, a model's history newest first, and a store from before summaries brought up to date."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import pytest

from serve_app.jobs.store import SqliteJobStore
from tests.unit.compare.samples import perf_point


@pytest.fixture
def store(tmp_path):
    s = SqliteJobStore(tmp_path / "jobs.sqlite3")
    yield s
    s.close()


def finished(store, model, scores=None, *, owner="default", at=1.0, status="succeeded", results=None):
    kind = "eval" if scores is not None else "perf"
    job = store.create(kind=kind, model=model, request={"model": model}, output_dir="/o", owner=owner)
    result = {"scores": scores, "result": {}} if kind == "eval" else {"results": results or {}}
    return store.update(job.id, status=status, finished_at=at, result=result)


def test_the_leaderboard_keeps_the_newest_score_of_each_model_on_each_dataset(store):
    finished(store, "a", {"gsm8k": 0.5, "iquiz": 0.9}, at=1)
    newest_a = finished(store, "a", {"gsm8k": 0.7}, at=3)
    b = finished(store, "b", {"gsm8k": 0.6}, at=2)
    finished(store, "b", {"gsm8k": 0.99}, at=4, status="failed")  # a failed eval's partial scores do not count
    rows = [(s.model, s.dataset, s.score, s.job_id) for s in store.latest_scores()]
    assert rows == [("a", "gsm8k", 0.7, newest_a.id), ("b", "gsm8k", 0.6, b.id), ("a", "iquiz", 0.9, rows[2][3])]
    assert [s.model for s in store.latest_scores(models=["b"])] == ["b"]
    assert {s.dataset for s in store.latest_scores(datasets=["iquiz"])} == {"iquiz"}


def test_the_leaderboard_of_an_owner_is_made_of_its_own_jobs(store):
    finished(store, "a", {"gsm8k": 0.5}, owner="team-a", at=1)
    finished(store, "a", {"gsm8k": 0.9}, owner="team-b", at=2)
    assert [s.score for s in store.latest_scores(owner="team-a")] == [0.5]
    assert [s.score for s in store.latest_scores()] == [0.9]


def test_a_models_history_is_newest_first_paged_with_scores_and_key_perf_metrics(store):
    old = finished(store, "a", {"gsm8k": 0.5}, at=1)
    perf = finished(store, "a", results={"parallel_1_number_10": perf_point(ttft_p99=80.0, req_per_s=12.5)}, at=2)
    finished(store, "other", {"gsm8k": 0.1}, at=3)
    jobs, total = store.history(model="a")
    assert total == 2 and [job.id for job in jobs] == [perf.id, old.id]
    assert jobs[1].summary == {"scores": {"gsm8k": 0.5}}
    point = jobs[0].summary["points"]["parallel_1_number_10"]
    assert (point["Req Throughput (req/s)"], point["TTFT (ms)@99%"], point["TTFT (ms)@50%"]) == (12.5, 80.0, 40.0)
    page, total = store.history(model="a", kind="eval", limit=1)
    assert total == 1 and [job.id for job in page] == [old.id]
    assert store.history(model="a", offset=1)[0][0].id == old.id


def test_a_store_from_before_summaries_gains_them_for_its_succeeded_jobs(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    with closing(SqliteJobStore(path)) as store:
        job = finished(store, "a", {"gsm8k": 0.5})
        finished(store, "a", {"gsm8k": 0.9}, at=2, status="failed")
    with closing(sqlite3.connect(path)) as conn:  # as an older version left it
        conn.executescript("DROP TABLE summaries; DROP TABLE scores;")
    with closing(SqliteJobStore(path)) as store:
        assert [(s.job_id, s.score) for s in store.latest_scores()] == [(job.id, 0.5)]
        jobs, total = store.history(model="a")
        assert total == 1 and jobs[0].summary == {"scores": {"gsm8k": 0.5}}
        with closing(sqlite3.connect(path)) as conn:
            (summary,) = conn.execute("SELECT summary FROM summaries WHERE job_id = ?", (job.id,)).fetchone()
        assert json.loads(summary) == {"scores": {"gsm8k": 0.5}}
