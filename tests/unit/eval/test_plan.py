from pathlib import Path

import pytest
from evalscope.config import TaskConfig

from serve_app.config import ServiceArgs
from serve_app.errors import RequestError
from serve_app.eval.benchmarks import known_benchmarks
from serve_app.eval.plan import plan_eval
from serve_app.targets import normalize_api_url
from serve_app.schemas import EvalRequest
from tests.conftest import SAMPLES


@pytest.fixture
def args(tmp_path):
    # The samples root by its absolute path: the default is relative to the directory pytest starts in.
    return ServiceArgs(outputs_root=tmp_path / "outputs", datasets_root=tmp_path / "datasets", samples_root=SAMPLES)


def request(**fields):
    return EvalRequest(**{"model": "m", "datasets": ["gsm8k"], "api_url": "http://h:1/v1", **fields})


def test_known_benchmarks_come_from_evalscope_without_importing_it():
    assert {"gsm8k", "iquiz", "ceval", "mmlu"} <= known_benchmarks()


@pytest.mark.parametrize(
    "url", ["http://h:1/v1", "http://h:1/v1/", "http://h:1/v1/chat/completions", "http://h:1/v1/completions"]
)
def test_api_url_accepts_base_or_endpoint(url):
    assert normalize_api_url(url) == "http://h:1/v1"


def test_one_task_per_dataset_each_a_valid_evalscope_task_config(args):
    plan = plan_eval(
        request(
            datasets=["gsm8k", "iquiz"],
            limit=3,
            dataset_args={"gsm8k": {"local_path": str(SAMPLES / "gsm8k"), "few_shot_num": 0}},
            generation_config={"max_tokens": 64, "temperature": 0.5},
        ),
        args,
    )
    assert [task.dataset for task in plan.tasks] == ["gsm8k", "iquiz"]
    gsm8k = TaskConfig(**plan.tasks[0].task_config, api_key="k")
    assert gsm8k.datasets == ["gsm8k"]
    assert gsm8k.dataset_args["gsm8k"]["few_shot_num"] == 0
    assert gsm8k.limit == 3
    assert gsm8k.generation_config.max_tokens == 64
    assert gsm8k.api_url == "http://h:1/v1"
    assert Path(gsm8k.work_dir).is_relative_to(plan.output_dir)
    assert "api_key" not in plan.tasks[0].task_config


def test_dataset_sources_are_reported(args):
    (args.datasets_root / "iquiz").mkdir(parents=True)
    plan = plan_eval(
        request(datasets=["gsm8k", "iquiz", "ceval"], dataset_args={"gsm8k": {"local_path": str(SAMPLES / "gsm8k")}}),
        args,
    )
    origins = {task.dataset: (task.source.origin, task.source.path) for task in plan.tasks}
    assert origins["gsm8k"] == ("request", str(SAMPLES / "gsm8k"))
    assert origins["iquiz"] == ("datasets_root", str(args.datasets_root / "iquiz"))
    assert origins["ceval"] == ("hub", None)


def test_relative_local_path_resolves_against_the_datasets_root(args):
    (args.datasets_root / "mine" / "gsm8k").mkdir(parents=True)
    plan = plan_eval(request(dataset_args={"gsm8k": {"local_path": "mine/gsm8k"}}), args)
    assert plan.tasks[0].task_config["dataset_args"]["gsm8k"]["local_path"] == str(args.datasets_root / "mine/gsm8k")


def test_missing_local_path_is_refused_with_where_it_looked(args):
    with pytest.raises(RequestError, match="not a directory"):
        plan_eval(request(dataset_args={"gsm8k": {"local_path": "absent"}}), args)


def test_work_dir_is_relative_to_the_outputs_root(args):
    output_dir = plan_eval(request(work_dir="team-a/run1"), args).output_dir
    assert output_dir.parent.parent == args.outputs_root / "team-a/run1"


def test_timeouts_and_retries_default_to_the_service_and_requests_may_override(args):
    args = args.model_copy(update={"eval_timeout_s": 30, "eval_retries": 2, "eval_retry_interval_s": 1})
    defaults = TaskConfig(**plan_eval(request(), args).tasks[0].task_config, api_key="k")
    assert (defaults.generation_config.timeout, defaults.generation_config.retries) == (30, 2)
    assert defaults.generation_config.retry_interval == 1
    # Only evalscope's attempts count: the OpenAI SDK's own hidden retries are off.
    assert defaults.model_args["max_retries"] == 0
    chosen = {"timeout": 5, "retries": 1, "retry_interval": 0}
    overridden = TaskConfig(**plan_eval(request(generation_config=chosen), args).tasks[0].task_config, api_key="k")
    assert overridden.generation_config.timeout == 5 and overridden.generation_config.retries == 1
    assert overridden.generation_config.retry_interval == 0


def test_a_fraction_reaches_evalscope_as_a_fraction_and_one_point_zero_as_no_limit(args):
    def planned_limit(limit):
        return TaskConfig(**plan_eval(request(limit=limit), args).tasks[0].task_config, api_key="k").limit

    assert planned_limit(0.5) == 0.5 and planned_limit(3) == 3
    assert planned_limit(1.0) is None  # evalscope would read 1.0 as one sample


def test_evalscope_generation_settings_repeats_and_ignore_errors_reach_its_task_config(args):
    plan = plan_eval(request(repeats=3, ignore_errors=True, generation_config={
        "max_tokens": 64, "stop_seqs": ["\n\n"], "extra_body": {"chat_template_kwargs": {"enable_thinking": False}}}),
        args)
    task = TaskConfig(**plan.tasks[0].task_config, api_key="k")
    assert task.repeats == 3 and task.ignore_errors is True
    assert task.generation_config.stop_seqs == ["\n\n"]
    assert task.generation_config.extra_body == {"chat_template_kwargs": {"enable_thinking": False}}
