"""GET /api/v1/compare, /leaderboard and /models/<model>/history over the real job manager and store, with runs that
leave evalscope's review files: what a caller sees, and the 4xx that say why not."""

import pytest
from fastapi.testclient import TestClient

from serve_app.api import create_api
from serve_app.errors import RunError
from serve_app.principals import Principal
from tests.unit.compare.samples import ScoredRun, perf_point
from tests.unit.fakes import FakeRun, ManagerBackend

TEAMS = {"team-a": Principal("a"), "team-b": Principal("b"), "ops": Principal("ops", admin=True)}
EVAL = {"model": "m", "api_url": "http://127.0.0.1:8801/v1", "datasets": ["gsm8k"], "limit": 20}
PERF = {"model": "m", "url": "http://127.0.0.1:8801/v1/chat/completions", "number": 10}
# The model decides what its run scores: sample i right when i is below its count.
RIGHT_ANSWERS = {"m": 10, "org/better": 20, "worse": 0}


def outputs(kind, request):
    if kind == "perf":
        return {"parallel_1_number_10": perf_point(ttft_p99=100.0, req_per_s=10.0)}
    right = RIGHT_ANSWERS[request.model]
    return {"gsm8k": {"main": {i: float(i < right) for i in range(20)}}}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def api(tmp_path):
    backend = ManagerBackend(tmp_path, make_run=lambda kind, request: ScoredRun(kind, outputs(kind, request)))
    with TestClient(create_api(backend, tokens=TEAMS)) as client:
        yield client


def run(api, path, body, token="team-a"):
    response = api.post(f"{path}?wait=false", json=body, headers=bearer(token))
    job_id = response.json()["job_id"]
    api.get(f"/api/v1/jobs/{job_id}/events", headers=bearer(token))  # follows the job to its end
    return job_id


def compare(api, baseline, candidate, token="team-a", **params):
    return api.get("/api/v1/compare", params={"baseline": baseline, "candidate": candidate, **params},
                   headers=bearer(token))


def test_two_evals_of_one_model_compare_with_no_significant_change_and_a_better_one_is_better(api):
    first, second = run(api, "/api/v1/eval", EVAL), run(api, "/api/v1/eval", EVAL)
    better = run(api, "/api/v1/eval", {**EVAL, "model": "org/better"})
    same = compare(api, first, second).json()
    assert same["comparable"] and same["verdict"] == "no significant change"
    assert [(row["subset"], row["paired"]) for row in same["scores"]] == [(None, 20), ("main", 20)]
    improved = compare(api, first, better).json()
    assert improved["verdict"] == "better" and improved["differences"] == []
    assert improved["scores"][0]["difference"] == pytest.approx(0.5)


def test_two_perf_runs_compare_against_the_tolerance_given(api):
    first, second = run(api, "/api/v1/perf", PERF), run(api, "/api/v1/perf", {**PERF, "number": 20})
    within = compare(api, first, first, tolerance="1%").json()
    assert within["verdict"] == "within tolerance" and within["tolerance_pct"] == 1.0
    other_load = compare(api, first, second).json()
    assert other_load["verdict"] == "not comparable" and other_load["reasons"][0].startswith("number differs")
    bad = compare(api, first, first, tolerance="0.05")
    assert bad.status_code == 400 and "tolerance is a percentage" in bad.json()["message"]


def test_another_principals_job_is_not_found_and_an_admin_compares_any(api):
    mine, theirs = run(api, "/api/v1/eval", EVAL, "team-a"), run(api, "/api/v1/eval", EVAL, "team-b")
    response = compare(api, mine, theirs, token="team-a")
    assert response.status_code == 404 and response.json()["message"] == f"no job {theirs!r}"
    assert compare(api, mine, theirs, token="ops").status_code == 200


def test_jobs_of_two_kinds_are_a_400_and_a_job_that_did_not_succeed_a_409(tmp_path):
    backend = ManagerBackend(tmp_path, make_run=lambda kind, request: (
        FakeRun(kind, failure=RunError("target down")) if request.model == "worse" else
        ScoredRun(kind, outputs(kind, request))))
    with TestClient(create_api(backend, tokens=TEAMS)) as api:
        evaluation, perf = run(api, "/api/v1/eval", EVAL), run(api, "/api/v1/perf", PERF)
        response = compare(api, evaluation, perf)
        assert response.status_code == 400
        assert response.json()["message"] == (f"job {evaluation} is an eval job and job {perf} a perf job; compare "
                                              "two jobs of the same kind")
        failed = run(api, "/api/v1/eval", {**EVAL, "model": "worse"})
        response = compare(api, evaluation, failed)
        assert response.status_code == 409
        assert response.json()["message"] == f"job {failed} is failed; only succeeded jobs compare"


def test_the_leaderboard_shows_each_models_newest_score_that_the_caller_may_see(api):
    run(api, "/api/v1/eval", {**EVAL, "model": "worse"})
    newest = run(api, "/api/v1/eval", {**EVAL, "model": "org/better"})
    run(api, "/api/v1/eval", EVAL, "team-b")
    entries = api.get("/api/v1/leaderboard", headers=bearer("team-a")).json()["entries"]
    assert [(e["model"], e["dataset"], e["score"]) for e in entries] == [("org/better", "gsm8k", 1.0),
                                                                        ("worse", "gsm8k", 0.0)]
    assert entries[0]["job_id"] == newest and entries[0]["links"]["job"] == f"/api/v1/jobs/{newest}"
    everyone = api.get("/api/v1/leaderboard", params={"models": "m, worse", "datasets": "gsm8k"},
                       headers=bearer("ops")).json()["entries"]
    assert sorted(e["model"] for e in everyone) == ["m", "worse"]
    assert api.get("/api/v1/leaderboard", params={"datasets": "iquiz"}, headers=bearer("ops")).json() == {
        "entries": []}


def test_a_models_history_is_newest_first_paged_and_mine_narrows_an_admins(api):
    evaluation = run(api, "/api/v1/eval", {**EVAL, "model": "org/better"})
    perf = run(api, "/api/v1/perf", {**PERF, "model": "org/better"})
    run(api, "/api/v1/eval", {**EVAL, "model": "org/better"}, "ops")
    history = api.get("/api/v1/models/org/better/history", headers=bearer("team-a")).json()
    assert history["total"] == 2 and [job["job_id"] for job in history["jobs"]] == [perf, evaluation]
    assert history["jobs"][1]["scores"] == {"gsm8k": 1.0}
    assert history["jobs"][0]["perf"]["parallel_1_number_10"]["TTFT (ms)@99%"] == 100.0
    page = api.get("/api/v1/models/org%2Fbetter/history", params={"kind": "eval", "limit": 1},
                   headers=bearer("ops")).json()
    assert page["total"] == 2 and page["jobs"][0]["owner"] == "ops"
    mine = api.get("/api/v1/models/org/better/history", params={"mine": "true"}, headers=bearer("ops")).json()
    assert [job["owner"] for job in mine["jobs"]] == ["ops"]
    bad = api.get("/api/v1/models/m/history", params={"kind": "chat"}, headers=bearer("ops"))
    assert bad.status_code == 400 and "kind" in bad.json()["message"]
