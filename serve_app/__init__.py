"""evalscope as a Ray Serve service: evaluation and load tests of OpenAI-compatible endpoints over HTTP."""

from __future__ import annotations

from typing import Any


def run_service(host: str = "0.0.0.0", port: int = 9000, debug: bool = False, **args: Any) -> None:
    """Start the service on Ray Serve (joining a running Ray cluster, else starting a local one) and block."""
    import ray
    from ray import serve

    from serve_app.app import build_app

    if not ray.is_initialized():
        ray.init(include_dashboard=False)
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app({"debug": debug, **args}), name="evalscope", route_prefix="/", blocking=True)
