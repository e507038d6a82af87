"""The service as the CLI sees it."""

from __future__ import annotations

JOB_ID = "job-1"
JOB_PATH = f"/api/v1/jobs/{JOB_ID}"


def job_document(status: str, **fields: object) -> dict:
    """A JobView as the service answers it."""
    return {"job_id": JOB_ID, "kind": "perf", "status": status, "model": "m", "created_at": "2026-01-01T00:00:00+00:00",
            "progress": {"done": 1, "total": 10, "percent": 10.0}, "request": {}, "output_dir": "/o",
            "links": {"self": JOB_PATH, "report": f"{JOB_PATH}/report"}, **fields}
