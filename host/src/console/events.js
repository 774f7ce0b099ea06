// The Cairn console's event browser and stream view (docs/console.md). The browser
// pages through the tenant's log (`GET /t/{tenant}/events`, `types` filtered by the
// server, the stream filter applied here as a prefix of the stream id) and, in live
// mode, follows `/events/live`: EventSource cannot send an Authorization header, so
// the SSE stream is read with fetch and a ReadableStream, resuming with
// `Last-Event-ID` after a drop. The stream view shows an aggregate's state at any
// version (`?version=N`) with a slider through its history.

import { $, el, api, fillTable, fail, notice, session, tenantPath, shortTime, showTab } from "./app.js";

const PAGE = 100;
const KEEP = 500; // rows kept in the table while live
let next = null;
let lastPosition = 0;
let live = null; // the AbortController of the live stream

function filters() {
  return {
    types: $("events-types").value.split(",").map((t) => t.trim()).filter(Boolean),
    stream: $("events-stream").value.trim(),
  };
}

const matches = (event, f) => (!f.stream || event.stream_id.startsWith(f.stream))
  && (!f.types.length || f.types.includes(event.type));

function eventRow(event) {
  const cells = [
    String(event.position),
    el("button", { type: "button", class: "link", text: event.stream_id, onclick: () => openStreamOf(event.stream_id, event.version) }),
    String(event.version),
    event.type,
    shortTime(event.recorded_at),
    el("code", { text: JSON.stringify(event.data) }),
  ];
  return el("tr", { "data-position": event.position, "data-type": event.type, "data-stream": event.stream_id },
    ...cells.map((c) => el("td", {}, c)));
}

function ensureHeader() {
  const table = $("events-table");
  if (!table.tHead) fillTable(table, ["position", "stream", "version", "type", "recorded", "data"], []);
  return table.tBodies[0];
}

async function load(after, append) {
  const f = filters();
  const query = new URLSearchParams({ after: String(after), limit: String(PAGE) });
  if (f.types.length) query.set("types", f.types.join(","));
  const page = await api("GET", tenantPath(`/events?${query}`));
  const body = ensureHeader();
  if (!append) body.replaceChildren();
  for (const event of page.events) if (matches(event, f)) body.append(eventRow(event));
  next = page.next;
  lastPosition = page.events.length ? page.events[page.events.length - 1].position : Math.max(after, page.head);
  if (page.next === null) lastPosition = Math.max(lastPosition, page.head);
  $("events-more").classList.toggle("hidden", next === null);
  $("events-state").textContent = `head ${page.head}`;
}

export async function showEvents() {
  // An empty "after" shows the newest page: from the head less one page.
  let after = $("events-after").value.trim();
  if (after === "") {
    const head = (await api("GET", tenantPath("/events?after=0&limit=1"))).head;
    after = Math.max(0, head - PAGE);
  }
  await load(Number(after) || 0, false);
  if ($("events-live").checked) startLive();
}

export function hideEvents() {
  stopLive();
}

// ---- live mode ----

function startLive() {
  stopLive();
  const controller = new AbortController();
  live = controller;
  follow(controller, lastPosition).catch((e) => {
    if (!controller.signal.aborted) fail(e);
  });
}

function stopLive() {
  if (live) live.abort();
  live = null;
  $("events-state").classList.remove("live");
}

// Reads SSE frames from a fetch body; reconnects from the last id it saw.
async function follow(controller, after) {
  const f = filters();
  let lastId = String(after);
  while (!controller.signal.aborted) {
    const query = new URLSearchParams({ after: lastId });
    if (f.types.length) query.set("types", f.types.join(","));
    const response = await fetch(tenantPath(`/events/live?${query}`), {
      headers: { Authorization: `Bearer ${session.token}`, Accept: "text/event-stream", "Last-Event-ID": lastId },
      signal: controller.signal,
    });
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      throw new Error(`live: ${response.status} ${(body && body.error && body.error.message) || ""}`);
    }
    $("events-state").textContent = "live: connected";
    $("events-state").classList.add("live");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const message = parseFrame(frame);
        if (!message) continue;
        if (message.id) lastId = message.id;
        onMessage(message, f);
      }
    }
    // The server ended the stream (dropped, restarted): go on from the last id.
    if (!controller.signal.aborted) await new Promise((r) => setTimeout(r, 1000));
  }
}

function parseFrame(frame) {
  const message = { event: "message", data: "", id: "" };
  let any = false;
  for (const line of frame.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "data") message.data += (message.data ? "\n" : "") + value;
    else if (field === "event") message.event = value;
    else if (field === "id") message.id = value;
    any = true;
  }
  return any ? message : null;
}

function onMessage(message, f) {
  if (message.event === "caught-up") {
    $("events-state").textContent = "live: following";
    return;
  }
  if (message.event === "dropped") {
    notice("live: the server dropped this subscriber (too far behind); resuming", "error");
    return;
  }
  const event = JSON.parse(message.data);
  lastPosition = Math.max(lastPosition, event.position);
  if (!matches(event, f)) return;
  const body = ensureHeader();
  const row = eventRow(event);
  row.classList.add("fresh");
  body.append(row);
  while (body.rows.length > KEEP) body.deleteRow(0);
  row.scrollIntoView({ block: "nearest" });
}

// ---- stream view ----

let stream = null; // { name, id, head }
let stateRequest = 0;

export async function showStream() {
  const plugins = await api("GET", tenantPath("/plugins"));
  const select = $("stream-aggregate");
  const chosen = select.value;
  select.replaceChildren(...plugins.filter((p) => p.kind === "aggregate")
    .map((p) => el("option", { value: p.name, text: p.name })));
  if (chosen) select.value = chosen;
}

// A stream id to its aggregate and id: `{category}-{id}`, the category being the
// aggregate's name with `-` written `_` (docs/api.md).
async function openStreamOf(streamId, version) {
  const dash = streamId.indexOf("-");
  const category = dash < 0 ? streamId : streamId.slice(0, dash);
  const plugins = await api("GET", tenantPath("/plugins")).catch(() => []);
  const aggregate = plugins.find((p) => p.kind === "aggregate" && p.name.replace(/-/g, "_") === category);
  if (!aggregate || dash < 0) {
    notice(`${streamId} is not in an aggregate's category`, "error");
    return;
  }
  showTab("stream");
  await showStream();
  $("stream-aggregate").value = aggregate.name;
  $("stream-id").value = streamId.slice(dash + 1);
  await openStream(aggregate.name, streamId.slice(dash + 1), version);
}

export async function openStream(name, id, version) {
  const latest = await api("GET", tenantPath(`/aggregates/${encodeURIComponent(name)}/${encodeURIComponent(id)}`));
  stream = { name, id, head: latest.version, streamId: latest.stream_id };
  const slider = $("stream-slider");
  slider.max = String(latest.version);
  slider.value = String(version || latest.version);
  $("stream-head").textContent = String(latest.version);
  $("stream-view").classList.remove("hidden");
  const events = [];
  let from = 1;
  while (from !== null && events.length < 1000) {
    const page = await api("GET", tenantPath(`/streams/${encodeURIComponent(latest.stream_id)}?from=${from}&limit=200`));
    events.push(...page.events);
    from = page.next;
  }
  fillTable($("stream-events"), ["version", "type", "data"], events.map((e) => {
    const cells = [String(e.version), e.type, el("code", { text: JSON.stringify(e.data) })];
    cells.row = { "data-version": e.version };
    return cells;
  }));
  await showVersion(Number(slider.value));
}

async function showVersion(version) {
  if (!stream) return;
  const ask = ++stateRequest;
  $("stream-version").textContent = String(version);
  const state = await api("GET", tenantPath(`/aggregates/${encodeURIComponent(stream.name)}/${encodeURIComponent(stream.id)}?version=${version}`));
  if (ask !== stateRequest) return; // a later move of the slider wins
  const pre = $("stream-state");
  pre.textContent = JSON.stringify(state.state, null, 2);
  pre.dataset.version = String(state.version);
  document.querySelectorAll("#stream-events tbody tr").forEach((row) =>
    row.classList.toggle("current", Number(row.dataset.version) === version));
  document.querySelectorAll("#stream-events tbody tr").forEach((row) =>
    row.classList.toggle("later", Number(row.dataset.version) > version));
}

function step(delta) {
  const slider = $("stream-slider");
  const value = Math.min(Number(slider.max), Math.max(1, Number(slider.value) + delta));
  slider.value = String(value);
  showVersion(value).catch(fail);
}

export function initEvents() {
  $("events-form").addEventListener("submit", (event) => {
    event.preventDefault();
    stopLive();
    showEvents().catch(fail);
  });
  $("events-more").addEventListener("click", () => next !== null && load(next, true).catch(fail));
  $("events-live").addEventListener("change", (e) => {
    if (e.target.checked) startLive();
    else { stopLive(); $("events-state").textContent = "live: off"; }
  });
  $("stream-form").addEventListener("submit", (event) => {
    event.preventDefault();
    openStream($("stream-aggregate").value, $("stream-id").value.trim()).catch(fail);
  });
  $("stream-slider").addEventListener("input", (e) => showVersion(Number(e.target.value)).catch(fail));
  $("stream-prev").addEventListener("click", () => step(-1));
  $("stream-next").addEventListener("click", () => step(1));
}
