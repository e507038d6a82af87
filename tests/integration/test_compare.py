"""Comparing two evals of the same samples through the real service, as the API, the web UI and the CLI show it, and
the CLI gating a third on the latest."""

import subprocess
import sys
import uuid

from playwright.sync_api import expect

from tests.conftest import SAMPLES
from tests.integration.browser import CHART_TIMEOUT_MS, expect_report_drawn, offline_page, status_of


def test_two_evals_of_one_dataset_compare_without_change_and_gate_a_third_on_the_latest(service, simulator, browser,
                                                                                      screenshots):
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
    _read_in_the_web_ui(service, browser, screenshots, model, first, second)

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


def _read_in_the_web_ui(service, browser, screenshots, model: str, first: str, second: str) -> None:
    """The same comparison, the candidate's report, the leaderboard and the model's history in the web UI, offline."""
    page, seen = offline_page(browser)
    page.goto(str(service.base_url.join(f"/ui#/compare?baseline={first}&candidate={second}")))
    expect(page.locator(".verdict-card h2")).to_have_text("Verdict: no significant change")
    pooled = page.locator("tr[data-dataset='gsm8k'][data-subset='']")
    expect(pooled).to_contain_text("1.0000")
    expect(pooled.locator("td").nth(2)).to_have_text("4")  # paired samples
    # The scores, and the difference with its interval.
    expect(page.locator(".chart:has(.main-svg)")).to_have_count(2, timeout=CHART_TIMEOUT_MS)
    page.screenshot(path=screenshots / "compare.png", full_page=True)

    page.goto(str(service.base_url.join(f"/ui#/jobs/{second}")))
    expect(status_of(page)).to_have_text("succeeded")
    expect(page.get_by_role("table").first).to_contain_text("gsm8k")
    page.screenshot(path=screenshots / "eval-job.png", full_page=True)
    expect_report_drawn(page, screenshots / "eval-report.png")

    page.goto(str(service.base_url.join(f"/ui#/leaderboard?models={model}")))
    row = page.locator(f"tr[data-model='{model}']")
    expect(row.get_by_role("link", name="1.0000")).to_have_attribute("href", f"#/jobs/{second}")
    page.screenshot(path=screenshots / "leaderboard.png", full_page=True)

    row.get_by_role("link", name=model).click()
    history = page.locator("main table tbody tr")
    expect(history).to_have_count(2)
    expect(history.first).to_contain_text(second)
    expect(page.locator(".chart:has(.main-svg)")).to_have_count(1, timeout=CHART_TIMEOUT_MS)  # scores over time
    page.screenshot(path=screenshots / "history.png", full_page=True)
    assert seen.failed_requests == {} and seen.script_errors == []
    page.close()
