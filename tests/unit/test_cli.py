"""The CLI turns its flags into exactly the request a user would write by hand."""

import pytest

from serve_app.cli import _gates, _parser, _request, main
from serve_app.schemas import EvalRequest, PerfRequest


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


def test_perf_flags_become_a_valid_request_and_unset_flags_stay_out():
    args = _parser().parse_args([
        "perf", "--model", "m", "--url", "http://h:1/v1/chat/completions", "--number", "10", "20",
        "--parallel", "2", "4", "--total-timeout", "15",
    ])
    body = _request(args)
    assert body == {"model": "m", "url": "http://h:1/v1/chat/completions", "number": [10, 20], "parallel": [2, 4],
                    "total_timeout": 15.0}
    assert PerfRequest.model_validate(body).sweep() == [(2, 10), (4, 20)]


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


def test_gates_with_evalscope_names_pass_the_check():
    args = _parser().parse_args([*PERF_FLAGS, "--max", "TTFT (ms)@99%=500", "--min", "Req Throughput (req/s)=10",
                                 "--max", "Latency (s)@max=3"])
    assert len(_gates(args)) == 3


def test_the_summary_of_a_partly_failed_eval_shows_scores_and_failures():
    from serve_app.cli import _summary

    text = _summary("eval", {"scores": {"gsm8k": 0.75}, "failures": {"ceval": "ValueError: bad data"},
                             "output_dir": "/o"})
    assert "0.7500" in text and "failed: ValueError: bad data" in text


def test_percentages_round_down_so_an_unfinished_job_never_reads_100():
    from serve_app.cli import _percent

    assert _percent(99.96) == "99.9%" and _percent(100.0) == "100.0%" and _percent(0) == "0.0%"

