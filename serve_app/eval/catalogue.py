"""What can be evaluated here: evalscope's benchmarks as its metadata describes them, and what this service makes
of each (refused and why; staged under the datasets root, so it runs without a hub)."""

from __future__ import annotations

from serve_app.config import ServiceArgs
from serve_app.eval.benchmarks import benchmark_meta, benchmark_statistics, known_benchmarks
from serve_app.eval.code_execution import refusal
from serve_app.schemas import BenchmarkInfo


def describe_benchmarks(args: ServiceArgs) -> list[BenchmarkInfo]:
    return [describe_benchmark(name, args) for name in sorted(known_benchmarks())]


def describe_benchmark(name: str, args: ServiceArgs) -> BenchmarkInfo:
    meta = benchmark_meta(name)
    return BenchmarkInfo(
        name=name,
        pretty_name=meta.get("pretty_name") or name,
        category=meta.get("category") or "",
        tags=meta.get("tags") or [],
        subsets=meta.get("subset_list") or [],
        # evalscope lists a metric as its name, or as {name: options}
        metrics=[metric if isinstance(metric, str) else next(iter(metric)) for metric in meta.get("metrics") or []],
        few_shot_num=meta.get("few_shot_num"),
        samples=benchmark_statistics(name).get("total_samples"),
        staged=(args.datasets_root / name).is_dir(),
        refused=refusal(name, args),
    )
