"""Perf datasets: evalscope's registry decides which exist; those that would download or need a tokenizer are 400s."""

import asyncio

import pytest
from evalscope.perf.plugin.registry import DatasetRegistry

from serve_app.config import ServiceArgs
from serve_app.errors import RequestError
from serve_app.perf.datasets import perf_datasets
from serve_app.admission import admit_perf
from serve_app.schemas import PerfRequest


@pytest.fixture
def args(tmp_path):
    return ServiceArgs(outputs_root=tmp_path / "outputs", datasets_root=tmp_path / "datasets", samples_root=None)


def plan(args, dataset, **fields):
    request = PerfRequest(model="m", url="http://t/v1/chat/completions", dataset=dataset, number=2, **fields)
    return asyncio.run(admit_perf(request, args, cluster_cpus=1))


def refusal(args, dataset, **fields):
    with pytest.raises(RequestError) as refused:
        plan(args, dataset, **fields)
    return str(refused.value)


def test_the_datasets_are_evalscope_s_registered_plugins():
    import evalscope.perf.plugin.datasets  # noqa: F401  (registers them, in this test process only)

    datasets = perf_datasets()
    assert set(datasets) == set(DatasetRegistry.all_classes())
    traits = {name: (d.hub, d.reads_file, d.needs_tokenizer) for name, d in datasets.items()}
    assert traits["openqa"] == (True, True, False)
    assert traits["line_by_line"] == (False, True, False)
    assert traits["flickr8k"] == (True, False, False)
    assert traits["speed_benchmark"] == (False, False, False)
    assert traits["random"][2] and traits["random_embedding"][2] and traits["trie_code_qa"][2]


@pytest.mark.parametrize("dataset", ["no_such_dataset", "share_gpt"])
def test_an_unknown_dataset_is_refused_with_the_valid_names(args, dataset):
    message = refusal(args, dataset)
    assert message.startswith(f"dataset {dataset!r} is not an evalscope perf dataset; valid: ")
    assert "openqa" in message and "share_gpt_en" in message and "line_by_line" in message


@pytest.mark.parametrize("dataset", ["random", "random_vl", "random_embedding", "trie_code_qa"])
def test_datasets_that_need_a_tokenizer_are_refused_saying_so(args, dataset):
    assert f"dataset {dataset!r} generates its prompts with a tokenizer" in refusal(args, dataset)


@pytest.mark.parametrize("dataset", ["openqa", "flickr8k", "share_gpt_en", "longalpaca"])
def test_a_hub_dataset_without_local_data_is_refused_before_any_download(args, dataset):
    message = refusal(args, dataset)
    assert message.startswith(f"dataset {dataset!r} downloads its prompts from a hub: pass dataset_path, or stage")
    assert str(args.datasets_root / dataset) in message


def test_a_hub_dataset_reads_a_staged_copy_or_a_confined_path(args):
    (args.datasets_root / "openqa").mkdir(parents=True)
    (args.datasets_root / "openqa" / "open_qa.jsonl").write_text('{"question": "q"}\n')
    assert plan(args, "openqa").dataset_path == str(args.datasets_root / "openqa")
    assert plan(args, "flickr8k", dataset_path="openqa").dataset_path == str(args.datasets_root / "openqa")
    assert "outside the allowed directories" in refusal(args, "openqa", dataset_path="/etc")


def test_a_file_dataset_needs_a_file(args):
    assert "dataset 'line_by_line' reads its prompts from a file" in refusal(args, "line_by_line")
    args.datasets_root.mkdir()
    (args.datasets_root / "line_by_line").write_text("hello\n")
    assert plan(args, "line_by_line").dataset_path == str(args.datasets_root / "line_by_line")


def test_a_dataset_that_generates_prompts_reads_nothing(args):
    assert plan(args, "speed_benchmark").dataset_path is None


def test_conversation_datasets_are_those_evalscope_builds_turns_for():
    datasets = perf_datasets()
    assert {"custom_multi_turn", "random_multi_turn", "share_gpt_en_multi_turn"} <= {
        name for name, d in datasets.items() if d.conversations}
    assert not datasets["openqa"].conversations and not datasets["random"].conversations


def test_a_multi_turn_load_needs_a_conversation_dataset_and_a_conversation_dataset_a_multi_turn_load(args):
    message = refusal(args, "line_by_line", multi_turn=True)
    assert message.startswith("dataset 'line_by_line' yields single prompts; a multi_turn load needs a conversation "
                              "dataset: ") and "custom_multi_turn" in message
    assert refusal(args, "custom_multi_turn") == "dataset 'custom_multi_turn' yields conversations: set multi_turn: true"
