"""What a CI step leaves besides its exit code: JUnit XML, which GitLab, Jenkins, Azure Pipelines and GitHub's
test-report actions show as test results, and a Markdown summary for the run page ($GITHUB_STEP_SUMMARY).

Both say the same: whether the job succeeded (one test case), then each gate at each test point (one test case
each: measured value, limit, margin); when the job did not succeed, its gates are reported as not checked.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serve_app.gates import Gate, Outcome, number, perf_value
from serve_app.schemas import Comparison, JobView


@dataclass(frozen=True)
class Verdict:
    """How a job that the CLI followed ended for the CI step."""

    job: JobView  # as last seen
    server: str  # the service's base URL, which the job's links are relative to
    exit_code: int
    elapsed_s: float  # from submission to the end
    gates: list[Gate]
    outcomes: list[Outcome]  # empty unless the job succeeded: without a result no gate can be checked
    stopped: str | None = None  # why the CLI stopped the job (a signal, the wait timeout); None: it ended by itself
    comparison: Comparison | None = None  # with --baseline: the job against the baseline's

    @property
    def job_url(self) -> str:
        return self.server.rstrip("/") + self.job.links["self"]

    @property
    def report_url(self) -> str | None:
        return self.server.rstrip("/") + self.job.links["report"] if self.job.status == "succeeded" else None

    @property
    def failed(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if not outcome.passed]

    @property
    def headline(self) -> str:
        if self.stopped:
            return f"{self.stopped}; job {self.job.status}"
        if self.job.status != "succeeded":
            return f"job {self.job.status}"
        if self.failed:
            return f"{len(self.failed)} of {len(self.outcomes)} gate checks failed"
        return "passed" + (f", {len(self.outcomes)} of {len(self.outcomes)} gate checks held" if self.outcomes else "")


def write(verdict: Verdict, junit_xml_path: str | None, summary_md_path: str | None) -> None:
    if junit_xml_path:
        Path(junit_xml_path).parent.mkdir(parents=True, exist_ok=True)
        Path(junit_xml_path).write_bytes(junit_xml(verdict))
    if summary_md_path:  # appended: every step of a job adds its own section to the one run page
        with open(summary_md_path, "a", encoding="utf-8") as summary:
            summary.write(markdown_summary(verdict))


def result_table(kind: str, result: dict[str, Any]) -> tuple[list[str], list[tuple]]:
    """Headers and rows: an eval's scores (and the datasets that failed), a perf run's key metrics per test point."""
    if kind == "eval":
        rows = [(dataset, "n/a" if score is None else f"{score:.4f}") for dataset, score in result["scores"].items()]
        rows += [(dataset, f"failed: {reason}") for dataset, reason in result.get("failures", {}).items()]
        return ["dataset", "score"], rows
    rows = []
    with_slo = any(outcome.get("goodput") for outcome in result["results"].values())
    for point, outcome in result["results"].items():
        metrics = outcome["metrics"]
        row = (point, metrics.get("Total Requests"), metrics.get("Failed Requests"),
               metrics.get("Req Throughput (req/s)"), metrics.get("Output Throughput (tok/s)"),
               *(perf_value(outcome, m, p) for m in ("TTFT (ms)", "ITL (ms)", "Latency (s)") for p in ("50%", "99%")))
        if with_slo:
            goodput = outcome.get("goodput") or {}
            row += (goodput.get("good_fraction"), goodput.get("goodput_req_per_s"))
        rows.append(row)
    headers = ["test point", "requests", "failed", "req/s", "out tok/s", "TTFT p50 ms", "TTFT p99 ms",
               "ITL p50 ms", "ITL p99 ms", "latency p50 s", "latency p99 s"]
    return headers + (["good fraction", "goodput req/s"] if with_slo else []), rows


# The percentile rows a comparison table shows (the JSON has every row).
_TABLE_PERCENTILES = (None, "50%", "90%", "99%")


def comparison_table(comparison: Comparison) -> tuple[list[str], list[tuple]]:
    """eval: each dataset (subsets below it) with its interval; perf: each directed metric at the summary and the
    50/90/99 % rows."""
    if comparison.kind == "eval":
        rows = [(row.dataset, row.subset or "(all)", row.paired, _score(row.baseline_score),
                 _score(row.candidate_score), _score(row.difference, signed=True),
                 "n/a" if row.ci_low is None else f"[{row.ci_low:+.4f}, {row.ci_high:+.4f}]",
                 f"{row.unpaired.baseline}/{row.unpaired.candidate}", row.verdict) for row in comparison.scores]
        return ["dataset", "subset", "paired", "baseline", "candidate", "change",
                f"{comparison.confidence:.0%} interval", "unpaired b/c", "verdict"], rows
    rows = [(cell.point, cell.metric + (f" @{cell.percentile}" if cell.percentile else ""), number(cell.baseline),
             number(cell.candidate), f"{cell.difference:+.6g}",
             "n/a" if cell.difference_pct is None else f"{cell.difference_pct:+.1f}%", cell.verdict)
            for cell in comparison.metrics if cell.worse_when and cell.percentile in _TABLE_PERCENTILES]
    return ["test point", "metric", "baseline", "candidate", "change", "change %", "verdict"], rows


def _score(value: float | None, signed: bool = False) -> str:
    return "n/a" if value is None else f"{value:+.4f}" if signed else f"{value:.4f}"


def junit_xml(verdict: Verdict) -> bytes:
    job = verdict.job
    suite_name = f"evalscope-serve {job.kind} {job.model}"
    cases = [_job_case(verdict, suite_name)]
    if verdict.outcomes:
        cases += [_gate_case(outcome, suite_name) for outcome in verdict.outcomes]
    else:
        cases += [_case(suite_name, f"{gate.name} {gate.condition}", 0, skipped=f"not checked: {verdict.headline}")
                  for gate in verdict.gates]
    counts = {"tests": str(len(cases)), "failures": str(sum(c.find("failure") is not None for c in cases)),
              "errors": "0"}
    elapsed = f"{verdict.elapsed_s:.3f}"
    suite = ET.Element("testsuite", name=suite_name, **counts, time=elapsed, timestamp=job.created_at,
                       skipped=str(sum(c.find("skipped") is not None for c in cases)))
    properties = ET.SubElement(suite, "properties")
    for name, value in (("job_id", job.job_id), ("job_url", verdict.job_url), ("model", job.model),
                        ("status", job.status)):
        ET.SubElement(properties, "property", name=name, value=value)
    suite.extend(cases)
    root = ET.Element("testsuites", name="evalscope-serve", **counts, time=elapsed)
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _job_case(verdict: Verdict, suite_name: str) -> ET.Element:
    job = verdict.job
    output = "\n".join(filter(None, [f"job {job.job_id} {job.status}", verdict.job_url, job.error]))
    failure = None
    if verdict.stopped or job.status != "succeeded":
        failure = verdict.headline + (f": {job.error}" if job.error else "")
    return _case(suite_name, "job succeeded", verdict.elapsed_s, output=output, failure=failure)


def _gate_case(outcome: Outcome, suite_name: str) -> ET.Element:
    output = (f"measured {number(outcome.value)}{outcome.gate.unit}; limit {outcome.gate.condition}; "
              f"margin {_signed(outcome.margin)}" + (f"; {outcome.note}" if outcome.note else ""))
    if outcome.passed and outcome.margin < 0:
        output += "; past the limit, but not significantly: passed"
    failure = None if outcome.passed else outcome.describe()
    return _case(suite_name, outcome.title, 0, output=output, failure=failure)


def _case(classname: str, name: str, time_s: float, output: str | None = None, failure: str | None = None,
          skipped: str | None = None) -> ET.Element:
    case = ET.Element("testcase", classname=classname, name=name, time=f"{time_s:.3f}")
    if failure:
        ET.SubElement(case, "failure", message=failure).text = failure
    if skipped:
        ET.SubElement(case, "skipped", message=skipped)
    if output:
        ET.SubElement(case, "system-out").text = output
    return case


def markdown_summary(verdict: Verdict) -> str:
    job = verdict.job
    mark = "✅" if verdict.exit_code == 0 else "❌"
    links = f"[`{job.job_id}`]({verdict.job_url})"
    if verdict.report_url:
        links += f" ([report]({verdict.report_url}))"
    parts = [f"### {mark} evalscope-serve {job.kind} `{job.model}`: {_cell(verdict.headline)}",
             f"Job {links}: {job.status} after {verdict.elapsed_s:.1f} s."]
    if job.error:
        parts.append(f"> {_cell(job.error)[:1000]}")
    if job.result is not None:  # also a failed eval's datasets that did score
        parts.append(_markdown_table(*result_table(job.kind, job.result)))
    if verdict.comparison is not None:
        comparison = verdict.comparison
        parts.append(f"Against baseline `{comparison.baseline}`: {comparison.verdict}"
                     + "".join(f"\n- {_cell(reason)}" for reason in comparison.reasons))
        parts.append(_markdown_table(*comparison_table(comparison)))
    if verdict.outcomes:
        rows = [(o.gate.name, o.point, number(o.value), o.gate.condition, _signed(o.margin),
                 "✅ pass" if o.passed else "❌ fail") for o in verdict.outcomes]
    else:
        rows = [(gate.name, None, None, gate.condition, None, "not checked") for gate in verdict.gates]
    if rows:
        parts.append(_markdown_table(["gate", "test point", "measured", "limit", "margin", "result"], rows))
    return "\n\n".join(parts) + "\n\n"


def _signed(margin: float | None) -> str:
    return "n/a" if margin is None else f"{margin:+.6g}"


def _markdown_table(headers: list[str], rows: list[tuple]) -> str:
    lines = [headers, ["---"] * len(headers), *rows]
    return "\n".join("| " + " | ".join(_cell(cell) for cell in line) + " |" for line in lines)


def _cell(value: object) -> str:
    """Table-safe: a pipe would end the cell, a newline the row."""
    return "" if value is None else " ".join(str(value).split()).replace("|", "\\|")
