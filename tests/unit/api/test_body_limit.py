"""Oversized bodies are refused with a 413 that says the limit, before they are parsed."""

from fastapi.testclient import TestClient

from serve_app.api import create_api
from tests.unit.fakes import ManagerBackend

PERF = {"model": "m", "url": "http://127.0.0.1:8801/v1/chat/completions", "number": 4}


def client(tmp_path):
    return TestClient(create_api(ManagerBackend(tmp_path), max_body_bytes=2048), raise_server_exceptions=False)


def test_a_body_over_the_limit_is_a_413_naming_the_limit(tmp_path):
    response = client(tmp_path).post("/api/v1/perf", json={**PERF, "model": "m" * 4096})
    assert response.status_code == 413
    assert response.json()["message"] == (
        "the request body is over this service's limit of 2048 bytes (max_body_bytes)"
    )


def test_a_chunked_body_without_length_is_cut_off_at_the_limit(tmp_path):
    chunks = (b'{"model": "' + b"m" * 1000 for _ in range(10))  # a generator is sent chunked, no Content-Length
    response = client(tmp_path).post("/api/v1/perf", content=chunks, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "max_body_bytes" in response.json()["message"]


def test_a_body_within_the_limit_is_served(tmp_path):
    response = client(tmp_path).post("/api/v1/perf", json=PERF)  # synchronous: no job outlives the test
    assert response.status_code == 200
