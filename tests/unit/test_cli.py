"""The CLI turns its flags into exactly the request a user would write by hand, and stops its job as CI runners stop
a step (against a fake service that answers as slowly as a test needs)."""

import signal
import subprocess
import sys
import time

import pytest

from serve_app.cli import CANCEL_TIMEOUT_S, _gates, _parser, _request, main
from serve_app.schemas import EvalRequest, PerfRequest
from tests.unit.fake_service import FakeService


def test_eval_flags_become_a_valid_request_with_timeouts_and_retries():
    args = _parser().parse_args([
        "eval", "--model", "m", "--api-url", "http://h:1/v1", "--datasets", "gsm8k", "--limit", "5",
        "--max-tokens", "64", "--request-timeout", "30", "--retries", "1", "--api-key", "sk-cli",
    ])
    request = EvalRequest.model_validate(_request(args))
    assert request.limit == 5
    assert (request.generation_config.timeout, request.generation_config.retries) == (30, 1)
    assert request.generation_config.max_tokens == 64 and request.generation_config.temperature == 0.0
    assert request.api_key.get_secret_value() == "sk-cli"


def test_a_judge_flag_becomes_the_requests_judge_with_its_key_from_the_environment(monkeypatch):
    monkeypatch.setenv("EVALSCOPE_SERVE_JUDGE_API_KEY", "sk-judge-env")
    args = _parser().parse_args([
        "eval", "--model", "m", "--api-url", "http://h:1/v1", "--datasets", "gsm8k", "--judge",
        '{"strategy": "llm", "models": [{"model_id": "q", "api_url": "http://j:2/v1"}, '
        '{"model_id": "r", "api_url": "http://j:3/v1", "api_key": "sk-own"}]}',
    ])
    request = EvalRequest.model_validate(_request(args))
    assert request.judge.strategy == "llm" and request.judge_api_keys() == ["sk-judge-env", "sk-own"]


def test_perf_flags_become_a_valid_request_and_unset_flags_stay_out():
    args = _parser().parse_args([
        "perf", "--model", "m", "--url", "http://h:1/v1/chat/completions", "--number", "10", "20",
        "--parallel", "2", "4", "--total-timeout", "15",
    ])
    body = _request(args)
    assert body == {"model": "m", "url": "http://h:1/v1/chat/completions", "number": [10, 20], "parallel": [2, 4],
                    "total_timeout": 15.0}
    assert PerfRequest.model_validate(body).sweep() == [(2, 10, -1), (4, 20, -1)]


def test_load_shape_flags_become_a_rate_sweep_with_its_shape():
    args = _parser().parse_args([
        "perf", "--model", "m", "--url", "http://h:1/v1/chat/completions", "--rate", "5", "10", "--number", "50",
        "100", "--open-loop", "--arrival", "gamma", "--burstiness", "0.5", "--ramp-up-s", "2", "--stop-on-saturation",
    ])
    request = PerfRequest.model_validate(_request(args))
    assert request.sweep() == [(None, 50, 5.0), (None, 100, 10.0)]  # open loop: no cap unless --parallel
    assert (request.open_loop, request.arrival, request.burstiness, request.ramp_up_s, request.stop_on_saturation) \
        == (True, "gamma", 0.5, 2.0, True)
    single = _request(_parser().parse_args(["perf", "--model", "m", "--url", "http://h:1/v1", "--rate", "5"]))
    assert single["rate"] == 5.0 and "open_loop" not in single


def test_the_perf_summary_says_which_rate_points_kept_up_and_which_saturated():
    from serve_app.cli import _summary

    def point(saturated, reasons, not_sent):
        return {"metrics": {"Total Requests": 10}, "percentiles": [], "saturation": {
            "saturated": saturated, "requested_req_per_s": 60.0, "achieved_req_per_s": 59.8 if not reasons else 41.2,
            "in_flight_start": 2.0, "in_flight_end": 2.1 if not saturated else 85.0, "in_flight_trend_per_s": 0.0,
            "reasons": reasons, "stopped_early": bool(not_sent), "not_sent": not_sent}}

    text = _summary("perf", {"results": {
        "rate_20_number_10": point(False, [], 0),
        "rate_60_number_600": point(True, ["shard 0: stopped on saturation after 2.3 s"], 420),
    }, "output_dir": "/o"})
    assert "rate_20_number_10: kept up (59.8 of 60 req/s sent, in flight 2 -> 2.1)" in text
    assert ("rate_60_number_600: saturated (41.2 of 60 req/s sent, in flight 2 -> 85; 420 requests not sent): "
            "shard 0: stopped on saturation after 2.3 s") in text


def test_multi_turn_flags_become_a_multi_turn_request():
    args = _parser().parse_args([
        "perf", "--model", "m", "--url", "http://h:1/v1/chat/completions", "--dataset", "random_multi_turn",
        "--multi-turn", "--min-turns", "2", "--max-turns", "4", "--number", "10",
    ])
    request = PerfRequest.model_validate(_request(args))
    assert (request.multi_turn, request.min_turns, request.max_turns, request.number) == (True, 2, 4, 10)


def test_a_fractional_limit_stays_a_fraction_and_one_point_zero_means_everything():
    base = ["eval", "--model", "m", "--api-url", "http://h:1/v1", "--datasets", "gsm8k", "--limit"]
    assert EvalRequest.model_validate(_request(_parser().parse_args([*base, "0.5"]))).limit == 0.5
    whole = EvalRequest.model_validate(_request(_parser().parse_args([*base, "1.0"]))).limit
    assert isinstance(whole, float) and whole == 1.0


PERF_FLAGS = ["perf", "--model", "m", "--url", "http://127.0.0.1:9/v1/chat/completions", "--server",
              "http://127.0.0.1:9"]


@pytest.mark.parametrize("gate,message", [
    ('--max=TTFT@99%=500', "no percentile column 'TTFT'; columns: "),
    ('--min=Throughput=5', "no metric 'Throughput'; metrics: "),
    ('--max=TTFT (ms)@p99=500', "no percentile row 'p99'"),
])
def test_a_gate_naming_no_evalscope_metric_exits_3_before_anything_is_submitted(capsys, gate, message):
    # The server address is dead: reaching it would be a connection error, not this message.
    assert main([*PERF_FLAGS, gate]) == 3
    error = capsys.readouterr().err
    assert message in error and "cannot reach" not in error.lower()


@pytest.mark.parametrize("gate", ["--min=0.7", "--max=TTFT (ms)@99%=fast"])
def test_a_gate_without_a_name_or_a_number_exits_3(capsys, gate):
    assert main([*PERF_FLAGS, gate]) == 3
    assert "a gate is NAME=NUMBER" in capsys.readouterr().err


@pytest.mark.parametrize("retries", ["-1", "two"])
def test_http_retries_that_are_no_count_exit_3_before_anything_is_sent(capsys, retries):
    with pytest.raises(SystemExit) as exited:
        main([*PERF_FLAGS, "--http-retries", retries])
    assert exited.value.code == 3
    assert f"not a count of retries (0, 1, 2, ...): '{retries}'" in capsys.readouterr().err


def test_gates_with_evalscope_names_pass_the_check():
    args = _parser().parse_args([*PERF_FLAGS, "--max", "TTFT (ms)@99%=500", "--min", "Req Throughput (req/s)=10",
                                 "--max", "Latency (s)@max=3"])
    assert len(_gates(args)) == 3


def test_slo_flags_become_the_requests_slo_and_min_goodput_gates_every_point(capsys):
    args = _parser().parse_args([*PERF_FLAGS, "--slo", "ttft_ms=500", "--slo", "itl_ms=50", "--min-goodput", "0.9"])
    assert PerfRequest.model_validate(_request(args)).slo.limits() == {"ttft_ms": 500, "itl_ms": 50}
    (gate,) = _gates(args)
    result = {"results": {"p1": {"goodput": {"good_fraction": 0.95}}, "p2": {"goodput": {"good_fraction": 0.85}}}}
    assert [(o.point, o.passed) for o in gate.evaluate(result)] == [("p1", True), ("p2", False)]
    assert gate.evaluate(result)[1].describe() == "p2: good fraction = 0.85 is below the minimum 0.9 by 0.05"


@pytest.mark.parametrize("flags, message", [
    (["--min-goodput", "0.99"], "--min-goodput needs an slo"),
    (["--slo", "ttft_ms=500", "--min-goodput", "99"], "--min-goodput is a fraction of the requests in (0, 1]"),
])
def test_a_goodput_gate_that_could_never_hold_exits_3_before_submitting(capsys, flags, message):
    assert main([*PERF_FLAGS, *flags]) == 3
    assert message in capsys.readouterr().err


def test_the_perf_summary_shows_the_goodput_of_each_point_with_an_slo():
    from serve_app.cli import _summary

    point = {"metrics": {"Total Requests": 10}, "percentiles": [],
             "goodput": {"good": 9, "good_fraction": 0.9, "goodput_req_per_s": 4.5, "slo": {"ttft_ms": 500}}}
    text = _summary("perf", {"results": {"parallel_1_number_10": point}, "output_dir": "/o"})
    assert "good fraction" in text and "goodput req/s" in text and "4.5" in text


def test_search_flags_become_the_requests_search_and_min_capacity_gates_what_it_found():
    args = _parser().parse_args([*PERF_FLAGS, "--slo", "e2e_ms=800", "--search", "parallel", "--search-range", "1",
                                 "64", "--min-goodput", "0.95", "--max-probes", "6", "--min-capacity", "20"])
    search = PerfRequest.model_validate(_request(args)).search
    assert (search.vary, search.low, search.high, search.min_goodput, search.max_probes) == (
        "parallel", 1, 64, 0.95, 6)
    (gate,) = _gates(args)  # --min-goodput sets the search's criterion here, it is no gate of its own
    found = {"search": {"max_passing": 18.0, "verdict": "capacity 18 concurrent requests"}, "results": {}}
    assert gate.evaluate(found)[0].describe() == "capacity = 18 is below the minimum 20 by 2"


@pytest.mark.parametrize("flags, message", [
    (["--search", "rate"], "--search needs --search-range LOW HIGH"),
    (["--min-capacity", "40"], "--min-capacity gates what a search finds"),
])
def test_a_search_flag_without_what_it_needs_exits_3(capsys, flags, message):
    assert main([*PERF_FLAGS, "--slo", "ttft_ms=500", *flags]) == 3
    assert message in capsys.readouterr().err


def test_the_summary_of_a_partly_failed_eval_shows_scores_and_failures():
    from serve_app.cli import _summary

    text = _summary("eval", {"scores": {"gsm8k": 0.75}, "failures": {"ceval": "ValueError: bad data"},
                             "output_dir": "/o"})
    assert "0.7500" in text and "failed: ValueError: bad data" in text


def test_percentages_round_down_so_an_unfinished_job_never_reads_100():
    from serve_app.cli import _percent

    assert _percent(99.96) == "99.9%" and _percent(100.0) == "100.0%" and _percent(0) == "0.0%"


def cli_command(service, *flags):
    return [sys.executable, "-m", "serve_app.cli", "perf", "--model", "m", "--url", "http://target/v1/chat/completions",
            "--server", service.base_url, *flags]


def following(service, *flags, sigint=signal.SIG_DFL):
    """The CLI once it has the job's id; SIGINT as it started (SIG_IGN: a step launched in the background)."""
    process = subprocess.Popen(cli_command(service, *flags), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))
    assert process.stderr.readline() == "job job-1 running\n"
    return process


def test_a_stop_signals_handler_only_notes_it_and_the_check_raises_it_once():
    from serve_app.cli import _Interrupted, _StopSignals

    with _StopSignals() as signals:
        signals.arm()
        signals._interrupt(signal.SIGTERM, None)  # as the handler runs: no exception, wherever the CLI is
        with pytest.raises(_Interrupted) as interruption:
            signals.check()
        signals.check()  # once: the cancel that follows is not interrupted by the same signal
    assert interruption.value.signum == signal.SIGTERM


def test_a_second_signal_while_the_job_is_being_cancelled_exits_at_once():
    with FakeService(cancel_delay_s=60) as service:
        process = following(service, sigint=signal.SIG_IGN)
        process.send_signal(signal.SIGTERM)
        assert service.cancel_received.wait(10)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=CANCEL_TIMEOUT_S / 2)
    assert process.returncode == 130, stderr
    assert "SIGINT while stopping the job: exiting at once; it may still be running" in stderr


def test_a_cancel_the_service_does_not_confirm_is_given_up_within_the_bound():
    with FakeService(cancel_delay_s=60) as service:
        process = following(service)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=CANCEL_TIMEOUT_S + 5)
    assert process.returncode == 143, stderr
    assert f"interrupted by SIGTERM: could not cancel job job-1: no answer within {CANCEL_TIMEOUT_S:g} s" in stderr


def test_a_signal_during_the_submission_cancels_the_job_once_it_is_submitted():
    with FakeService(submit_delay_s=1) as service:
        process = subprocess.Popen(cli_command(service), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert service.submission_received.wait(30)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 130, stderr
    assert "interrupted by SIGINT: job job-1 cancelled" in stderr


def test_detached_the_job_is_left_running_on_a_signal_and_at_the_wait_timeout():
    with FakeService() as service:
        process = following(service, "--detach-on-interrupt")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
        assert process.returncode == 143, stderr
        assert "interrupted by SIGTERM: job job-1 left running (--detach-on-interrupt)" in stderr
        started = time.monotonic()
        run = subprocess.run(cli_command(service, "--detach-on-interrupt", "--wait-timeout", "1"),
                             capture_output=True, text=True, timeout=30)
        assert run.returncode == 4, run.stderr
        assert "--wait-timeout 1 s reached: job job-1 left running (--detach-on-interrupt)" in run.stderr
        assert time.monotonic() - started < 10
        assert not service.cancel_received.is_set()
