"""evalscope's perf HTML report for a whole run, written in a worker process (evalscope never loads in the ingress)."""

from __future__ import annotations

import argparse

from serve_app.jobs.output import print_to_job_log


def write_perf_report(output_dir: str, api: str) -> str:
    """The report over every merged test point of a run: evalscope reads the point directories itself."""
    print_to_job_log(output_dir, "report")
    from evalscope.perf.utils.report.generate_report import gen_perf_html_report

    return gen_perf_html_report(output_dir, {}, argparse.Namespace(api=api))
