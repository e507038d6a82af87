import re

import pytest

from serve_app.config import ServiceArgs
from serve_app.errors import RequestError
from serve_app.limits import check_eval_limits, check_perf_limits
from serve_app.schemas import EvalRequest, PerfRequest

ARGS = ServiceArgs(max_parallel=100, max_rate=5000, max_limit=50, max_eval_batch_size=8, request_timeout_s=300,
                   max_eval_retries=3)


def eval_request(**fields):
    return EvalRequest(**{"model": "m", "datasets": ["gsm8k"], "api_url": "http://h:1/v1", "limit": 5, **fields})


def perf_request(**fields):
    return PerfRequest(**{"model": "m", "url": "http://h:1/v1/chat/completions", **fields})


@pytest.mark.parametrize(
    "fields,message",
    [({"number": 2_000_001}, "number=2000001 is over this service's limit of 1000000 (max_number)"),
     ({"number": [10, 10], "parallel": [1, 500]}, "parallel=500 is over this service's limit of 100 (max_parallel)"),
     ({"rate": 10_000}, "rate=10000.0 is over this service's limit of 5000.0 (max_rate)"),
     ({"warmup": 2_000_000}, "warmup=2000000 is over this service's limit of 1000000 (max_number)"),
     ({"total_timeout": 301}, "total_timeout=301.0 is over this service's limit of 300.0 (request_timeout_s)")],
)
def test_perf_over_a_limit_is_refused_naming_the_limit(fields, message):
    with pytest.raises(RequestError, match=re.escape(message)):
        check_perf_limits(perf_request(**fields), ARGS)


@pytest.mark.parametrize(
    "fields,message",
    [({"limit": 51}, "limit=51 is over this service's limit of 50 (max_limit)"),
     ({"limit": 0.5}, "limit=0.5 is a fraction, but this service caps samples per subset at 50 (max_limit)"),
     ({"limit": None}, "limit is required by this service (at most 50 samples per subset)"),
     ({"eval_batch_size": 9}, "eval_batch_size=9 is over this service's limit of 8 (max_eval_batch_size)"),
     ({"generation_config": {"timeout": 900}}, "generation_config.timeout=900.0 is over this service's limit"),
     ({"generation_config": {"retries": 4}}, "generation_config.retries=4 is over this service's limit of 3")],
)
def test_eval_over_a_limit_is_refused_naming_the_limit(fields, message):
    with pytest.raises(RequestError, match=re.escape(message)):
        check_eval_limits(eval_request(**fields), ARGS)


def test_requests_at_the_limits_pass():
    check_eval_limits(eval_request(limit=50, eval_batch_size=8, generation_config={"timeout": 300, "retries": 3}), ARGS)
    check_eval_limits(eval_request(limit=0.5), ServiceArgs())  # without max_limit, a fraction is fine
    check_perf_limits(perf_request(number=1_000_000, parallel=100, rate=5000, total_timeout=300), ARGS)


def test_without_max_limit_an_eval_may_run_whole_datasets():
    check_eval_limits(eval_request(limit=None), ServiceArgs())
