// Two succeeded jobs side by side (GET /api/v1/compare): the verdict, what differs in their requests, and per
// dataset or test point the change, as tables and charts.

import { getJson, query } from "./api.js";
import { BASELINE_COLOR, CANDIDATE_COLOR, chart } from "./charts.js";
import {
  errorBox, facts, formatNumber, formatScore, formatSigned, formatTime, h, jobLink, modelLink, table, verdictBadge,
} from "./dom.js";

// Percentile curves drawn per test point: the latencies a regression shows in first.
const CURVES = ["TTFT (ms)", "ITL (ms)", "TPOT (ms)", "Latency (s)"];
const VERDICT_COLORS = { worse: "#c62828", better: "#2e7d32" };

export async function renderCompare(container, context) {
  const params = context.params;
  const chosen = { baseline: params.get("baseline") || "", candidate: params.get("candidate") || "",
    tolerance: params.get("tolerance") || "" };
  const recent = h("datalist", { id: "succeeded-jobs" });
  const field = (name, label, placeholder) => {
    const job = name !== "tolerance";
    return h("div", { class: "field" }, h("label", { for: `compare-${name}` }, label),
      h("input", { id: `compare-${name}`, name, value: chosen[name], placeholder, list: job ? "succeeded-jobs" : null,
        required: job, class: job ? "mono" : "" }));
  };
  const form = h("form", { class: "filters", onsubmit: (event) => {
    event.preventDefault();
    location.hash = "#/compare" + query(Object.fromEntries(new FormData(event.target)));
  } },
  field("baseline", "Baseline job", "job-… (production, say)"), field("candidate", "Candidate job", "job-…"),
  field("tolerance", "Perf tolerance", "5%"), h("button", { type: "submit", class: "primary" }, "Compare"), recent);
  const result = h("div");
  container.replaceChildren(h("div", { class: "page-head" }, h("h1", {}, "Compare two jobs")), form, result);

  getJson("/api/v1/jobs" + query({ status: "succeeded", limit: 100 }), { signal: context.signal }).then((page) => {
    recent.replaceChildren(...page.jobs.map((job) => h("option", { value: job.job_id },
      `${job.kind} · ${job.model} · ${formatTime(job.finished_at)}`)));
  }).catch(() => {}); // suggestions only: the form works without them

  if (!chosen.baseline || !chosen.candidate) {
    result.replaceChildren(h("p", { class: "muted" },
      "Pick two succeeded jobs of one kind, or select two in the jobs list."));
    return;
  }
  result.replaceChildren(h("p", { class: "muted" }, "Comparing…"));
  const [comparison, baseline, candidate] = await Promise.all([
    getJson("/api/v1/compare" + query(chosen), { signal: context.signal }).catch((error) => error),
    getJson(`/api/v1/jobs/${encodeURIComponent(chosen.baseline)}`, { signal: context.signal }).catch(() => null),
    getJson(`/api/v1/jobs/${encodeURIComponent(chosen.candidate)}`, { signal: context.signal }).catch(() => null),
  ]);
  if (comparison instanceof Error) {
    result.replaceChildren(errorBox(comparison.message));
    return;
  }
  result.replaceChildren(
    h("section", { class: `card verdict-card verdict-${comparison.verdict.replaceAll(" ", "-")}` },
      h("h2", {}, "Verdict: ", verdictBadge(comparison.verdict)),
      comparison.reasons.length ? h("ul", {}, comparison.reasons.map((reason) => h("li", {}, reason))) : "",
      h("p", { class: "muted" }, comparison.kind === "eval"
        ? "Per dataset and subset, the score difference over the samples both jobs scored, with a "
          + `${Math.round(100 * comparison.confidence)} % paired bootstrap interval `
          + `(${comparison.resamples} resamples).`
        : `Per test point and metric, the change against a tolerance of ${formatNumber(comparison.tolerance_pct)} %.`)),
    h("div", { class: "columns" }, jobCard("Baseline", baseline, comparison.baseline),
      jobCard("Candidate", candidate, comparison.candidate)),
    differences(comparison.differences),
    ...(comparison.kind === "eval" ? evalSections(comparison.scores) : perfSections(comparison.metrics)));
}

function jobCard(role, job, jobId) {
  if (!job) return h("section", { class: "card" }, h("h2", {}, role), jobLink(jobId));
  return h("section", { class: "card" }, h("h2", {}, role, " ", jobLink(job.job_id)), facts([
    ["Model", modelLink(job.model)], ["Kind", job.kind], ["Owner", job.owner],
    ["Finished", formatTime(job.finished_at)], ["Endpoint", job.request.api_url || job.request.url],
  ]));
}

function differences(rows) {
  return h("section", { class: "card" }, h("h2", {}, "Request differences"), table([
    { label: "Field", cell: (row) => row.field, class: "mono" },
    { label: "Baseline", cell: (row) => JSON.stringify(row.baseline) },
    { label: "Candidate", cell: (row) => JSON.stringify(row.candidate) },
    { label: "", cell: (row) => (row.blocking
      ? h("span", { class: "badge status-failed" }, "changes what is measured") : "") },
  ], rows, { empty: "None: both jobs asked for the same thing (model and endpoint aside)." }));
}

function evalSections(scores) {
  const label = (row) => (row.subset === null ? row.dataset : `${row.dataset} / ${row.subset}`);
  const pooled = scores.filter((row) => row.subset === null);
  const withInterval = scores.filter((row) => typeof row.difference === "number");
  return [
    h("section", { class: "card" }, h("h2", {}, "Scores"), table([
      { label: "Dataset", cell: (row) => (row.subset === null ? h("strong", {}, row.dataset) : "") },
      { label: "Subset", cell: (row) => row.subset ?? "all" },
      { label: "Paired samples", cell: (row) => row.paired, class: "number" },
      { label: "Baseline", cell: (row) => formatScore(row.baseline_score), class: "number" },
      { label: "Candidate", cell: (row) => formatScore(row.candidate_score), class: "number" },
      { label: "Difference", cell: (row) => formatSigned(row.difference), class: "number" },
      { label: "95 % interval", cell: (row) => (typeof row.ci_low === "number"
        ? `${formatSigned(row.ci_low)} … ${formatSigned(row.ci_high)}` : "–"), class: "number" },
      { label: "Unpaired", cell: (row) => (row.unpaired.baseline || row.unpaired.candidate
        ? `${row.unpaired.baseline} / ${row.unpaired.candidate}` : ""), class: "number" },
      { label: "Verdict", cell: (row) => verdictBadge(row.verdict) },
    ], scores, { rowAttributes: (row) => ({ dataset: { dataset: row.dataset, subset: row.subset ?? "" } }) })),
    h("div", { class: "columns" },
      h("section", { class: "card" }, h("h2", {}, "Score per dataset"), chart([
        { type: "bar", name: "baseline", x: pooled.map(label), y: pooled.map((row) => row.baseline_score),
          marker: { color: BASELINE_COLOR } },
        { type: "bar", name: "candidate", x: pooled.map(label), y: pooled.map((row) => row.candidate_score),
          marker: { color: CANDIDATE_COLOR } },
      ], { barmode: "group", yaxis: { title: "score", rangemode: "tozero" } })),
      h("section", { class: "card" }, h("h2", {}, "Difference with its interval"), chart([{
        type: "scatter", mode: "markers", name: "candidate − baseline", x: withInterval.map((row) => row.difference),
        y: withInterval.map(label), marker: { color: CANDIDATE_COLOR, size: 9 },
        error_x: { type: "data", symmetric: false, array: withInterval.map((row) => row.ci_high - row.difference),
          arrayminus: withInterval.map((row) => row.difference - row.ci_low) },
      }], { xaxis: { title: "difference", zeroline: true, zerolinewidth: 2 }, yaxis: { automargin: true },
        showlegend: false }))),
  ];
}

function perfSections(metrics) {
  const byPoint = new Map();
  for (const row of metrics) byPoint.set(row.point, [...(byPoint.get(row.point) || []), row]);
  return [...byPoint].map(([point, rows]) => {
    const summary = rows.filter((row) => row.percentile === null);
    const directed = summary.filter((row) => row.worse_when && typeof row.difference_pct === "number");
    const curves = CURVES.map((metric) => rows.filter((row) => row.metric === metric && row.percentile))
      .filter((curve) => curve.length);
    return h("section", { class: "card", dataset: { point } },
      h("h2", {}, "Test point ", h("span", { class: "mono" }, point)),
      metricTable(summary),
      h("div", { class: "columns" },
        directed.length ? chart([{ type: "bar", orientation: "h", y: directed.map((row) => row.metric),
          x: directed.map((row) => row.difference_pct),
          marker: { color: directed.map((row) => VERDICT_COLORS[row.verdict] || BASELINE_COLOR) } }],
        { title: { text: "Change (%), red: worse", font: { size: 13 } }, yaxis: { automargin: true },
          showlegend: false }, 360) : "",
        ...curves.map((curve) => chart(["baseline", "candidate"].map((role) => ({
          type: "scatter", mode: "lines+markers", name: role, x: curve.map((row) => row.percentile),
          y: curve.map((row) => row[role]),
          line: { color: role === "baseline" ? BASELINE_COLOR : CANDIDATE_COLOR } })),
        { title: { text: `${curve[0].metric} by percentile`, font: { size: 13 } }, xaxis: { type: "category" } },
        300))),
      h("details", {}, h("summary", {}, "Every percentile"),
        metricTable(rows.filter((row) => row.percentile !== null))));
  });
}

function metricTable(rows) {
  return table([
    { label: "Metric", cell: (row) => row.metric },
    { label: "Percentile", cell: (row) => row.percentile ?? "" },
    { label: "Baseline", cell: (row) => formatNumber(row.baseline), class: "number" },
    { label: "Candidate", cell: (row) => formatNumber(row.candidate), class: "number" },
    { label: "Change", cell: (row) => formatSigned(row.difference), class: "number" },
    { label: "Change %", cell: (row) => formatSigned(row.difference_pct, " %"), class: "number" },
    { label: "Worse when", cell: (row) => row.worse_when ?? "" },
    { label: "Verdict", cell: (row) => verdictBadge(row.verdict) },
  ], rows);
}
