"""What evalscope declares about its benchmarks, read from the files it generates, without importing it (~2 s).

evalscope writes `benchmarks/_index.json` (name -> adapter module) and `benchmarks/_meta/<name>.json` (each
adapter's BenchmarkMeta: subsets, extra_params, sandbox_config, category...) from its registry, and reads them
itself instead of importing adapters (`evalscope.metrics.semantics.primary.BUILTIN_META_DIR`).
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


@functools.cache
def _benchmarks_dir() -> Path | None:
    spec = importlib.util.find_spec("evalscope")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0]) / "benchmarks"


@functools.cache
def known_benchmarks() -> frozenset[str]:
    """Benchmark names evalscope registers."""
    directory = _benchmarks_dir()
    if directory is None:
        return frozenset()
    return frozenset(json.loads((directory / "_index.json").read_text()))


@functools.cache
def _benchmark_file(name: str) -> dict[str, Any]:
    return json.loads((_benchmarks_dir() / "_meta" / f"{name}.json").read_text())


def benchmark_meta(name: str) -> dict[str, Any]:
    """The BenchmarkMeta of a known benchmark, as evalscope serialized it."""
    return _benchmark_file(name)["meta"]


def benchmark_statistics(name: str) -> dict[str, Any]:
    """What evalscope measured of the benchmark's data (total_samples, per-subset counts); empty when it has not."""
    return _benchmark_file(name).get("statistics") or {}


def close_matches(name: str, names: Iterable[str]) -> list[str]:
    """The `names` that look like `name` (a typo, another case), closest first."""
    by_lower = {known.lower(): known for known in names}
    return [by_lower[match] for match in difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.75)]


def runs_model_code(name: str) -> bool:
    """Whether scoring executes what the model wrote: the adapters that do so (CodeExecutionSandboxMixin) declare
    the sandbox their code should run in, and without one evalscope runs it in the worker itself."""
    return bool(benchmark_meta(name)["sandbox_config"])


def is_agent_benchmark(name: str) -> bool:
    """Agent benchmarks let the model call tools: shell commands on the worker (job_bench, officeqa, ...), Docker
    containers, or outside services."""
    return benchmark_meta(name)["category"] == "agent"
