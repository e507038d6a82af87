"""Jobs' outputs as evalscope and the service write them: review files (through evalscope's own ReviewResult, so the
reader is held to its writer), eval results with their reports' subsets, perf results with percentile rows."""

from __future__ import annotations

from pathlib import Path

from evalscope.api.evaluator.cache import ReviewResult
from evalscope.api.metric.scorer import SampleScore, Score

from serve_app.schemas import EvalResponse, PerfResponse
from tests.unit.fakes import FakeRun


def write_reviews(output_dir: Path, dataset: str, subset: str, scores: dict, model: str = "m",
                  repeats: int = 1) -> None:
    """One review per sample id and generation; `scores` maps a sample id to its score, or to one per generation."""
    path = Path(output_dir) / "reviews" / model / f"{dataset}_{subset}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as reviews:
        for index, (sample, score) in enumerate(scores.items()):
            for generation, value in enumerate(score if isinstance(score, list) else [score] * repeats):
                sample_score = SampleScore(score=Score(value={"acc": value, "other": 0.5}, main_score_name="acc"),
                                           sample_id=sample, group_id=sample, generation_index=generation)
                reviews.write(ReviewResult(index=index, sample_score=sample_score).model_dump_json() + "\n")


def eval_result(output_dir: Path, datasets: dict[str, dict[str, dict]]) -> dict:
    """{dataset: {subset: {sample id: score}}} -> the result document; the review files are written too."""
    reports, scores = {}, {}
    for dataset, subsets in datasets.items():
        for subset, samples in subsets.items():
            write_reviews(output_dir, dataset, subset, samples)
        reports[dataset] = {"metrics": [{"categories": [{"subsets": [
            {"name": subset, "is_aggregate": False} for subset in subsets]}]}]}
        values = [value for samples in subsets.values() for value in samples.values()]
        scores[dataset] = sum(values) / len(values)
    return EvalResponse(result=reports, scores=scores, dataset_sources={}, output_dir=str(output_dir)).model_dump(
        mode="json")


def perf_point(ttft_p99: float, req_per_s: float, tokens: float = 20.0) -> dict:
    return {"metrics": {"Req Throughput (req/s)": req_per_s, "Avg Output Tokens": tokens, "Failed Requests": 0},
            "percentiles": [{"Percentiles": "50%", "TTFT (ms)": ttft_p99 / 2, "Output tokens": tokens},
                            {"Percentiles": "99%", "TTFT (ms)": ttft_p99, "Output tokens": tokens}],
            "shards": []}


class ScoredRun(FakeRun):
    """A run that leaves the outputs given: an eval's review files and result, or a perf result."""

    def __init__(self, kind: str, outputs: dict) -> None:
        super().__init__(kind, total=1, step_s=0)
        self.outputs = outputs

    async def execute(self):
        await super().execute()
        if self.kind == "eval":
            return EvalResponse.model_validate(eval_result(self.output_dir, self.outputs))
        return PerfResponse(output_dir=str(self.output_dir), results=self.outputs)
