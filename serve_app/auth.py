"""Optional bearer-token auth for every route but /health, the API docs and the web UI's page (with the files they
load), which stay open; each token stands for a principal, whose jobs are the ones it sees (serve_app.principals)."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from serve_app.assets import ASSET_PATHS, UI_PATHS
from serve_app.principals import ANONYMOUS, Principal, parse_tokens
from serve_app.schemas import ErrorResponse


def load_tokens(env_var: str | None, token_file: Path | None) -> dict[str, Principal]:
    """Accepted tokens and their principals, from an environment variable (`token[:principal[:admin]]`,
    comma-separated) and/or a file (a mounted secret: `token [principal [admin]]` per line)."""
    texts: list[tuple[str, str | None]] = []
    if env_var:
        texts.append((os.environ.get(env_var, ""), ":"))
    if token_file:
        texts.append((token_file.read_text(encoding="utf-8"), None))
    return parse_tokens(texts)


def caller(request: Request) -> Principal:
    """The principal of this call: set by the token check, or the one principal when auth is off."""
    return getattr(request.state, "principal", ANONYMOUS)


# Everything else needs a token: denying by default also guards any route added later.
OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
OPEN_PATHS |= ASSET_PATHS | UI_PATHS


def require_tokens(app: FastAPI, tokens: dict[str, Principal]) -> None:
    """Answer 401 to a call without one of `tokens`, except on OPEN_PATHS; compared in constant time."""
    if not tokens:
        return
    encoded = [(token.encode(), principal) for token, principal in tokens.items()]

    @app.middleware("http")
    async def _authenticate(request: Request, call_next):
        if _route_path(request) not in OPEN_PATHS:
            scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
            candidate = presented.strip().encode()
            # Every token is compared, so the time taken does not tell which one came close.
            matches = [principal for token, principal in encoded if hmac.compare_digest(candidate, token)]
            if scheme.lower() != "bearer" or not matches:
                body = ErrorResponse(message="a valid bearer token is required (Authorization: Bearer <token>)")
                return JSONResponse(status_code=401, content=body.model_dump(exclude_none=True),
                                    headers={"WWW-Authenticate": "Bearer"})
            request.state.principal = matches[0]
        return await call_next(request)


def _route_path(request: Request) -> str:
    """The path below the application's mount point: under a Serve route_prefix the ASGI path includes it."""
    path, root = request.scope["path"], request.scope.get("root_path", "")
    return (path[len(root):] or "/") if root and path.startswith(root) else path
