"""Two evals over the same samples: per dataset and subset, the paired score difference and its bootstrap interval."""

from __future__ import annotations

from typing import Any

import numpy as np

from serve_app.compare.bootstrap import paired_bootstrap
from serve_app.compare.reviews import review_file, sample_scores
from serve_app.schemas import ScoreComparison, UnpairedSamples

LISTED_UNPAIRED = 20  # ids listed per side; the counts are always whole


def subsets(result: dict[str, Any], dataset: str) -> list[str]:
    """The subsets evalscope reported for the dataset (its aggregate rows are not subsets of their own)."""
    report = (result.get("result") or {}).get(dataset) or {}
    names: dict[str, None] = {}
    for metric in report.get("metrics", [])[:1]:
        for category in metric.get("categories", []):
            for subset in category.get("subsets", []):
                if not subset.get("is_aggregate"):
                    names[subset["name"]] = None
    return list(names)


def compare_scores(baseline: dict[str, Any], candidate: dict[str, Any], baseline_dir: str,
                   candidate_dir: str) -> list[ScoreComparison]:
    """For each dataset both results scored: a row over all its subsets' samples pooled, then one per subset."""
    rows = []
    for dataset in [name for name in baseline.get("scores", {}) if name in candidate.get("scores", {})]:
        names = list(dict.fromkeys(subsets(baseline, dataset) + subsets(candidate, dataset)))
        per_subset = {subset: (sample_scores(review_file(baseline_dir, dataset, subset)),
                               sample_scores(review_file(candidate_dir, dataset, subset))) for subset in names}
        pooled = tuple({f"{subset}/{sample}": score for subset, scores in per_subset.items()
                        for sample, score in scores[side].items()} for side in (0, 1))
        rows.append(_row(dataset, None, *pooled))
        rows += [_row(dataset, subset, *scores) for subset, scores in per_subset.items()]
    return rows


def _row(dataset: str, subset: str | None, baseline: dict[str, float], candidate: dict[str, float]) -> ScoreComparison:
    paired = [sample for sample in baseline if sample in candidate]
    only_baseline = [sample for sample in baseline if sample not in candidate]
    only_candidate = [sample for sample in candidate if sample not in baseline]
    unpaired = UnpairedSamples(baseline=len(only_baseline), candidate=len(only_candidate),
                               baseline_ids=only_baseline[:LISTED_UNPAIRED],
                               candidate_ids=only_candidate[:LISTED_UNPAIRED])
    if not paired:
        return ScoreComparison(dataset=dataset, subset=subset, paired=0, baseline_score=None, candidate_score=None,
                               difference=None, ci_low=None, ci_high=None, unpaired=unpaired,
                               verdict="not comparable")
    base = np.array([baseline[sample] for sample in paired])
    cand = np.array([candidate[sample] for sample in paired])
    interval = paired_bootstrap(base, cand)
    return ScoreComparison(dataset=dataset, subset=subset, paired=len(paired), baseline_score=float(base.mean()),
                           candidate_score=float(cand.mean()), difference=interval.difference,
                           ci_low=interval.low, ci_high=interval.high, unpaired=unpaired, verdict=interval.verdict)

