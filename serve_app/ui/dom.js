// Building the page: elements from data (text only, never parsed as HTML), tables, badges, numbers and times.

export const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled", "interrupted"];
export const ACTIVE = new Set(["queued", "running"]);

/** h("a", {href: "#/jobs", class: "x"}, "text", child, [more]) ; attributes named on* are listeners. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name in element && typeof value !== "string") element[name] = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  element.append(...children.flat(Infinity).filter((child) => child !== undefined && child !== null && child !== false)
    .map((child) => (child instanceof Node ? child : String(child))));
  return element;
}

export function statusBadge(status) {
  return h("span", { class: `badge status-${status}`, dataset: { status } }, status);
}

export function verdictBadge(verdict) {
  return verdict ? h("span", { class: `verdict verdict-${verdict.replaceAll(" ", "-")}` }, verdict) : "";
}

export function progressBar(progress, status) {
  const percent = Math.max(0, Math.min(100, progress?.percent ?? 0));
  const counts = progress?.total ? `${progress.done} / ${progress.total}` : "";
  return h("div", { class: `progress status-${status}` },
    h("div", { class: "bar" }, h("span", { style: `width: ${percent}%` })),
    h("span", { class: "progress-text" }, `${percent.toFixed(0)}%`, counts && ` · ${counts}`));
}

/** columns: [{label, cell: (row) => node|text, class?}] */
export function table(columns, rows, { empty = "Nothing here yet.", rowAttributes } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, columns.map((column) => h("th", { class: column.class }, column.label)))),
    h("tbody", {}, rows.map((row) => h("tr", rowAttributes ? rowAttributes(row) : {},
      columns.map((column) => h("td", { class: column.class }, column.cell(row))))))));
}

/** key/value pairs as a two-column list */
export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(([, value]) => value !== undefined && value !== null && value !== "")
    .map(([label, value]) => [h("dt", {}, label), h("dd", {}, value)]));
}

export function errorBox(message) {
  return h("div", { class: "error-box", role: "alert" }, message);
}

export function jobLink(jobId) {
  return h("a", { href: `#/jobs/${jobId}`, class: "mono" }, jobId);
}

export function modelLink(model) {
  return h("a", { href: `#/models/${encodeURIComponent(model)}` }, model);
}

export function formatNumber(value) {
  if (value === null || value === undefined || value === "") return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return value.toLocaleString("en-US");
  const magnitude = Math.abs(value);
  const digits = magnitude >= 100 ? 1 : magnitude >= 1 ? 3 : 4;
  return value.toLocaleString("en-US", { maximumFractionDigits: digits });
}

export function formatScore(value) {
  return typeof value === "number" ? value.toFixed(4) : "–";
}

export function formatSigned(value, suffix = "") {
  if (typeof value !== "number") return "–";
  return (value > 0 ? "+" : "") + formatNumber(value) + suffix;
}

export function formatTime(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} `
    + `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

export function formatDuration(startIso, endIso) {
  if (!startIso) return "–";
  const seconds = Math.max(0, ((endIso ? new Date(endIso) : new Date()) - new Date(startIso)) / 1000);
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function timeCell(iso) {
  return h("time", { datetime: iso || "", title: iso || "" }, formatTime(iso));
}
