"""The CLI's regression gates against a baseline job (--baseline JOB|latest, --max-drop, --max-increase,
--max-decrease) and `evalscope-serve compare`, against the API on a real server over the real job manager, with runs
that leave evalscope's review files."""

import xml.etree.ElementTree as ET

import pytest

from serve_app.api import create_api
from serve_app.cli import _gates, _parser, main
from serve_app.client import Client
from tests.unit.compare.samples import ScoredRun, perf_point
from tests.unit.fakes import ManagerBackend
from tests.unit.live_server import serving

# An eval's model decides how many of the 20 gsm8k samples it gets right (the first n); a perf run's its p99 TTFT.
RIGHT_ANSWERS = {"prod": 10, "same": 10, "one-fewer": 9, "broken": 0}
TTFT_P99_MS = {"prod": 100.0, "slow": 150.0}


def outputs(kind, request):
    if kind == "perf":
        return {"parallel_1_number_10": perf_point(ttft_p99=TTFT_P99_MS[request.model], req_per_s=10.0)}
    return {"gsm8k": {"main": {i: float(i < RIGHT_ANSWERS[request.model]) for i in range(20)}}}


@pytest.fixture
def server(tmp_path):
    backend = ManagerBackend(tmp_path, make_run=lambda kind, request: ScoredRun(kind, outputs(kind, request)))
    with serving(create_api(backend)) as base_url:
        yield base_url


def cli(server, *argv):
    return main([*argv[:1], "--server", server, "--http-retries", "0", *argv[1:]])


def evaluate(server, model, *flags):
    return cli(server, "eval", "--model", model, "--api-url", "http://127.0.0.1:1/v1", "--datasets", "gsm8k",
               "--limit", "20", *flags)


def load_test(server, model, *flags):
    return cli(server, "perf", "--model", model, "--url", "http://127.0.0.1:1/v1/chat/completions", "--number", "10",
               *flags)


def newest_job(server, kind):
    with Client(server) as client:
        return client.list_jobs(kind=kind, limit=1).jobs[0].job_id


def test_a_significant_drop_past_the_limit_fails_the_step_and_its_junit_case(server, tmp_path, capsys):
    assert evaluate(server, "prod") == 0
    baseline = newest_job(server, "eval")
    report = tmp_path / "junit.xml"
    code = evaluate(server, "broken", "--baseline", baseline, "--max-drop", "gsm8k=0.02", "--junit-xml", str(report))
    assert code == 2
    out, err = capsys.readouterr()
    assert f"against baseline {baseline}: worse" in out
    assert "gate failed: gsm8k drop from baseline = 0.5 is above the maximum 0.02 by 0.48 (95% interval" in err
    (case,) = [c for c in ET.parse(report).iter("testcase") if c.get("name") == "gsm8k drop from baseline <= 0.02"]
    assert case.find("failure") is not None


def test_a_drop_past_the_limit_that_is_not_significant_passes_saying_so(server, capsys):
    assert evaluate(server, "prod") == 0
    baseline = newest_job(server, "eval")
    capsys.readouterr()
    assert evaluate(server, "one-fewer", "--baseline", baseline, "--max-drop", "gsm8k=0.02") == 0
    assert "no significant change" in capsys.readouterr().out


def test_baseline_latest_is_the_callers_newest_succeeded_job_of_the_model(server, capsys):
    assert evaluate(server, "prod") == 0
    first = newest_job(server, "eval")
    assert evaluate(server, "prod", "--baseline", "latest", "--max-drop", "gsm8k=0.02") == 0
    err = capsys.readouterr().err
    assert f"baseline: {first} (your newest succeeded eval job of prod)" in err
    assert evaluate(server, "broken", "--baseline", "latest", "--baseline-model", "prod",
                    "--max-drop", "gsm8k=0.1") == 2


def test_baseline_latest_without_any_job_of_the_model_exits_3_before_submitting(server, capsys):
    assert evaluate(server, "prod", "--baseline", "latest") == 3
    assert "--baseline latest: you have no succeeded eval job of model 'prod'" in capsys.readouterr().err
    with Client(server) as client:
        assert client.list_jobs().total == 0


def test_a_baseline_of_another_kind_exits_3_before_submitting(server, capsys):
    assert load_test(server, "prod") == 0
    perf_job = newest_job(server, "perf")
    assert evaluate(server, "prod", "--baseline", perf_job) == 3
    assert f"--baseline {perf_job} is a succeeded perf job; a succeeded eval job is needed" in capsys.readouterr().err


def test_a_perf_increase_past_a_relative_or_absolute_limit_fails(server, capsys):
    assert load_test(server, "prod") == 0
    baseline = newest_job(server, "perf")
    assert load_test(server, "slow", "--baseline", baseline, "--max-increase", "TTFT (ms)@99%=10%") == 2
    assert ("gate failed: parallel_1_number_10: TTFT (ms)@99% increase from baseline = 50% is above the maximum 10% "
            "by 40% (100 -> 150)") in capsys.readouterr().err
    assert load_test(server, "slow", "--baseline", baseline, "--max-increase", "TTFT (ms)@99%=60",
                     "--max-decrease", "Req Throughput (req/s)=1%") == 0


def test_compare_prints_the_comparison_as_a_table(server, capsys):
    assert evaluate(server, "prod") == 0
    baseline = newest_job(server, "eval")
    assert evaluate(server, "broken") == 0
    candidate = newest_job(server, "eval")
    capsys.readouterr()
    assert cli(server, "compare", baseline, candidate) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"eval {candidate} against baseline {baseline}: worse"
    assert lines[1].split() == ["dataset", "subset", "paired", "baseline", "candidate", "change", "95%", "interval",
                                "unpaired", "b/c", "verdict"]
    assert lines[3].split()[:6] == ["gsm8k", "(all)", "20", "0.5000", "0.0000", "-0.5000"]


@pytest.mark.parametrize("flags, message", [
    (["--max-drop", "gsm8k=0.02"], "give --baseline JOB or --baseline latest"),
    (["--baseline", "latest", "--max-drop", "iquiz=0.02"], "--max-drop names 'iquiz', which this eval does not run"),
    (["--baseline", "job-1", "--baseline-model", "other"], "--baseline-model names whose newest job"),
    (["--baseline", "latest", "--max-drop", "gsm8k"], "a gate is NAME=NUMBER"),
])
def test_regression_gates_without_what_they_need_exit_3_before_submitting(flags, message, capsys):
    code = main(["eval", "--server", "http://127.0.0.1:9", "--model", "m", "--api-url", "http://h:1/v1",
                 "--datasets", "gsm8k", *flags])
    assert code == 3 and message in capsys.readouterr().err


def test_perf_change_gates_take_a_percentage_or_an_amount_and_evalscopes_names():
    args = _parser().parse_args(["perf", "--model", "m", "--url", "http://h:1/v1/chat/completions", "--baseline",
                                 "latest", "--max-increase", "TTFT (ms)@99%=10%", "--max-decrease",
                                 "Req Throughput (req/s)=2"])
    increase, decrease = _gates(args)
    assert (increase.name, increase.condition) == (
        "TTFT (ms)@99% increase from baseline", "<= 10%")
    assert (decrease.name, decrease.condition) == ("Req Throughput (req/s) decrease from baseline", "<= 2")
    with pytest.raises(Exception, match="no percentile column 'TTF'"):
        _gates(_parser().parse_args(["perf", "--model", "m", "--url", "http://h:1/v1/chat/completions",
                                     "--baseline", "latest", "--max-increase", "TTF@99%=10%"]))


def test_the_junit_case_of_a_drop_that_is_not_significant_says_why_it_passed(server, tmp_path):
    assert evaluate(server, "prod") == 0
    report = tmp_path / "junit.xml"
    assert evaluate(server, "one-fewer", "--baseline", "latest", "--baseline-model", "prod",
                    "--max-drop", "gsm8k=0.02", "--junit-xml", str(report)) == 0
    (case,) = [c for c in ET.parse(report).iter("testcase") if c.get("name") == "gsm8k drop from baseline <= 0.02"]
    assert case.find("failure") is None
    assert case.find("system-out").text.startswith("measured 0.05; limit <= 0.02; margin -0.03; 95% interval")
    assert case.find("system-out").text.endswith("past the limit, but not significantly: passed")


def test_leaderboard_and_history_print_the_newest_scores_and_a_models_jobs(server, capsys):
    assert evaluate(server, "prod") == 0 and evaluate(server, "broken") == 0 and load_test(server, "prod") == 0
    perf_job = newest_job(server, "perf")
    capsys.readouterr()
    assert cli(server, "leaderboard", "--datasets", "gsm8k") == 0
    rows = [line.split()[:3] for line in capsys.readouterr().out.splitlines()[2:]]
    assert rows == [["gsm8k", "prod", "0.5000"], ["gsm8k", "broken", "0.0000"]]
    assert cli(server, "history", "prod") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split()[:2] == [perf_job, "perf"]
    assert "parallel_1_number_10: 10 req/s, TTFT p99 100 ms" in lines[2]
    assert "gsm8k 0.5000" in lines[3] and lines[-1] == "2 of 2"
