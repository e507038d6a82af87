"""The benchmark catalogue: evalscope's own metadata, and what this service makes of each benchmark."""

from serve_app.config import ServiceArgs
from serve_app.eval.benchmarks import close_matches, known_benchmarks
from serve_app.eval.catalogue import describe_benchmark, describe_benchmarks


def test_a_benchmark_is_described_from_evalscope_metadata_and_staged_when_its_directory_is_there(tmp_path):
    args = ServiceArgs(datasets_root=tmp_path)
    gsm8k = describe_benchmark("gsm8k", args)
    assert (gsm8k.subsets, gsm8k.metrics, gsm8k.category, gsm8k.refused) == (["main"], ["accuracy"], "llm", None)
    assert gsm8k.samples and gsm8k.samples > 1000 and not gsm8k.staged
    (tmp_path / "gsm8k").mkdir()
    assert describe_benchmark("gsm8k", args).staged


def test_code_and_agent_benchmarks_say_why_they_are_refused_and_code_runs_with_a_sandbox(tmp_path):
    plain = ServiceArgs(datasets_root=tmp_path)
    assert "code_sandbox" in describe_benchmark("humaneval", plain).refused
    sandboxed = ServiceArgs(datasets_root=tmp_path, code_sandbox={"engine": "docker"})
    assert describe_benchmark("humaneval", sandboxed).refused is None
    agents = [b for b in describe_benchmarks(sandboxed) if b.category == "agent"]
    assert agents and all("agent benchmark" in b.refused for b in agents)


def test_every_known_benchmark_is_in_the_catalogue_once():
    names = [b.name for b in describe_benchmarks(ServiceArgs())]
    assert sorted(names) == sorted(known_benchmarks())


def test_a_misspelt_name_finds_the_benchmark_meant():
    assert close_matches("gsm8kk", known_benchmarks())[0] == "gsm8k"
    assert close_matches("GSM8K", known_benchmarks())[0] == "gsm8k"
    assert close_matches("zzzzzz", known_benchmarks()) == []
