"""What every benchmark starts with: the service on a private local Ray cluster using all of this machine's cores."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from serve_app import start_service
from serve_app.simulator.process import free_port, wait_until_healthy

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "examples" / "datasets"


def local_service(name: str, **args: Any) -> tuple[str, Path, int]:
    """Start the service (ServiceArgs `args`; outputs in a scratch directory) and return URL, scratch dir, cores."""
    cores = os.cpu_count() or 2
    work = Path(tempfile.mkdtemp(prefix=f"{name}_"))
    base = start_service(
        host="127.0.0.1",
        port=free_port(),
        ray_init={"address": "local", "num_cpus": cores, "include_dashboard": False, "log_to_driver": False},
        **{"outputs_root": str(work), "samples_root": str(SAMPLES), **args},
    )
    wait_until_healthy(f"{base}/health", 60)
    return base, work, cores
