"""The per-sample scores evalscope writes: reviews/<model>/<dataset>_<subset>.jsonl in a run directory.

Read as plain JSON rather than through evalscope's ReviewResult: the service's ingress never imports evalscope. The
fields are ReviewResult's: `sample_score.score.value` (a metric -> value dict) with `main_score_name` naming the
sample's main value (else the first, as Score.main_value does), and `sample_score.group_id` (the sample a repeated
generation belongs to) or `sample_id`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any


def review_file(output_dir: str | Path, dataset: str, subset: str) -> Path | None:
    """The subset's review file (one model directory per job), or None when the job left none."""
    return next(iter(sorted(Path(output_dir).glob(f"reviews/*/{dataset}_{subset}.jsonl"))), None)


def sample_scores(path: Path | None) -> dict[str, float]:
    """Sample id -> its main score, averaged over its repeated generations; samples without a numeric score are
    left out."""
    if path is None:
        return {}
    totals: dict[str, list[float]] = defaultdict(list)
    with open(path, encoding="utf-8") as reviews:
        for line in reviews:
            if line.strip():
                review = json.loads(line)
                value = _main_value(review.get("sample_score") or {})
                if value is not None:
                    totals[_sample_id(review)].append(value)
    return {sample: sum(values) / len(values) for sample, values in totals.items()}


def _sample_id(review: dict[str, Any]) -> str:
    score = review.get("sample_score") or {}
    for key in ("group_id", "sample_id"):
        if score.get(key) is not None:
            return str(score[key])
    return str(review["index"])


def _main_value(sample_score: dict[str, Any]) -> float | None:
    score = sample_score.get("score") or {}
    values = score.get("value") or {}
    name = score.get("main_score_name")
    value = values.get(name) if name in values else next(iter(values.values()), None)
    return float(value) if isinstance(value, (int, float)) else None
