"""Bearer-token auth as an operator turns it on: tokens in a file named by the Serve args, checked by the replica."""

from ray import serve

from serve_app.app import build_app


def test_tokens_from_a_file_guard_the_api_and_leave_health_open(service, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("team-a-token\nteam-b-token\n")
    app = build_app({"outputs_root": str(service.root / "outputs"), "auth_tokens_file": str(tokens)})
    serve.run(app, name="secured", route_prefix="/secured")
    try:
        assert service.get("/secured/health").json()["status"] == "ok"
        missing = service.get("/secured/api/v1/jobs")
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
        assert "bearer token is required" in missing.json()["message"]
        wrong = service.get("/secured/api/v1/jobs", headers={"Authorization": "Bearer team-c-token"})
        assert wrong.status_code == 401
        for token in ("team-a-token", "team-b-token"):
            listing = service.get("/secured/api/v1/jobs", headers={"Authorization": f"Bearer {token}"})
            assert listing.status_code == 200 and isinstance(listing.json()["jobs"], list)
    finally:
        serve.delete("secured")
