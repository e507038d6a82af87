"""dataset_args: an allowlist over evalscope's BenchmarkMeta; names stay names and every path stays inside the roots."""

import dataclasses

import pytest
from evalscope.api.benchmark.meta import BenchmarkMeta
from evalscope.config import TaskConfig

from serve_app.config import ServiceArgs
from serve_app.errors import RequestError
from serve_app.eval.benchmarks import benchmark_meta, known_benchmarks
from serve_app.eval.dataset_args import ACCEPTED_KEYS, REFUSED_KEYS, check_dataset_args
from serve_app.eval.plan import plan_eval
from serve_app.schemas import EvalRequest


@pytest.fixture
def args(tmp_path):
    (tmp_path / "datasets" / "gsm8k").mkdir(parents=True)
    (tmp_path / "datasets" / "bird" / "dev_databases").mkdir(parents=True)
    return ServiceArgs(outputs_root=tmp_path / "outputs", datasets_root=tmp_path / "datasets", samples_root=None)


def planned_dataset_args(args, dataset, dataset_args):
    request = EvalRequest(model="m", datasets=[dataset], api_url="http://h:1/v1", dataset_args={dataset: dataset_args})
    return plan_eval(request, args).tasks[0].task_config["dataset_args"][dataset]


def refusal(args, dataset, dataset_args):
    with pytest.raises(RequestError) as refused:
        planned_dataset_args(args, dataset, dataset_args)
    return str(refused.value)


def test_every_benchmark_meta_field_is_either_accepted_or_refused_with_a_reason():
    fields = {field.name for field in dataclasses.fields(BenchmarkMeta)} | {"local_path"}
    assert set(ACCEPTED_KEYS) | set(REFUSED_KEYS) == fields
    assert not set(ACCEPTED_KEYS) & set(REFUSED_KEYS)


@pytest.mark.parametrize("key", ["dataset_id", "hf_dataset_id", "dataset_revision", "force_redownload"])
def test_hub_sources_are_refused_naming_the_key(args, key):
    # evalscope applies dataset_id after local_path: it would replace the confined directory.
    message = refusal(args, "gsm8k", {"local_path": "gsm8k", key: "/etc"})
    assert message.startswith(f"dataset_args.gsm8k.{key} is not accepted by this service: a request cannot name")


def test_the_benchmark_s_own_sandbox_config_is_not_the_request_s(args):
    message = refusal(args, "gsm8k", {"sandbox_config": {"volumes": {"/": {"bind": "/host"}}}})
    assert "dataset_args.gsm8k.sandbox_config" in message and "code_sandbox" in message


def test_an_unknown_key_is_refused_with_the_accepted_ones(args):
    message = refusal(args, "gsm8k", {"few_shot_nmu": 0})
    assert message.startswith("dataset_args.gsm8k.few_shot_nmu is not an evalscope dataset option; accepted:")
    assert "few_shot_num" in message and "subset_list" in message


@pytest.mark.parametrize("subset", ["../../etc", "a/b", "..", "..\\x", "x" * 129, ""])
def test_subset_names_cannot_walk_out_of_the_dataset_directory(args, subset):
    message = refusal(args, "gsm8k", {"local_path": "gsm8k", "subset_list": [subset]})
    assert f"dataset_args.gsm8k.subset_list entry {subset!r} is not a subset name" in message


def test_subsets_the_benchmark_declares_are_names_even_with_a_slash(args):
    assert "arxiv/december" in benchmark_meta("arxivmath")["subset_list"]
    assert planned_dataset_args(args, "arxivmath", {"subset_list": ["arxiv/december"]})["subset_list"] == [
        "arxiv/december"
    ]


@pytest.mark.parametrize("key", ["eval_split", "train_split"])
def test_splits_are_names_too(args, key):
    assert f"dataset_args.gsm8k.{key} must be a split name" in refusal(args, "gsm8k", {key: "../../x"})
    assert planned_dataset_args(args, "gsm8k", {key: "test"})[key] == "test"


@pytest.mark.parametrize(
    "template", ["{question.__class__.__init__.__globals__}", "{question[0]}", "{question:{width.real}}"]
)
def test_templates_cannot_look_up_attributes(args, template):
    message = refusal(args, "gsm8k", {"prompt_template": template})
    assert "dataset_args.gsm8k.prompt_template may use plain placeholders" in message


def test_plain_templates_and_prompts_with_braces_pass_unchanged(args):
    dataset_args = {
        "prompt_template": "Q: {question}\nA:",
        "system_prompt": 'Answer in JSON like {"answer": 1}',
        "few_shot_num": 0,
        "few_shot_random": False,
        "shuffle": True,
    }
    assert planned_dataset_args(args, "gsm8k", dataset_args) == {
        **dataset_args,
        "local_path": str(args.datasets_root / "gsm8k"),
    }


def test_metrics_are_names_with_numeric_or_boolean_options(args):
    metrics = ["acc", {"acc": {"allow_inclusion": True}}]
    assert planned_dataset_args(args, "gsm8k", {"metric_list": metrics})["metric_list"] == metrics
    message = refusal(args, "gsm8k", {"metric_list": [{"bert_score": {"model_id_or_path": "/etc"}}]})
    assert "dataset_args.gsm8k.metric_list entry" in message


def test_wrong_types_name_the_key(args):
    assert "dataset_args.gsm8k.few_shot_num must be an integer >= 0" in refusal(args, "gsm8k", {"few_shot_num": -1})
    assert "dataset_args.gsm8k.shuffle must be true or false" in refusal(args, "gsm8k", {"shuffle": "yes"})


def test_a_path_extra_param_is_confined_and_resolved(args):
    planned = planned_dataset_args(args, "bird_sql", {"extra_params": {"db_root": "bird/dev_databases"}})
    assert planned["extra_params"] == {"db_root": str(args.datasets_root / "bird" / "dev_databases")}
    message = refusal(args, "bird_sql", {"extra_params": {"db_root": "../secret"}})
    assert message.startswith("dataset_args.bird_sql.extra_params.db_root '../secret' is outside the allowed")


@pytest.mark.parametrize(
    "dataset,param,value",
    [("aa_lcr", "text_dir", "/etc"), ("needle_haystack", "tokenizer_path", "Qwen/Qwen3-0.6B")],
)
def test_paths_in_extra_params_stay_inside_the_roots(args, dataset, param, value):
    message = refusal(args, dataset, {"extra_params": {param: value}})
    assert message.startswith(f"dataset_args.{dataset}.extra_params.{param} {value!r}")


def test_extra_params_are_the_benchmark_s_own_and_typed(args):
    assert "is not a parameter of bird_sql" in refusal(args, "bird_sql", {"extra_params": {"text_dir": "x"}})
    assert "must be one of 'TCoT', 'SCoT', 'DP'" in refusal(
        args, "tablebench", {"extra_params": {"instruction_type": "X"}}
    )
    assert "must be of type int" in refusal(args, "bird_sql", {"extra_params": {"sample_rows": "3"}})
    planned = planned_dataset_args(args, "bird_sql", {"extra_params": {"sample_rows": 3, "timeout": 5}})
    assert planned["extra_params"] == {"sample_rows": 3, "timeout": 5}


@pytest.mark.parametrize(
    "dataset,param,value",
    [("boolq", "decision_kind", "noul"), ("needle_haystack", "needles", ["x"]), ("general_arena", "models", [])],
)
def test_free_form_extra_params_are_refused(args, dataset, param, value):
    message = refusal(args, dataset, {"extra_params": {param: value}})
    assert message.startswith(f"dataset_args.{dataset}.extra_params.{param} is not accepted by this service")


def test_every_declared_extra_param_is_either_accepted_or_refused(args):
    """No benchmark's own default value makes the check fail with anything but a 400."""
    for name in sorted(known_benchmarks()):
        for param, spec in benchmark_meta(name)["extra_params"].items():
            try:
                check_dataset_args(name, {"extra_params": {param: spec["value"]}}, args)
            except RequestError as refused:
                assert str(refused).startswith(f"dataset_args.{name}.extra_params.{param}")


def test_checked_dataset_args_make_a_valid_evalscope_task(args):
    dataset_args = {"subset_list": ["main"], "few_shot_num": 0, "extra_params": {}, "metric_list": ["acc"]}
    request = EvalRequest(model="m", datasets=["gsm8k"], api_url="http://h:1/v1", dataset_args={"gsm8k": dataset_args})
    config = TaskConfig(**plan_eval(request, args).tasks[0].task_config, api_key="k")
    assert config.dataset_args["gsm8k"]["subset_list"] == ["main"]
