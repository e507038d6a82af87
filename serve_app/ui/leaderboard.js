// The leaderboard (each model's newest score on each dataset) and a model's history of succeeded jobs.

import { getJson, query } from "./api.js";
import { chart } from "./charts.js";
import { formatNumber, formatScore, formatTime, h, jobLink, modelLink, table, timeCell } from "./dom.js";

const HISTORY_PAGE = 50;

export async function renderLeaderboard(container, context) {
  const chosen = { datasets: context.params.get("datasets") || "", models: context.params.get("models") || "" };
  const form = h("form", { class: "filters", onsubmit: (event) => {
    event.preventDefault();
    location.hash = "#/leaderboard" + query(Object.fromEntries(new FormData(event.target)));
  } },
  h("input", { name: "datasets", value: chosen.datasets, placeholder: "datasets, comma-separated",
    "aria-label": "datasets" }),
  h("input", { name: "models", value: chosen.models, placeholder: "models, comma-separated", "aria-label": "models" }),
  h("button", { type: "submit" }, "Filter"));
  const board = h("div");
  container.replaceChildren(h("div", { class: "page-head" }, h("h1", {}, "Leaderboard")),
    h("p", { class: "muted" }, "The newest score of each model on each dataset, over the succeeded evals you may see. "
      + "Models are ranked by their mean over the datasets shown; the best score of each dataset is marked."),
    form, board);
  const { entries } = await getJson("/api/v1/leaderboard" + query(chosen), { signal: context.signal });
  const datasets = [...new Set(entries.map((entry) => entry.dataset))].sort();
  const models = new Map();
  for (const entry of entries) {
    if (!models.has(entry.model)) models.set(entry.model, { model: entry.model, cells: {} });
    models.get(entry.model).cells[entry.dataset] = entry;
  }
  const best = Object.fromEntries(datasets.map((dataset) => [dataset,
    Math.max(...entries.filter((e) => e.dataset === dataset && typeof e.score === "number").map((e) => e.score))]));
  const mean = (row) => {
    const scores = Object.values(row.cells).map((cell) => cell.score).filter((score) => typeof score === "number");
    return scores.length ? scores.reduce((a, b) => a + b, 0) / scores.length : -Infinity;
  };
  const rows = [...models.values()].sort((a, b) => mean(b) - mean(a) || a.model.localeCompare(b.model));
  board.replaceChildren(table([
    { label: "#", cell: (row) => rows.indexOf(row) + 1, class: "number narrow" },
    { label: "Model", cell: (row) => modelLink(row.model) },
    { label: "Mean", cell: (row) => (Number.isFinite(mean(row)) ? formatScore(mean(row)) : "–"), class: "number" },
    ...datasets.map((dataset) => ({ label: dataset, class: "number", cell: (row) => {
      const cell = row.cells[dataset];
      if (!cell) return "";
      return h("a", { href: `#/jobs/${cell.job_id}`, title: `${cell.job_id}, ${formatTime(cell.finished_at)}`,
        class: cell.score === best[dataset] ? "best" : "" }, formatScore(cell.score));
    } })),
  ], rows, { empty: "No succeeded eval yet.", rowAttributes: (row) => ({ dataset: { model: row.model } }) }));
}

export async function renderHistory(container, context, model) {
  const params = context.params;
  const chosen = { kind: params.get("kind") || "", mine: params.get("mine") || "" };
  const offset = Number(params.get("offset")) || 0;
  const here = (changes) => `#/models/${encodeURIComponent(model)}` + query({ ...chosen, ...changes });
  const form = h("form", { class: "filters", onchange: (event) => {
    const values = Object.fromEntries(new FormData(event.currentTarget));
    location.hash = here({ kind: values.kind, mine: values.mine ? "true" : "", offset: 0 });
  } },
  h("select", { name: "kind", "aria-label": "kind" }, ["", "eval", "perf"].map((kind) =>
    h("option", { value: kind, selected: chosen.kind === kind }, kind || "any kind"))),
  h("label", { class: "check" },
    h("input", { type: "checkbox", name: "mine", checked: chosen.mine === "true" }), " only mine"));
  const history = await getJson(`/api/v1/models/${encodeURIComponent(model)}/history`
    + query({ ...chosen, limit: HISTORY_PAGE, offset }), { signal: context.signal });
  const evals = history.jobs.filter((job) => job.scores);
  const datasets = [...new Set(evals.flatMap((job) => Object.keys(job.scores)))].sort();
  const oldestFirst = [...evals].reverse();
  container.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "History of ", h("span", { class: "mono" }, model)),
      h("div", { class: "actions" },
        h("a", { class: "button", href: "#/jobs" + query({ model }) }, "All its jobs"))),
    h("p", { class: "muted" }, `${history.total} succeeded job(s), newest first.`),
    form,
    datasets.length && evals.length > 1 ? h("section", { class: "card" }, h("h2", {}, "Scores over time"),
      chart(datasets.map((dataset) => ({ type: "scatter", mode: "lines+markers", name: dataset,
        x: oldestFirst.map((job) => job.finished_at), y: oldestFirst.map((job) => job.scores[dataset] ?? null) })),
      { yaxis: { title: "score", rangemode: "tozero" } })) : "",
    table([
      { label: "Finished", cell: (job) => timeCell(job.finished_at) },
      { label: "Job", cell: (job) => jobLink(job.job_id) },
      { label: "Kind", cell: (job) => job.kind },
      { label: "Owner", cell: (job) => job.owner },
      { label: "Scores / key metrics", cell: summary },
    ], history.jobs, { empty: "No succeeded job of this model." }),
    h("div", { class: "pager" },
      offset > 0
        ? h("a", { class: "button", href: here({ offset: Math.max(0, offset - HISTORY_PAGE) }) }, "← Newer") : "",
      offset + HISTORY_PAGE < history.total
        ? h("a", { class: "button", href: here({ offset: offset + HISTORY_PAGE }) }, "Older →") : ""));
}

function summary(job) {
  if (job.scores) {
    return h("span", { class: "chips" }, Object.entries(job.scores).map(([dataset, score]) =>
      h("span", { class: "chip" }, `${dataset} ${formatScore(score)}`)));
  }
  return h("div", {}, Object.entries(job.perf || {}).map(([point, metrics]) => h("div", {},
    h("span", { class: "mono" }, point), ": ",
    Object.entries(metrics).map(([name, value]) => `${name} ${formatNumber(value)}`).join(" · "))));
}
