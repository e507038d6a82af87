"""The FastAPI application: routes, error handling and OpenAPI docs, independent of Ray."""

from __future__ import annotations

from fastapi import FastAPI

from serve_app.api import pages, ui
from serve_app.api.body_limit import BodyLimit
from serve_app.api.errors import document_errors, install_error_handlers
from serve_app.api.routes import Backend, router
from serve_app.auth import require_tokens
from serve_app.principals import Principal


def create_api(
    backend: Backend,
    debug: bool = False,
    tokens: dict[str, Principal] | None = None,
    max_body_bytes: int = 1_048_576,
) -> FastAPI:
    app = FastAPI(
        title="evalscope service",
        description="Evaluate and load-test OpenAI-compatible model endpoints with evalscope, on Ray.",
        version="0.1.0",
        docs_url=None,  # FastAPI's docs pages load their scripts from CDNs: serve_app.api.pages serves these
        redoc_url=None,
    )
    app.state.backend = backend
    app.state.debug = debug
    app.state.auth = bool(tokens)
    install_error_handlers(app)
    document_errors(app, authenticated=bool(tokens))
    require_tokens(app, tokens or {})
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.include_router(router)
    app.include_router(pages.router)
    app.include_router(ui.router)
    return app


__all__ = ["Backend", "create_api"]
