"""Resuming an eval: which jobs may, the request it runs again, and the files a dataset takes over."""

import pytest

from serve_app.eval.resume import NotResumable, dataset_files, resume_request
from serve_app.eval.runner import _take_over_predictions
from serve_app.errors import RequestError
from serve_app.jobs.store import JobRecord
from serve_app.schemas import ResumeRequest

REQUEST = {"model": "m", "datasets": ["gsm8k"], "api_url": "http://h:1/v1", "api_key": "**********", "limit": 5}


JUDGED = {**REQUEST, "judge": {"strategy": "llm", "models": [
    {"model_id": "j1", "api_url": "http://j:1/v1", "api_key": "**********"},
    {"model_id": "j2", "api_url": "http://j:2/v1", "api_key": "**********"}]}}


def job(status="cancelled", kind="eval", request=REQUEST) -> JobRecord:
    return JobRecord(id="job-0123456789ab", kind=kind, status=status, model="m", request=request, output_dir="/o",
                     created_at=0.0)


def test_the_resumed_request_is_the_jobs_own_with_the_key_given_again():
    request = resume_request(job("interrupted"), ResumeRequest(api_key="sk-new"))
    assert (request.datasets, request.limit, request.resume_from) == (["gsm8k"], 5, "job-0123456789ab")
    assert request.api_key.get_secret_value() == "sk-new"


def test_a_judged_eval_resumes_with_each_judges_key_given_again_in_order():
    request = resume_request(job(request=JUDGED), ResumeRequest(api_key="k", judge_api_keys=["sk-j1", "EMPTY"]))
    assert request.judge_api_keys() == ["sk-j1", "EMPTY"]
    assert [model.model_id for model in request.judge.models] == ["j1", "j2"]


@pytest.mark.parametrize("request_, keys, message", [
    (JUDGED, ["sk-j1"], "had 2 judge model(s) and 1 judge_api_keys were given"),
    (REQUEST, ["sk-j1"], "had 0 judge model(s) and 1 judge_api_keys were given"),
])
def test_judge_keys_that_do_not_match_the_judges_are_a_400(request_, keys, message):
    with pytest.raises(RequestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resume_request(job(request=request_), ResumeRequest(judge_api_keys=keys))


@pytest.mark.parametrize("status, kind, message", [
    ("succeeded", "eval", "job job-0123456789ab is succeeded; only a job that failed, cancelled or interrupted"),
    ("running", "eval", "job job-0123456789ab is running; only a job that"),
    ("failed", "perf", "job job-0123456789ab is a perf job; only eval jobs resume"),
])
def test_only_an_eval_that_did_not_finish_resumes(status, kind, message):
    with pytest.raises(NotResumable, match=message):
        resume_request(job(status, kind), ResumeRequest(api_key="k"))


def write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f'{{"n": {i}}}\n' for i in range(lines)))


def test_a_dataset_takes_over_only_its_own_files_from_a_combined_run(tmp_path):
    previous, work_dir = tmp_path / "previous", tmp_path / "new"
    write(previous / "predictions/m/gsm8k_main.jsonl", 3)
    write(previous / "reviews/m/gsm8k_main.jsonl", 3)
    write(previous / "predictions/m/gsm8k_v_main.jsonl", 4)  # another benchmark whose name starts the same
    write(previous / "predictions/m/iquiz_IQ.jsonl", 2)
    write(previous / "configs/task_config.yaml", 1)
    assert [path.relative_to(previous).as_posix() for path in dataset_files(previous, "gsm8k")] == [
        "predictions/m/gsm8k_main.jsonl", "reviews/m/gsm8k_main.jsonl"]
    assert _take_over_predictions(previous, "gsm8k", work_dir) == 3
    assert sorted(path.relative_to(work_dir).as_posix() for path in work_dir.rglob("*.*")) == [
        "configs/task_config.yaml", "predictions/m/gsm8k_main.jsonl", "reviews/m/gsm8k_main.jsonl"]
