"""The Ray Serve application: `build_app(args)` is what `serve run configs/serve.yaml` imports."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Application

from serve_app.api import create_api
from serve_app.auth import load_tokens
from serve_app.backend import RayBackend
from serve_app.config import ServiceArgs

INGRESS_NUM_CPUS = 0.1  # the ingress only routes and awaits Ray refs; the work runs in tasks and actors
# Serve's default of 5 requests in flight per replica let five synchronous submits (each open for its whole run)
# or a burst of polls queue /health behind them for seconds; every request here only awaits, so admit many.
INGRESS_MAX_ONGOING_REQUESTS = 1000


@serve.deployment(
    ray_actor_options={"num_cpus": INGRESS_NUM_CPUS}, max_ongoing_requests=INGRESS_MAX_ONGOING_REQUESTS
)
@serve.ingress()
class EvalscopeIngress:
    def __init__(self, args: ServiceArgs) -> None:
        self.args = args

    def __serve_build_asgi_app__(self) -> FastAPI:
        tokens = load_tokens(self.args.auth_tokens_env, self.args.auth_tokens_file)
        return create_api(
            RayBackend(self.args), debug=self.args.debug, tokens=tokens, max_body_bytes=self.args.max_body_bytes
        )


def build_app(args: dict[str, Any] | ServiceArgs | None = None) -> Application:
    """Validate the args (a typo in serve.yaml fails here, not at the first request) and bind the ingress."""
    service_args = ServiceArgs.model_validate(args or {})
    # Resolve the roots now, in the process started by the user, so every replica and worker agrees on them.
    service_args = service_args.model_copy(
        update={
            "outputs_root": service_args.outputs_root.expanduser().resolve(),
            "datasets_root": service_args.datasets_root.expanduser().resolve(),
            "samples_root": service_args.samples_root and service_args.samples_root.expanduser().resolve(),
        }
    )
    return EvalscopeIngress.bind(service_args)
