// Roster's web console. Plain JavaScript, no build step. It talks only to
// the public HTTP API under /api/v1/, so anything it does a script can do.
"use strict";

const TOKEN_KEY = "roster-token";
const API = "/api/v1";

// ---------- small helpers ----------

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function $(sel, root) { return (root || document).querySelector(sel); }
function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }
function authHeaders(h) {
  h = h || {};
  const t = token();
  if (t) h["Authorization"] = "Bearer " + t;
  return h;
}
// seconds parses a protojson Duration ("1.500s").
function seconds(d) { return d ? parseFloat(d) : 0; }
function fmtDuration(d) {
  if (!d) return "—";
  const s = seconds(d);
  if (s < 1) return Math.round(s * 1000) + " ms";
  if (s < 120) return (Math.round(s * 10) / 10) + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  return Math.round(s / 3600) + " h";
}
function fmtTime(ts) {
  if (!ts) return "—";
  const d = new Date(ts);
  if (isNaN(d) || d.getTime() <= 0) return "—";
  return d.toLocaleString();
}
function fmtAgo(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  if (isNaN(d) || d.getTime() <= 0) return "";
  const s = (Date.now() - d.getTime()) / 1000;
  if (s < 60) return Math.max(0, Math.round(s)) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}
function num(v) { return Number(v || 0); }
const STATUS = {
  HEALTH_STATUS_PASSING: ["passing", "b-pass"],
  HEALTH_STATUS_WARNING: ["warning", "b-warn"],
  HEALTH_STATUS_CRITICAL: ["critical", "b-crit"],
  HEALTH_STATUS_UNSPECIFIED: ["unknown", "b-muted"],
};
function healthy(i) { return i.enabled && i.status === "HEALTH_STATUS_PASSING"; }

// ---------- API calls ----------

class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const opts = { method, headers: authHeaders({ "Accept": "application/json" }) };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(API + path, opts);
  } catch (e) {
    throw new APIError(0, "the node did not answer (" + e.message + ")");
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  if (!resp.ok) {
    const msg = (data && (data.message || data.reason)) || text || resp.statusText;
    throw new APIError(resp.status, resp.status + ": " + msg);
  }
  return data;
}

function showAlert(msg) {
  $("#alert-text").textContent = msg;
  $("#alert").hidden = false;
}
function clearAlert() { $("#alert").hidden = true; }

// ---------- the watch feed: server-sent events over fetch ----------

// Feeds open now; the header shows "no leader" or "reconnecting" while any
// of them is so, and "live" only while every one is.
const feeds = new Set();
const FEED_TEXT = { "live": "live", "reconnecting": "reconnecting…", "no-leader": "no leader · reconnecting…" };
function updateFeedState() {
  const el = $("#feed-state");
  const states = [...feeds].map(f => f.state);
  let state = "idle";
  if (states.includes("no-leader")) state = "no-leader";
  else if (states.includes("reconnecting")) state = "reconnecting";
  else if (states.length && states.every(s => s === "live")) state = "live";
  el.dataset.state = state;
  el.textContent = FEED_TEXT[state] || "";
}

// reasonOf returns the ErrorInfo reason of an API error body ("NO_LEADER").
function reasonOf(body) {
  for (const d of (body && body.details) || []) if (d && d.reason) return d.reason;
  return "";
}

// A watch refused with one of these is not fixed by asking again.
const REFUSED = new Set([400, 401, 403, 404]);

// Feed reads a watch endpoint (/watch, /watch/namespaces) as server-sent
// events through fetch, so the Authorization header goes with it
// (EventSource cannot send one). When the stream ends or fails it
// reconnects with Last-Event-ID, and the server resumes after that
// revision: nothing is missed, nothing repeated. Pages ask with
// require_leader=true, so a node without a leader refuses or ends the
// stream (NO_LEADER) and the header says "no leader" rather than "live".
class Feed {
  // onRefused, when given, is called with the server's message when the
  // watch is refused for good (400, 401, 403, 404), and the feed stops
  // instead of asking again; without it a refusal is asked again every
  // 10 s.
  constructor(path, query, onMessage, onRefused) {
    this.path = path;
    this.query = query;
    this.onMessage = onMessage;
    this.onRefused = onRefused;
    this.lastId = "";
    this.state = "connecting";
    this.stopped = false;
    this.delay = 500;
    feeds.add(this);
    this.run();
  }
  stop() {
    this.stopped = true;
    feeds.delete(this);
    if (this.ctrl) this.ctrl.abort();
    clearTimeout(this.timer);
    updateFeedState();
  }
  setState(s) { this.state = s; updateFeedState(); }
  async run() {
    if (this.stopped) return;
    this.ctrl = new AbortController();
    const headers = authHeaders({ "Accept": "text/event-stream" });
    if (this.lastId) headers["Last-Event-ID"] = this.lastId;
    let retryAfter = null;
    try {
      const resp = await fetch(API + this.path + "?" + this.query, { headers, signal: this.ctrl.signal, cache: "no-store" });
      if (this.stopped) return;
      if (!resp.ok) {
        let msg = resp.statusText, body = null;
        try { body = await resp.json(); msg = body.message || msg; } catch (_) { /* keep statusText */ }
        if (this.onRefused && REFUSED.has(resp.status)) {
          this.stop();
          this.onRefused(resp.status + ": " + msg);
          return;
        }
        this.noLeader = reasonOf(body) === "NO_LEADER";
        if (!this.noLeader) showAlert("watch: " + resp.status + ": " + msg);
        // A refusal is not fixed by asking again at once.
        if (resp.status >= 400 && resp.status < 500) retryAfter = 10000;
        throw new Error(msg);
      }
      this.noLeader = false;
      this.setState("live");
      this.delay = 500;
      await this.read(resp.body.getReader());
    } catch (e) {
      if (this.stopped) return;
    }
    if (this.stopped) return;
    this.setState(this.noLeader ? "no-leader" : "reconnecting");
    const wait = retryAfter || this.delay;
    this.delay = Math.min(this.delay * 2, 5000);
    this.timer = setTimeout(() => this.run(), wait);
  }
  async read(reader) {
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const frame = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        this.frame(frame);
      }
    }
  }
  frame(frame) {
    let event = "message", id = null, data = [];
    for (const line of frame.split("\n")) {
      if (!line || line[0] === ":") continue;
      const i = line.indexOf(":");
      const field = i < 0 ? line : line.slice(0, i);
      let value = i < 0 ? "" : line.slice(i + 1);
      if (value[0] === " ") value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "id") id = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return;
    let msg;
    try { msg = JSON.parse(data.join("\n")); } catch (_) { return; }
    if (event === "error") {
      // A node that lost its leader ends the stream: the header says so.
      this.noLeader = reasonOf(msg) === "NO_LEADER";
      if (!this.noLeader) showAlert("watch: " + (msg.message || "the stream failed") + " (reconnecting)");
      return;
    }
    if (id) this.lastId = id;
    this.onMessage(event, msg);
  }
}

// ---------- virtualized list ----------

// VList renders only the rows in view (plus a margin), so 10,000 rows
// scroll as smoothly as 10. Rows keep their elements while their item is
// unchanged; a changed item gets a new element, which flashes.
class VList {
  constructor(parent, opts) {
    this.o = opts;
    this.items = [];
    this.active = 0;
    this.rendered = new Map();
    this.changedAt = new Map();
    this.el = document.createElement("div");
    this.el.className = "vlist";
    this.el.setAttribute("role", "table");
    this.el.setAttribute("aria-label", opts.label);
    this.el.tabIndex = 0;
    this.el.innerHTML = `<div class="vhead ${opts.grid}" role="row">${opts.header}</div><div class="vlist-inner" role="rowgroup"></div>`;
    this.inner = this.el.querySelector(".vlist-inner");
    parent.appendChild(this.el);
    this.el.addEventListener("scroll", () => this.schedule());
    window.addEventListener("resize", this.onResize = () => this.schedule());
    this.el.addEventListener("keydown", e => this.key(e));
    this.el.addEventListener("focus", () => { if (this.items.length) this.focusRow(this.active); });
  }
  destroy() { window.removeEventListener("resize", this.onResize); }
  markChanged(key) { this.changedAt.set(key, Date.now()); }
  setItems(items) {
    this.items = items;
    if (this.active >= items.length) this.active = Math.max(0, items.length - 1);
    this.inner.style.height = (items.length * this.o.rowHeight) + "px";
    this.schedule();
  }
  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.render(); });
  }
  render() {
    const rh = this.o.rowHeight;
    const top = this.el.scrollTop, h = this.el.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / rh) - 10);
    const last = Math.min(this.items.length, Math.ceil((top + h) / rh) + 10);
    const focused = document.activeElement;
    let refocus = null;
    const keep = new Map();
    for (let i = first; i < last; i++) {
      const item = this.items[i];
      const k = this.o.key(item);
      let row = this.rendered.get(k);
      if (row && row._item !== item) {
        if (row.contains(focused)) refocus = { key: k, what: focused.dataset.action || "row" };
        row.remove();
        row = null;
      }
      if (!row) {
        row = document.createElement("div");
        row.className = "vrow " + this.o.grid + (this.o.rowClass ? " " + this.o.rowClass : "");
        row.setAttribute("role", "row");
        row.style.height = rh + "px";
        row.dataset.key = k;
        row.tabIndex = -1;
        row._item = item;
        row.innerHTML = this.o.render(item);
        if (this.o.decorate) this.o.decorate(row, item);
        const t = this.changedAt.get(k);
        if (t && Date.now() - t < 3000) row.classList.add("flash");
        if (this.o.onActivate) {
          row.classList.add("selectable");
          row.addEventListener("click", e => { if (!e.target.closest("button,a")) this.o.onActivate(row._item); });
        }
        this.inner.appendChild(row);
      }
      row._index = i;
      row.style.top = (i * rh) + "px";
      row.setAttribute("aria-rowindex", i + 2);
      keep.set(k, row);
      this.rendered.delete(k);
    }
    for (const [, row] of this.rendered) {
      if (row.contains(focused)) refocus = { key: row.dataset.key, what: "row" };
      row.remove();
    }
    this.rendered = keep;
    if (refocus) {
      const row = keep.get(refocus.key);
      const el = row && (refocus.what === "row" ? row : row.querySelector(`[data-action="${refocus.what}"]`));
      if (el) el.focus({ preventScroll: true }); else this.el.focus({ preventScroll: true });
    }
    if (!this.items.length) {
      this.inner.innerHTML = `<div class="empty">${esc(this.o.empty || "Nothing to show.")}</div>`;
      this.inner.style.height = "";
      this.emptyShown = true;
    } else if (this.emptyShown) {
      this.emptyShown = false;
      const e = this.inner.querySelector(".empty");
      if (e) e.remove();
    }
  }
  focusRow(i) {
    if (!this.items.length) return;
    i = Math.max(0, Math.min(this.items.length - 1, i));
    this.active = i;
    const rh = this.o.rowHeight, head = 28;
    const top = i * rh, view = this.el.clientHeight - head;
    if (top < this.el.scrollTop) this.el.scrollTop = top;
    else if (top + rh > this.el.scrollTop + view) this.el.scrollTop = top + rh - view;
    this.render();
    const row = this.rendered.get(this.o.key(this.items[i]));
    if (row) row.focus({ preventScroll: true });
  }
  key(e) {
    const row = e.target.closest ? e.target.closest(".vrow") : null;
    const cur = row ? row._index : this.active;
    const page = Math.max(1, Math.floor((this.el.clientHeight - 28) / this.o.rowHeight) - 1);
    let next = null;
    switch (e.key) {
      case "ArrowDown": next = cur + 1; break;
      case "ArrowUp": next = cur - 1; break;
      case "PageDown": next = cur + page; break;
      case "PageUp": next = cur - page; break;
      case "Home": next = 0; break;
      case "End": next = this.items.length - 1; break;
      case "Enter":
        if (row && e.target === row && this.o.onActivate) { this.o.onActivate(row._item); e.preventDefault(); }
        return;
      default: return;
    }
    e.preventDefault();
    this.focusRow(next);
  }
}

// ---------- pages ----------

let page = null; // { stop() } of the page on screen

function route() {
  if (page) page.stop();
  page = null;
  clearAlert();
  const main = $("#main");
  main.innerHTML = "";
  const h = location.hash.replace(/^#\/?/, "");
  const parts = h.split("/").map(decodeURIComponent);
  for (const a of document.querySelectorAll(".top nav a")) a.removeAttribute("aria-current");
  if (parts[0] === "service" && parts.length >= 3) {
    $("#nav-services").setAttribute("aria-current", "page");
    page = servicePage(main, parts[1], parts.slice(2).join("/"));
  } else if (parts[0] === "services") {
    $("#nav-services").setAttribute("aria-current", "page");
    page = servicesPage(main);
  } else {
    $("#nav-cluster").setAttribute("aria-current", "page");
    page = clusterPage(main);
  }
  document.title = "Roster · " + (main.querySelector("h1") || {}).textContent;
}

function setNodeLabel(st) {
  if (!st) return;
  $("#node-label").textContent = "node " + st.node_id + " (" + st.state + ")";
}

// Cluster page: this node's status, every member's status, the leaders
// this node has seen, self-preservation. Status and Members have no
// stream, so this page asks again every two seconds.
function clusterPage(main) {
  main.innerHTML = `
    <h1>Cluster</h1>
    <section class="card" aria-labelledby="h-node"><h2 id="h-node">This node</h2><div id="node-facts" class="muted">loading…</div></section>
    <section class="card" aria-labelledby="h-members"><h2 id="h-members">Members</h2><div id="members" class="muted">loading…</div></section>
    <section class="card" aria-labelledby="h-sp"><h2 id="h-sp">Self-preservation</h2><div id="sp" class="muted">loading…</div></section>
    <section class="card" aria-labelledby="h-leaders"><h2 id="h-leaders">Leader changes</h2><div id="leaders" class="muted">loading…</div></section>`;
  let stopped = false, timer = null;
  async function tick() {
    try {
      const st = await api("GET", "/status");
      if (stopped) return;
      setNodeLabel(st);
      renderNode(st);
      renderSP(st);
      renderLeaders(st);
    } catch (e) {
      if (stopped) return;
      $("#node-facts").innerHTML = `<p class="b-crit">${esc(e.message)}</p>`;
    }
    try {
      const ms = await api("GET", "/members?include_status=true");
      if (stopped) return;
      renderMembers(ms.members || []);
    } catch (e) {
      if (stopped) return;
      $("#members").innerHTML = `<p class="b-crit">${esc(e.message)}</p>`;
    }
    if (!stopped) timer = setTimeout(tick, 2000);
  }
  function fact(label, value, id) {
    return `<div><dt>${esc(label)}</dt><dd${id ? ` id="${id}"` : ""}>${value}</dd></div>`;
  }
  function renderNode(st) {
    const lag = num(st.commit_index) - num(st.applied_index);
    $("#node-facts").innerHTML = `<dl class="facts">
      ${fact("Node", esc(st.node_id), "node-id")}
      ${fact("Role", esc(st.state), "node-state")}
      ${fact("Leader", st.leader_id ? `<span class="b-lead">${esc(st.leader_id)}</span>` : `<span class="b-crit">none</span>`, "leader-id")}
      ${fact("Term", esc(st.term), "term")}
      ${fact("Commit index", esc(st.commit_index))}
      ${fact("Applied index", esc(st.applied_index) + (lag > 0 ? ` <span class="muted">(${lag} behind)</span>` : ""))}
      ${fact("Revision", esc(st.revision))}
      ${fact("Last contact with leader", st.state === "leader" ? "— (leads)" : fmtDuration(st.last_contact))}
      ${fact("Instances", esc(st.instances))}
      ${fact("Leases", esc(st.leases))}
      ${fact("API address", esc(st.api_addr))}
      ${fact("Started", esc(fmtTime(st.started_at)))}
    </dl>`;
  }
  function renderMembers(ms) {
    let commit = 0;
    for (const m of ms) if (m.status) commit = Math.max(commit, num(m.status.commit_index));
    const rows = ms.map(m => {
      const s = m.status;
      const role = s ? s.state : (m.leader ? "leader" : "unknown");
      const lag = s ? commit - num(s.applied_index) : null;
      const ap = m.autopilot;
      // Autopilot's word for the member's part (staging: joined to vote,
      // promoted once stable), else the configuration's.
      const suffrage = ap && ap.state && ap.state !== "leader" ? ap.state : (m.voter ? "voter" : (m.read_replica ? "read-replica" : "non-voter"));
      let health = m.healthy ? `<span class="badge b-pass">healthy</span>` : `<span class="badge b-crit">unreachable</span>`;
      if (ap && !m.healthy) health = ap.failed ? `<span class="badge b-crit">failed</span>` : `<span class="badge b-warn">unhealthy</span>`;
      if (ap && ap.stable_since) health += ` <div class="muted small">stable since ${esc(fmtTime(ap.stable_since))}</div>`;
      return `<tr data-node="${esc(m.node_id)}">
        <td>${esc(m.node_id)}</td>
        <td><span class="badge ${role === "leader" ? "b-lead" : "b-muted"}">${esc(role)}</span> <span class="muted small">${esc(suffrage)}</span></td>
        <td class="num">${s ? esc(s.term) : "—"}</td>
        <td class="num">${s ? esc(s.applied_index) : "—"}</td>
        <td class="num">${lag === null ? "—" : lag}</td>
        <td>${s ? (s.state === "leader" ? "— (leads)" : fmtDuration(s.last_contact)) : "—"}</td>
        <td>${health}
            ${m.status_error ? `<div class="small b-crit">${esc(m.status_error)}</div>` : ""}</td>
        <td class="small">${esc(m.api_addr)}<div class="muted">raft ${esc(m.raft_addr)}</div></td>
      </tr>`;
    }).join("");
    $("#members").innerHTML = `<table>
      <thead><tr><th scope="col">Node</th><th scope="col">Role</th><th scope="col" class="num">Term</th><th scope="col" class="num">Applied index</th>
      <th scope="col" class="num">Lag</th><th scope="col">Last contact</th><th scope="col">Health</th><th scope="col">Addresses</th></tr></thead>
      <tbody>${rows}</tbody></table>
      <p class="note">Lag is the highest commit index any member reports minus the member's applied index. Health is the leader's view (autopilot's when it runs: heard from recently, on the leader's term, not far behind); each member's status is its own answer.</p>`;
  }
  function renderSP(st) {
    const on = num(st.self_preservation_threshold) > 0;
    // Named: the held services this token may read; the others (with ACLs
    // and TLS) are only counted. "Every service" is when neither is given.
    const held = (st.self_preservation_services || []).map(s => `<a href="#/service/${s.split("/").map(encodeURIComponent).join("/")}">${esc(s)}</a>`);
    const unreadable = num(st.self_preservation_unreadable_services);
    if (unreadable) held.push(`${unreadable} service${unreadable === 1 ? "" : "s"} you may not read`);
    let text;
    if (!on) text = `<span class="badge b-muted">off</span>`;
    else if (!st.self_preservation) text = `<span class="badge b-pass">not holding</span> <span class="muted">threshold ${esc(st.self_preservation_threshold)}, window ${fmtDuration(st.self_preservation_window)}, max hold ${fmtDuration(st.self_preservation_max_hold)}</span>`;
    else text = `<span class="badge b-warn">holding expiries</span> for ${held.length ? held.join(", ") : "every service"}; ${esc(st.held_expiries)} held`;
    $("#sp").innerHTML = `<p id="sp-state">${text}</p>`;
  }
  function renderLeaders(st) {
    const ch = (st.leader_changes || []).slice().reverse();
    $("#leaders").innerHTML = ch.length ? `<table id="leader-changes">
      <thead><tr><th scope="col">Seen at</th><th scope="col">Leader</th><th scope="col" class="num">Term</th></tr></thead>
      <tbody>${ch.map(c => `<tr><td>${esc(fmtTime(c.at))} <span class="muted small">${esc(fmtAgo(c.at))}</span></td>
        <td>${c.leader_id ? esc(c.leader_id) : `<span class="b-crit">no leader</span>`}</td><td class="num">${esc(c.term)}</td></tr>`).join("")}</tbody></table>
      <p class="note">As node ${esc(st.node_id)} saw them since it started (${esc(fmtTime(st.started_at))}), newest first.</p>`
      : `<p class="muted">None seen since this node started.</p>`;
  }
  tick();
  return { stop() { stopped = true; clearTimeout(timer); } };
}

// Services page: every namespace and service with counts by status,
// searchable; refreshed when the watch feed reports a change. One stream
// (/watch/namespaces) watches every namespace shown: a browser allows six
// HTTP/1.1 connections per host, shared by every tab, and a stream per
// namespace would starve every other call of the console.
function servicesPage(main) {
  main.innerHTML = `
    <h1>Services</h1>
    <div class="toolbar">
      <label for="svc-search" class="sr">Search</label>
      <input type="search" id="svc-search" placeholder="namespace or service name" autocomplete="off">
      <label>Namespace <select id="svc-ns"><option value="">all</option></select></label>
      <div class="chips" role="group" aria-label="Show">
        <button type="button" data-f="all" aria-pressed="true">All</button>
        <button type="button" data-f="unhealthy" aria-pressed="false">Not all healthy</button>
        <button type="button" data-f="none" aria-pressed="false">None healthy</button>
        <button type="button" data-f="drained" aria-pressed="false">With drained</button>
      </div>
      <span id="svc-count" class="muted" aria-live="polite"></span>
    </div>
    <p id="svc-live" class="note" hidden></p>`;
  let all = [], filter = "all", stopped = false, refetchTimer = null;
  // feed watches the namespaces of feedKey; notLive are the namespaces
  // not watched and why (refused, or past MAX_LIVE_NAMESPACES).
  let feed = null, feedKey = "", notLive = new Map(), overflow = [];
  const list = new VList(main, {
    label: "Services", grid: "svc-grid", rowHeight: 32, empty: "No services match.",
    header: `<span role="columnheader">Namespace</span><span role="columnheader">Service</span><span role="columnheader" class="num">Instances</span>
      <span role="columnheader" class="num">Healthy</span><span role="columnheader" class="num">Warning</span><span role="columnheader" class="num">Critical</span><span role="columnheader" class="num">Drained</span>`,
    key: s => s.namespace + "/" + s.service,
    render: s => `<span role="cell">${esc(s.namespace)}</span>
      <span role="cell"><a href="${serviceHref(s.namespace, s.service)}" tabindex="-1">${esc(s.service)}</a></span>
      <span role="cell" class="num">${s.instances}</span>
      <span role="cell" class="num ${s.passing < s.instances ? "b-warn" : "b-pass"}">${s.passing}</span>
      <span role="cell" class="num ${s.warning ? "b-warn" : "muted"}">${s.warning}</span>
      <span role="cell" class="num ${s.critical ? "b-crit" : "muted"}">${s.critical}</span>
      <span role="cell" class="num ${s.drained ? "b-drain" : "muted"}">${s.drained}</span>`,
    onActivate: s => { location.hash = serviceHref(s.namespace, s.service); },
  });
  const search = $("#svc-search"), nsSel = $("#svc-ns");
  function apply() {
    const q = search.value.trim().toLowerCase(), ns = nsSel.value;
    const items = all.filter(s => {
      if (ns && s.namespace !== ns) return false;
      if (q && !(s.namespace + "/" + s.service).toLowerCase().includes(q)) return false;
      switch (filter) {
        case "unhealthy": return s.passing < s.instances;
        case "none": return s.passing === 0;
        case "drained": return s.drained > 0;
      }
      return true;
    });
    list.setItems(items);
    $("#svc-count").textContent = `${items.length} of ${all.length} services`;
  }
  async function load() {
    try {
      const r = await api("GET", "/services?read.consistency=CONSISTENCY_STALE");
      if (stopped) return;
      const prev = new Map(all.map(s => [s.namespace + "/" + s.service, s]));
      all = (r.services || []).map(s => ({
        namespace: s.namespace, service: s.service, instances: num(s.instances), passing: num(s.passing),
        warning: num(s.warning), critical: num(s.critical), drained: num(s.drained),
      }));
      for (const s of all) {
        const p = prev.get(s.namespace + "/" + s.service);
        if (prev.size && (!p || JSON.stringify(p) !== JSON.stringify(s))) list.markChanged(s.namespace + "/" + s.service);
      }
      const names = [...new Set(all.map(s => s.namespace).concat(["default"]))].sort();
      const cur = nsSel.value;
      nsSel.innerHTML = `<option value="">all</option>` + names.map(n => `<option${n === cur ? " selected" : ""}>${esc(n)}</option>`).join("");
      apply();
      watchNamespaces(names, r.header && r.header.revision);
    } catch (e) {
      if (!stopped) showAlert(e.message);
    }
  }
  // A change in a watched namespace loads the list again, at most once a second.
  function changed(ev) {
    if (ev === "progress" || refetchTimer) return;
    refetchTimer = setTimeout(() => { refetchTimer = null; load(); }, 1000);
  }
  function showNotLive() {
    const el = $("#svc-live");
    const parts = [...notLive].sort().map(([n, why]) => `${n} (${why})`);
    if (overflow.length) parts.push(`${overflow.length} more past the first ${MAX_LIVE_NAMESPACES}: ${overflow.join(", ")}`);
    el.hidden = !parts.length;
    el.textContent = parts.length ? `Not updated live: ${parts.join("; ")}. Reload the page to see their changes.` : "";
  }
  // watchNamespaces watches names over one stream from rev, the revision
  // of the list on screen; the stream is opened again only when the set
  // of namespaces changes.
  function watchNamespaces(names, rev) {
    const want = names.filter(n => !notLive.has(n));
    const live = want.slice(0, MAX_LIVE_NAMESPACES);
    overflow = want.slice(MAX_LIVE_NAMESPACES);
    showNotLive();
    const key = live.join(",");
    if (key === feedKey) return;
    if (feed) feed.stop();
    feed = null;
    feedKey = key;
    if (!live.length) return;
    const q = new URLSearchParams({ start_revision: rev || "0", progress_interval: "15s", require_leader: "true" });
    for (const n of live) q.append("namespace", n);
    feed = new Feed("/watch/namespaces", q.toString(), (ev, m) => {
      if (ev === "ended") {
        notLive.set(m.namespace, (m.error && m.error.message) || "its watch ended");
        showNotLive();
        return;
      }
      changed(ev);
    }, msg => {
      for (const n of live) notLive.set(n, msg);
      feed = null;
      showNotLive();
    });
  }
  const refilter = () => { list.el.scrollTop = 0; apply(); };
  search.addEventListener("input", refilter);
  nsSel.addEventListener("change", refilter);
  for (const b of main.querySelectorAll(".chips button")) {
    b.addEventListener("click", () => {
      filter = b.dataset.f;
      for (const o of main.querySelectorAll(".chips button")) o.setAttribute("aria-pressed", String(o === b));
      refilter();
    });
  }
  api("GET", "/status").then(setNodeLabel, () => {});
  load();
  return {
    stop() {
      stopped = true; clearTimeout(refetchTimer); list.destroy();
      if (feed) feed.stop();
    },
  };
}

// MAX_LIVE_NAMESPACES is how many namespaces the services page watches
// (the server's limit for one stream, httpapi.MaxWatchNamespaces).
const MAX_LIVE_NAMESPACES = 100;

function serviceHref(ns, svc) { return "#/service/" + encodeURIComponent(ns) + "/" + encodeURIComponent(svc); }

// Service page: every instance of one service, live from the watch feed.
function servicePage(main, ns, svc) {
  main.innerHTML = `
    <h1>${esc(ns)} / ${esc(svc)}</h1>
    <div class="toolbar">
      <input type="search" id="inst-search" placeholder="id, address, zone, tag or metadata" aria-label="Search instances" autocomplete="off">
      <div class="chips" role="group" aria-label="Show">
        <button type="button" id="filter-all" data-f="all" aria-pressed="true">All <span id="count-all">0</span></button>
        <button type="button" id="filter-healthy" data-f="healthy" aria-pressed="false">Healthy <span id="count-healthy">0</span></button>
        <button type="button" id="filter-unhealthy" data-f="unhealthy" aria-pressed="false">Warning/critical <span id="count-unhealthy">0</span></button>
        <button type="button" id="filter-drained" data-f="drained" aria-pressed="false">Drained <span id="count-drained">0</span></button>
      </div>
      <span id="inst-rev" class="muted small"></span>
    </div>
    <p class="note">Lease: the TTL each instance registered with and its last renewal, as the leader knows it, asked for every 5 s. <span id="lease-state" class="muted"></span></p>`;
  const insts = new Map();
  // leases: instance id → { ttl, last_renewed_at, deadline } from GET
  // .../leases. Heartbeats renew leases in the leader's memory only, without
  // a Raft entry, so renewals are not in the watch feed: the page asks the
  // leader (through this node) when it opens and every 5 s while it is open.
  let leases = new Map();
  let filter = "all", stopped = false;
  const list = new VList(main, {
    label: "Instances of " + ns + "/" + svc, grid: "inst-grid", rowHeight: 68, rowClass: "inst",
    empty: "No instances match.",
    header: `<span role="columnheader">Instance</span><span role="columnheader">Address · zone · weight</span><span role="columnheader">Status</span>
      <span role="columnheader">Lease</span><span role="columnheader">Reason · check</span><span role="columnheader">Tags</span>
      <span role="columnheader">Metadata</span><span role="columnheader">Actions</span>`,
    key: i => i.id,
    render: renderInstance,
    decorate: (row, i) => {
      row.dataset.healthy = String(healthy(i));
      row.dataset.enabled = String(!!i.enabled);
      for (const b of row.querySelectorAll("button[data-action]")) b.addEventListener("click", () => act(b.dataset.action, row._item));
    },
  });
  function renderInstance(i) {
    const [st, cls] = STATUS[i.status] || STATUS.HEALTH_STATUS_UNSPECIFIED;
    const tags = (i.tags || []).map(t => `<span class="tag">${esc(t)}</span>`).join("");
    const md = Object.entries(i.metadata || {}).sort().map(([k, v]) => `<span class="tag">${esc(k)}=${esc(v)}</span>`).join("");
    const c = i.check;
    let check = "";
    if (c) {
      const target = c.http ? "HTTP " + c.http : c.tcp ? "TCP " + c.tcp : c.grpc ? "gRPC " + c.grpc + (c.grpc_service ? " " + c.grpc_service : "") : "";
      check = `<div class="small muted">check ${esc(target)} every ${fmtDuration(c.interval || "10s")}</div>`;
    }
    return `<div class="cell" role="cell"><strong>${esc(i.id)}</strong><div class="small muted">rev ${esc(i.mod_revision)}</div></div>
      <div class="cell" role="cell">${esc(i.address)}:${esc(i.port)}<div class="small muted">zone ${esc(i.zone || "—")} · weight ${esc(i.weight)}</div></div>
      <div class="cell" role="cell"><span class="badge ${cls}">${st}</span>
        ${i.enabled ? "" : `<span class="badge b-drain" title="${esc(i.maintenance_reason)}">drained</span>`}</div>
      <div class="cell" role="cell">${i.ttl ? leaseCell(i) : `<span class="muted">no lease</span>`}</div>
      <div class="cell small" role="cell">${esc(i.status_reason || "")}${i.status_changed_at ? ` <span class="muted">${esc(fmtAgo(i.status_changed_at))}</span>` : ""}
        ${!i.enabled && i.maintenance_reason ? `<div class="b-drain">${esc(i.maintenance_reason)}</div>` : ""}${check}</div>
      <div class="cell" role="cell">${tags}</div>
      <div class="cell" role="cell">${md}</div>
      <div class="cell actions" role="cell">
        ${i.enabled ? `<button type="button" data-action="drain">Drain</button>` : `<button type="button" data-action="undrain">Undrain</button>`}
        <button type="button" data-action="deregister" class="danger">Deregister</button></div>`;
  }
  // leaseCell: "TTL 30 s · renewed 3 s ago". The age is measured with this
  // browser's clock against the leader's, so clock skew shows in it.
  function leaseCell(i) {
    const l = leases.get(i.id);
    const renewed = l && l.last_renewed_at ? `renewed ${esc(fmtAgo(l.last_renewed_at))}` : `<span class="muted">renewal unknown</span>`;
    return `TTL ${fmtDuration(i.ttl)} · <span class="lease-renewed">${renewed}</span>`;
  }
  let leaseTimer = null;
  async function pollLeases() {
    try {
      const r = await api("GET", `/services/${encodeURIComponent(ns)}/${encodeURIComponent(svc)}/leases`);
      if (stopped) return;
      leases = new Map((r.leases || []).map(l => [l.id, l]));
      $("#lease-state").textContent = "";
    } catch (e) {
      if (stopped) return;
      $("#lease-state").textContent = "Renewals unavailable: " + e.message;
    }
    // New objects for leased instances so the list renders their rows
    // again (it re-renders a row when its item changes), with fresh ages.
    for (const [id, i] of insts) if (i.ttl) insts.set(id, { ...i });
    apply();
    if (!stopped) leaseTimer = setTimeout(pollLeases, 5000);
  }
  function matches(i, q) {
    if (!q) return true;
    const hay = [i.id, i.address, String(i.port), i.zone, ...(i.tags || []), ...Object.entries(i.metadata || {}).map(([k, v]) => k + "=" + v)].join(" ").toLowerCase();
    return hay.includes(q);
  }
  let pending = false;
  function apply() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      const q = $("#inst-search").value.trim().toLowerCase();
      const sorted = [...insts.values()].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
      let nh = 0, nu = 0, nd = 0;
      for (const i of sorted) {
        if (healthy(i)) nh++;
        if (i.status !== "HEALTH_STATUS_PASSING") nu++;
        if (!i.enabled) nd++;
      }
      $("#count-all").textContent = sorted.length;
      $("#count-healthy").textContent = nh;
      $("#count-unhealthy").textContent = nu;
      $("#count-drained").textContent = nd;
      list.setItems(sorted.filter(i => {
        switch (filter) {
          case "healthy": if (!healthy(i)) return false; break;
          case "unhealthy": if (i.status === "HEALTH_STATUS_PASSING") return false; break;
          case "drained": if (i.enabled) return false; break;
        }
        return matches(i, q);
      }));
    });
  }
  function onMessage(ev, m) {
    $("#inst-rev").textContent = "revision " + m.revision;
    if (ev === "progress") return;
    if (m.reset) {
      const fresh = new Map();
      for (const e of m.events || []) if (e.instance) fresh.set(e.instance.id, e.instance);
      // A reset after a reconnect flashes what differs from what was shown.
      if (insts.size) {
        for (const [id, i] of fresh) {
          const old = insts.get(id);
          if (!old || old.mod_revision !== i.mod_revision) list.markChanged(id);
        }
      }
      insts.clear();
      for (const [id, i] of fresh) insts.set(id, i);
    } else {
      for (const e of m.events || []) {
        const i = e.instance;
        if (!i) continue;
        if (e.type === "TYPE_DELETE") insts.delete(i.id);
        else { insts.set(i.id, i); list.markChanged(i.id); }
      }
    }
    apply();
  }
  async function act(action, i) {
    clearAlert();
    const path = `/services/${encodeURIComponent(ns)}/${encodeURIComponent(svc)}/instances/${encodeURIComponent(i.id)}`;
    try {
      if (action === "drain") await api("PUT", path + "/maintenance", { enabled: false, reason: "drained from the console" });
      else if (action === "undrain") await api("PUT", path + "/maintenance", { enabled: true });
      else if (action === "deregister") {
        if (!(await confirmDialog(`Deregister ${ns}/${svc}/${i.id} (${i.address}:${i.port})? A running instance with a lease registers again on its next heartbeat only if its client does so.`))) return;
        await api("DELETE", path);
      }
    } catch (e) {
      showAlert(`${action} ${i.id}: ${e.message}`);
    }
  }
  const refilter = () => { list.el.scrollTop = 0; apply(); };
  $("#inst-search").addEventListener("input", refilter);
  for (const b of main.querySelectorAll(".chips button")) {
    b.addEventListener("click", () => {
      filter = b.dataset.f;
      for (const o of main.querySelectorAll(".chips button")) o.setAttribute("aria-pressed", String(o === b));
      refilter();
    });
  }
  api("GET", "/status").then(setNodeLabel, () => {});
  // refused replaces the list with the reason the watch was refused: an
  // empty list would read as "the service has no instances".
  function refused(msg) {
    stopped = true;
    clearTimeout(leaseTimer);
    for (const el of main.querySelectorAll(".toolbar, .note")) el.hidden = true;
    list.el.hidden = true;
    const p = document.createElement("p");
    p.id = "inst-refused";
    p.className = "refused b-crit";
    p.setAttribute("role", "alert");
    p.textContent = `This node refused to show ${ns}/${svc}: ${msg}. Its instances are not shown; a token that may read the service (Token, above) is needed.`;
    list.el.before(p);
  }
  const q = new URLSearchParams({ namespace: ns, service: svc, "start_read.consistency": "CONSISTENCY_LINEARIZABLE", require_leader: "true" });
  const feed = new Feed("/watch", q.toString(), onMessage, refused);
  pollLeases();
  return { stop() { stopped = true; clearTimeout(leaseTimer); feed.stop(); list.destroy(); } };
}

function confirmDialog(text) {
  const d = $("#confirm-dialog");
  $("#confirm-text").textContent = text;
  return new Promise(resolve => {
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
    d.returnValue = "";
    d.showModal();
  });
}

// ---------- start ----------

function init() {
  $("#alert-close").addEventListener("click", clearAlert);
  const td = $("#token-dialog");
  const updateTokenButton = () => { $("#token-button").textContent = token() ? "Token ✓" : "Token"; };
  $("#token-button").addEventListener("click", () => { $("#token-input").value = token(); td.showModal(); });
  td.addEventListener("close", () => {
    if (td.returnValue === "save") sessionStorage.setItem(TOKEN_KEY, $("#token-input").value.trim());
    else if (td.returnValue === "clear") sessionStorage.removeItem(TOKEN_KEY);
    else return;
    updateTokenButton();
    route(); // open every feed again with the new token
  });
  updateTokenButton();
  window.addEventListener("hashchange", route);
  route();
}
init();
