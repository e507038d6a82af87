"""Admission through the real backend (RayBackend, with only the job manager actor stood in): what it refuses
never reaches the job manager, and what it admits arrives planned."""

import pytest
from fastapi.testclient import TestClient

from serve_app import backend as backend_module
from serve_app.api import create_api
from serve_app.backend import RayBackend
from serve_app.config import ServiceArgs
from tests.conftest import SAMPLES

PERF = {"model": "m", "url": "http://127.0.0.1:8801/v1/chat/completions", "dataset_path": "perf/openqa.jsonl",
        "number": 4}
EVAL = {"model": "m", "api_url": "http://127.0.0.1:8801/v1", "datasets": ["iquiz"], "limit": 1,
        "dataset_args": {"iquiz": {"local_path": str(SAMPLES / "iquiz")}}}


class StubManager:
    """Stands in for the job manager actor handle: records what reached it."""

    def __init__(self):
        self.submitted = []
        manager = self

        class Submit:
            async def remote(self, request, plan, idempotency_key, caller):
                manager.submitted.append((request, plan))
                raise LookupError("stub: admitted")

        class Configure:
            def remote(self, args):
                manager.configured = args

        self.submit, self.configure = Submit(), Configure()


@pytest.fixture
def api(tmp_path, monkeypatch):
    manager = StubManager()
    monkeypatch.setattr(backend_module, "job_manager", lambda args: manager)
    monkeypatch.setattr(backend_module, "cluster_cpus", lambda args: 2)
    args = ServiceArgs(outputs_root=tmp_path / "outputs", datasets_root=SAMPLES, samples_root=SAMPLES,
                       allowed_targets=["10.0.0.0/8", "models.internal"])
    with TestClient(create_api(RayBackend(args)), raise_server_exceptions=False) as client:
        client.manager, client.args = manager, args
        yield client


@pytest.mark.parametrize("path,body", [("/api/v1/perf", PERF), ("/api/v1/eval", EVAL)])
def test_a_disallowed_target_is_a_400_that_never_reaches_the_job_manager(api, path, body):
    response = api.post(path, json=body)
    assert response.status_code == 400
    assert "models.internal" in response.json()["message"] and "10.0.0.0/8" in response.json()["message"]
    assert api.manager.submitted == []


@pytest.mark.parametrize("path,body", [("/api/v1/perf", PERF), ("/api/v1/eval", EVAL)])
def test_an_allowed_target_is_admitted_and_planned(api, path, body):
    url_field = "url" if path.endswith("perf") else "api_url"
    allowed = {**body, url_field: body[url_field].replace("127.0.0.1:8801", "10.1.2.3:8000")}
    api.post(path, json=allowed)
    ((request, plan),) = api.manager.submitted
    kind = path.rsplit("/", 1)[1]
    assert request.model == "m" and plan.output_dir.parent.parent == api.args.outputs_root / kind


@pytest.mark.parametrize("body,fragment", [
    ({**EVAL, "datasets": ["humaneval"], "dataset_args": {}}, "code_sandbox"),
    ({**EVAL, "dataset_args": {"iquiz": {"subset_list": ["../../etc"]}}}, "subset_list"),
    ({**EVAL, "dataset_args": {"iquiz": {"dataset_id": "org/other"}}}, "dataset_id"),
])
def test_each_eval_refusal_happens_before_a_job_exists(api, body, fragment):
    response = api.post("/api/v1/eval", json={**body, "api_url": "http://10.1.2.3:8000/v1"})
    assert response.status_code == 400 and fragment in response.json()["message"]
    assert api.manager.submitted == []


def judged(judge_host: str) -> dict:
    return {**EVAL, "api_url": "http://10.1.2.3:8000/v1", "judge": {"strategy": "llm", "models": [
        {"model_id": "j", "api_url": f"http://{judge_host}/v1/chat/completions", "api_key": "sk-judge-key"}]}}


def test_a_judge_outside_the_allowed_targets_is_a_400_though_the_model_is_allowed(api):
    response = api.post("/api/v1/eval", json=judged("judge.example.com:8000"))
    assert response.status_code == 400
    assert "judge.example.com" in response.json()["message"] and "10.0.0.0/8" in response.json()["message"]
    assert api.manager.submitted == []


def test_an_allowed_judge_is_planned_into_each_task_without_its_key(api):
    api.post("/api/v1/eval", json=judged("models.internal:8000"))
    ((request, plan),) = api.manager.submitted
    (task,) = plan.tasks
    (judge,) = task.task_config["judge"]["models"]
    assert judge["api_url"] == "http://models.internal:8000/v1" and "api_key" not in judge
    assert request.judge_api_keys() == ["sk-judge-key"]
    # The service's timeout and retry bounds hold for the judge's requests too.
    assert judge["generation_config"]["timeout"] == api.args.eval_timeout_s
