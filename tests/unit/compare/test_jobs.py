import pytest

from serve_app.compare.jobs import JobNotSucceeded, compare_jobs
from serve_app.errors import RequestError
from serve_app.jobs.store import JobRecord
from tests.unit.compare.samples import eval_result, perf_point

EVAL_REQUEST = {"model": "m", "datasets": ["gsm8k"], "limit": 20, "api_url": "http://a/v1"}
PERF_REQUEST = {"model": "m", "url": "http://a/v1/chat/completions", "number": 100, "parallel": 4}


def job(job_id, kind, result, request, output_dir="/nowhere", status="succeeded"):
    return JobRecord(id=job_id, kind=kind, status=status, model="m", request=request, output_dir=str(output_dir),
                     created_at=0.0, result=result)


def eval_job(tmp_path, job_id, scores, **request):
    out = tmp_path / job_id
    return job(job_id, "eval", eval_result(out, {"gsm8k": {"main": scores}}), {**EVAL_REQUEST, **request}, out)


def test_two_evals_of_the_same_samples_compare_with_a_verdict(tmp_path):
    comparison = compare_jobs(eval_job(tmp_path, "job-b", {i: 0.0 for i in range(20)}),
                              eval_job(tmp_path, "job-c", {i: 1.0 for i in range(20)}), "5%")
    assert comparison.comparable and comparison.verdict == "better" and comparison.reasons == []
    assert (comparison.confidence, comparison.resamples) == (0.95, 2000)


def test_evals_of_different_limits_are_not_comparable_and_say_why(tmp_path):
    comparison = compare_jobs(eval_job(tmp_path, "job-b", {i: 1.0 for i in range(20)}),
                              eval_job(tmp_path, "job-c", {i: 1.0 for i in range(10)}, limit=10,
                                       api_url="http://b/v1"), "5%")
    assert not comparison.comparable and comparison.verdict == "not comparable"
    assert comparison.reasons == ["limit differs (20 in the baseline, 10 in the candidate)"]
    assert [d.field for d in comparison.differences] == ["limit"]  # the endpoint is the point, not a difference
    assert comparison.scores[0].paired == 10 and comparison.scores[0].unpaired.baseline == 10  # still shown


def test_evals_without_review_files_are_not_comparable(tmp_path):
    result = eval_result(tmp_path / "elsewhere", {"gsm8k": {"main": {0: 1.0}}})
    comparison = compare_jobs(job("job-b", "eval", result, EVAL_REQUEST), job("job-c", "eval", result, EVAL_REQUEST),
                              "5%")
    assert comparison.verdict == "not comparable"
    assert comparison.reasons == ["gsm8k: no sample was scored in both jobs"]


def test_perf_runs_compare_against_the_tolerance_and_a_different_load_is_not_comparable():
    baseline = job("job-b", "perf", {"results": {"p": perf_point(100.0, 50.0)}}, PERF_REQUEST)
    slower = job("job-c", "perf", {"results": {"p": perf_point(150.0, 50.0)}}, PERF_REQUEST)
    comparison = compare_jobs(baseline, slower, "10%")
    assert comparison.comparable and comparison.verdict == "worse" and comparison.tolerance_pct == 10
    assert compare_jobs(baseline, baseline, "10%").verdict == "within tolerance"
    other_load = job("job-d", "perf", {"results": {"q": perf_point(100.0, 50.0)}}, {**PERF_REQUEST, "parallel": 8})
    comparison = compare_jobs(baseline, other_load, "10%")
    assert comparison.verdict == "not comparable"
    assert comparison.reasons == ["parallel differs (4 in the baseline, 8 in the candidate)",
                                  "the test points differ (only in the baseline: ['p'], only in the candidate: ['q'])",
                                  "nothing was measured in both jobs"]


def test_only_two_succeeded_jobs_of_one_kind_compare(tmp_path):
    evaluation = eval_job(tmp_path, "job-b", {0: 1.0})
    perf = job("job-c", "perf", {"results": {}}, PERF_REQUEST)
    with pytest.raises(RequestError, match="job job-b is an eval job and job job-c a perf job"):
        compare_jobs(evaluation, perf, "5%")
    running = job("job-r", "eval", None, EVAL_REQUEST, status="running")
    with pytest.raises(JobNotSucceeded, match="job job-r is running; only succeeded jobs compare"):
        compare_jobs(evaluation, running, "5%")
    with pytest.raises(RequestError, match="tolerance is a percentage"):
        compare_jobs(perf, perf, "0.05")
