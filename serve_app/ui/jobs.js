// The jobs list: filters (kept in the URL), live status, paging, and two jobs picked to compare.

import { getJson, query, whoAmI } from "./api.js";
import {
  STATUSES, errorBox, formatDuration, h, jobLink, modelLink, progressBar, statusBadge, table, timeCell,
} from "./dom.js";

const PAGE_SIZE = 25;
const REFRESH_MS = 2000;

export async function renderJobs(container, context) {
  const params = context.params;
  const filters = {
    kind: params.get("kind") || "", status: params.get("status") || "", model: params.get("model") || "",
    owner: params.get("owner") || "",
  };
  const offset = Number(params.get("offset")) || 0;
  const me = await whoAmI();
  const picked = new Map(); // job id -> created_at, kept across refreshes

  const applyFilters = (event) => {
    event.preventDefault();
    const values = Object.fromEntries(new FormData(event.target));
    location.hash = "#/jobs" + query(values);
  };
  const select = (name, options) => h("select", { name, onchange: (event) => event.target.form.requestSubmit() },
    h("option", { value: "" }, `any ${name}`),
    options.map((option) => h("option", { value: option, selected: filters[name] === option }, option)));
  const filterForm = h("form", { class: "filters", onsubmit: applyFilters },
    select("kind", ["eval", "perf"]),
    select("status", STATUSES),
    h("input", { name: "model", placeholder: "model", value: filters.model, "aria-label": "model" }),
    // Only an admin sees other principals' jobs; everyone else's list is their own anyway.
    me.admin ? h("input", { name: "owner", placeholder: "owner", value: filters.owner, "aria-label": "owner" }) : "",
    h("button", { type: "submit" }, "Filter"),
    Object.values(filters).some(Boolean) ? h("a", { href: "#/jobs", class: "button" }, "Clear") : "");

  const compareButton = h("button", { class: "primary", disabled: true, onclick: () => {
    const [baseline, candidate] = [...picked.keys()].sort((a, b) => picked.get(a).localeCompare(picked.get(b)));
    location.hash = "#/compare" + query({ baseline, candidate }); // the older job is the baseline
  } }, "Compare selected");
  const listing = h("div", { class: "listing" });
  const pager = h("div", { class: "pager" });
  container.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Jobs"),
      h("div", { class: "actions" }, compareButton, h("a", { href: "#/new/eval", class: "button" }, "New eval"),
        h("a", { href: "#/new/perf", class: "button" }, "New perf test"))),
    filterForm, listing, pager);

  const pickBox = (job) => h("input", {
    type: "checkbox", "aria-label": `select ${job.job_id}`, checked: picked.has(job.job_id),
    onchange: (event) => {
      if (event.target.checked) picked.set(job.job_id, job.created_at);
      else picked.delete(job.job_id);
      compareButton.disabled = picked.size !== 2;
      compareButton.title = picked.size === 2 ? "" : "Pick two succeeded jobs of one kind";
    },
  });
  const columns = [
    { label: "", cell: pickBox, class: "narrow" },
    { label: "Status", cell: (job) => statusBadge(job.status), live: true },
    { label: "Job", cell: (job) => jobLink(job.job_id) },
    { label: "Kind", cell: (job) => job.kind },
    { label: "Model", cell: (job) => modelLink(job.model) },
    me.admin ? { label: "Owner", cell: (job) => job.owner } : null,
    { label: "Progress", cell: (job) => progressBar(job.progress, job.status), class: "wide", live: true },
    { label: "Created", cell: (job) => timeCell(job.created_at) },
    { label: "Duration", cell: (job) => formatDuration(job.started_at, job.finished_at), live: true },
  ].filter(Boolean);

  let shown = ""; // the ids listed, in order: while they stay, only the live cells are redrawn (not under a click)
  async function refresh() {
    let page;
    try {
      page = await getJson("/api/v1/jobs" + query({ ...filters, limit: PAGE_SIZE, offset }),
        { signal: context.signal });
    } catch (error) {
      if (!context.signal.aborted) listing.replaceChildren(errorBox(error.message));
      return;
    }
    const ids = page.jobs.map((job) => job.job_id).join(" ");
    if (ids && ids === shown) {
      for (const [index, row] of [...listing.querySelectorAll("tbody tr")].entries()) {
        const job = page.jobs[index];
        row.dataset.status = job.status;
        columns.forEach((column, cell) => column.live && row.cells[cell].replaceChildren(column.cell(job)));
      }
      return;
    }
    shown = ids;
    listing.replaceChildren(table(columns, page.jobs, {
      empty: Object.values(filters).some(Boolean) ? "No job matches these filters." : "No jobs yet: start an eval or "
        + "a perf test.",
      rowAttributes: (job) => ({ dataset: { job: job.job_id, status: job.status } }),
    }));
    const last = Math.min(offset + PAGE_SIZE, page.total);
    const pageLink = (label, to) => h("a", { class: "button", href: "#/jobs" + query({ ...filters, offset: to }) },
      label);
    pager.replaceChildren(
      offset > 0 ? pageLink("← Newer", Math.max(0, offset - PAGE_SIZE)) : "",
      h("span", { class: "muted" }, page.total ? `${offset + 1}–${last} of ${page.total}` : ""),
      last < page.total ? pageLink("Older →", offset + PAGE_SIZE) : "");
  }
  await refresh();
  // Live: statuses and progress move, and jobs submitted elsewhere appear.
  context.every(REFRESH_MS, refresh);
}
