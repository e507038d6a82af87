import pytest
from fastapi.testclient import TestClient

from serve_app.api import create_api
from serve_app.auth import load_tokens
from serve_app.principals import Principal
from tests.unit.fakes import ManagerBackend

PERF = {"model": "m", "url": "http://127.0.0.1:8801/v1/chat/completions", "number": 4}
TEAMS = {"team-a": Principal("a"), "team-b": Principal("b"), "ops": Principal("ops", admin=True)}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def api(tmp_path):
    with TestClient(create_api(ManagerBackend(tmp_path), tokens=TEAMS)) as client:
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
    assert api.post("/api/v1/perf", json=PERF, headers=bearer("team-b")).status_code == 200
    assert api.get("/api/v1/jobs", headers={"Authorization": "bearer team-b"}).json()["total"] == 1
    assert api.get("/health").status_code == 200
    assert api.get("/openapi.json").status_code == 200


def test_each_principal_sees_and_acts_on_its_own_jobs_and_an_admin_on_all(api):
    job_a = api.post("/api/v1/perf?wait=false", json=PERF, headers=bearer("team-a")).json()
    assert job_a["owner"] == "a"
    api.post("/api/v1/perf", json=PERF, headers=bearer("team-b"))
    listing = api.get("/api/v1/jobs", headers=bearer("team-b")).json()
    assert [job["owner"] for job in listing["jobs"]] == ["b"] and listing["total"] == 1
    # Another principal's job is not found, not forbidden: its existence is not confirmed.
    for path in ("", "/events", "/log", "/report", "/artifacts"):
        response = api.get(f"/api/v1/jobs/{job_a['job_id']}{path}", headers=bearer("team-b"))
        assert response.status_code == 404, path
    assert api.post(f"/api/v1/jobs/{job_a['job_id']}/cancel", headers=bearer("team-b")).status_code == 404
    assert api.get(f"/api/v1/jobs/{job_a['job_id']}", headers=bearer("team-a")).status_code == 200
    everything = api.get("/api/v1/jobs", headers=bearer("ops")).json()
    assert sorted(job["owner"] for job in everything["jobs"]) == ["a", "b"]
    only_b = api.get("/api/v1/jobs", params={"owner": "b"}, headers=bearer("ops")).json()
    assert [job["owner"] for job in only_b["jobs"]] == ["b"]


def test_idempotency_keys_are_per_principal(api):
    key = {"Idempotency-Key": "nightly-1"}
    first = api.post("/api/v1/perf?wait=false", json=PERF, headers={**bearer("team-a"), **key}).json()
    other_body = {**PERF, "number": 5}
    second = api.post("/api/v1/perf?wait=false", json=other_body, headers={**bearer("team-b"), **key})
    assert second.status_code == 202 and second.json()["job_id"] != first["job_id"]
    again = api.post("/api/v1/perf?wait=false", json=PERF, headers={**bearer("team-a"), **key})
    assert again.json()["job_id"] == first["job_id"]


def test_tokens_come_from_an_environment_variable_and_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVICE_TOKENS", " one, two:team-b ,three:ops:admin,")
    token_file = tmp_path / "tokens"
    token_file.write_text("# comment\nfour\n\nfive team-c\nsix ops admin\n")
    assert load_tokens("SERVICE_TOKENS", token_file) == {
        "one": Principal("default"), "two": Principal("team-b"), "three": Principal("ops", admin=True),
        "four": Principal("default"), "five": Principal("team-c"), "six": Principal("ops", admin=True),
    }
    assert load_tokens(None, None) == {}


@pytest.mark.parametrize("line", ["s3cret team-a root", "s3cret team/a", "s3cret a admin extra", "s3cret " + "x" * 65])
def test_a_malformed_token_entry_fails_at_start_without_showing_the_token(tmp_path, line):
    token_file = tmp_path / "tokens"
    token_file.write_text(line + "\n")
    with pytest.raises(ValueError, match="<token> \\[<principal> \\[admin\\]\\]") as raised:
        load_tokens(None, token_file)
    assert "s3cret" not in str(raised.value)


def test_one_token_for_two_principals_is_refused(tmp_path):
    token_file = tmp_path / "tokens"
    token_file.write_text("same team-a\nsame team-b\n")
    with pytest.raises(ValueError, match="two principals"):
        load_tokens(None, token_file)


def test_without_tokens_the_api_is_open_to_one_principal(tmp_path):
    with TestClient(create_api(ManagerBackend(tmp_path))) as client:
        assert client.post("/api/v1/perf", json=PERF).json()["status"] == "success"
        jobs = client.get("/api/v1/jobs").json()["jobs"]
        assert [job["owner"] for job in jobs] == ["default"]


def test_a_mount_prefix_does_not_open_the_api(tmp_path):
    app = create_api(ManagerBackend(tmp_path), tokens={"team-a": Principal("a")})
    with TestClient(app, root_path="/evalscope") as client:
        assert client.get("/evalscope/api/v1/jobs").status_code == 401
        assert client.get("/evalscope/api/v1/jobs", headers=bearer("team-a")).status_code == 200
        assert client.get("/evalscope/health").status_code == 200
