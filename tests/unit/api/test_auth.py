import pytest
from fastapi.testclient import TestClient

from serve_app.api import create_api
from serve_app.auth import load_tokens
from tests.unit.fakes import ManagerBackend

PERF = {"model": "m", "url": "http://127.0.0.1:8801/v1/chat/completions", "number": 4}


@pytest.fixture
def api(tmp_path):
    with TestClient(create_api(ManagerBackend(tmp_path), tokens=frozenset({"team-a", "team-b"}))) as client:
        yield client


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic team-a", "Bearer ", "team-a"])
def test_api_calls_without_a_valid_token_are_401(api, header):
    headers = {"Authorization": header} if header is not None else {}
    response = api.post("/api/v1/perf", json=PERF, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["status"] == "error" and "bearer token" in response.json()["message"]
    assert api.get("/api/v1/jobs", headers=headers).status_code == 401


def test_any_configured_token_is_accepted_and_health_stays_open(api):
    assert api.post("/api/v1/perf", json=PERF, headers={"Authorization": "Bearer team-b"}).status_code == 200
    assert api.get("/api/v1/jobs", headers={"Authorization": "bearer team-a"}).json()["total"] == 1
    assert api.get("/health").status_code == 200
    assert api.get("/openapi.json").status_code == 200


def test_tokens_come_from_an_environment_variable_and_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVICE_TOKENS", " one, two ,")
    token_file = tmp_path / "tokens"
    token_file.write_text("three\n\nfour\n")
    assert load_tokens("SERVICE_TOKENS", token_file) == {"one", "two", "three", "four"}
    assert load_tokens(None, None) == frozenset()


def test_without_tokens_the_api_is_open(tmp_path):
    with TestClient(create_api(ManagerBackend(tmp_path))) as client:
        assert client.get("/api/v1/jobs").status_code == 200


def test_a_mount_prefix_does_not_open_the_api(tmp_path):
    app = create_api(ManagerBackend(tmp_path), tokens=frozenset({"team-a"}))
    with TestClient(app, root_path="/evalscope") as client:
        assert client.get("/evalscope/api/v1/jobs").status_code == 401
        assert client.get("/evalscope/api/v1/jobs", headers={"Authorization": "Bearer team-a"}).status_code == 200
        assert client.get("/evalscope/health").status_code == 200
