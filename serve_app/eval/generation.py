"""A request's `generation_config` checked against evalscope's own GenerateConfig, not a hand-kept copy of it.

The request schema documents the fields the service bounds (serve_app.schemas.GenerationConfig) and lets every
other one through; this step holds those others to evalscope's model: the names it has, and their types. The
model's JSON schema is read once per process in a subprocess (serve_app.evalscope_facts), and only when a request
sets a field beyond the documented ones.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from serve_app.errors import RequestError
from serve_app.evalscope_facts import read_once
from serve_app.schemas import EvalRequest

# evalscope generation fields this service does not take, and why.
REFUSED = {
    "batch_size": "the service sets it from eval_batch_size",
    "extra_headers": "headers can carry credentials, which the service never stores; the endpoint's key is api_key",
}


async def check_generation_config(request: EvalRequest) -> None:
    """A 400 naming the first field of the eval's `generation_config`, or of a judge's, that evalscope's
    GenerateConfig would not take."""
    configs = {"generation_config": request.generation_config.model_extra or {}}
    for index, judge in enumerate(request.judge.models if request.judge else []):
        configs[f"judge.models.{index}.generation_config"] = judge.generation_config.model_extra or {}
    for where, extra in configs.items():
        for name in extra:
            if name in REFUSED:
                raise RequestError(f"{where}.{name} is not taken here: {REFUSED[name]}")
    if not any(configs.values()):
        return
    schema = await asyncio.to_thread(read_once, __name__, "evalscope's generation settings")
    for where, extra in configs.items():
        unknown = sorted(set(extra) - set(schema["properties"]))
        if unknown:
            raise RequestError(
                f"{where}.{unknown[0]} is not an evalscope generation setting; valid: "
                f"{', '.join(sorted(set(schema['properties']) - set(REFUSED)))}"
            )
        _validate(where, extra, schema)


def _validate(where: str, fields: dict[str, Any], schema: dict[str, Any]) -> None:
    from jsonschema import Draft202012Validator  # Ray's own dependency
    from jsonschema.exceptions import best_match

    error = best_match(Draft202012Validator(schema).iter_errors(fields))
    if error is None:
        return
    field = ".".join(str(part) for part in error.absolute_path)
    # An optional field is "X or null" in the schema: say what X wanted rather than "not valid under any".
    wanted = [sub.message for sub in error.context or [] if sub.schema.get("type") != "null"]
    raise RequestError(f"{where}.{field}: {' or '.join(wanted) if wanted else error.message}")


def _generate_config_schema() -> dict[str, Any]:
    """GenerateConfig's JSON schema, every field optional as in the model (runs in the subprocess)."""
    from evalscope.api.model.generate_config import GenerateConfig

    return GenerateConfig.model_json_schema()


if __name__ == "__main__":
    print(json.dumps(_generate_config_schema()))
