"""A schemathesis run against the API's own OpenAPI document: generated and mutated requests (wrong types,
unicode, huge and negative numbers, missing fields) get a 4xx with the documented body, never a 5xx, and every
answer matches what the document promises (status codes, content types, headers, bodies)."""

import subprocess
import sys
from pathlib import Path

import pytest

from serve_app.admission import admit_eval, admit_perf
from serve_app.api import create_api
from serve_app.config import ServiceArgs
from serve_app.principals import Principal
from serve_app.schemas import EvalRequest
from tests.conftest import SAMPLES
from tests.unit.fakes import FakeRun, ManagerBackend
from tests.unit.live_server import serving

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


class PlanningBackend(ManagerBackend):
    """Refuses what the real service refuses (its admission step), then runs fakes instead of Ray."""

    def __init__(self, root, args):
        # Runs that end at once, so none is left pending when the server stops.
        super().__init__(root, make_run=lambda kind, request: FakeRun(kind, total=1, step_s=0),
                         max_running=4, max_queued=10_000)
        self.args = args

    async def submit(self, request, idempotency_key, caller):
        if isinstance(request, EvalRequest):
            await admit_eval(request, self.args)
        else:
            await admit_perf(request, self.args, cluster_cpus=2)
        return await super().submit(request, idempotency_key, caller)


TOKEN = "fuzz-token-5b1e"


@pytest.fixture(params=["open", "with tokens"])
def service(request, tmp_path):
    """The API on a real server; once open and once requiring a bearer token."""
    tokens = {TOKEN: Principal("fuzz")} if request.param == "with tokens" else {}
    args = ServiceArgs(outputs_root=tmp_path / "outputs", datasets_root=tmp_path / "datasets", samples_root=SAMPLES,
                       max_body_bytes=65536)
    app = create_api(PlanningBackend(tmp_path, args), tokens=tokens, max_body_bytes=args.max_body_bytes)
    with serving(app) as base_url:
        yield base_url, tokens


def test_the_api_keeps_its_documented_promises(service, tmp_path):
    base_url, tokens = service
    # With tokens, requests carry one, and the ignored_auth check also calls without it and expects a 401.
    auth = ["--header", f"Authorization: Bearer {TOKEN}"] if tokens else []
    # The run with tokens reaches the same handlers with a valid token, 100 examples an operation; the open run
    # holds the document without auth (no 401, no security scheme) to its promises on fewer.
    examples = "100" if tokens else "25"
    # Every check but positive_data_acceptance: a schema-valid request may still be refused (400) for what no
    # schema can say, like a dataset file that is not there or an unknown benchmark name.
    run = subprocess.run(
        [str(SCHEMATHESIS), "run", f"{base_url}/openapi.json", "--checks", "all",
         "--exclude-checks", "positive_data_acceptance", "--max-examples", examples,
         "--seed", "1", "--generation-database", "none", "--no-color", "--request-timeout", "30",
         "--report-dir", str(tmp_path / "report"), *auth],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
