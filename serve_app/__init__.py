"""evalscope as a Ray Serve service: evaluation and load tests of OpenAI-compatible endpoints over HTTP."""

from __future__ import annotations

from typing import Any


def start_service(
    host: str = "0.0.0.0",
    port: int = 9000,
    debug: bool = False,
    blocking: bool = False,
    ray_init: dict[str, Any] | None = None,
    **args: Any,
) -> str:
    """Deploy the service on Ray Serve and return its base URL (or block, serving, when `blocking`).

    Joins the Ray cluster this process is connected to, else starts one with `ray_init` options
    (default: a local cluster without the dashboard). `args` are ServiceArgs fields.
    """
    import ray
    from ray import serve

    from serve_app.app import build_app

    if not ray.is_initialized():
        ray.init(**(ray_init or {"include_dashboard": False}))
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app({"debug": debug, **args}), name="evalscope", route_prefix="/", blocking=blocking)
    return f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"


def run_service(host: str = "0.0.0.0", port: int = 9000, debug: bool = False, **args: Any) -> None:
    """Start the service and serve until interrupted (`evalscope-serve service`)."""
    start_service(host=host, port=port, debug=debug, blocking=True, **args)
