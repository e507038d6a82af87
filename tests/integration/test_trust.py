"""What a caller cannot make the cluster do, through the real service: each is a 400 and no job is created."""

import pytest

from tests.conftest import SAMPLES

MODEL = "trust-refused"  # only the refused requests below use it, so its job count must stay 0


@pytest.fixture
def no_job_is_created(service, simulator):
    received = simulator.requests_received()
    yield
    assert service.get("/api/v1/jobs", params={"model": MODEL}).json()["total"] == 0
    assert simulator.requests_received() == received


def test_a_code_benchmark_is_refused_naming_the_setting(service, simulator, no_job_is_created):
    body = {"model": MODEL, "api_url": simulator.base_url, "datasets": ["humaneval"], "limit": 1}
    response = service.post("/api/v1/eval", json=body)
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert "humaneval" in message and "code_sandbox" in message


def test_a_misspelt_benchmark_is_refused_naming_the_one_meant(service, simulator, no_job_is_created):
    body = {"model": MODEL, "api_url": simulator.base_url, "datasets": ["GSM8K", "no_such_bench"], "limit": 1}
    response = service.post("/api/v1/eval", json=body)
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert message.startswith("unknown dataset(s): GSM8K (did you mean gsm8k")  # the closest first
    assert message.endswith("no_such_bench; GET /api/v1/benchmarks lists evalscope's")


def test_a_subset_that_walks_out_of_the_dataset_is_refused(service, simulator, no_job_is_created):
    body = {"model": MODEL, "api_url": simulator.base_url, "datasets": ["gsm8k"], "limit": 1,
            "dataset_args": {"gsm8k": {"local_path": str(SAMPLES / "gsm8k"), "subset_list": ["../../etc"]}}}
    response = service.post("/api/v1/eval?wait=false", json=body)
    assert response.status_code == 400, response.text
    assert "dataset_args.gsm8k.subset_list entry '../../etc' is not a subset name" in response.json()["message"]


def test_an_unknown_perf_dataset_is_refused_with_the_valid_names(service, simulator, no_job_is_created):
    body = {"model": MODEL, "url": simulator.chat_url, "dataset": "no_such_dataset", "number": 2}
    response = service.post("/api/v1/perf?wait=false", json=body)
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert "'no_such_dataset' is not an evalscope perf dataset" in message and "line_by_line" in message
