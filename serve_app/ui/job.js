// One job: live status and progress over its event stream, cancel, its result as tables, the report embedded,
// the artifacts, the request and the log.

import { ApiError, download, followJob, getJson, query, request } from "./api.js";
import {
  ACTIVE, errorBox, facts, formatDuration, formatNumber, formatScore, h, modelLink, progressBar, statusBadge, table,
  timeCell,
} from "./dom.js";

const LOG_POLL_MS = 2000;
const REPORT_RETRY_MS = 1000;
const REPORT_WAIT_MS = 120_000;
const RECONNECT_MS = 2000;
const RESUMABLE = new Set(["failed", "cancelled", "interrupted"]);
// The summary metrics shown first for each perf test point (every other one follows in its table).
const PERF_HEADLINE = ["Req Throughput (req/s)", "Output Throughput (tok/s)", "Success Requests", "Failed Requests",
  "Avg Latency (s)", "Avg TTFT (ms)", "Avg TPOT (ms)", "Avg ITL (ms)"];
const PERF_PERCENTILES = ["50%", "90%", "99%"];

export async function renderJob(container, context, jobId) {
  let job = await getJson(`/api/v1/jobs/${jobId}`, { signal: context.signal });
  const parts = {
    head: h("div", { class: "page-head" }),
    meta: h("section", { class: "card" }),
    live: h("section", { class: "card live" }),
    outcome: h("section", {}),
    report: h("section", {}),
    request: h("section", { class: "card" }),
    log: h("pre", { class: "log", "aria-label": "job log" }),
  };
  const actionError = h("div");
  container.replaceChildren(parts.head, actionError, parts.meta, parts.live, parts.outcome, parts.report,
    h("details", { class: "card" }, h("summary", {}, "Request"), parts.request),
    h("section", { class: "card" }, h("h2", {}, "Log"), parts.log));

  function showHead() {
    const active = ACTIVE.has(job.status);
    parts.head.replaceChildren(
      h("h1", {}, h("span", { class: "mono" }, job.job_id), " ", statusBadge(job.status)),
      h("div", { class: "actions" },
        active ? h("button", { class: "danger", onclick: cancel }, "Cancel") : "",
        resumeForm(),
        h("button", { onclick: () => download(`/api/v1/jobs/${job.job_id}/artifacts`, `${job.job_id}.zip`)
          .catch((error) => actionError.replaceChildren(errorBox(error.message))) }, "Download artifacts"),
        job.status === "succeeded"
          ? h("a", { class: "button", href: "#/compare" + query({ baseline: job.job_id }) }, "Compare with…") : "",
        h("a", { class: "button", href: `#/new/${job.kind}` + query({ from: job.job_id }) }, "Run again…")));
    parts.meta.replaceChildren(facts([
      ["Kind", job.kind], ["Model", modelLink(job.model)], ["Owner", job.owner],
      ["Created", timeCell(job.created_at)], ["Started", job.started_at && timeCell(job.started_at)],
      ["Finished", job.finished_at && timeCell(job.finished_at)],
      ["Duration", formatDuration(job.started_at, job.finished_at)], ["Output directory", job.output_dir],
    ]));
  }

  async function cancel() {
    if (!confirm(`Cancel ${job.job_id}? Its run stops at once; partial outputs are kept.`)) return;
    try {
      job = await getJson(`/api/v1/jobs/${job.job_id}/cancel`, { method: "POST" });
      showAll();
    } catch (error) {
      actionError.replaceChildren(errorBox(error.message));
    }
  }

  // A failed, cancelled or interrupted eval runs again as a new job that reuses its predictions; the key is asked
  // again because it was never stored, and is sent with that one call.
  function resumeForm() {
    if (job.kind !== "eval" || !RESUMABLE.has(job.status)) return "";
    const key = h("input", { type: "password", name: "api_key", autocomplete: "off", "data-lpignore": "true",
      placeholder: "API key (given again)", "aria-label": "API key for the resumed run" });
    return h("form", { class: "actions", onsubmit: async (event) => {
      event.preventDefault();
      try {
        const response = await request(`/api/v1/jobs/${job.job_id}/resume?wait=false`, { method: "POST",
          body: key.value ? { api_key: key.value } : {} });
        key.value = "";
        location.hash = `#/jobs/${(await response.json()).job_id}`;
      } catch (error) {
        actionError.replaceChildren(errorBox(`Not resumed: ${error.message}`));
      }
    } }, key, h("button", { type: "submit", title: "Runs it again as a new job; only the samples it lacked are asked" },
      "Resume"));
  }

  function showLive() {
    const progress = job.progress || {};
    parts.live.replaceChildren(
      h("h2", {}, "Progress"),
      progressBar(progress, job.status),
      facts([["Phase", progress.phase],
        ["Done", progress.total ? `${progress.done} of ${progress.total}` : progress.done],
        ["Rate", ACTIVE.has(job.status) && progress.req_per_s ? `${formatNumber(progress.req_per_s)} /s` : null]]),
      job.error ? errorBox(job.error) : "");
  }

  function showAll() {
    showHead();
    showLive();
    parts.outcome.replaceChildren(...outcome(job));
    parts.request.replaceChildren(facts(flatten(job.request).filter(([name]) => name !== "api_key")));
  }

  showAll();
  showReport(job, parts.report, context);
  followLog(job.job_id, parts.log, context, () => ACTIVE.has(job.status));
  if (!ACTIVE.has(job.status)) return;

  // Live: each event updates status and progress; at the end the whole job (result, error) is read again.
  while (ACTIVE.has(job.status) && !context.signal.aborted) {
    try {
      await followJob(job.job_id, (event) => {
        const moved = event.status !== job.status;
        job = { ...job, status: event.status, progress: event.progress, error: event.error ?? job.error };
        if (moved) showHead(); // not on every progress event: a click on Cancel would land on a replaced button
        showLive();
      }, context.signal);
      job = await getJson(`/api/v1/jobs/${job.job_id}`, { signal: context.signal });
    } catch (error) {
      if (context.signal.aborted) return;
      if (error instanceof ApiError && error.status < 500) { // gone, or not this caller's: trying again will not help
        parts.live.append(errorBox(error.message));
        return;
      }
      parts.live.append(errorBox(`Lost the job's event stream (${error.message}); reconnecting…`));
      await new Promise((resolve) => context.after(RECONNECT_MS, resolve));
    }
  }
  showAll();
  showReport(job, parts.report, context);
}

function outcome(job) {
  const result = job.result;
  if (!result) return [];
  if (job.kind === "eval") return [evalScores(result)];
  const points = Object.entries(result.results || {}).map(([point, measured]) => perfPoint(point, measured));
  return [perfSearch(result.search), ...points];
}

function evalScores(result) {
  const rows = [];
  for (const [dataset, score] of Object.entries(result.scores || {})) {
    rows.push({ dataset, subset: "all", score, num: result.result?.[dataset]?.num });
    const metric = result.result?.[dataset]?.metrics?.[0];
    for (const category of metric?.categories || []) {
      for (const subset of category.subsets || []) {
        rows.push({ dataset, subset: subset.name, score: subset.score, num: subset.num });
      }
    }
  }
  for (const [dataset, reason] of Object.entries(result.failures || {})) {
    rows.push({ dataset, subset: "", failure: reason });
  }
  return h("section", { class: "card" }, h("h2", {}, "Scores"), table([
    { label: "Dataset", cell: (row) => (row.subset === "all" || row.failure ? h("strong", {}, row.dataset) : "") },
    { label: "Subset", cell: (row) => row.subset },
    { label: "Score", cell: (row) => (row.failure ? h("span", { class: "error-text" }, `failed: ${row.failure}`)
      : formatScore(row.score)), class: "number" },
    { label: "Samples", cell: (row) => formatNumber(row.num), class: "number" },
  ], rows, { empty: "No dataset scored." }));
}

function perfSearch(search) {
  if (!search) return "";
  return h("section", { class: "card" }, h("h2", {}, "Capacity search"),
    h("p", { class: "verdict-line" }, search.verdict),
    table([
      { label: "Probe", cell: (probe) => probe.point, class: "mono" },
      { label: `Load (${search.vary})`, cell: (probe) => formatNumber(probe.load), class: "number" },
      { label: "Good fraction", cell: (probe) => formatNumber(probe.good_fraction), class: "number" },
      { label: "Goodput (req/s)", cell: (probe) => formatNumber(probe.goodput_req_per_s), class: "number" },
      { label: "Passed", cell: (probe) => (probe.passed ? "yes" : "no") },
    ], search.probes));
}

function perfPoint(point, outcome) {
  const metrics = outcome.metrics || {};
  const names = [...PERF_HEADLINE.filter((name) => name in metrics),
    ...Object.keys(metrics).filter((name) => !PERF_HEADLINE.includes(name))];
  const percentileRows = (outcome.percentiles || []).filter((row) => PERF_PERCENTILES.includes(row.Percentiles));
  const columns = Object.keys(percentileRows[0] || {}).filter((name) => name !== "Percentiles");
  const goodput = outcome.goodput;
  return h("section", { class: "card", dataset: { point } },
    h("h2", {}, "Test point ", h("span", { class: "mono" }, point)),
    goodput ? h("p", {}, `${formatNumber(goodput.good)} good requests `
      + `(${formatNumber(100 * goodput.good_fraction)} %), goodput ${formatNumber(goodput.goodput_req_per_s)} req/s`)
      : "",
    h("div", { class: "columns" },
      table([{ label: "Metric", cell: (name) => name }, { label: "Value", cell: (name) => formatNumber(metrics[name]),
        class: "number" }], names),
      table([{ label: "Percentile", cell: (row) => row.Percentiles },
        ...columns.map((name) => ({ label: name, cell: (row) => formatNumber(row[name]), class: "number" }))],
      percentileRows, { empty: "No percentiles." })),
    workloadThroughput(outcome.workload_throughput),
    outcome.shards?.length ? h("details", {}, h("summary", {}, `${outcome.shards.length} shard(s)`), table([
      { label: "Shard", cell: (s) => s.shard }, { label: "Node", cell: (s) => s.node, class: "mono" },
      { label: "Parallel", cell: (s) => s.parallel, class: "number" },
      { label: "Requests", cell: (s) => formatNumber(s.requests), class: "number" },
      { label: "Succeeded", cell: (s) => formatNumber(s.succeeded), class: "number" },
      { label: "req/s", cell: (s) => formatNumber(s.req_per_s), class: "number" },
    ], outcome.shards)) : "");
}

/** evalscope's token throughput of a point over three windows: its whole run, its tail and its steady state. */
function workloadThroughput(workload) {
  if (!workload?.rows?.length) return "";
  return table([
    { label: "Token throughput", cell: (row) => row.metric },
    { label: "Overall", cell: (row) => formatNumber(row.overall), class: "number" },
    { label: `Last ${formatNumber(workload.last_window_s)} s`, cell: (row) => formatNumber(row.last_window),
      class: "number" },
    { label: `Steady state (first ${formatNumber(100 * workload.warmup_frac)} % left out)`,
      cell: (row) => formatNumber(row.steady_state), class: "number" },
  ], workload.rows);
}

/** The report in a sandboxed frame: its scripts run (the charts) but cannot reach this page or its token. */
async function showReport(job, section, context) {
  if (job.status !== "succeeded") {
    section.replaceChildren();
    return;
  }
  section.replaceChildren(h("div", { class: "card" }, h("h2", {}, "Report"),
    h("p", { class: "muted" }, "Loading the report…")));
  let html;
  const deadline = Date.now() + REPORT_WAIT_MS;
  for (;;) {
    try {
      html = await (await request(`/api/v1/jobs/${job.job_id}/report`, { signal: context.signal })).text();
      break;
    } catch (error) {
      if (context.signal.aborted) return;
      // A perf report follows the result by a few seconds, and says so meanwhile.
      const pending = error instanceof ApiError && error.status === 404 && /still being written/.test(error.message);
      if (!pending || Date.now() > deadline) {
        section.replaceChildren(h("div", { class: "card" }, h("h2", {}, "Report"), errorBox(error.message)));
        return;
      }
      await new Promise((resolve) => context.after(REPORT_RETRY_MS, resolve));
    }
  }
  const frame = h("iframe", { class: "report", title: `report of ${job.job_id}`, sandbox: "allow-scripts allow-popups",
    srcdoc: html });
  section.replaceChildren(h("div", { class: "card" },
    h("div", { class: "page-head" }, h("h2", {}, "Report"),
      h("button", { onclick: () => openInNewTab(html) }, "Open in a new tab")), frame));
}

function openInNewTab(html) {
  // A blob page has no base of its own: the report's script URLs are this service's, below its origin.
  const based = html.replace(/<head[^>]*>/i, (head) => `${head}<base href="${location.origin}/">`);
  const page = URL.createObjectURL(new Blob([based], { type: "text/html" }));
  window.open(page, "_blank", "noopener");
  setTimeout(() => URL.revokeObjectURL(page), 60_000);
}

async function followLog(jobId, element, context, running) {
  let offset = 0;
  const ansi = /\x1b\[[0-9;]*[A-Za-z]/g; // evalscope colours its logs
  for (;;) {
    const wasRunning = running();
    try {
      for (;;) {
        const page = await getJson(`/api/v1/jobs/${jobId}/log` + query({ offset }), { signal: context.signal });
        if (page.lines.length) {
          if (!offset) element.textContent = "";
          const atBottom = element.scrollTop + element.clientHeight >= element.scrollHeight - 4;
          element.append(page.lines.map((line) => line.replace(ansi, "")).join("\n") + "\n");
          if (atBottom) element.scrollTop = element.scrollHeight;
        }
        offset = page.next_offset;
        if (offset >= page.total) break;
      }
      if (!offset) element.textContent = "(empty)";
    } catch (error) {
      if (context.signal.aborted) return;
      element.textContent = `The log could not be read: ${error.message}`;
    }
    if (!wasRunning) return; // read once more after the job ended, then stop
    await new Promise((resolve) => context.after(LOG_POLL_MS, resolve));
    if (context.signal.aborted) return;
  }
}

function flatten(value, prefix = "") {
  if (value === null || value === undefined) return [];
  if (typeof value !== "object" || Array.isArray(value) || !Object.keys(value).length) {
    return [[prefix, Array.isArray(value) || typeof value === "object" ? JSON.stringify(value) : String(value)]];
  }
  return Object.entries(value).flatMap(([key, inner]) => flatten(inner, prefix ? `${prefix}.${key}` : key));
}
