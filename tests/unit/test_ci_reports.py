"""Gates measured per test point, and what a CI shows of them: JUnit XML valid against the schema Jenkins' xUnit
plugin publishes, and the Markdown summary of the run page."""

from xml.etree import ElementTree

import pytest

from serve_app.ci_reports import Verdict, junit_xml, markdown_summary
from serve_app.compare.perf import compare_points
from serve_app.gates import change_gates, eval_gates, perf_gates
from serve_app.schemas import Comparison, JobView
from tests.conftest import assert_valid_junit
from tests.unit.fake_service import job_document


def perf_point(throughput: float, ttft_p99: float) -> dict:
    return {"metrics": {"Total Requests": 10, "Failed Requests": 0, "Req Throughput (req/s)": throughput},
            "percentiles": [{"Percentiles": "50%", "TTFT (ms)": ttft_p99 / 2},
                            {"Percentiles": "99%", "TTFT (ms)": ttft_p99}]}


PERF_RESULT = {"output_dir": "/o", "results": {"parallel_1_number_10": perf_point(12.5, 420.0),
                                               "parallel_2_number_20": perf_point(20.0, 650.0)}}
SERVER = "http://evalscope.internal:9000/"


def gates():
    return perf_gates(["TTFT (ms)@99%=500"], ["Req Throughput (req/s)=15"])


def verdict(status="succeeded", exit_code=2, stopped=None, error=None):
    job = JobView.model_validate(job_document(status, result=PERF_RESULT if status == "succeeded" else None,
                                              error=error))
    outcomes = [o for gate in gates() for o in gate.evaluate(PERF_RESULT)] if status == "succeeded" else []
    return Verdict(job, SERVER, exit_code, 12.3456, gates(), outcomes, stopped)


def test_a_perf_gate_is_measured_at_every_test_point_with_its_margin():
    ttft, throughput = gates()
    assert [(o.point, o.value, o.margin, o.passed) for o in ttft.evaluate(PERF_RESULT)] == [
        ("parallel_1_number_10", 420.0, 80.0, True), ("parallel_2_number_20", 650.0, -150.0, False)]
    assert [(o.value, o.margin, o.passed) for o in throughput.evaluate(PERF_RESULT)] == [
        (12.5, -2.5, False), (20.0, 5.0, True)]
    failed = ttft.evaluate(PERF_RESULT)[1]
    assert failed.title == "TTFT (ms)@99% <= 500 at parallel_2_number_20"
    assert failed.describe() == "parallel_2_number_20: TTFT (ms)@99% = 650 is above the maximum 500 by 150"


def test_an_eval_gate_is_measured_once_and_a_missing_dataset_fails_it():
    (gate,) = eval_gates(["gsm8k=0.7"])
    (scored,) = gate.evaluate({"scores": {"gsm8k": 0.65}})
    assert (scored.point, scored.margin < 0, scored.describe()) == (
        None, True, "gsm8k = 0.65 is below the minimum 0.7 by 0.05")
    (missing,) = gate.evaluate({"scores": {"ceval": 0.9}})
    assert not missing.passed and missing.describe() == "no 'gsm8k' in the result"


@pytest.mark.parametrize("ending,counts", [
    (dict(), ("5", "2", "0")),
    (dict(status="failed", exit_code=1, error="shard 0 failed: <boom> & \"more\""), ("3", "1", "2")),
    (dict(status="cancelled", exit_code=143, stopped="interrupted by SIGTERM"), ("3", "1", "2")),
    (dict(status="running", exit_code=4, stopped="--wait-timeout 60 s reached"), ("3", "1", "2")),
], ids=["gates-checked", "job-failed", "interrupted", "wait-timeout-detached"])
def test_the_junit_xml_of_every_ending_is_valid_against_the_schema(ending, counts):
    document = junit_xml(verdict(**ending))
    assert_valid_junit(document)
    root = ElementTree.fromstring(document)
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == counts
    assert (root.get("tests"), root.get("failures")) == counts[:2]


def test_the_junit_xml_has_a_case_for_the_job_and_one_per_gate_and_test_point():
    suite = ElementTree.fromstring(junit_xml(verdict())).find("testsuite")
    assert suite.get("name") == "evalscope-serve perf m" and suite.get("time") == "12.346"
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["job_url"] == "http://evalscope.internal:9000/api/v1/jobs/job-1"
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert list(cases) == ["job succeeded", "TTFT (ms)@99% <= 500 at parallel_1_number_10",
                           "TTFT (ms)@99% <= 500 at parallel_2_number_20",
                           "Req Throughput (req/s) >= 15 at parallel_1_number_10",
                           "Req Throughput (req/s) >= 15 at parallel_2_number_20"]
    failing = cases["TTFT (ms)@99% <= 500 at parallel_2_number_20"]
    assert failing.find("system-out").text == "measured 650; limit <= 500; margin -150"
    assert failing.find("failure").get("message") == (
        "parallel_2_number_20: TTFT (ms)@99% = 650 is above the maximum 500 by 150")
    holding = cases["Req Throughput (req/s) >= 15 at parallel_2_number_20"]
    assert holding.find("failure") is None and holding.find("system-out").text.endswith("margin +5")


@pytest.mark.parametrize("ending,headline", [
    (dict(status="failed", exit_code=1, error="shard 0 failed"), "job failed"),
    (dict(status="cancelled", exit_code=143, stopped="interrupted by SIGTERM", error="cancelled by request"),
     "interrupted by SIGTERM; job cancelled"),
], ids=["failed", "stopped"])
def test_a_job_that_did_not_succeed_fails_its_case_and_leaves_its_gates_unchecked(ending, headline):
    job_case, *gate_cases = ElementTree.fromstring(junit_xml(verdict(**ending))).iter("testcase")
    assert job_case.find("failure").get("message") == f"{headline}: {ending['error']}"
    assert [(case.get("name"), case.find("skipped").get("message")) for case in gate_cases] == [
        ("TTFT (ms)@99% <= 500", f"not checked: {headline}"),
        ("Req Throughput (req/s) >= 15", f"not checked: {headline}")]


def test_the_markdown_summary_links_the_job_and_tabulates_metrics_and_gates():
    page = markdown_summary(verdict())
    job_url = "http://evalscope.internal:9000/api/v1/jobs/job-1"
    assert page.startswith("### ❌ evalscope-serve perf `m`: 2 of 4 gate checks failed\n\n"
                           f"Job [`job-1`]({job_url}) ([report]({job_url}/report)): succeeded after 12.3 s.\n\n")
    assert "| parallel_2_number_20 | 10 | 0 | 20.0 |  | 325.0 | 650.0 |" in page
    assert "| gate | test point | measured | limit | margin | result |\n| --- |" in page
    assert "| TTFT (ms)@99% | parallel_2_number_20 | 650 | <= 500 | -150 | ❌ fail |" in page
    assert "| Req Throughput (req/s) | parallel_2_number_20 | 20 | >= 15 | +5 | ✅ pass |" in page
    assert page.endswith("\n\n")  # the next step's section starts a paragraph of its own


def test_markdown_tables_survive_pipes_and_newlines_in_what_they_show():
    job = JobView.model_validate(job_document("failed", kind="eval", error="boom\nTraceback | line 2", result={
        "scores": {"gsm8k": 0.5}, "failures": {"ceval": "ValueError: a|b\nc"}, "output_dir": "/o"}))
    page = markdown_summary(Verdict(job, SERVER, 1, 1.0, eval_gates(["gsm8k=0.7"]), []))
    assert "> boom Traceback \\| line 2" in page
    assert "| ceval | failed: ValueError: a\\|b c |" in page
    assert "| gsm8k |  |  | >= 0.7 |  | not checked |" in page


def test_regression_gates_become_junit_cases_and_the_summary_shows_the_comparison():
    baseline = {"results": {point: perf_point(20.0, 400.0) for point in PERF_RESULT["results"]}}
    comparison = Comparison(kind="perf", baseline="job-b", candidate="job-1", comparable=True, differences=[],
                            verdict="worse", reasons=[], tolerance_pct=5.0,
                            metrics=compare_points(baseline, PERF_RESULT, 5.0))
    (gate,) = change_gates(["TTFT (ms)@99%=10%"], [])
    outcomes = gate.evaluate(comparison.model_dump())
    assert [(o.point, o.value, o.passed) for o in outcomes] == [("parallel_1_number_10", 5.0, True),
                                                              ("parallel_2_number_20", 62.5, False)]
    job = JobView.model_validate(job_document("succeeded", result=PERF_RESULT))
    result = Verdict(job, SERVER, 2, 1.0, [gate], outcomes, comparison=comparison)
    document = junit_xml(result)
    assert_valid_junit(document)
    failed = ElementTree.fromstring(document).find(
        ".//testcase[@name='TTFT (ms)@99% increase from baseline <= 10% at parallel_2_number_20']")
    assert failed.find("failure").get("message") == ("parallel_2_number_20: TTFT (ms)@99% increase from baseline = "
                                                     "62.5% is above the maximum 10% by 52.5% (400 -> 650)")
    summary = markdown_summary(result)
    assert "Against baseline `job-b`: worse" in summary
    assert "| parallel_2_number_20 | TTFT (ms) @99% | 400 | 650 | +250 | +62.5% | worse |" in summary
