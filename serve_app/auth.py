"""Optional bearer-token auth for every route but /health and the API docs, which stay open."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from serve_app.schemas import ErrorResponse


def load_tokens(env_var: str | None, token_file: Path | None) -> frozenset[str]:
    """Accepted tokens: comma- or line-separated, from an environment variable and/or a file (a mounted secret)."""
    raw = []
    if env_var:
        raw.append(os.environ.get(env_var, ""))
    if token_file:
        raw.append(token_file.read_text(encoding="utf-8"))
    return frozenset(token.strip() for text in raw for token in text.replace(",", "\n").splitlines() if token.strip())


# Everything else needs a token: denying by default also guards any route added later.
OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


def require_tokens(app: FastAPI, tokens: frozenset[str]) -> None:
    """Answer 401 to a call without one of `tokens`, except on OPEN_PATHS; compared in constant time."""
    if not tokens:
        return
    encoded = [token.encode() for token in tokens]

    @app.middleware("http")
    async def _authenticate(request: Request, call_next):
        if _route_path(request) not in OPEN_PATHS:
            scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
            candidate = presented.strip().encode()
            # Every token is compared, so the time taken does not tell which one came close.
            matches = [hmac.compare_digest(candidate, token) for token in encoded]
            if scheme.lower() != "bearer" or not any(matches):
                body = ErrorResponse(message="a valid bearer token is required (Authorization: Bearer <token>)")
                return JSONResponse(status_code=401, content=body.model_dump(exclude_none=True),
                                    headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)


def _route_path(request: Request) -> str:
    """The path below the application's mount point: under a Serve route_prefix the ASGI path includes it."""
    path, root = request.scope["path"], request.scope.get("root_path", "")
    return (path[len(root):] or "/") if root and path.startswith(root) else path
