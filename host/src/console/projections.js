// The Cairn console's projections (docs/console.md): each projection's builds with
// their version, status, position, lag and events/s, polled every two seconds
// (`GET /t/{tenant}/projections`); a chart on a canvas of the active build's
// position, lag and events/s over the polls; promote (and roll back) a build with
// `POST …/promote {"build": B}`, rebuild with `POST …/rebuild`.

import { $, el, api, fillTable, fail, notice, tenantPath } from "./app.js";

const POLL_MS = 2000;
const SAMPLES = 150;
let timer = null;
let history = {}; // projection name -> [{t, position, lag, eps}]
let tenantOf = "";

export function initProjections() {}

export async function showProjections() {
  hideProjections();
  if (tenantOf !== tenantPath("")) { history = {}; tenantOf = tenantPath(""); }
  await poll();
  timer = setInterval(() => poll().catch(fail), POLL_MS);
}

export function hideProjections() {
  clearInterval(timer);
  timer = null;
}

async function poll() {
  const projections = await api("GET", tenantPath("/projections"));
  const list = $("projections-list");
  if (!projections.length) {
    list.replaceChildren(el("p", { class: "muted", text: "No projections: upload a projection plugin." }));
    return;
  }
  for (const p of projections) record(p);
  const cards = projections.map(card);
  list.replaceChildren(...cards);
  for (const p of projections) draw(list.querySelector(`canvas[data-projection="${p.name}"]`), history[p.name] || []);
}

function record(p) {
  const active = p.versions.find((b) => b.build === p.active_build);
  if (!active) return;
  const samples = (history[p.name] ||= []);
  samples.push({ t: Date.now(), position: active.position, lag: active.lag, eps: active.events_per_second });
  if (samples.length > SAMPLES) samples.shift();
}

function card(p) {
  const active = p.versions.find((b) => b.build === p.active_build);
  const table = el("table", { class: "builds" });
  fillTable(table, ["version", "build", "status", "position", "lag", "events/s", "host", ""], p.versions.map((b) => {
    let action = "";
    if (b.build !== p.active_build && b.status !== "failed") {
      const back = p.active_version !== null && b.version < p.active_version;
      action = el("button", {
        type: "button", class: "small", "data-action": "promote", "data-projection": p.name,
        "data-version": b.version, "data-build": b.build,
        text: back ? `Roll back to v${b.version}` : `Promote v${b.version}`,
        onclick: () => promote(p.name, b),
      });
    }
    const cells = [`v${b.version}`, String(b.build), el("span", { class: `status ${b.status}`, text: b.status }),
      String(b.position), String(b.lag), b.events_per_second.toFixed(1), b.host || "", b.error ? el("span", { class: "error", text: b.error }) : action];
    cells.row = { "data-build": b.build, "data-version": b.version, "data-status": b.status };
    return cells;
  }));
  const summary = active
    ? `active v${p.active_version} (build ${p.active_build}) · position ${active.position} · lag ${active.lag} · ${active.events_per_second.toFixed(1)} events/s`
    : "no active build";
  return el("div", { class: "card", "data-projection": p.name, "data-active-version": p.active_version ?? "" },
    el("h3", {}, `${p.name} `, el("span", { class: "muted active-summary", text: summary }), " ",
      el("button", { type: "button", class: "small", "data-action": "rebuild", "data-projection": p.name, text: "Rebuild", onclick: () => rebuild(p.name) })),
    el("div", { class: "scroll" }, table),
    el("div", { class: "chart" },
      el("canvas", { "data-projection": p.name, width: "600", height: "140" }),
      el("div", { class: "legend" },
        el("span", { class: "key position", text: "position" }), " ",
        el("span", { class: "key lag", text: "lag" }), " ",
        el("span", { class: "key eps", text: "events/s" }),
        el("span", { class: "muted", text: ` · last ${SAMPLES} polls, every ${POLL_MS / 1000} s, each line on its own scale` }))));
}

async function promote(name, build) {
  try {
    const answer = await api("POST", tenantPath(`/projections/${encodeURIComponent(name)}/promote`), { build: build.build });
    notice(`${name}: v${answer.active_version} (build ${answer.active_build}) is active`);
    await poll();
  } catch (e) { fail(e); }
}

async function rebuild(name) {
  try {
    const answer = await api("POST", tenantPath(`/projections/${encodeURIComponent(name)}/rebuild`));
    notice(`${name}: rebuilding v${answer.version} as build ${answer.build}`);
    await poll();
  } catch (e) { fail(e); }
}

// Three lines, each scaled to its own maximum, over the samples kept; the newest
// values written under them.
function draw(canvas, samples) {
  if (!canvas) return;
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 600;
  const height = canvas.clientHeight || 140;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, width, height);
  g.strokeStyle = "#d5dbe1";
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = 6 + ((height - 20) * i) / 4;
    g.beginPath(); g.moveTo(0, y); g.lineTo(width, y); g.stroke();
  }
  const series = [["position", "#2f6fb0"], ["lag", "#c0392b"], ["eps", "#27ae60"]];
  for (const [key, color] of series) {
    const values = samples.map((s) => s[key]);
    const max = Math.max(1, ...values);
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.beginPath();
    values.forEach((v, i) => {
      // The newest sample at the right edge, older ones to its left.
      const x = width - ((samples.length - 1 - i) * width) / (SAMPLES - 1);
      const y = 6 + (height - 20) * (1 - v / max);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
    if (values.length) {
      g.fillStyle = color;
      g.font = "11px system-ui, sans-serif";
      const label = key === "eps" ? `${values[values.length - 1].toFixed(1)}/s` : String(values[values.length - 1]);
      g.fillText(label, 4 + series.findIndex((s) => s[0] === key) * 70, height - 3);
    }
  }
}
