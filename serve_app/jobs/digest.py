"""Request digests that tell a retried submission from another one, keyed with a server secret.

The digest covers the api_key, so a plain hash in the job store would let its readers test guesses of weak keys
offline; an HMAC under a secret kept apart from the store does not.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from serve_app.errors import storage_error
from serve_app.schemas import EvalRequest, PerfRequest

SECRET_FILE = ".idempotency-secret"  # under the outputs root, readable by the service's user only


def service_secret(outputs_root: Path, env_var: str | None) -> bytes:
    """The secret from `env_var` when it is set, else the one generated on first use under the outputs root."""
    if env_var and os.environ.get(env_var):
        return os.environ[env_var].encode()
    path = outputs_root / SECRET_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes()
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_hex(32))
        return path.read_bytes()
    except OSError as exc:
        raise storage_error(f"the idempotency secret {path}", exc) from exc


def body_digest(request: EvalRequest | PerfRequest, secret: bytes) -> str:
    """HMAC-SHA256 of the request, its secrets included (the dump masks them); only this digest of it is stored."""
    data = request.model_dump_json(round_trip=True)
    secrets_ = "\0".join(request.secret_values())
    message = f"{type(request).__name__}\0{data}\0{secrets_}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()
