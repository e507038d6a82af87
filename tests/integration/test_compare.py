"""Comparing two evals of the same samples through the real service, and the CLI gating a third on the latest."""

import subprocess
import sys
import uuid

from tests.conftest import SAMPLES


def test_two_evals_of_one_dataset_compare_without_change_and_gate_a_third_on_the_latest(service, simulator):
    model = f"compare-{uuid.uuid4().hex[:8]}"  # so that the latest job of this model is this test's
    body = {"model": model, "api_url": simulator.base_url, "datasets": ["gsm8k"], "limit": 4,
            "dataset_args": {"gsm8k": {"local_path": str(SAMPLES / "gsm8k")}}}
    # One after the other: history and "latest" go by when a job finished.
    first, second = (_evaluated(service, body) for _ in range(2))

    comparison = service.get("/api/v1/compare", params={"baseline": first, "candidate": second})
    assert comparison.status_code == 200, comparison.text
    comparison = comparison.json()
    assert comparison["comparable"] and comparison["differences"] == [] and comparison["reasons"] == []
    assert comparison["verdict"] == "no significant change"
    pooled, main = comparison["scores"]
    assert (pooled["subset"], main["subset"]) == (None, "main")
    # The same 4 samples, paired by evalscope's sample ids from each job's review file, all right in both.
    assert (main["paired"], main["baseline_score"], main["candidate_score"]) == (4, 1.0, 1.0)
    assert main["unpaired"] == {"baseline": 0, "candidate": 0, "baseline_ids": [], "candidate_ids": []}

    history = service.get(f"/api/v1/models/{model}/history").json()
    assert [job["job_id"] for job in history["jobs"]] == [second, first]
    assert history["jobs"][0]["scores"] == {"gsm8k": 1.0}
    entries = service.get("/api/v1/leaderboard", params={"models": model}).json()["entries"]
    assert [(e["dataset"], e["score"], e["job_id"]) for e in entries] == [("gsm8k", 1.0, second)]

    gated = subprocess.run(
        [sys.executable, "-m", "serve_app.cli", "eval", "--server", str(service.base_url), "--model", model,
         "--api-url", simulator.base_url, "--datasets", "gsm8k", "--limit", "4", "--dataset-args",
         '{"gsm8k": {"local_path": "%s"}}' % (SAMPLES / "gsm8k"), "--baseline", "latest", "--max-drop", "gsm8k=0"],
        capture_output=True, text=True, timeout=300)
    assert gated.returncode == 0, gated.stderr
    assert f"baseline: {second} (your newest succeeded eval job of {model})" in gated.stderr
    assert f"against baseline {second}: no significant change" in gated.stdout


def _evaluated(service, body) -> str:
    job_id = service.post("/api/v1/eval", params={"wait": "false"}, json=body).json()["job_id"]
    service.get(f"/api/v1/jobs/{job_id}/events")  # follows the job to its end
    assert service.get(f"/api/v1/jobs/{job_id}").json()["status"] == "succeeded"
    return job_id
