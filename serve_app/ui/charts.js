// Charts with the plotly.js the service serves (the same copy as the reports'), loaded the first time one is drawn.

import { h } from "./dom.js";

let plotly = null;

function loadPlotly() {
  plotly ??= new Promise((resolve, reject) => {
    const script = h("script", { src: document.documentElement.dataset.plotly });
    script.addEventListener("load", () => resolve(window.Plotly));
    script.addEventListener("error", () => {
      plotly = null;
      reject(new Error("plotly.js did not load"));
    });
    document.head.append(script);
  });
  return plotly;
}

const LAYOUT = {
  margin: { t: 40, r: 20, b: 60, l: 60 },
  font: { family: "system-ui, sans-serif", size: 12 },
  legend: { orientation: "h", y: -0.2 },
  paper_bgcolor: "rgba(0,0,0,0)",
  plot_bgcolor: "rgba(0,0,0,0)",
};

export const BASELINE_COLOR = "#7a8aa0";
export const CANDIDATE_COLOR = "#2f6fdd";

/** A chart element, drawn when plotly.js has loaded. */
export function chart(traces, layout = {}, height = 320) {
  const element = h("div", { class: "chart", style: `height: ${height}px` });
  loadPlotly()
    .then((Plotly) => Plotly.newPlot(element, traces, { ...LAYOUT, ...layout },
      { displaylogo: false, responsive: true }))
    .catch((error) => element.replaceChildren(h("p", { class: "empty" }, `Chart not drawn: ${error.message}`)));
  return element;
}
