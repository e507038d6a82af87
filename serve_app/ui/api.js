// Every call to the JSON API: the mount point, the bearer token (asked for once per tab on a 401, kept in
// sessionStorage), error messages, job events over fetch (EventSource cannot send the token) and downloads.

const ROOT = document.documentElement.dataset.root || "";
const TOKEN_KEY = "evalscope-serve.token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const url = (path) => ROOT + path;

function signedIn() {
  return sessionStorage.getItem(TOKEN_KEY) !== null;
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
}

function authorization() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token === null ? {} : { Authorization: `Bearer ${token}` };
}

let pendingToken = null; // one prompt answers every call refused meanwhile

function askForToken(refused) {
  if (pendingToken) return pendingToken;
  const dialog = document.getElementById("token-dialog");
  const form = document.getElementById("token-form");
  const error = document.getElementById("token-error");
  error.hidden = !refused;
  error.textContent = refused ? "The service refused that token. Check it and try again." : "";
  form.reset();
  pendingToken = new Promise((resolve) => {
    form.addEventListener("submit", () => {
      sessionStorage.setItem(TOKEN_KEY, form.elements.token.value.trim());
      form.reset();
      pendingToken = null;
      resolve();
    }, { once: true });
  });
  dialog.oncancel = (event) => event.preventDefault(); // Escape would leave the page with nothing to show
  if (!dialog.open) dialog.showModal();
  return pendingToken;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && typeof body.message === "string") return body.message;
  } catch {
    // not the API's JSON error shape (a proxy's page, say): the status says what there is to say
  }
  return `${response.status} ${response.statusText || "error"}`;
}

/** fetch() below the mount point with the token; a 401 asks for one and tries again; other errors throw ApiError. */
export async function request(path, { method = "GET", body, headers = {}, signal } = {}) {
  for (;;) {
    const hadToken = signedIn();
    const response = await fetch(url(path), {
      method,
      signal,
      headers: {
        ...authorization(), ...(body === undefined ? {} : { "Content-Type": "application/json" }), ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401) {
      if (hadToken) signOut();
      await askForToken(hadToken);
      continue;
    }
    if (!response.ok) throw new ApiError(response.status, await errorMessage(response));
    return response;
  }
}

export async function getJson(path, options) {
  return (await request(path, options)).json();
}

let caller = null;

/** GET /api/v1/me, asked once per page load: who the token stands for, whether an admin, whether auth is on. */
export function whoAmI() {
  caller ??= getJson("/api/v1/me").catch((error) => {
    caller = null;
    throw error;
  });
  return caller;
}

export function query(params) {
  const pairs = Object.entries(params).filter(([, value]) => value !== undefined && value !== null && value !== "");
  return pairs.length ? "?" + new URLSearchParams(pairs).toString() : "";
}

/** Calls onEvent with each `job` event of GET /jobs/<id>/events until the stream ends (the job ended, or the
 * connection dropped: the caller looks at the job to tell which). */
export async function followJob(jobId, onEvent, signal) {
  const response = await request(`/api/v1/jobs/${jobId}/events`, { signal, headers: { Accept: "text/event-stream" } });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffered += value.replaceAll("\r\n", "\n");
    let end;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      const data = buffered.slice(0, end).split("\n").filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart()).join("\n");
      buffered = buffered.slice(end + 2);
      if (data) onEvent(JSON.parse(data));
    }
  }
}

/** Saves what `path` answers as a file: a link cannot send the token. */
export async function download(path, filename) {
  const blob = await (await request(path)).blob();
  const link = Object.assign(document.createElement("a"), { href: URL.createObjectURL(blob), download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

/** A key per submission, so that a retried or double-clicked submit starts one job (crypto.randomUUID needs https). */
export function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "ui-" + Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}
