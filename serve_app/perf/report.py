"""evalscope's perf HTML report for a whole run, written in a worker process (evalscope never loads in the ingress),
with a section of our own: the sweep's or search's metrics against the load (the result's `series`)."""

from __future__ import annotations

import argparse
import html
from pathlib import Path

from serve_app.jobs.output import print_to_job_log
from serve_app.perf.series import LATENCIES, PERCENTILES, THROUGHPUT
from serve_app.schemas import LoadSeries

# Where our section goes in evalscope's page: before its throughput analysis (else at the end of the body).
_ANCHORS = ('<section class="section" id="section-throughput">', "</body>")


def write_perf_report(output_dir: str, api: str, series: LoadSeries | None = None) -> str:
    """The report over every merged test point of a run: evalscope reads the point directories itself."""
    print_to_job_log(output_dir, "report")
    from evalscope.perf.utils.report.generate_report import gen_perf_html_report

    # Written under another name and renamed once complete: the report route serves the file as soon as it exists.
    draft = gen_perf_html_report(output_dir, {}, argparse.Namespace(api=api), output_html_name=".perf_report.html")
    if not draft:
        return draft
    if series is not None:
        page = Path(draft).read_text(encoding="utf-8")
        anchor = next(anchor for anchor in _ANCHORS if anchor in page)
        Path(draft).write_text(page.replace(anchor, load_section(series) + anchor, 1), encoding="utf-8")
    return str(Path(draft).replace(Path(output_dir) / "perf_report.html"))


def load_section(series: LoadSeries) -> str:
    """Latency percentiles, and arrivals, throughput and goodput, against the load: evalscope's own chart builder
    (its plotly figures, without plotly.js: the page loads it once)."""
    from evalscope.perf.utils.report.perf_charts import ChartBuilder

    x_title = "Concurrency" if series.load == "parallel" else "Rate (req/s)"

    def chart(div_id: str, y_title: str, names: list[str]) -> str:
        traces = [dict(x=series.loads, y=series.metrics[name], mode="lines+markers", name=name,
                       text=series.points) for name in names if name in series.metrics]
        # evalscope's line chart ticks the x axis at every unit (concurrency); a load axis may span hundreds.
        return ChartBuilder.line(traces, x_title=x_title, y_title=y_title, div_id=div_id,
                                 extra_layout={"xaxis": {"showgrid": True}})

    charts = [chart(f"chart-load-{column.split()[0].lower()}", column, [f"{column}@{row}" for row in PERCENTILES])
              for column in LATENCIES]
    charts.append(chart("chart-load-rate", "req/s", [
        "Requested (req/s)", "Achieved (req/s)", THROUGHPUT, "Goodput (req/s)"]))
    cards = "".join(f'<div class="card"><div class="chart-wrap">{div}</div></div>' for div in charts)
    title = html.escape(f"Against the load ({x_title})")
    return (f'<section class="section" id="section-load"><div class="section-header"><h2 class="section-title">'
            f"{title}</h2></div>{cards}</section>\n")
