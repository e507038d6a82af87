"""Resuming an eval that did not finish: its request again, under a new job that reuses the predictions it made.

Pure: the backend looks the earlier job up; `plan_eval` points each dataset at what that job left (its part while
unfinished, the run directory once combined) and the worker copies those predictions in before evalscope starts,
so the earlier job's directory is never written to.
"""

from __future__ import annotations

from pathlib import Path

from serve_app.eval.benchmarks import known_benchmarks
from serve_app.jobs.store import JobRecord
from serve_app.errors import RequestError
from serve_app.schemas import EvalRequest, ResumeRequest

RESUMABLE = ("failed", "cancelled", "interrupted")
# Sub-directories of an evalscope run that its cache (use_cache) reads, by sample id.
CACHED_DIRS = ("predictions", "reviews")


class NotResumable(Exception):
    """The job cannot be resumed (answered with 409 and why)."""


def check_resumable(job: JobRecord) -> None:
    if job.kind != "eval":
        raise NotResumable(f"job {job.id} is a {job.kind} job; only eval jobs resume (they reuse predictions)")
    if job.status not in RESUMABLE:
        raise NotResumable(f"job {job.id} is {job.status}; only a job that {', '.join(RESUMABLE[:-1])} or "
                           f"{RESUMABLE[-1]} resumes")


def resume_request(job: JobRecord, keys: ResumeRequest) -> EvalRequest:
    """The earlier job's own request, with the keys given again (the endpoint's and each judge's), resuming from
    it."""
    check_resumable(job)
    request = {**job.request, "api_key": keys.api_key, "resume_from": job.id}
    judges = (job.request.get("judge") or {}).get("models") or []
    if len(keys.judge_api_keys) != len(judges):
        raise RequestError(
            f"job {job.id} had {len(judges)} judge model(s) and {len(keys.judge_api_keys)} judge_api_keys were given: "
            "give each judge's key again, in the order of its judge.models (\"EMPTY\" for one without a key)"
        )
    if judges:
        models = [{**model, "api_key": key} for model, key in zip(judges, keys.judge_api_keys)]
        request["judge"] = {**job.request["judge"], "models": models}
    return EvalRequest.model_validate(request)


def dataset_files(run_dir: Path, dataset: str) -> list[Path]:
    """The prediction and review files one dataset left in an evalscope run directory (named
    <dataset>_<subset>.jsonl; a longer benchmark name sharing the prefix, gsm8k_v beside gsm8k, is another's)."""
    owners = sorted((name for name in known_benchmarks() if name.startswith(dataset)), key=len, reverse=True)
    return [
        path
        for sub in CACHED_DIRS
        for path in sorted((run_dir / sub).glob(f"*/{dataset}_*.jsonl"))
        if next(owner for owner in owners if path.name.startswith(f"{owner}_")) == dataset
    ]
