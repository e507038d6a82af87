"""The web UI at /ui in a real headless Chromium with no way off this machine: a perf test submitted through its form
followed to its report, the token prompt when auth is on, a failed eval resumed and a job run again from its form,
two perf tests compared against a tolerance, and the eval form's benchmarks (two evals compared, the leaderboard and
a model's history: test_compare.py, on the evals it runs anyway). Screenshots of each page go to the `screenshots`
directory (named in the test output). All but the first run the API over the job manager with stand-in runs
(tests/unit/fakes.py): what they check needs no Ray."""

from __future__ import annotations

import re
import zipfile

import httpx
from playwright.sync_api import expect

from serve_app.api import create_api
from serve_app.principals import Principal
from serve_app.schemas import PerfPointResult, PerfResponse
from tests.unit.fakes import FakeRun, ManagerBackend
from tests.unit.live_server import serving
from tests.integration.browser import CHART_TIMEOUT_MS, expect_report_drawn, offline_page, status_of

A_SECRET_KEY = "sk-typed-into-the-form-4f1c"


def test_a_perf_test_started_from_the_form_is_followed_to_its_report(service, simulator, browser, screenshots):
    page, seen = offline_page(browser)
    page.goto(str(service.base_url.join("/ui#/new/perf")))
    page.fill("#field-model", "simulator")
    page.fill("#field-url", simulator.chat_url)
    page.fill("#field-api_key", A_SECRET_KEY)
    page.fill("#field-dataset_path", "perf/openqa.jsonl")
    page.fill("#field-number", "8")
    page.fill("#field-parallel", "2")
    page.fill("#field-max_tokens", "4")
    page.screenshot(path=screenshots / "perf-form.png", full_page=True)
    page.get_by_role("button", name="Start the perf test").click()

    page.wait_for_url(re.compile(r"#/jobs/job-[0-9a-f]{12}$"))
    job_id = page.url.rsplit("/", 1)[1]
    expect(status_of(page)).to_have_text("succeeded", timeout=60_000)  # followed over the event stream
    expect(page.locator(".live .progress-text")).to_contain_text("100% · 8 / 8")
    point = page.locator("[data-point='parallel_2_number_8']")
    expect(point).to_contain_text("Req Throughput (req/s)")
    throughput = point.locator("table", has_text="Steady state (first 20 % left out)")
    expect(throughput.locator("tr", has_text="Completion tok/s")).to_contain_text(re.compile(r"\d"))
    page.screenshot(path=screenshots / "perf-job.png", full_page=True)
    expect_report_drawn(page, screenshots / "perf-report.png")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download artifacts").click()
    assert download.value.suggested_filename == f"{job_id}.zip"
    archived = zipfile.ZipFile(download.value.path()).namelist()
    assert "perf_report.html" in archived
    assert any(name.endswith("parallel_2_number_8/workload_throughput.json") for name in archived), archived

    # The key went to the service once: not shown, not kept by the page, not stored by the service.
    assert A_SECRET_KEY not in page.content()
    assert A_SECRET_KEY not in page.evaluate("JSON.stringify([sessionStorage, localStorage, document.cookie])")
    assert service.get(f"/api/v1/jobs/{job_id}").json()["request"]["api_key"] == "**********"

    page.goto(str(service.base_url.join("/ui#/jobs?kind=perf")))
    row = page.locator(f"tr[data-job='{job_id}']")
    expect(row.locator(".badge")).to_have_text("succeeded")
    page.screenshot(path=screenshots / "jobs.png", full_page=True)
    # A perf report follows its result by a few seconds: the page asked again meanwhile (a 404 that says so).
    assert set(seen.failed_requests) <= {str(service.base_url.join(f"/api/v1/jobs/{job_id}/report"))}
    assert seen.script_errors == []
    page.close()


def test_with_auth_on_the_ui_asks_for_the_token_once_per_tab_and_sends_it_on_every_call(browser, tmp_path,
                                                                                         screenshots):
    # The API over the job manager with a run that counts for a minute unless cancelled: no Ray needed.
    backend = ManagerBackend(tmp_path, make_run=lambda kind, request: FakeRun(kind, total=600, step_s=0.1))
    with serving(create_api(backend, tokens={"team-a-token": Principal("team-a")})) as base:
        page, seen = offline_page(browser)
        sent = []
        page.on("request", lambda request: "/api/v1/" in request.url
                and sent.append(request.headers.get("authorization")))
        page.goto(f"{base}/ui")
        dialog = page.locator("#token-dialog")
        expect(dialog).to_be_visible()
        page.screenshot(path=screenshots / "token-prompt.png")
        dialog.locator("input").fill("not-a-token")
        dialog.get_by_role("button", name="Sign in").click()
        expect(page.locator("#token-error")).to_have_text("The service refused that token. Check it and try again.")
        dialog.locator("input").fill("team-a-token")
        dialog.get_by_role("button", name="Sign in").click()
        expect(dialog).to_be_hidden()
        expect(page.locator("#who")).to_contain_text("Signed in as team-a")
        expect(page.locator("main .empty")).to_have_text("No jobs yet: start an eval or a perf test.")

        job_id = httpx.post(f"{base}/api/v1/perf?wait=false", headers={"Authorization": "Bearer team-a-token"},
                            json={"model": "m", "url": "http://127.0.0.1:9/v1/chat/completions"}).json()["job_id"]
        row = page.locator(f"tr[data-job='{job_id}']")
        expect(row.locator(".badge")).to_have_text("running")  # the list is live: no reload
        row.get_by_role("link", name=job_id).click()
        # Its events come over fetch() with the token (EventSource could not send it): the progress moves.
        progress = page.locator(".live .progress-text")
        expect(progress).to_contain_text(" / 600")
        before = progress.inner_text()
        expect(progress).not_to_have_text(before)
        page.screenshot(path=screenshots / "job-with-auth.png", full_page=True)
        page.once("dialog", lambda confirm: confirm.accept())
        page.get_by_role("button", name="Cancel").click()
        expect(status_of(page)).to_have_text("cancelled")
        page.go_back()
        expect(row.locator(".badge")).to_have_text("cancelled")

        page.reload()  # the token stays with the tab
        expect(row.locator(".badge")).to_have_text("cancelled")
        assert dialog.is_hidden()
        assert page.evaluate("localStorage.length") == 0
        refused = [header for header in sent if header != "Bearer team-a-token"]
        # Only the call that found auth on, and its retry with the refused token: every other call carried it.
        assert refused == [None, "Bearer not-a-token"]

        other_tab = browser.new_page()  # another tab asks again
        other_tab.goto(f"{base}/ui")
        expect(other_tab.locator("#token-dialog")).to_be_visible()
        other_tab.close()
        page.get_by_role("button", name="Sign out").click()
        expect(dialog).to_be_visible()
        assert page.evaluate("sessionStorage.length") == 0
        assert seen.script_errors == []
        page.close()


def test_a_failed_eval_is_resumed_with_its_key_given_again_and_a_job_runs_again_from_its_form(browser, tmp_path,
                                                                                                screenshots):
    def runs(kind, request):  # the first eval fails; what follows succeeds
        return FakeRun(kind, failure=RuntimeError("the endpoint went away") if not backend.runs else None)

    backend = ManagerBackend(tmp_path, make_run=runs)
    with serving(create_api(backend)) as base:
        failed = httpx.post(f"{base}/api/v1/eval?wait=false", json={
            "model": "m", "api_url": "http://127.0.0.1:9/v1", "datasets": ["gsm8k"], "limit": 3,
            "generation_config": {"top_p": 0.5}}).json()["job_id"]
        page, seen = offline_page(browser)
        page.goto(f"{base}/ui#/jobs/{failed}")
        expect(status_of(page)).to_have_text("failed")
        expect(page.locator(".live .error-box")).to_contain_text("the endpoint went away")
        page.get_by_label("API key for the resumed run").fill(A_SECRET_KEY)
        page.get_by_role("button", name="Resume").click()
        expect(page).not_to_have_url(re.compile(failed))
        expect(status_of(page)).to_have_text("succeeded")
        resumed = page.url.rsplit("/", 1)[1]
        assert httpx.get(f"{base}/api/v1/jobs/{resumed}").json()["request"]["resume_from"] == failed

        page.get_by_role("link", name="Run again…").click()
        expect(page.locator("#field-model")).to_have_value("m")
        expect(page.locator("#field-datasets")).to_have_value("gsm8k")
        expect(page.locator("#field-limit")).to_have_value("3")
        expect(page.locator("#field-api_key")).to_have_value("")  # never stored, so never filled in
        # What the form has no field for comes along as JSON; the resumed job's link to its predecessor does not.
        assert '"top_p": 0.5' in page.locator("#field-extra").input_value()
        assert "resume_from" not in page.locator("#field-extra").input_value()
        page.screenshot(path=screenshots / "run-again.png", full_page=True)
        page.get_by_role("button", name="Start the eval").click()
        expect(status_of(page)).to_have_text("succeeded")
        again = httpx.get(f"{base}/api/v1/jobs/{page.url.rsplit('/', 1)[1]}").json()["request"]
        original = httpx.get(f"{base}/api/v1/jobs/{failed}").json()["request"]
        assert again == original
        assert A_SECRET_KEY not in page.content() and seen.script_errors == []
        page.close()


class MeasuredRun(FakeRun):
    """A perf run whose one test point took `latency_s` a request."""

    def __init__(self, latency_s: float):
        super().__init__("perf")
        self.latency_s = latency_s

    async def execute(self) -> PerfResponse:
        await super().execute()
        latency = self.latency_s
        point = PerfPointResult(
            metrics={"Req Throughput (req/s)": 1 / latency, "Avg Latency (s)": latency, "Total Requests": 4},
            percentiles=[{"Percentiles": row, "Latency (s)": latency * factor, "TTFT (ms)": 250 * latency * factor}
                         for row, factor in (("50%", 1), ("90%", 1.5), ("99%", 2))],
            shards=[])
        return PerfResponse(output_dir=str(self.output_dir), results={"parallel_1_number_4": point})


def test_two_perf_tests_picked_in_the_list_compare_against_a_tolerance(browser, tmp_path, screenshots):
    latencies = iter([0.1, 0.13])  # the candidate is 30 % slower
    backend = ManagerBackend(tmp_path, make_run=lambda kind, request: MeasuredRun(next(latencies)))
    with serving(create_api(backend)) as base:
        body = {"model": "m", "url": "http://127.0.0.1:9/v1/chat/completions", "number": 4}
        baseline, candidate = (httpx.post(f"{base}/api/v1/perf", json=body, params={"wait": "false"}).json()["job_id"]
                               for _ in range(2))
        page, seen = offline_page(browser)
        page.goto(f"{base}/ui#/jobs")
        compare = page.get_by_role("button", name="Compare selected")
        for job_id in (candidate, baseline):  # picked in any order: the older one is the baseline
            expect(page.locator(f"tr[data-job='{job_id}'] .badge")).to_have_text("succeeded")
            page.get_by_label(f"select {job_id}").check()
        compare.click()

        expect(page.locator(".verdict-card h2")).to_have_text("Verdict: worse")
        assert page.url.endswith(f"#/compare?baseline={baseline}&candidate={candidate}")
        latency = page.locator("[data-point='parallel_1_number_4'] tr", has_text="Avg Latency (s)").first
        expect(latency).to_contain_text("+30 %")
        expect(latency.locator(".verdict")).to_have_text("worse")
        # The change of each directed metric, and the TTFT and latency curves by percentile.
        expect(page.locator(".chart:has(.main-svg)")).to_have_count(3, timeout=CHART_TIMEOUT_MS)
        page.screenshot(path=screenshots / "compare-perf.png", full_page=True)

        page.get_by_label("Perf tolerance").fill("50%")
        page.get_by_role("button", name="Compare", exact=True).click()
        expect(page.locator(".verdict-card h2")).to_have_text("Verdict: within tolerance")
        assert seen.failed_requests == {} and seen.script_errors == []
        page.close()


def test_the_eval_form_adds_benchmarks_found_in_the_services_list(browser, tmp_path, screenshots):
    with serving(create_api(ManagerBackend(tmp_path))) as base:  # GET /api/v1/benchmarks: evalscope's metadata
        page, seen = offline_page(browser)
        page.goto(f"{base}/ui#/new/eval")
        page.fill("#field-datasets", "gsm8k")
        page.get_by_label("find a benchmark").fill("iquiz")
        page.locator("main table").get_by_role("button", name="iquiz", exact=True).click()
        expect(page.locator("#field-datasets")).to_have_value("gsm8k, iquiz")
        page.screenshot(path=screenshots / "eval-form.png", full_page=True)
        assert seen.failed_requests == {} and seen.script_errors == []
        page.close()
