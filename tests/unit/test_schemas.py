import pytest
from pydantic import ValidationError

from serve_app.schemas import EvalRequest, PerfRequest

EVAL = {"model": "m", "datasets": ["gsm8k"], "api_url": "http://127.0.0.1:8801/v1"}
PERF = {"model": "m", "url": "http://127.0.0.1:8801/v1/chat/completions"}


def test_eval_defaults_follow_the_seed_api():
    request = EvalRequest(**EVAL)
    assert request.api_key.get_secret_value() == "EMPTY"
    assert request.eval_batch_size == 1 and request.seed == 42
    assert request.generation_config.temperature == 0.0 and request.generation_config.max_tokens == 2048


@pytest.mark.parametrize(
    "change,fragment",
    [
        ({"datasets": []}, "datasets"),
        ({"datasets": ["gsm8k", "gsm8k"]}, "twice"),
        ({"limit": 0}, "limit"),
        ({"limit": 1.5}, "fraction"),
        ({"eval_batch_size": 0}, "eval_batch_size"),
        ({"dataset_args": {"ceval": {}}}, "not requested"),
        ({"unknown_field": 1}, "unknown_field"),
        ({"model": "m" * 129}, "model\n  String should have at most 128 characters"),
    ],
)
def test_eval_rejects_bad_input_with_the_field_named(change, fragment):
    with pytest.raises(ValidationError, match=fragment):
        EvalRequest(**{**EVAL, **change})


def test_eval_limit_accepts_counts_and_fractions_as_evalscope_reads_them():
    assert EvalRequest(**EVAL, limit=5).limit == 5
    assert EvalRequest(**EVAL, limit=0.25).limit == 0.25
    # 1.0 is a fraction: every sample, not one (JSON keeps the decimal point, so it arrives as a float).
    whole = EvalRequest.model_validate_json('{"model": "m", "datasets": ["gsm8k"], "api_url": "http://h:1/v1", '
                                            '"limit": 1.0}')
    assert isinstance(whole.limit, float) and whole.limit == 1.0
    with pytest.raises(ValidationError, match="a count of samples is an integer"):
        EvalRequest(**EVAL, limit=5.0)


def test_perf_defaults_follow_the_seed_api():
    request = PerfRequest(**PERF)
    assert (request.number, request.parallel, request.rate, request.dataset, request.stream) == (
        1000,
        1,
        -1,
        "openqa",
        True,
    )
    assert request.sweep() == [(1, 1000, -1)]


@pytest.mark.parametrize(
    "change",
    [
        {"number": -5},
        {"parallel": 0},
        {"number": [10, 20], "parallel": [1]},
        {"rate": 0},
        {"api": "carrier-pigeon"},
        {"shards": 0},
        {"number": []},
    ],
)
def test_perf_rejects_bad_input(change):
    with pytest.raises(ValidationError):
        PerfRequest(**{**PERF, **change})


def test_perf_sweep_pairs_lists_and_broadcasts_scalars():
    assert PerfRequest(**PERF, number=[10, 20], parallel=[1, 2]).sweep() == [(1, 10, -1), (2, 20, -1)]
    assert PerfRequest(**PERF, number=[10, 20], parallel=4).sweep() == [(4, 10, -1), (4, 20, -1)]


def test_api_key_never_appears_in_a_dump():
    request = PerfRequest(**PERF, api_key="sk-very-secret")
    assert "sk-very-secret" not in request.model_dump_json()
    assert "sk-very-secret" not in repr(request)


@pytest.mark.parametrize("fields, message", [
    ({"multi_turn": True, "rate": 5}, "rate schedule requests at a rate; a multi_turn load is paced by its conv"),
    ({"multi_turn": True, "rate": 5, "open_loop": True}, "rate, open_loop schedule requests at a rate"),
    ({"max_turns": 3}, "max_turns shape the conversations of a multi_turn load: set multi_turn"),
    ({"multi_turn": True, "min_turns": 4, "max_turns": 2}, r"min_turns \(4\) is over max_turns \(2\)"),
])
def test_a_multi_turn_load_refuses_what_would_schedule_it_or_cannot_hold(fields, message):
    with pytest.raises(ValidationError, match=message):
        PerfRequest(**PERF, dataset="custom_multi_turn", **fields)


@pytest.mark.parametrize("fields", [{"rate": 5}, {"rate": [2, 4]}, {"rate": 5, "open_loop": True},
                                    {"search": {"vary": "rate", "low": 1, "high": 50}, "slo": {"e2e_ms": 500}}])
def test_a_trace_replay_refuses_a_schedule_that_would_replace_its_arrival_times(fields):
    with pytest.raises(ValidationError, match="would replace the arrival times of the workload_trace dataset"):
        PerfRequest(**PERF, dataset="workload_trace", **fields)
    PerfRequest(**PERF, dataset="workload_trace", parallel=4)  # closed loop: its requests, parallel at a time


def test_a_multi_turn_load_sweeps_conversations_and_concurrency():
    request = PerfRequest(**PERF, dataset="random_multi_turn", multi_turn=True, min_turns=2, max_turns=5,
                          number=[4, 8], parallel=[2, 4], duration_s=30)
    assert request.sweep() == [(2, 4, -1.0), (4, 8, -1.0)]
