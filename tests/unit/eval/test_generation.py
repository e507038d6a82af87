"""generation_config held to evalscope's own GenerateConfig (its schema read in a subprocess, as the ingress does)."""

import asyncio

import pytest

from serve_app.errors import RequestError
from serve_app.eval import generation
from serve_app.eval.generation import check_generation_config
from serve_app.schemas import EvalRequest


def check(**generation_config) -> None:
    request = EvalRequest(model="m", datasets=["gsm8k"], api_url="http://h:1/v1",
                          generation_config=generation_config)
    asyncio.run(check_generation_config(request))


def test_evalscope_settings_beyond_the_documented_ones_are_taken():
    check(extra_body={"chat_template_kwargs": {"enable_thinking": False}}, stop_seqs=["</answer>"], seed=3, n=2,
          presence_penalty=0.5, frequency_penalty=0.1, reasoning_effort="low", logit_bias={"42": -1.0})


@pytest.mark.parametrize("fields, message", [
    ({"seed": 1.5}, "generation_config.seed: 1.5 is not of type 'integer'"),
    ({"stop_seqs": "</s>"}, "generation_config.stop_seqs: '</s>' is not of type 'array'"),
    ({"stop_seqs": ["a", 3]}, "generation_config.stop_seqs.1: 3 is not of type 'string'"),
    ({"reasoning_summary": "short"}, "generation_config.reasoning_summary: 'short' is not one of"),
    ({"extra_body": ["enable_thinking"]}, "generation_config.extra_body: ['enable_thinking'] is not of type 'object'"),
    ({"max_new_tokens": 5}, "generation_config.max_new_tokens is not an evalscope generation setting; valid: "),
    ({"batch_size": 8}, "generation_config.batch_size is not taken here: the service sets it from eval_batch_size"),
    ({"extra_headers": {"X-Key": "k"}}, "generation_config.extra_headers is not taken here: headers can carry"),
])
def test_a_setting_evalscope_would_not_take_is_refused_naming_the_field(fields, message):
    with pytest.raises(RequestError) as refused:
        check(**fields)
    assert message in str(refused.value)


def test_a_request_with_only_the_documented_settings_starts_no_subprocess(monkeypatch):
    def no_subprocess(*args):
        raise AssertionError("evalscope's schema read for a request that needs no check")

    monkeypatch.setattr(generation, "read_once", no_subprocess)
    check(max_tokens=64, temperature=0.2, top_p=0.9, top_k=5, timeout=30, retries=2, retry_interval=1)
