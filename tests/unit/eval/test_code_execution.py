"""Benchmarks that execute the model's answers: found from evalscope's adapters, refused, or sandboxed."""

import asyncio

import pytest
from evalscope.config import SandboxTaskConfig, TaskConfig

from serve_app.admission import admit_eval
from serve_app.config import CodeSandbox, ServiceArgs
from serve_app.errors import RequestError
from serve_app.eval.benchmarks import is_agent_benchmark, known_benchmarks, runs_model_code
from serve_app.eval.plan import plan_eval
from serve_app.schemas import EvalRequest


@pytest.fixture
def args(tmp_path):
    return ServiceArgs(outputs_root=tmp_path / "outputs", datasets_root=tmp_path / "datasets")


def request(*datasets):
    return EvalRequest(model="m", datasets=list(datasets), api_url="http://h:1/v1")


@pytest.fixture(scope="module")
def adapters():
    """Every benchmark's adapter class, imported the way evalscope itself loads them (the service never does)."""
    from evalscope.api.registry import BENCHMARK_REGISTRY
    from evalscope.benchmarks import load_all

    load_all()
    return {name: meta.data_adapter for name, meta in BENCHMARK_REGISTRY.items()}


def test_code_benchmarks_are_the_adapters_that_execute_code(adapters):
    from evalscope.api.mixin import CodeExecutionSandboxMixin

    executing = {name for name, adapter in adapters.items() if issubclass(adapter, CodeExecutionSandboxMixin)}
    assert {name for name in known_benchmarks() if runs_model_code(name)} == executing
    assert {"humaneval", "mbpp", "live_code_bench", "bigcodebench"} <= executing
    assert not runs_model_code("gsm8k")


def test_every_agent_loop_benchmark_counts_as_an_agent_benchmark(adapters):
    from evalscope.api.benchmark.adapters.agent_adapter import AgentLoopAdapter

    agent_loops = {name for name, adapter in adapters.items() if issubclass(adapter, AgentLoopAdapter)}
    assert {"officeqa", "job_bench", "researchrubrics", "wide_search"} <= agent_loops
    assert all(is_agent_benchmark(name) for name in agent_loops)


@pytest.mark.parametrize("dataset", ["humaneval", "mbpp", "live_code_bench"])
def test_a_code_benchmark_is_refused_naming_it_and_the_setting(args, dataset):
    with pytest.raises(RequestError, match=f"dataset '{dataset}' executes the code the model writes.*code_sandbox"):
        asyncio.run(admit_eval(request("gsm8k", dataset), args))


@pytest.mark.parametrize("sandbox", [None, CodeSandbox()])
def test_an_agent_benchmark_is_refused_even_with_the_sandbox(args, sandbox):
    args = args.model_copy(update={"code_sandbox": sandbox})
    with pytest.raises(RequestError, match="dataset 'officeqa' is an agent benchmark"):
        asyncio.run(admit_eval(request("officeqa"), args))


def test_with_the_sandbox_set_code_benchmarks_run_in_evalscope_s_sandbox_and_only_they(args):
    sandbox = CodeSandbox(manager_config={"base_url": "tcp://docker:2375"}, default_config={"memory_limit": "1g"})
    plan = plan_eval(request("humaneval", "gsm8k"), args.model_copy(update={"code_sandbox": sandbox}))
    humaneval, gsm8k = (task.task_config for task in plan.tasks)
    assert humaneval["sandbox"] == {
        "enabled": True,
        "engine": "docker",
        "manager_config": {"base_url": "tcp://docker:2375"},
        "default_config": {"memory_limit": "1g"},
    }
    assert SandboxTaskConfig.model_validate(humaneval["sandbox"]).enabled
    assert "sandbox" not in gsm8k
    assert not TaskConfig(**gsm8k, api_key="k").sandbox.enabled


def test_the_sandbox_setting_has_evalscope_s_fields():
    assert set(CodeSandbox.model_fields) | {"enabled"} == set(SandboxTaskConfig.model_fields)


def test_the_sandbox_setting_is_validated_at_startup():
    with pytest.raises(ValueError, match="code_sandbox.pool_size"):
        ServiceArgs.model_validate({"code_sandbox": {"pool_size": 0}})
    with pytest.raises(ValueError, match="code_sandbox.enabled"):
        ServiceArgs.model_validate({"code_sandbox": {"enabled": False}})
