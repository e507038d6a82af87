"""evalscope as a Ray Serve service: evaluation and load tests of OpenAI-compatible endpoints over HTTP."""

from __future__ import annotations

import signal
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


def run_config(config: str = "configs/serve.yaml", address: str | None = None) -> None:
    """`serve run <config>`, stopped by SIGTERM as by Ctrl-C: Serve shuts down and the process exits 0
    (`evalscope-serve run`, the container's command).

    Ray's own `serve run` ends on SIGTERM (docker stop, Kubernetes) with exit status 15 and a native stack dump from
    Ray's crash handler, and leaves Serve running on a cluster it joined. Its process never loads this package (the
    config is deployed by the cluster), so the fix is this entry point: it connects to Ray as `serve run` would,
    then takes SIGTERM over from both handlers Ray installed, and `serve run` reuses the connection.
    """
    import ray
    from ray.serve._private.constants import SERVE_NAMESPACE
    from ray.serve.scripts import run

    ray.init(address=address, namespace=SERVE_NAMESPACE)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # raises KeyboardInterrupt, serve run's Ctrl-C path
    run.main([config], standalone_mode=False)
