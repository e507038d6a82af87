"""The CLI turns its flags into exactly the request a user would write by hand."""

from serve_app.cli import _parser, _request
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
