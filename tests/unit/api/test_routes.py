"""HTTP translation without Ray: status codes, error bodies and docs, with a recording backend."""

import pytest
from fastapi.testclient import TestClient

from serve_app.api import create_api
from serve_app.errors import RequestError, RunError
from serve_app.schemas import EvalResponse, PerfResponse

EVAL = {"model": "m", "datasets": ["gsm8k"], "api_url": "http://127.0.0.1:8801/v1"}
PERF = {"model": "m", "url": "http://127.0.0.1:8801/v1/chat/completions", "number": 4}


class RecordingBackend:
    def __init__(self, failure: Exception | None = None):
        self.failure = failure
        self.calls = []

    async def run_eval(self, request):
        self.calls.append(request)
        if self.failure:
            raise self.failure
        return EvalResponse(result={"gsm8k": {}}, scores={"gsm8k": 0.5}, dataset_sources={}, output_dir="/o")

    async def run_perf(self, request):
        self.calls.append(request)
        if self.failure:
            raise self.failure
        return PerfResponse(output_dir="/o", results={})


def client(backend=None, debug=False):
    return TestClient(create_api(backend or RecordingBackend(), debug=debug), raise_server_exceptions=False)


def test_health_reports_service_and_iso_timestamp():
    body = client().get("/health").json()
    assert body["status"] == "ok" and body["service"] == "evalscope"
    assert "T" in body["timestamp"]


def test_valid_eval_reaches_the_backend_and_returns_its_result():
    backend = RecordingBackend()
    response = client(backend).post("/api/v1/eval", json=EVAL)
    assert response.status_code == 200
    assert response.json()["scores"] == {"gsm8k": 0.5}
    assert backend.calls[0].datasets == ["gsm8k"]


@pytest.mark.parametrize(
    "path,body,fragment",
    [
        ("/api/v1/eval", {**EVAL, "datasets": []}, "datasets"),
        ("/api/v1/eval", {"datasets": ["gsm8k"], "api_url": "x"}, "model: Field required"),
        ("/api/v1/perf", {**PERF, "number": -1}, "number"),
        ("/api/v1/perf", {**PERF, "parallel": "many"}, "parallel"),
        ("/api/v1/perf", {"model": "m"}, "url"),
    ],
)
def test_invalid_input_is_a_400_naming_the_field(path, body, fragment):
    backend = RecordingBackend()
    response = client(backend).post(path, json=body)
    assert response.status_code == 400
    assert response.json()["status"] == "error"
    assert fragment in response.json()["message"]
    assert not backend.calls


def test_non_json_body_is_a_400():
    response = client().post("/api/v1/perf", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["message"]


def test_unknown_path_is_a_404_in_the_error_shape():
    response = client().get("/api/v1/nothing")
    assert response.status_code == 404
    assert response.json() == {"status": "error", "message": "no such path: /api/v1/nothing"}


def test_request_error_from_the_backend_is_a_400():
    response = client(RecordingBackend(RequestError("dataset 'openqa' reads its prompts from a file"))).post(
        "/api/v1/perf", json=PERF
    )
    assert response.status_code == 400
    assert "reads its prompts" in response.json()["message"]


def test_run_failure_is_a_500_with_traceback_only_in_debug():
    failing = RecordingBackend(RunError("shard 1 failed: its worker process died"))
    quiet = client(failing).post("/api/v1/perf", json=PERF)
    assert quiet.status_code == 500
    assert quiet.json()["message"] == "shard 1 failed: its worker process died"
    assert "traceback" not in quiet.json()
    loud = client(failing).post("/api/v1/perf", json={**PERF, "debug": True})
    assert "RunError" in loud.json()["traceback"]
    service_debug = client(failing, debug=True).post("/api/v1/perf", json=PERF)
    assert "traceback" in service_debug.json()


def test_openapi_documents_every_request_field():
    schema = client().get("/openapi.json").json()
    components = schema["components"]["schemas"]
    for field in ("model", "datasets", "api_url", "api_key", "limit", "generation_config", "dataset_args"):
        assert "description" in components["EvalRequest"]["properties"][field] or field == "generation_config"
    for field in ("number", "parallel", "rate", "dataset_path", "stream", "shards"):
        assert components["PerfRequest"]["properties"][field]["description"]
    assert client().get("/docs").status_code == 200
