"""What makes two runs comparable: the request fields that differ, and which of them change what is measured."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The point of a comparison (the model and where it is served), secrets, and how a run is carried out rather than
# what it measures.
_IGNORED = {
    "eval": {"model", "api_url", "api_key", "work_dir", "debug", "resume_from", "eval_batch_size"},
    "perf": {"model", "url", "api_key", "headers", "debug", "shards"},
}
# Different values here measure different things: other samples, another load.
_BLOCKING = {
    # Another judge scores differently; another endpoint kind prompts differently.
    "eval": {"datasets", "limit", "repeats", "dataset_args", "judge", "eval_type"},
    "perf": {"number", "parallel", "rate", "max_tokens", "min_tokens", "dataset", "dataset_path", "tokenizer_path",
             "min_prompt_length", "max_prompt_length", "prefix_length", "apply_chat_template", "extra_args", "seed",
             "stream", "api", "duration_s", "search", "open_loop", "arrival", "burstiness", "ramp_up_s",
             "stop_on_saturation"},
}
# Fields added after jobs were stored without them: such a job ran with these values.
_ADDED_LATER = {"eval": {"eval_type": "openai_api"},
                "perf": {"open_loop": False, "arrival": "poisson", "stop_on_saturation": False}}
# Where a dataset was read from may differ (another copy of the same samples); the pairing counts what differs.
_NOT_BLOCKING_LEAVES = {"local_path"}


@dataclass(frozen=True)
class Difference:
    field: str  # dotted: generation_config.temperature, dataset_args.gsm8k.few_shot_num
    baseline: Any
    candidate: Any
    blocking: bool  # makes the runs not comparable


def differences(kind: str, baseline: dict[str, Any], candidate: dict[str, Any]) -> list[Difference]:
    """The request fields (secrets masked, as stored) that differ between two jobs of `kind`."""
    ignored, blocking = _IGNORED[kind], _BLOCKING[kind]
    base, cand = (_flatten({**_ADDED_LATER[kind], **request}) for request in (baseline, candidate))
    found = []
    for field in sorted(set(base) | set(cand)):
        top, leaf = field.split(".")[0], field.split(".")[-1]
        if top in ignored or _same(top, base.get(field), cand.get(field)):
            continue
        found.append(Difference(field, base.get(field), cand.get(field),
                                blocking=top in blocking and leaf not in _NOT_BLOCKING_LEAVES))
    return found


def _flatten(request: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in request.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _same(field: str, baseline: Any, candidate: Any) -> bool:
    if field == "datasets" and isinstance(baseline, list) and isinstance(candidate, list):
        return sorted(baseline) == sorted(candidate)  # the order datasets run in changes no score
    return baseline == candidate
