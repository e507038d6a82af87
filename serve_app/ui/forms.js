// The forms that start an eval or a perf test. Help texts, choices and defaults come from the service's own
// OpenAPI document, so the forms say what the API says. API keys are sent once and never kept: the field is
// emptied after a submission, and nothing typed is stored in the browser.

import { ApiError, getJson, idempotencyKey, request } from "./api.js";
import { errorBox, h, table } from "./dom.js";

const SECRET_MASK = "**********"; // how the service shows a stored request's credential headers

let openapi = null;

function schemaOf(name) {
  openapi ??= getJson("/openapi.json").catch((error) => {
    openapi = null;
    throw error;
  });
  return openapi.then((document) => ({ document, schema: document.components.schemas[name] }));
}

/** The JSON schema of a dotted field (generation_config.temperature) of a request model, $refs followed. */
function fieldSchema({ document, schema }, path) {
  let current = schema;
  for (const part of path.split(".")) {
    current = current?.properties?.[part];
    const ref = current?.$ref || current?.anyOf?.find((option) => option.$ref)?.$ref;
    if (ref) current = { ...document.components.schemas[ref.split("/").pop()], description: current.description };
  }
  return current || {};
}

// kind: text, number, password (never kept), checkbox, select (from the schema's enum), numbers (a number or a
// comma list: a sweep), names (a comma list), json (an object).
const EVAL_FIELDS = [
  { path: "model", label: "Model", required: true, placeholder: "the name the endpoint serves" },
  { path: "api_url", label: "Endpoint URL", required: true, placeholder: "http://host:8000/v1" },
  { path: "api_key", label: "API key", kind: "password" },
  { path: "datasets", label: "Datasets", kind: "names", required: true, placeholder: "gsm8k, iquiz" },
  { path: "limit", label: "Samples per subset", kind: "number", step: "any" },
  { path: "eval_batch_size", label: "Concurrent requests", kind: "number" },
  { path: "repeats", label: "Repeats", kind: "number" },
  { path: "generation_config.temperature", label: "Temperature", kind: "number", step: "any" },
  { path: "generation_config.max_tokens", label: "Max tokens", kind: "number" },
  { path: "generation_config.timeout", label: "Request timeout (s)", kind: "number", step: "any" },
  { path: "ignore_errors", label: "Score failed samples as wrong", kind: "checkbox" },
  { path: "dataset_args", label: "Dataset options (JSON)", kind: "json", advanced: true,
    placeholder: '{"gsm8k": {"local_path": "gsm8k", "few_shot_num": 0}}' },
];

const PERF_FIELDS = [
  { path: "model", label: "Model", required: true, placeholder: "the name the endpoint serves" },
  { path: "url", label: "Endpoint URL", required: true, placeholder: "http://host:8000/v1/chat/completions" },
  { path: "api", label: "API", kind: "select" },
  { path: "api_key", label: "API key", kind: "password" },
  { path: "dataset", label: "Dataset", placeholder: "openqa" },
  { path: "dataset_path", label: "Prompt file (under the datasets root)" },
  { path: "number", label: "Requests", kind: "numbers", placeholder: "1000, or a sweep: 100, 1000" },
  { path: "parallel", label: "Concurrency", kind: "numbers", placeholder: "1, or a sweep: 1, 16" },
  { path: "rate", label: "Rate (req/s, -1: unlimited)", kind: "number", step: "any" },
  { path: "max_tokens", label: "Max tokens", kind: "number" },
  { path: "stream", label: "Stream replies", kind: "checkbox", checked: true },
  { path: "warmup", label: "Warm-up requests", kind: "number" },
  { path: "shards", label: "Shards", kind: "number" },
  { path: "duration_s", label: "Duration per point (s)", kind: "number", step: "any" },
  { path: "slo.ttft_ms", label: "SLO: TTFT (ms)", kind: "number", step: "any", advanced: true },
  { path: "slo.tpot_ms", label: "SLO: TPOT (ms)", kind: "number", step: "any", advanced: true },
  { path: "slo.itl_ms", label: "SLO: ITL (ms)", kind: "number", step: "any", advanced: true },
  { path: "slo.e2e_ms", label: "SLO: end to end (ms)", kind: "number", step: "any", advanced: true },
  { path: "extra_args", label: "Extra body fields (JSON)", kind: "json", advanced: true,
    placeholder: '{"ignore_eos": true}' },
];

function input(field, spec) {
  const name = field.path;
  const common = { name, id: `field-${name}`, required: field.required, title: spec.description };
  const fallback = spec.default === undefined || spec.default === null ? "" : String(spec.default);
  switch (field.kind) {
    case "password":
      // Never kept: not by this page (emptied after each submission), and not by a password manager.
      return h("input", { ...common, type: "password", autocomplete: "off", "data-lpignore": "true",
        placeholder: "sent with this submission only" });
    case "checkbox":
      return h("input", { ...common, type: "checkbox", checked: field.checked ?? spec.default === true });
    case "select":
      return h("select", common,
        (spec.enum || []).map((value) => h("option", { value, selected: value === spec.default }, value)));
    case "json":
      return h("textarea", { ...common, rows: 3, placeholder: field.placeholder, spellcheck: "false" });
    case "number":
      return h("input", { ...common, type: "number", step: field.step || "1", placeholder: fallback });
    default:
      return h("input", { ...common, type: "text", placeholder: field.placeholder || fallback });
  }
}

function setPath(target, path, value) {
  const parts = path.split(".");
  const last = parts.pop();
  for (const part of parts) target = target[part] ??= {};
  target[last] = value;
}

function parseJson(text, label) {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${label}: not valid JSON (${error.message})`);
  }
}

/** The request body from the form: empty fields left out (the service's defaults apply). */
function body(form, fields) {
  const result = {};
  for (const field of fields) {
    const element = form.elements[field.path];
    if (field.kind === "checkbox") {
      setPath(result, field.path, element.checked);
      continue;
    }
    const text = element.value.trim();
    if (!text) continue;
    let value = text;
    if (field.kind === "number") value = Number(text);
    if (field.kind === "names") value = text.split(",").map((name) => name.trim()).filter(Boolean);
    if (field.kind === "numbers") {
      const numbers = text.split(",").map((part) => Number(part.trim()));
      if (numbers.some((number) => !Number.isInteger(number))) {
        throw new Error(`${field.label}: whole numbers, comma-separated`);
      }
      value = numbers.length === 1 ? numbers[0] : numbers;
    }
    if (field.kind === "json") value = parseJson(text, field.label);
    setPath(result, field.path, value);
  }
  return result;
}

function getPath(source, path) {
  return path.split(".").reduce((value, part) => value?.[part], source);
}

function deepMerge(target, extra) {
  for (const [name, value] of Object.entries(extra)) {
    const both = [target[name], value].every((v) => v && typeof v === "object" && !Array.isArray(v));
    target[name] = both ? deepMerge(target[name], value) : value;
  }
  return target;
}

// Not carried into a new run: keys (never stored; their masks are not keys), the job a run resumed, debug output.
const NOT_CARRIED = new Set(["api_key", "resume_from", "debug"]);

/** An earlier job's request in the form: the fields it shows, and every other field that is not the default in
 * "Other request fields" (credential headers, masked in the stored request, are left out). */
function fill(form, fields, schema, requestBody) {
  for (const field of fields) {
    const value = getPath(requestBody, field.path);
    const element = form.elements[field.path];
    if (field.kind === "password" || value === undefined || value === null) continue;
    if (field.kind === "checkbox") element.checked = Boolean(value);
    else if (field.kind === "json") element.value = Object.keys(value).length ? JSON.stringify(value) : "";
    else element.value = Array.isArray(value) ? value.join(", ") : String(value);
  }
  const shown = new Set(fields.map((field) => field.path));
  const rest = {};
  const collect = (value, path) => {
    if (shown.has(path) || NOT_CARRIED.has(path) || value === null) return;
    if (path === "headers") value = Object.fromEntries(Object.entries(value).filter(([, v]) => v !== SECRET_MASK));
    const nested = value && typeof value === "object" && !Array.isArray(value)
      && [...shown].some((shownPath) => shownPath.startsWith(`${path}.`));
    if (nested) {
      for (const [name, inner] of Object.entries(value)) collect(inner, `${path}.${name}`);
      return;
    }
    const fallback = fieldSchema(schema, path).default;
    const empty = value && typeof value === "object" && !Object.keys(value).length;
    if (!empty && JSON.stringify(value) !== JSON.stringify(fallback)) setPath(rest, path, value);
  };
  for (const [name, value] of Object.entries(requestBody)) collect(value, name);
  if (!Object.keys(rest).length) return;
  form.elements.extra.value = JSON.stringify(rest, null, 1);
  form.elements.extra.rows = Math.min(12, form.elements.extra.value.split("\n").length);
  form.querySelector("details").open = true;
}

async function renderForm(container, context, { kind, title, model, fields, intro, aside }) {
  const schema = await schemaOf(model);
  const from = context.params.get("from");
  const status = h("div", { "aria-live": "polite" });
  const row = (field) => {
    const spec = fieldSchema(schema, field.path);
    return h("div", { class: `field ${field.kind === "checkbox" ? "check" : ""}` },
      h("label", { for: `field-${field.path}` }, field.label,
        field.required ? h("span", { class: "required" }, " *") : ""),
      input(field, spec), spec.description ? h("small", {}, spec.description) : "");
  };
  const submit = h("button", { type: "submit", class: "primary" },
    `Start ${kind === "eval" ? "the eval" : "the perf test"}`);
  const form = h("form", { class: "job-form", novalidate: false, onsubmit: send },
    h("div", { class: "grid" }, fields.filter((field) => !field.advanced).map(row)),
    h("details", {}, h("summary", {}, "More options"),
      h("div", { class: "grid" }, fields.filter((field) => field.advanced).map(row)),
      h("div", { class: "field" }, h("label", { for: "field-extra" }, "Other request fields (JSON)"),
        h("textarea", { name: "extra", id: "field-extra", rows: 3, spellcheck: "false", placeholder: '{"seed": 7}' }),
        h("small", {}, "Merged into the request body: any field the API documents (see /docs)."))),
    h("div", { class: "actions" }, submit), status);
  container.replaceChildren(h("div", { class: "page-head" }, h("h1", {}, title)), intro, form, aside || "");
  if (from) {
    const earlier = await getJson(`/api/v1/jobs/${encodeURIComponent(from)}`, { signal: context.signal });
    fill(form, fields, schema, earlier.request);
    intro.append(h("span", { class: "notice" }, ` Filled in from ${from}; give its API key again (keys are never `
      + "stored)."));
  }

  // One key per body: the same body sent twice (a double click, a retry after a lost answer) starts one job, and a
  // body corrected after a 400 is a new submission (the service answers 409 to a key reused with another body).
  let sent = { body: null, key: null };
  async function send(event) {
    event.preventDefault();
    status.replaceChildren();
    let payload;
    try {
      payload = body(form, fields);
      const extra = form.elements.extra.value.trim();
      if (extra) deepMerge(payload, parseJson(extra, "Other request fields"));
    } catch (error) {
      status.replaceChildren(errorBox(error.message));
      return;
    }
    const text = JSON.stringify(payload);
    if (sent.body !== text) sent = { body: text, key: idempotencyKey() };
    submit.disabled = true;
    try {
      const response = await request(`/api/v1/${kind}?wait=false`, { method: "POST", body: payload,
        headers: { "Idempotency-Key": sent.key } });
      const job = await response.json();
      form.elements.api_key.value = "";
      location.hash = `#/jobs/${job.job_id}`;
    } catch (error) {
      const retry = error instanceof ApiError && error.status === 429 ? " Try again in a little while." : "";
      status.replaceChildren(errorBox(`Not started: ${error.message}${retry}`));
      submit.disabled = false;
    }
  }
}

export function renderEvalForm(container, context) {
  const aside = h("section", { class: "card" }, h("h2", {}, "Benchmarks"), h("p", { class: "muted" }, "Loading…"));
  const done = renderForm(container, context, {
    kind: "eval", title: "New eval", model: "EvalRequest", fields: EVAL_FIELDS, aside,
    intro: h("p", { class: "muted" }, "Scores a model behind an OpenAI-compatible endpoint on evalscope's benchmarks."),
  });
  getJson("/api/v1/benchmarks", { signal: context.signal }).then(({ benchmarks }) => {
    const datasets = () => document.getElementById("field-datasets");
    const add = (name) => {
      const names = datasets().value.split(",").map((part) => part.trim()).filter(Boolean);
      if (!names.includes(name)) datasets().value = [...names, name].join(", ");
    };
    const usable = benchmarks.filter((benchmark) => !benchmark.refused)
      .sort((a, b) => Number(b.staged) - Number(a.staged) || a.name.localeCompare(b.name));
    const columns = [
      { label: "Name",
        cell: (b) => h("button", { type: "button", class: "link", onclick: () => add(b.name) }, b.name) },
      { label: "", cell: (b) => b.pretty_name },
      { label: "Category", cell: (b) => b.category },
      { label: "Samples", cell: (b) => b.samples ?? "–", class: "number" },
      { label: "Staged", cell: (b) => (b.staged ? "yes" : "") },
    ];
    const list = h("div", { class: "scroll" }, table(columns, usable));
    const search = h("input", { type: "search", placeholder: "find a benchmark", "aria-label": "find a benchmark",
      oninput: () => {
        const words = search.value.toLowerCase().trim();
        const found = usable.filter((b) => `${b.name} ${b.pretty_name} ${b.category} ${b.tags.join(" ")}`.toLowerCase()
          .includes(words));
        list.replaceChildren(table(columns, found, { empty: "No benchmark matches." }));
      } });
    aside.replaceChildren(h("h2", {}, "Benchmarks"),
      h("p", { class: "muted" },
        `${usable.length} this service runs; staged ones need no dataset hub. Click one to add it.`),
      search, list);
  }).catch((error) => context.signal.aborted || aside.replaceChildren(errorBox(error.message)));
  return done;
}

export function renderPerfForm(container, context) {
  return renderForm(container, context, {
    kind: "perf", title: "New perf test", model: "PerfRequest", fields: PERF_FIELDS,
    intro: h("p", { class: "muted" }, "Load-tests an endpoint; the load is spread over load-generator shards and "
      + "their records merged exactly."),
  });
}
