"""The API on a real HTTP server in a thread, for tests that talk to it as a client or the CLI would."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from serve_app.simulator.process import free_port


@contextlib.contextmanager
def serving(app: object) -> Iterator[str]:
    """The app served on a free port until the block ends; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:  # uvicorn ends its thread, without raising here, when it cannot bind
        if not thread.is_alive():
            pytest.fail(f"the API server stopped before serving on port {server.config.port} (port taken?)")
        if time.monotonic() > deadline:
            pytest.fail(f"the API server did not start on port {server.config.port} within 30 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(10)
