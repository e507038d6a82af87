"""evalscope's perf dataset plugins, and what each needs to run here without downloading anything.

The plugins register themselves in evalscope's DatasetRegistry when imported, which the ingress never does:
`python -m serve_app.perf.datasets` lists them, in a subprocess once per process (serve_app.evalscope_facts).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from serve_app.errors import RequestError
from serve_app.evalscope_facts import read_once
from serve_app.schemas import PerfRequest


@dataclass(frozen=True)
class PerfDataset:
    name: str
    hub: bool  # declares a hub source: without local data (a file, or a directory of the hub's files) it downloads
    reads_file: bool  # reads its prompts from `dataset_path`
    needs_tokenizer: bool  # generates random prompts from a tokenizer's vocabulary
    conversations: bool = False  # yields multi-turn conversations (a multi_turn load), not single prompts


def check_perf_dataset(request: PerfRequest) -> PerfDataset:
    """The request's dataset plugin, if evalscope has it and this service can run it; else a 400."""
    datasets = perf_datasets()
    dataset = datasets.get(request.dataset)
    if dataset is None:
        raise RequestError(
            f"dataset {request.dataset!r} is not an evalscope perf dataset; valid: {', '.join(sorted(datasets))}"
        )
    if dataset.needs_tokenizer and request.tokenizer_path is None:
        raise RequestError(
            f"dataset {request.dataset!r} generates its prompts with a tokenizer: give tokenizer_path, a tokenizer "
            "directory (tokenizer.json, tokenizer_config.json) under the datasets root"
        )
    if dataset.conversations != request.multi_turn:
        if request.multi_turn:
            having = sorted(name for name, other in datasets.items() if other.conversations)
            raise RequestError(f"dataset {request.dataset!r} yields single prompts; a multi_turn load needs a "
                               f"conversation dataset: {', '.join(having)}")
        raise RequestError(f"dataset {request.dataset!r} yields conversations: set multi_turn: true")
    return dataset


def perf_datasets() -> dict[str, PerfDataset]:
    """evalscope's perf datasets by name. The first call runs a subprocess (~2 s): make it off the event loop."""
    listed = read_once(__name__, "evalscope's perf datasets")
    return {name: PerfDataset(name=name, **traits) for name, traits in listed.items()}


def _describe_plugins() -> dict[str, dict[str, bool]]:
    """Each registered plugin's traits, read from its class (runs in the subprocess)."""
    import inspect

    import evalscope.perf.plugin.datasets  # noqa: F401  (registers the plugins)
    from typing import get_args

    from evalscope.perf.plugin.datasets.base import Conversation, DatasetPluginBase
    from evalscope.perf.plugin.datasets.random_dataset import RandomDatasetPlugin
    from evalscope.perf.plugin.registry import DatasetRegistry

    def own_code(plugin: type) -> str:  # the plugin and its bases, without the base every plugin shares
        return "".join(
            inspect.getsource(cls)
            for cls in plugin.__mro__
            if issubclass(cls, DatasetPluginBase) and cls is not DatasetPluginBase
        )

    traits = {}
    for name in DatasetRegistry.all_classes():
        plugin = DatasetRegistry.get_class(name)
        traits[name] = {
            "hub": plugin.dataset_source is not None,
            "reads_file": "dataset_path" in own_code(plugin),
            # RandomDatasetPlugin and the trace replays built on it assert a tokenizer; random_embedding and
            # random_rerank raise without one.
            "needs_tokenizer": issubclass(plugin, RandomDatasetPlugin) or name.startswith("random"),
            # Its build_messages yields conversations (lists of turns), evalscope's mark of a multi-turn dataset.
            "conversations": get_args(inspect.signature(plugin.build_messages).return_annotation) == (Conversation,),
        }
    return traits


if __name__ == "__main__":
    print(json.dumps(_describe_plugins()))
