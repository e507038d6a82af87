from serve_app.compare.requests import _BLOCKING, _IGNORED, Difference, differences
from serve_app.schemas import EvalRequest, PerfRequest

EVAL = {"model": "a", "api_url": "http://a/v1", "api_key": "**********", "datasets": ["gsm8k", "iquiz"], "limit": 5,
        "generation_config": {"temperature": 0.0, "max_tokens": 256}, "dataset_args": {"gsm8k": {"local_path": "/x"}},
        "eval_batch_size": 1, "work_dir": None, "seed": 42}
PERF = {"model": "a", "url": "http://a/v1/chat/completions", "number": 100, "parallel": 8, "rate": -1.0,
        "max_tokens": 64, "dataset": "openqa", "shards": 2, "temperature": 0.0, "warmup": 0}


def test_model_endpoint_and_how_a_run_is_carried_out_are_no_difference():
    other = {**EVAL, "model": "b", "api_url": "http://b/v1", "eval_batch_size": 8, "work_dir": "w",
             "datasets": ["iquiz", "gsm8k"]}
    assert differences("eval", EVAL, other) == []
    assert differences("perf", PERF, {**PERF, "model": "b", "url": "http://b/v1/chat/completions", "shards": 4}) == []


def test_eval_limits_datasets_and_their_options_block_and_generation_settings_are_listed():
    other = {**EVAL, "limit": 10, "datasets": ["gsm8k"], "generation_config": {"temperature": 0.7, "max_tokens": 256},
             "dataset_args": {"gsm8k": {"local_path": "/y", "few_shot_num": 0}}}
    assert differences("eval", EVAL, other) == [
        Difference("dataset_args.gsm8k.few_shot_num", None, 0, blocking=True),
        Difference("dataset_args.gsm8k.local_path", "/x", "/y", blocking=False),
        Difference("datasets", ["gsm8k", "iquiz"], ["gsm8k"], blocking=True),
        Difference("generation_config.temperature", 0.0, 0.7, blocking=False),
        Difference("limit", 5, 10, blocking=True),
    ]


def test_perf_load_parameters_block_and_the_rest_is_listed():
    other = {**PERF, "number": 200, "parallel": 16, "rate": 10.0, "max_tokens": 128, "dataset": "random",
             "max_prompt_length": 512, "temperature": 0.5, "warmup": 2, "read_timeout": 30.0,
             "headers": {"X-Tenant": "**********"}}
    found = {d.field: d.blocking for d in differences("perf", PERF, other)}
    assert found == {"number": True, "parallel": True, "rate": True, "max_tokens": True, "dataset": True,
                     "max_prompt_length": True, "temperature": False, "warmup": False, "read_timeout": False}


def test_a_load_shape_blocks_and_a_job_stored_before_shapes_existed_ran_the_default_one():
    stored_before = dict(PERF)  # no open_loop, arrival or stop_on_saturation: Poisson, closed loop, never stopped
    now = {**PERF, "open_loop": False, "arrival": "poisson", "burstiness": None, "ramp_up_s": None,
           "stop_on_saturation": False}
    assert differences("perf", stored_before, now) == []
    shaped = {**now, "open_loop": True, "arrival": "gamma", "burstiness": 0.5, "ramp_up_s": 5.0}
    assert {d.field: d.blocking for d in differences("perf", stored_before, shaped)} == {
        "open_loop": True, "arrival": True, "burstiness": True, "ramp_up_s": True}


def test_the_fields_it_ignores_or_blocks_on_are_the_requests_own():
    for kind, model in (("eval", EvalRequest), ("perf", PerfRequest)):
        assert (_IGNORED[kind] | _BLOCKING[kind]) <= set(model.model_fields), kind


def test_another_judge_makes_two_evals_not_comparable():
    judge = {"strategy": "llm", "models": [{"model_id": "j1", "api_url": "http://j/v1", "api_key": "**********"}]}
    other_judge = {**judge, "models": [{**judge["models"][0], "model_id": "j2"}]}
    assert [d.blocking for d in differences("eval", {**EVAL, "judge": judge}, {**EVAL, "judge": other_judge})] == [True]
    assert differences("eval", {**EVAL, "judge": judge}, {**EVAL, "judge": judge}) == []
