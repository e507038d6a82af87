"""LLM-as-judge settings: what the request takes (evalscope's `judge`, and its older judge_strategy and
judge_model_args), and the task config evalscope gets, whose judges carry no key until the worker puts it back."""

import asyncio

import pytest
from evalscope.config import JudgeConfig
from pydantic import ValidationError

from serve_app.errors import RequestError
from serve_app.eval.generation import check_generation_config
from serve_app.eval.judge import judge_task_config, with_judge_keys
from serve_app.schemas import EvalRequest

BASE = {"model": "m", "datasets": ["gsm8k"], "api_url": "http://h:1/v1"}
JUDGE = {"model_id": "judge", "api_url": "http://j:2/v1/chat/completions", "api_key": "sk-judge"}
DEFAULTS = {"timeout": 60.0, "retries": 3, "retry_interval": 2}


def test_evalscopes_older_judge_keys_are_read_as_evalscope_reads_them():
    request = EvalRequest(**BASE, judge_strategy="llm_recall",
                          judge_model_args={**JUDGE, "score_type": "numeric", "system_prompt": "Be strict."})
    assert request.judge.strategy == "llm_recall"
    assert (request.judge.contract.score_type, request.judge.contract.system_prompt) == ("numeric", "Be strict.")
    assert [model.model_id for model in request.judge.models] == ["judge"]
    assert request.secret_values() == ["EMPTY", "sk-judge"]


@pytest.mark.parametrize("fields, message", [
    ({"judge": {"strategy": "llm", "models": [JUDGE]}, "judge_strategy": "llm"}, "not both"),
    ({"judge": {"strategy": "llm"}}, "strategy llm needs at least one judge in models"),
    ({"judge": {"models": [JUDGE, JUDGE]}}, "two judges are named judge: give each a distinct judge_id"),
    ({"judge": {"models": [JUDGE], "min_valid_judges": 2}}, "min_valid_judges 2 exceeds the 1 judges given"),
    ({"judge": {"models": [{**JUDGE, "api_url": "ftp://j/v1"}]}}, "must be an http:// or https:// URL"),
    ({"judge": {"models": [{**JUDGE, "model_args": {"base_url": "http://elsewhere"}}]}}, "Extra inputs"),
])
def test_an_impossible_judge_is_refused_saying_why(fields, message):
    with pytest.raises(ValidationError, match=message):
        EvalRequest(**BASE, **fields)


def test_the_key_is_masked_wherever_the_request_is_shown():
    request = EvalRequest(**BASE, judge={"strategy": "llm", "models": [JUDGE]})
    assert "sk-judge" not in request.model_dump_json()
    assert request.model_dump(mode="json")["judge"]["models"][0]["api_key"] == "**********"


def test_the_task_config_judge_is_evalscopes_own_once_the_worker_puts_the_keys_back():
    request = EvalRequest(**BASE, judge={"strategy": "llm", "aggregation": "median", "models": [
        {**JUDGE, "generation_config": {"max_tokens": 64, "timeout": 5}},
        {"model_id": "judge", "judge_id": "second", "api_url": "http://j:3/v1"}]})
    config = judge_task_config(request.judge, DEFAULTS)
    assert all("api_key" not in model for model in config["models"])
    first, second = config["models"]
    assert first["api_url"] == "http://j:2/v1"  # evalscope wants the base URL
    assert first["generation_config"]["timeout"] == 5 and second["generation_config"]["timeout"] == 60.0
    task_config = {"judge": config}
    keyed = with_judge_keys(task_config, request.judge_api_keys())
    assert "api_key" not in task_config["judge"]["models"][0]  # the planned config is never given the keys
    judge = JudgeConfig.model_validate(keyed["judge"])  # as evalscope's TaskConfig will read it
    assert [model.api_key.get_secret_value() for model in judge.models] == ["sk-judge", "EMPTY"]
    assert (judge.strategy, judge.aggregation, [m.judge_id for m in judge.models]) == (
        "llm", "median", ["judge", "second"])


def test_the_requests_judge_fields_are_evalscopes():
    """The request documents evalscope's judge settings field by field: a new evalscope field or choice shows
    here, not as a 400 to users who copied it from evalscope's docs."""
    ours = EvalRequest.model_fields["judge"].annotation.__args__[0]
    evalscope_fields = set(JudgeConfig.model_fields)
    assert set(ours.model_fields) == evalscope_fields
    assert (ours.model_fields["strategy"].annotation.__args__
            == JudgeConfig.model_fields["strategy"].annotation.__args__)


def test_a_judges_generation_setting_evalscope_would_not_take_is_refused_naming_the_judge():
    request = EvalRequest(**BASE, judge={"strategy": "llm", "models": [
        JUDGE, {**JUDGE, "judge_id": "other", "generation_config": {"seed": "seven"}}]})
    with pytest.raises(RequestError, match=r"judge.models.1.generation_config.seed: 'seven' is not of type"):
        asyncio.run(check_generation_config(request))
