"""Which evalscope `dataset_args` a request may set, each checked: an allowlist over evalscope's BenchmarkMeta.

evalscope applies a dataset's args to its BenchmarkMeta: `local_path`, then every key that names a field, so
`dataset_id` overrides `local_path`, and subsets and splits are joined onto the dataset directory as file names.
Every BenchmarkMeta field is either accepted here, with a check, or refused with the reason (a unit test holds
the two lists to evalscope's fields); anything else is not an evalscope option at all.
"""

from __future__ import annotations

import functools
import string
from typing import Any, Callable

from serve_app.config import ServiceArgs
from serve_app.errors import RequestError
from serve_app.eval.benchmarks import benchmark_meta
from serve_app.paths import confine_dataset_path

MAX_NAME_CHARS = 128
_NAME_RULE = f"one path component of at most {MAX_NAME_CHARS} characters, without '/', '\\' or '..'"
MAX_TEXT_CHARS = 65_536
# extra_params whose name says they hold a file or directory; other free-form strings are refused anyway.
PATH_PARAM_SUFFIXES = ("_dir", "_root", "_path", "_file")

_HUB_SOURCE = "a request cannot name a data source: pass local_path, or stage the dataset under the datasets root"
_DEFINITION = "it is part of the benchmark's definition in evalscope"
REFUSED_KEYS = {
    **dict.fromkeys(
        ("dataset_id", "hf_dataset_id", "dataset_revision", "hf_dataset_revision", "force_redownload"), _HUB_SOURCE
    ),
    **dict.fromkeys(
        (
            "name", "data_adapter", "output_types", "default_subset", "few_shot_mode", "allowed_few_shot_nums",
            "supports_choice", "evaluation_version", "aggregation", "primary_metric", "tags", "pretty_name",
            "description", "paper_url", "data_statistics", "sample_example",
        ),
        _DEFINITION,
    ),
    "sandbox_config": "the code sandbox is the operator's (service setting code_sandbox)",
}


def check_dataset_args(dataset: str, dataset_args: dict[str, Any], args: ServiceArgs) -> dict[str, Any]:
    """The request's dataset_args for `dataset` with each key checked and every path confined and resolved."""
    checked = {}
    for key, value in dataset_args.items():
        label = f"dataset_args.{dataset}.{key}"
        if key in REFUSED_KEYS:
            raise RequestError(f"{label} is not accepted by this service: {REFUSED_KEYS[key]}")
        if key not in ACCEPTED_KEYS:
            raise RequestError(
                f"{label} is not an evalscope dataset option; accepted: {', '.join(sorted(ACCEPTED_KEYS))}"
            )
        checked[key] = ACCEPTED_KEYS[key](label, value, dataset, args)
    return checked


def is_name(value: Any) -> bool:
    """A name that stays one file name when evalscope joins it onto a directory: no '/', '\\' or '..'."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_NAME_CHARS
        and not {"/", "\\", "\0"} & set(value)
        and ".." not in value
        and value != "."
    )


def _local_path(label: str, value: Any, dataset: str, args: ServiceArgs) -> str:
    return str(confine_dataset_path(label, value, args, "a directory"))


def _subset_list(label: str, value: Any, dataset: str, args: ServiceArgs) -> list[str]:
    declared = benchmark_meta(dataset)["subset_list"]
    if not isinstance(value, list) or not value:
        raise RequestError(f"{label} must be a non-empty list of subset names")
    for subset in value:
        if subset not in declared and not is_name(subset):
            raise RequestError(
                f"{label} entry {subset!r} is not a subset name: {_NAME_RULE} (declared by {dataset}: "
                f"{', '.join(declared)})"
            )
    return value


def _split(label: str, value: Any, dataset: str, args: ServiceArgs) -> str:
    if not is_name(value):
        raise RequestError(f"{label} must be a split name: {_NAME_RULE}")
    return value


def _template(label: str, value: Any, dataset: str, args: ServiceArgs) -> str:
    """Prompt text that evalscope may `str.format`: placeholders are plain names, since a `{question.__class__...}`
    placeholder reads the worker's memory into the prompt sent to the caller's endpoint."""
    if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS:
        raise RequestError(f"{label} must be a string of at most {MAX_TEXT_CHARS} characters")
    if _has_lookup(value):
        raise RequestError(f"{label} may use plain placeholders like {{question}}, not attribute or index lookups")
    return value


def _has_lookup(template: str) -> bool:
    try:
        fields = [(name, spec) for _, name, spec, _ in string.Formatter().parse(template) if name is not None]
    except ValueError:  # not a format string: str.format would fail before looking anything up
        return False
    return any("." in name or "[" in name or _has_lookup(spec or "") for name, spec in fields)


def _integer(label: str, value: Any, dataset: str, args: ServiceArgs, minimum: int) -> int:
    if not _is_number(value, int) or value < minimum:
        raise RequestError(f"{label} must be an integer >= {minimum}")
    return value


def _positive(label: str, value: Any, dataset: str, args: ServiceArgs) -> float:
    if not _is_number(value, float) or value <= 0:
        raise RequestError(f"{label} must be a number > 0")
    return value


def _flag(label: str, value: Any, dataset: str, args: ServiceArgs) -> bool:
    if not isinstance(value, bool):
        raise RequestError(f"{label} must be true or false")
    return value


def _metric_list(label: str, value: Any, dataset: str, args: ServiceArgs) -> list:
    """Metric names, or {name: {option: number or boolean}}: string options name models to download or load."""
    if not isinstance(value, list) or not value:
        raise RequestError(f"{label} must be a non-empty list of metric names")
    for metric in value:
        name, options = next(iter(metric.items())) if isinstance(metric, dict) and len(metric) == 1 else (metric, {})
        if not (is_name(name) and isinstance(options, dict) and all(map(_is_scalar, options.values()))):
            raise RequestError(
                f"{label} entry {metric!r} must be a metric name or {{name: {{option: number or boolean}}}}"
            )
    return value


def _filters(label: str, value: Any, dataset: str, args: ServiceArgs) -> dict:
    """evalscope's output filters (regex, remove_until, ...) by name: text transforms of the model's answer."""
    if not isinstance(value, dict) or not all(is_name(name) for name in value):
        raise RequestError(f"{label} must map filter names (e.g. regex, remove_until) to their arguments")
    return value


def _extra_params(label: str, value: Any, dataset: str, args: ServiceArgs) -> dict:
    """The benchmark's own parameters, as evalscope declares them: typed, one of the declared choices, or a path
    inside the allowed roots. Free-form text, lists and objects are refused: they can carry hub ids, hosts,
    credentials or commands this service cannot check."""
    declared = benchmark_meta(dataset)["extra_params"]
    if not isinstance(value, dict):
        raise RequestError(f"{label} must be an object")
    checked = {}
    for key, param in value.items():
        if key not in declared:
            accepted = ", ".join(sorted(declared)) or "none"
            raise RequestError(f"{label}.{key} is not a parameter of {dataset} (it declares: {accepted})")
        checked[key] = _extra_param(f"{label}.{key}", key, param, declared[key], args)
    return checked


def _extra_param(label: str, key: str, value: Any, spec: Any, args: ServiceArgs) -> Any:
    spec = spec if isinstance(spec, dict) else {}  # evalscope's spec: {"type", "description", "value", "choices"?}
    types = {kind.strip() for kind in spec.get("type", "").split("|")} - {"null"}
    if value is None and "null" in spec.get("type", ""):
        return value
    if choices := spec.get("choices"):
        if value not in choices:
            raise RequestError(f"{label} must be one of {', '.join(map(repr, choices))}")
        return value
    if types == {"str"} and key.endswith(PATH_PARAM_SUFFIXES):
        return str(confine_dataset_path(label, value, args, "a file or directory"))
    if types and types <= _TYPE_CHECKS.keys():
        if not any(_TYPE_CHECKS[kind](value) for kind in types):
            raise RequestError(f"{label} must be of type {spec['type']}")
        return value
    raise RequestError(
        f"{label} is not accepted by this service: only boolean, numeric, enumerated and path parameters are "
        f"(free-form {spec.get('type') or 'values'} can name hosts, hubs or files)"
    )


def _is_number(value: Any, kind: type) -> bool:
    """An int (or, for float, an int or float) that is not a bool, which Python counts as an int."""
    return not isinstance(value, bool) and isinstance(value, (int, float) if kind is float else int)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool) or _is_number(value, float)


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "bool": lambda value: isinstance(value, bool),
    "int": lambda value: _is_number(value, int),
    "float": lambda value: _is_number(value, float),
    "list[int]": lambda value: isinstance(value, list) and all(_is_number(item, int) for item in value),
}


Check = Callable[[str, Any, str, ServiceArgs], Any]
ACCEPTED_KEYS: dict[str, Check] = {
    "local_path": _local_path,
    "subset_list": _subset_list,
    "eval_split": _split,
    "train_split": _split,
    "few_shot_num": functools.partial(_integer, minimum=0),
    "few_shot_random": _flag,
    "shuffle": _flag,
    "shuffle_choices": _flag,
    "system_prompt": _template,
    "prompt_template": _template,
    "few_shot_prompt_template": _template,
    "query_template": _template,
    "choice_instructions": _template,
    "metric_list": _metric_list,
    "filters": _filters,
    "review_timeout": _positive,
    "max_image_bytes": functools.partial(_integer, minimum=1),
    "extra_params": _extra_params,
}
