"""Facts read from evalscope's own code without importing it here: the ingress never imports evalscope (~1-2 s,
~200 MB). A module that knows how to read one prints it as JSON when run (`python -m <module>`); `read_once` runs
it in a subprocess the first time a process asks, and keeps the answer.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
from typing import Any

from serve_app.errors import RunError

_READ_TIMEOUT_S = 120
_lock = threading.Lock()


def read_once(module: str, what: str) -> Any:
    """What `python -m <module>` printed last, as JSON. The first call per module runs the subprocess (seconds):
    make it off the event loop. `what` names the fact in the error when it cannot be read."""
    with _lock:
        return _read(module, what)


@functools.cache
def _read(module: str, what: str) -> Any:
    run = subprocess.run(
        [sys.executable, "-m", module],
        capture_output=True,
        text=True,
        timeout=_READ_TIMEOUT_S,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},  # this process's imports, wherever it runs
    )
    if run.returncode != 0:
        raise RunError(f"cannot read {what}: {run.stderr.strip()[-500:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])
