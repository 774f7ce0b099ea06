// The Cairn web console's core (docs/console.md): the API client (the token as a
// bearer header, the contract's error shape shown as a notice), sign-in and sign-out,
// the tabs, the operator's tenants and usage, plugins with their versions and logs.
// The event browser and the stream view are in events.js, projections in
// projections.js. Only the public HTTP API (docs/api.md) is used.

import { initEvents, showEvents, hideEvents, openStream, showStream } from "./events.js";
import { initProjections, showProjections, hideProjections } from "./projections.js";

export const session = { token: "", operator: false, tenant: "" };

export const $ = (id) => document.getElementById(id);

// An element with text and attributes; children appended in order.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Fills a table from a header row and data rows (arrays of cells: text or nodes).
export function fillTable(table, headers, rows) {
  table.replaceChildren(
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { text: h })))),
    el("tbody", {}, ...rows.map((cells) => {
      const row = cells.row || {};
      return el("tr", row, ...cells.map((c) => el("td", {}, c)));
    })),
  );
}

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(`${status} ${error.code || ""}: ${error.message || "request failed"}`);
    this.status = status;
    this.code = error.code;
  }
}

// Any call of the API, with the signed-in token; JSON in and out.
export async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${session.token}` };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!response.ok) throw new ApiError(response.status, json);
  return json;
}

// `/t/{tenant}` of the tenant being looked at.
export const tenantPath = (rest) => `/t/${encodeURIComponent(session.tenant)}${rest}`;

let noticeTimer = null;
export function notice(message, kind = "info") {
  const box = $("notice");
  box.textContent = message;
  box.className = `notice ${kind}`;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => box.classList.add("hidden"), kind === "error" ? 12000 : 5000);
}

export function fail(error) {
  notice(error.message || String(error), "error");
}

export const shortTime = (rfc) => (rfc ? rfc.replace("T", " ").replace(/\.\d+/, "").replace("Z", "") : "");

// ---- sign-in ----

async function signIn(token, tenant) {
  session.token = token;
  session.tenant = tenant;
  session.operator = false;
  if (tenant) {
    await api("GET", tenantPath("/plugins"));
    try {
      await api("GET", "/admin/tenants");
      session.operator = true;
    } catch { /* a tenant's token */ }
  } else {
    await api("GET", "/admin/tenants");
    session.operator = true;
  }
  sessionStorage.setItem("cairn-console", JSON.stringify({ token, tenant }));
  await enter();
}

async function enter() {
  $("signin").classList.add("hidden");
  $("tabs").classList.remove("hidden");
  $("sign-out").classList.remove("hidden");
  document.body.classList.toggle("operator", session.operator);
  const select = $("tenant-select");
  if (session.operator) {
    const tenants = await api("GET", "/admin/tenants");
    if (!session.tenant && tenants.length) session.tenant = tenants[0].id;
    select.replaceChildren(...tenants.map((t) => el("option", { value: t.id, text: t.id })));
    select.value = session.tenant;
  } else {
    select.replaceChildren(el("option", { value: session.tenant, text: session.tenant }));
  }
  select.disabled = !session.operator;
  $("who").textContent = session.operator ? "operator" : `tenant ${session.tenant}`;
  showTab(session.operator ? "tenants" : "events");
}

function signOut() {
  sessionStorage.removeItem("cairn-console");
  hideEvents();
  hideProjections();
  session.token = "";
  session.tenant = "";
  session.operator = false;
  document.querySelectorAll(".tab").forEach((t) => t.classList.add("hidden"));
  $("tabs").classList.add("hidden");
  $("sign-out").classList.add("hidden");
  $("signin").classList.remove("hidden");
  $("who").textContent = "";
}

// ---- tabs ----

let currentTab = "";
export function showTab(name) {
  if (currentTab === "events" && name !== "events") hideEvents();
  if (currentTab === "projections" && name !== "projections") hideProjections();
  currentTab = name;
  document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("hidden", t.id !== `tab-${name}`));
  document.querySelectorAll("#tabs [data-tab]").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  if (name !== "tenants" && !session.tenant) {
    notice("No tenant yet: create one (cairn tenant create ID), then pick it here.", "error");
    return;
  }
  const shown = { tenants: showTenants, plugins: showPlugins, events: showEvents, stream: showStream, projections: showProjections }[name];
  Promise.resolve(shown()).catch(fail);
}

// ---- tenants (operator) ----

async function showTenants() {
  const tenants = await api("GET", "/admin/tenants");
  const rows = tenants.map((t) => {
    const u = t.usage;
    const cells = [
      el("button", { type: "button", class: "link", text: t.id, onclick: () => pickTenant(t.id) }),
      u.events_stored, bytes(u.bytes_stored), u.commands, u.plugin_calls,
      `${Math.round(u.plugin_time_ms)} ms`, u.traps + u.deadline_hits + u.memory_hits, u.rate_limited,
    ];
    cells.row = { "data-tenant": t.id };
    return cells;
  });
  fillTable($("tenants-table"), ["tenant", "events", "stored", "commands", "plugin calls", "plugin time", "failures", "rate limited"], rows);
}

const bytes = (n) => (n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`);

function pickTenant(id) {
  session.tenant = id;
  $("tenant-select").value = id;
  sessionStorage.setItem("cairn-console", JSON.stringify({ token: session.token, tenant: id }));
  showTab("plugins");
}

// ---- plugins and logs ----

let logsOf = "";

export async function showPlugins() {
  const plugins = await api("GET", tenantPath("/plugins"));
  const list = $("plugins-list");
  if (!plugins.length) {
    list.replaceChildren(el("p", { class: "muted", text: "No plugins yet: upload one with `cairn plugin push`." }));
    return;
  }
  list.replaceChildren(...plugins.map((p) => {
    const table = el("table");
    fillTable(table, ["version", "status", "uploaded", "digest", "verification", ""], p.versions.map((v) => {
      const report = v.verification ? summary(v.verification) : "";
      const action = p.kind !== "projection" && v.status !== "active" && v.status !== "verifying"
        ? el("button", { type: "button", class: "small", "data-plugin": p.name, "data-version": v.version,
          text: v.status === "rejected" ? "Activate (unverified)" : "Activate", onclick: () => activate(p.name, v.version) })
        : "";
      const cells = [`v${v.version}`, el("span", { class: `status ${v.status}`, text: v.status }), shortTime(v.uploaded_at), v.digest.slice(7, 19), report, action];
      cells.row = { "data-version": v.version };
      return cells;
    }));
    return el("div", { class: "card", "data-plugin": p.name },
      el("h3", {}, `${p.name} `, el("span", { class: "muted", text: `${p.kind} · active ${p.active_version ? `v${p.active_version}` : "none"}` }),
        " ", el("button", { type: "button", class: "small", text: "Logs", onclick: () => showLogs(p.name) })),
      el("div", { class: "scroll" }, table));
  }));
}

function summary(report) {
  if (typeof report !== "object") return String(report);
  const parts = [];
  for (const key of ["status", "streams_checked", "streams_total", "failures", "warnings"]) {
    if (report[key] !== undefined) parts.push(`${key.replace("_", " ")}: ${Array.isArray(report[key]) ? report[key].length : report[key]}`);
  }
  return parts.join(", ") || JSON.stringify(report).slice(0, 80);
}

async function activate(name, version) {
  try {
    await api("POST", tenantPath(`/plugins/${encodeURIComponent(name)}/activate`), { version, verify: false });
    notice(`${name} v${version} is active`);
    await showPlugins();
  } catch (e) { fail(e); }
}

async function showLogs(name) {
  logsOf = name;
  $("logs-name").textContent = name;
  const logs = await api("GET", tenantPath(`/plugins/${encodeURIComponent(name)}/logs`)).catch((e) => { fail(e); return null; });
  if (logs) $("logs").textContent = logs.lines.length ? logs.lines.join("\n") : "(nothing printed)";
}

// ---- start ----

function start() {
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    $("signin-error").textContent = "";
    signIn($("signin-token").value.trim(), $("signin-tenant").value.trim())
      .catch((e) => { $("signin-error").textContent = e.status === 401 ? "Unknown token." : e.message; signOut(); });
  });
  $("sign-out").addEventListener("click", signOut);
  document.querySelectorAll("#tabs [data-tab]").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
  $("tenant-select").addEventListener("change", (e) => { session.tenant = e.target.value; showTab(currentTab === "tenants" ? "plugins" : currentTab); });
  $("plugins-refresh").addEventListener("click", () => showPlugins().catch(fail));
  $("logs-refresh").addEventListener("click", () => logsOf && showLogs(logsOf));
  initEvents();
  initProjections();
  const saved = JSON.parse(sessionStorage.getItem("cairn-console") || "null");
  if (saved && saved.token) signIn(saved.token, saved.tenant).catch(() => signOut());
}

export { openStream };
start();
