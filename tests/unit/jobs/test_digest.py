"""Stored request digests are keyed with a server secret, so the job store alone cannot test key guesses."""

import hashlib
import stat

from serve_app.jobs.digest import SECRET_FILE, body_digest, service_secret
from serve_app.schemas import PerfRequest

REQUEST = PerfRequest(model="m", url="http://127.0.0.1:1/v1/chat/completions", api_key="weak-key-123")


def test_the_secret_is_generated_once_owner_only_and_kept_across_restarts(tmp_path):
    secret = service_secret(tmp_path, None)
    assert len(secret) == 64
    mode = stat.S_IMODE((tmp_path / SECRET_FILE).stat().st_mode)
    assert mode == 0o600
    assert service_secret(tmp_path, None) == secret  # a restarted manager recognises earlier submissions


def test_an_operator_secret_from_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("IDEMPOTENCY_SECRET", "from-the-operator")
    assert service_secret(tmp_path, "IDEMPOTENCY_SECRET") == b"from-the-operator"
    assert not (tmp_path / SECRET_FILE).exists()


def test_a_guessed_key_cannot_be_checked_against_the_digest_without_the_secret(tmp_path):
    digest = body_digest(REQUEST, service_secret(tmp_path, None))
    data = REQUEST.model_dump_json(round_trip=True)
    unkeyed = hashlib.sha256(f"PerfRequest\0{data}\0weak-key-123".encode()).hexdigest()
    assert digest != unkeyed
    assert digest != body_digest(REQUEST, b"another secret")
    assert digest == body_digest(REQUEST, service_secret(tmp_path, None))
    other_key = PerfRequest(model="m", url=REQUEST.url, api_key="weak-key-124")
    assert body_digest(other_key, service_secret(tmp_path, None)) != digest
