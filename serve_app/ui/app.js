// The web UI's entry: a router over the URL's #fragment (so the service serves one page), and who is signed in.

import { signOut, whoAmI } from "./api.js";
import { renderCompare } from "./compare.js";
import { errorBox, h } from "./dom.js";
import { renderEvalForm, renderPerfForm } from "./forms.js";
import { renderJob } from "./job.js";
import { renderJobs } from "./jobs.js";
import { renderHistory, renderLeaderboard } from "./leaderboard.js";

const ROUTES = [
  [/^(jobs)?$/, "jobs", renderJobs],
  [/^jobs\/([^/]+)$/, "jobs", renderJob],
  [/^new\/eval$/, "new/eval", renderEvalForm],
  [/^new\/perf$/, "new/perf", renderPerfForm],
  [/^compare$/, "compare", renderCompare],
  [/^leaderboard$/, "leaderboard", renderLeaderboard],
  [/^models\/(.+)$/, "leaderboard", renderHistory],
];

let current = null; // the shown view's AbortController: stops its streams, polls and timers when it is left

/** What a view gets: the URL's query, a signal aborted when it is left, and timers that stop with it. */
function viewContext(controller, params) {
  return {
    params,
    signal: controller.signal,
    every(ms, callback) {
      const timer = setInterval(callback, ms);
      controller.signal.addEventListener("abort", () => clearInterval(timer));
    },
    after(ms, callback) {
      const timer = setTimeout(callback, ms);
      controller.signal.addEventListener("abort", () => clearTimeout(timer));
    },
  };
}

async function show() {
  const [path, search] = location.hash.replace(/^#\/?/, "").split("?");
  current?.abort();
  const controller = (current = new AbortController());
  const view = document.getElementById("view");
  const route = ROUTES.find(([pattern]) => pattern.test(path));
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", route !== undefined && link.dataset.section === route[1]);
  }
  if (!route) {
    view.replaceChildren(errorBox(`There is no page at #/${path}.`), h("p", {}, h("a", { href: "#/jobs" }, "Jobs")));
    return;
  }
  const [pattern, , render] = route;
  const captured = path.match(pattern).slice(1).map((part) => (part === undefined ? part : decodeURIComponent(part)));
  const container = h("div", { class: "page" });
  view.replaceChildren(container);
  try {
    await render(container, viewContext(controller, new URLSearchParams(search || "")), ...captured);
  } catch (error) {
    if (controller.signal.aborted) return; // left while loading
    container.replaceChildren(errorBox(error.message));
  }
}

async function showWho() {
  const who = document.getElementById("who");
  try {
    const me = await whoAmI();
    if (!me.auth) return;
    who.replaceChildren(`Signed in as ${me.principal}${me.admin ? " (admin)" : ""} · `,
      h("button", { class: "link", onclick: () => { signOut(); location.reload(); } }, "Sign out"));
  } catch {
    who.replaceChildren(); // the views say what went wrong
  }
}

window.addEventListener("hashchange", show);
show();
showWho();
