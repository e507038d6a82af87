"""GET /api/v1/compare's logic: two visible jobs in, a Comparison out (reads the eval jobs' review files)."""

from __future__ import annotations

from serve_app.compare.bootstrap import CONFIDENCE, RESAMPLES
from serve_app.compare.evals import compare_scores
from serve_app.compare.perf import compare_points, parse_tolerance
from serve_app.compare.requests import differences
from serve_app.errors import RequestError
from serve_app.jobs.store import JobRecord
from serve_app.schemas import Comparison, RequestDifference


class JobNotSucceeded(Exception):
    """A job that has no complete result to compare yet, or will never have one (answered with 409)."""


def compare_jobs(baseline: JobRecord, candidate: JobRecord, tolerance: str) -> Comparison:
    for job in (baseline, candidate):
        if job.status != "succeeded":
            raise JobNotSucceeded(f"job {job.id} is {job.status}; only succeeded jobs compare")
    if baseline.kind != candidate.kind:
        raise RequestError(f"job {baseline.id} is {_a(baseline.kind)} job and job {candidate.id} {_a(candidate.kind)}"
                           " job; compare two jobs of the same kind")
    found = [RequestDifference(**vars(difference))
             for difference in differences(baseline.kind, baseline.request, candidate.request)]
    reasons = [f"{d.field} differs ({d.baseline!r} in the baseline, {d.candidate!r} in the candidate)"
               for d in found if d.blocking]
    if baseline.kind == "eval":
        scores = compare_scores(baseline.result, candidate.result, baseline.output_dir, candidate.output_dir)
        reasons += [f"{row.dataset}: no sample was scored in both jobs" for row in scores
                    if row.subset is None and not row.paired]
        verdicts = [row.verdict for row in scores if row.subset is None]
        extra = dict(scores=scores, confidence=CONFIDENCE, resamples=RESAMPLES)
    else:
        tolerance_pct = parse_tolerance(tolerance)
        metrics = compare_points(baseline.result, candidate.result, tolerance_pct)
        points = [set(job.result["results"]) for job in (baseline, candidate)]
        if points[0] != points[1]:
            reasons.append(f"the test points differ (only in the baseline: {sorted(points[0] - points[1])}, only "
                           f"in the candidate: {sorted(points[1] - points[0])})")
        verdicts = [row.verdict for row in metrics]
        extra = dict(metrics=metrics, tolerance_pct=tolerance_pct)
    if not verdicts:
        reasons.append("nothing was measured in both jobs")
    return Comparison(kind=baseline.kind, baseline=baseline.id, candidate=candidate.id, comparable=not reasons,
                      differences=found, verdict=_overall(verdicts, baseline.kind) if not reasons else "not comparable",
                      reasons=reasons, **extra)


def _overall(verdicts: list[str | None], kind: str) -> str:
    for verdict in ("worse", "better"):
        if verdict in verdicts:
            return verdict
    return "no significant change" if kind == "eval" else "within tolerance"


def _a(kind: str) -> str:
    return "an eval" if kind == "eval" else "a perf"
