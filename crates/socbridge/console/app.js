// The socbridge web console. It talks only to the REST API under /api/v1 with the bearer
// token typed on the sign-in screen (kept in sessionStorage). Every piece of data goes into
// the page as text (textContent, attributes set one by one): never as HTML.

const API = "/api/v1";
const TOKEN_KEY = "socbridge.token";
const PAGE = 50;
const REFRESH_MS = 5000;
// Refreshing re-reads at most this many incidents from the top of the list.
const REFRESH_MAX = 500;

const $ = (id) => document.getElementById(id);

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  admin: false,
  tenants: [],
  items: [], // incidents listed, in order
  cursor: null, // next page
  selected: null, // incident id
  detail: null,
  filtersKey: "",
  timer: null,
  listSeq: 0,
  lastRefresh: null,
};

// ---------------------------------------------------------------------------------------
// API

class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Authorization: `Bearer ${state.token}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(API + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (e) {
    throw new ApiError(0, { detail: "the server cannot be reached; check that socbridge serve is running" });
  }
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (res.status === 401) {
    signOut("Your token was refused (" + (json?.detail || "unknown or revoked") + "). Sign in again.");
    throw new ApiError(401, json);
  }
  if (!res.ok) throw new ApiError(res.status, json || { detail: `${res.status} ${res.statusText}` });
  return json;
}

/// The message of a failed request: the problem's detail, with its title.
function problemText(e) {
  if (!(e instanceof ApiError)) return String(e?.message || e);
  const p = e.problem || {};
  if (e.status === 0) return p.detail;
  const title = p.title || `HTTP ${e.status}`;
  return p.detail ? `${title}: ${p.detail}` : title;
}

// ---------------------------------------------------------------------------------------
// Small DOM helpers: elements built from text, never from HTML.

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function show(node, on = true) {
  node.hidden = !on;
}

function message(node, text) {
  node.textContent = text || "";
  show(node, Boolean(text));
}

function safeUrl(url) {
  try {
    const u = new URL(url, location.href);
    return u.protocol === "https:" || u.protocol === "http:" ? u.href : null;
  } catch {
    return null;
  }
}

const LABELS = {
  new: "New",
  in_progress: "In progress",
  on_hold: "On hold",
  resolved: "Resolved",
  closed: "Closed",
  secure_endpoint: "Secure Endpoint",
  symantec_mss: "Symantec MSS",
  umbrella: "Umbrella",
  informational: "Info",
  low: "Low",
  medium: "Medium",
  high: "High",
  critical: "Critical",
};
const label = (v) => LABELS[v] || String(v ?? "");

function sevBadge(sev) {
  return el("span", { class: `sev sev-${sev}`, text: label(sev) });
}

function statusBadge(status) {
  return el("span", { class: `status status-${status}`, text: label(status) });
}

const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

function when(ts) {
  if (!ts) return "—";
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? String(ts) : dateFmt.format(d);
}

function ago(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return String(ts ?? "—");
  const s = Math.round((Date.now() - d.getTime()) / 1000);
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function timeEl(ts, relative) {
  return el("time", { datetime: ts, title: when(ts), text: relative ? ago(ts) : when(ts) });
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

// ---------------------------------------------------------------------------------------
// Sign in and out

function signOut(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.items = [];
  state.selected = null;
  state.detail = null;
  stopRefresh();
  $("incident-rows").replaceChildren();
  rowCache.clear();
  show($("detail"), false);
  show($("detail-placeholder"), true);
  document.body.classList.remove("has-detail");
  show($("app"), false);
  show($("signin"), true);
  message($("signin-error"), why || "");
  $("token").value = "";
  if (location.hash) history.replaceState(null, "", location.pathname);
  $("token").focus();
}

async function signIn(token) {
  state.token = token;
  // Who is this? Admins may list tenants; analysts get 403 there.
  try {
    await api("/incidents?limit=1");
  } catch (e) {
    state.token = null;
    if (e.status !== 401) message($("signin-error"), problemText(e));
    return false;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    const tenants = await api("/tenants");
    state.admin = true;
    state.tenants = tenants.map((t) => t.name);
  } catch (e) {
    if (e.status === 401) return false;
    state.admin = false;
    state.tenants = [];
  }
  try {
    await loadSourceNames();
  } catch (e) {
    if (e.status === 401) return false;
  }
  enterApp();
  return true;
}

/// Source names (and, for analysts, their tenants) from the health route.
async function loadSourceNames() {
  let health = [];
  try {
    health = await api("/sources/health");
  } catch (e) {
    if (e.status === 401) throw e;
    health = [];
  }
  if (!state.admin) {
    state.tenants = [...new Set(health.map((h) => h.tenant))].sort();
  }
  const names = [...new Set(health.map((h) => h.source))].sort();
  $("f-source-names").replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
  show($("f-source-names"), names.length > 0);
  const tenantSel = $("f-tenant");
  const keep = tenantSel.value;
  tenantSel.replaceChildren(
    el("option", { value: "", text: state.admin ? "All tenants" : "My tenants" }),
    ...state.tenants.map((t) => el("option", { value: t, text: t })),
  );
  tenantSel.value = state.tenants.includes(keep) ? keep : "";
}

function enterApp() {
  show($("signin"), false);
  show($("app"), true);
  $("who-role").textContent = state.admin ? "Admin" : "Analyst";
  $("who-role").className = `role-badge ${state.admin ? "role-admin" : "role-analyst"}`;
  route();
}

// ---------------------------------------------------------------------------------------
// Routing: #/incidents, #/incidents/ID, #/health

function route() {
  if (!state.token) return;
  const hash = location.hash || "#/incidents";
  const m = hash.match(/^#\/incidents\/(\d+)$/);
  const health = hash === "#/health";
  show($("view-incidents"), !health);
  show($("view-health"), health);
  $("tab-incidents").classList.toggle("active", !health);
  $("tab-health").classList.toggle("active", health);
  $("tab-incidents").toggleAttribute("aria-current", !health);
  $("tab-health").toggleAttribute("aria-current", health);
  if (health) {
    stopRefresh();
    loadHealth();
    return;
  }
  const id = m ? Number(m[1]) : null;
  document.body.classList.toggle("has-detail", id !== null);
  if (!state.items.length || filtersKey() !== state.filtersKey) reloadList();
  startRefresh();
  if (id !== state.selected || (id !== null && !state.detail)) selectIncident(id);
}

// ---------------------------------------------------------------------------------------
// The incident list

function filters() {
  const p = new URLSearchParams();
  const put = (k, v) => {
    if (v && v.trim()) p.set(k, v.trim());
  };
  put("q", $("f-q").value);
  put("tenant", $("f-tenant").value);
  put("severity", $("f-severity").value);
  put("status", $("f-status").value);
  put("source", $("f-source").value);
  return p;
}

function filtersKey() {
  return filters().toString();
}

function listUrl(limit, cursor) {
  const p = filters();
  p.set("limit", String(limit));
  if (cursor) p.set("cursor", cursor);
  return `/incidents?${p}`;
}

// Rows kept by incident id, so that a refresh updates them in place.
const rowCache = new Map();

function rowFor(item) {
  const key = JSON.stringify(item);
  let entry = rowCache.get(item.id);
  if (entry && entry.key === key) return entry.row;
  const hosts = item.observables
    .filter((o) => o.type === "hostname")
    .map((o) => o.value)
    .slice(0, 3);
  const title = el(
    "td",
    { class: "c-title" },
    el("a", { href: `#/incidents/${item.id}`, class: "title-link", text: item.title }),
    el(
      "div",
      { class: "sub" },
      el("span", { class: "id", text: `#${item.id}` }),
      hosts.length ? el("span", { text: hosts.join(", ") }) : null,
      el("span", { text: item.sources.map(label).join(", ") }),
      el("span", { text: `${item.finding_count} finding${item.finding_count === 1 ? "" : "s"}` }),
    ),
  );
  const ticket = item.ticket
    ? el("span", { class: "ticket-no", text: item.ticket.number || "pending" })
    : el("span", { class: "muted", text: "—" });
  const row = el(
    "tr",
    { dataset: { id: String(item.id) }, tabindex: "0" },
    el("td", { class: "c-sev" }, sevBadge(item.severity)),
    title,
    el("td", { class: "c-tenant", text: item.tenant }),
    el("td", { class: "c-status" }, statusBadge(item.status)),
    el("td", { class: "c-ticket" }, ticket),
    el("td", { class: "c-when" }, timeEl(item.updated_at, true)),
  );
  if (item.id === state.selected) row.classList.add("selected");
  if (entry) entry.row.replaceWith(row);
  rowCache.set(item.id, { key, row });
  return row;
}

/// Puts the rows of `items` in the table in order, moving only what moved.
function renderRows() {
  const tbody = $("incident-rows");
  const wanted = state.items.map(rowFor);
  const keep = new Set(state.items.map((i) => i.id));
  for (const [id, entry] of rowCache) {
    if (!keep.has(id)) {
      entry.row.remove();
      rowCache.delete(id);
    }
  }
  wanted.forEach((row, i) => {
    if (tbody.children[i] !== row) tbody.insertBefore(row, tbody.children[i] || null);
  });
  while (tbody.children.length > wanted.length) tbody.lastElementChild.remove();
  const n = state.items.length;
  $("list-count").textContent =
    n === 0 ? "" : `${n}${state.cursor ? "+" : ""} incident${n === 1 && !state.cursor ? "" : "s"}`;
  show($("list-empty"), n === 0);
  show($("load-more"), Boolean(state.cursor));
}

async function reloadList() {
  const seq = ++state.listSeq;
  state.filtersKey = filtersKey();
  message($("list-error"), "");
  $("incident-rows").classList.add("loading");
  try {
    const page = await api(listUrl(PAGE));
    if (seq !== state.listSeq) return;
    state.items = page.items;
    state.cursor = page.next_cursor;
    renderRows();
    $("list-pane").scrollTop = 0;
    markRefreshed();
  } catch (e) {
    if (seq === state.listSeq && e.status !== 401) message($("list-error"), problemText(e));
  } finally {
    if (seq === state.listSeq) $("incident-rows").classList.remove("loading");
  }
}

async function loadMore() {
  if (!state.cursor) return;
  const seq = state.listSeq;
  const button = $("load-more");
  button.disabled = true;
  button.textContent = "Loading…";
  try {
    const page = await api(listUrl(PAGE, state.cursor));
    if (seq !== state.listSeq) return;
    const have = new Set(state.items.map((i) => i.id));
    state.items = state.items.concat(page.items.filter((i) => !have.has(i.id)));
    state.cursor = page.next_cursor;
    renderRows();
  } catch (e) {
    if (e.status !== 401) message($("list-error"), problemText(e));
  } finally {
    button.disabled = false;
    button.textContent = "Load more";
  }
}

/// Re-reads the top of the list with the same filters and updates the rows in place: the
/// scroll position, the selection and what was loaded stay.
async function refreshList() {
  if (document.hidden || !state.token) return;
  const seq = state.listSeq;
  const n = Math.min(Math.max(state.items.length, PAGE), REFRESH_MAX);
  try {
    const page = await api(listUrl(n));
    if (seq !== state.listSeq) return;
    if (state.items.length <= REFRESH_MAX) {
      state.items = page.items;
      state.cursor = page.next_cursor;
    } else {
      const top = new Set(page.items.map((i) => i.id));
      state.items = page.items.concat(state.items.slice(n).filter((i) => !top.has(i.id)));
    }
    renderRows();
    message($("list-error"), "");
    markRefreshed();
  } catch (e) {
    if (e.status !== 401) {
      $("live").classList.add("stale");
      $("live-text").textContent = "Refresh failed";
    }
  }
  if (state.selected !== null && state.detail && !detailBusy) {
    const listed = state.items.find((i) => i.id === state.selected);
    if (listed && listed.updated_at !== state.detail.updated_at) loadDetail(state.selected, { quiet: true });
  }
}

function markRefreshed() {
  state.lastRefresh = Date.now();
  // How many times the list was read, for whoever watches it refresh (the browser test).
  $("live").dataset.refreshed = String(Number($("live").dataset.refreshed || 0) + 1);
  $("live").classList.remove("stale");
  $("live-text").textContent = "Live";
}

function startRefresh() {
  if (state.timer) return;
  state.timer = setInterval(refreshList, REFRESH_MS);
}

function stopRefresh() {
  clearInterval(state.timer);
  state.timer = null;
}

// ---------------------------------------------------------------------------------------
// The incident detail

let detailBusy = false;
let detailSeq = 0;

function selectIncident(id) {
  state.selected = id;
  for (const { row } of rowCache.values()) row.classList.toggle("selected", Number(row.dataset.id) === id);
  if (id === null) {
    state.detail = null;
    show($("detail"), false);
    show($("detail-placeholder"), true);
    message($("detail-error"), "");
    return;
  }
  message($("update-ok"), "");
  message($("update-error"), "");
  message($("contain-ok"), "");
  message($("contain-error"), "");
  loadDetail(id, { fresh: true });
}

async function loadDetail(id, { quiet = false, fresh = false } = {}) {
  const seq = ++detailSeq;
  if (!quiet) message($("detail-error"), "");
  try {
    const d = await api(`/incidents/${id}`);
    if (seq !== detailSeq || state.selected !== id) return;
    state.detail = d;
    renderDetail(d, fresh);
  } catch (e) {
    if (seq !== detailSeq || e.status === 401) return;
    if (!quiet) {
      state.detail = null;
      show($("detail"), false);
      show($("detail-placeholder"), false);
      message($("detail-error"), e.status === 404 ? `No incident #${id} (or not one of your tenants).` : problemText(e));
    }
  }
}

function renderDetail(d, fresh) {
  show($("detail-placeholder"), false);
  show($("detail"), true);
  $("d-id").textContent = `Incident #${d.id}`;
  $("d-tenant").textContent = d.tenant;
  $("d-title").textContent = d.title;
  $("d-severity").replaceWith(Object.assign(sevBadge(d.severity), { id: "d-severity" }));
  $("d-status").replaceWith(Object.assign(statusBadge(d.status), { id: "d-status" }));
  $("d-sources").textContent = d.sources.map(label).join(" · ");
  $("d-first").replaceChildren(timeEl(d.first_seen));
  $("d-last").replaceChildren(timeEl(d.last_seen));
  $("d-count").textContent = String(d.finding_count);
  $("d-assignee").textContent = d.assignee || "Nobody";
  $("d-resolution").textContent = d.resolution || "—";

  // The form follows the incident unless the analyst has started changing it.
  const form = $("update-form");
  if (fresh || form.dataset.dirty !== "1") {
    $("u-status").value = d.status;
    $("u-assignee").value = d.assignee || "";
    $("u-resolution").value = d.resolution || "";
    if (fresh) $("u-comment").value = "";
    form.dataset.dirty = "";
  }

  renderTicket(d.ticket);
  renderActions(d.actions);

  const groups = new Map();
  for (const o of d.observables) {
    if (!groups.has(o.type)) groups.set(o.type, []);
    groups.get(o.type).push(o.value);
  }
  $("d-observables").replaceChildren(
    ...(groups.size
      ? [...groups].map(([type, values]) =>
          el(
            "div",
            { class: "chip-group" },
            el("span", { class: "chip-type", text: type }),
            ...values.map((v) => el("span", { class: "chip", text: v })),
          ),
        )
      : [el("p", { class: "muted", text: "None." })]),
  );

  const open = new Set(
    [...$("d-findings").querySelectorAll("details[open]")].map((n) => n.dataset.id),
  );
  $("d-findings-count").textContent = `(${d.findings.length})`;
  $("d-findings").replaceChildren(
    ...d.findings.map((f) => {
      const raw = typeof f.raw === "string" ? f.raw : JSON.stringify(f.raw, null, 2);
      const details = el(
        "details",
        { dataset: { id: String(f.id) } },
        el("summary", {}, "Vendor record"),
        el("pre", { class: "raw", text: raw }),
      );
      if (open.has(String(f.id)) && !fresh) details.open = true;
      return el(
        "li",
        { class: "finding" },
        el(
          "div",
          { class: "finding-head" },
          sevBadge(f.severity),
          el("span", { class: "finding-title", text: f.title }),
        ),
        el(
          "div",
          { class: "sub" },
          timeEl(f.observed_at),
          el("span", { text: `${f.source} (${label(f.source_kind)})` }),
          el("span", { text: f.event_type }),
        ),
        f.observables.length
          ? el(
              "div",
              { class: "chips small" },
              ...f.observables.map((o) => el("span", { class: "chip", text: `${o.type}: ${o.value}` })),
            )
          : null,
        details,
      );
    }),
  );
  if (!d.findings.length) $("d-findings").append(el("li", { class: "muted", text: "No findings." }));

  $("d-timeline").replaceChildren(
    ...[...d.timeline].reverse().map((e) =>
      el(
        "li",
        { class: `event event-${e.kind}` },
        el("div", { class: "event-head" }, el("span", { class: "event-kind", text: e.kind.replaceAll("_", " ") }), timeEl(e.at)),
        el("div", { class: "event-detail", text: e.detail }),
        el("div", { class: "event-actor", text: e.actor }),
      ),
    ),
  );
}

// ServiceNow's incident states (the `state` choice list of the incident table).
const SERVICENOW_STATES = {
  1: "New",
  2: "In Progress",
  3: "On Hold",
  6: "Resolved",
  7: "Closed",
  8: "Canceled",
};

function ticketState(t) {
  if (!t.state) return "—";
  const name = t.system === "servicenow" ? SERVICENOW_STATES[t.state] : undefined;
  return name ? `${name} (${t.state})` : t.state;
}

function renderTicket(t) {
  const box = $("d-ticket");
  if (!t) {
    box.replaceChildren(el("p", { class: "muted", text: "No ticket (ticketing is off, or not yet queued)." }));
    return;
  }
  if (!t.sys_id) {
    box.replaceChildren(el("p", { class: "muted", text: `The ${t.system || "ServiceNow"} ticket is being created.` }));
    return;
  }
  const url = safeUrl(t.url);
  const number = url
    ? el("a", { id: "ticket-link", href: url, target: "_blank", rel: "noopener noreferrer", text: t.number || t.sys_id })
    : el("span", { text: t.number || t.sys_id });
  box.replaceChildren(
    el(
      "dl",
      { class: "facts" },
      el("div", {}, el("dt", { text: "Number" }), el("dd", {}, number)),
      el("div", {}, el("dt", { text: "System" }), el("dd", { text: t.system === "servicenow" ? "ServiceNow" : t.system })),
      el("div", {}, el("dt", { text: "State" }), el("dd", { text: ticketState(t) })),
    ),
  );
}

function renderActions(actions) {
  const box = $("d-actions");
  if (!actions.length) {
    box.replaceChildren(el("p", { class: "muted", text: "No containment action." }));
    return;
  }
  const anyCode = actions.some((a) => a.unlock_code);
  box.replaceChildren(
    el(
      "table",
      { class: "mini" },
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          el("th", { text: "Action" }),
          el("th", { text: "Computer" }),
          el("th", { text: "State" }),
          anyCode ? el("th", { text: "Unlock code" }) : null,
        ),
      ),
      el(
        "tbody",
        {},
        ...actions.map((a) =>
          el(
            "tr",
            {},
            el("td", {}, a.kind === "move" ? `Move to ${a.group || "group"}` : "Isolate", a.manual ? el("span", { class: "muted", text: " (manual)" }) : null),
            el("td", { text: a.target_label || a.target }),
            el("td", {}, el("span", { class: `astate astate-${a.state}`, text: a.state }), a.reason ? el("div", { class: "sub", text: a.reason }) : null),
            anyCode ? el("td", {}, a.unlock_code ? el("code", { class: "code", text: a.unlock_code }) : "—") : null,
          ),
        ),
      ),
    ),
  );
}

async function saveUpdate(ev) {
  ev.preventDefault();
  const d = state.detail;
  if (!d) return;
  const patch = {};
  const status = $("u-status").value;
  const assignee = $("u-assignee").value.trim();
  const resolution = $("u-resolution").value.trim();
  const comment = $("u-comment").value.trim();
  if (status !== d.status) patch.status = status;
  if (assignee !== (d.assignee || "")) patch.assignee = assignee;
  if (resolution !== (d.resolution || "")) patch.resolution = resolution;
  if (comment) patch.comment = comment;
  message($("update-error"), "");
  message($("update-ok"), "");
  if (!Object.keys(patch).length) {
    message($("update-error"), "Nothing changed: set a status, assignee or resolution, or write a comment.");
    return;
  }
  const button = $("u-save");
  button.disabled = true;
  detailBusy = true;
  try {
    const view = await api(`/incidents/${d.id}`, { method: "PATCH", body: patch });
    $("u-comment").value = "";
    message($("update-ok"), "Saved.");
    const i = state.items.findIndex((x) => x.id === view.id);
    if (i >= 0) {
      state.items[i] = view;
      renderRows();
    }
    await loadDetail(d.id, { fresh: true });
    message($("update-ok"), "Saved.");
  } catch (e) {
    if (e.status !== 401) message($("update-error"), problemText(e));
  } finally {
    button.disabled = false;
    detailBusy = false;
  }
}

async function containment(kind) {
  const d = state.detail;
  if (!d) return;
  message($("contain-error"), "");
  message($("contain-ok"), "");
  let path;
  let body;
  if (kind === "release") {
    path = `/incidents/${d.id}/release`;
  } else {
    path = `/incidents/${d.id}/contain`;
    if (kind === "isolate") body = { isolate: true };
    else {
      const group = $("c-group").value.trim();
      if (!group) {
        message($("contain-error"), "Name the group to move the computer to.");
        return;
      }
      body = { move_to: group };
    }
  }
  const button = $(kind === "release" ? "c-release" : kind === "isolate" ? "c-isolate" : "c-move");
  // The first click arms the button; a second one within a few seconds acts.
  if (button.dataset.armed !== "1") {
    button.dataset.armed = "1";
    button.dataset.label = button.textContent;
    button.textContent = "Click again to confirm";
    setTimeout(() => {
      if (button.dataset.armed === "1") {
        button.dataset.armed = "";
        button.textContent = button.dataset.label;
      }
    }, 4000);
    return;
  }
  button.dataset.armed = "";
  button.textContent = button.dataset.label;
  button.disabled = true;
  try {
    const res = await api(path, { method: "POST", body });
    if (kind === "release") {
      message($("contain-ok"), res.releases ? `${res.releases} action(s) to undo queued.` : "Nothing to release.");
    } else {
      const why = res.reason ? ` (${res.reason})` : "";
      message($("contain-ok"), `${res.kind === "move" ? "Move" : "Isolation"} of ${res.target_label || res.target}: ${res.state}${why}.`);
    }
    await loadDetail(d.id);
  } catch (e) {
    if (e.status !== 401) message($("contain-error"), problemText(e));
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------
// Source health

async function loadHealth() {
  message($("health-error"), "");
  let rows;
  try {
    rows = await api("/sources/health");
  } catch (e) {
    if (e.status === 401) return;
    $("health-tenants").replaceChildren();
    message(
      $("health-error"),
      e.status === 403 ? "Source health is for administrators." : problemText(e),
    );
    return;
  }
  $("health-updated").textContent = `as of ${when(new Date().toISOString())}`;
  const byTenant = new Map();
  for (const h of rows) {
    if (!byTenant.has(h.tenant)) byTenant.set(h.tenant, []);
    byTenant.get(h.tenant).push(h);
  }
  if (!byTenant.size) {
    $("health-tenants").replaceChildren(el("p", { class: "empty", text: "No source is configured." }));
    return;
  }
  $("health-tenants").replaceChildren(
    ...[...byTenant].map(([tenant, sources]) => {
      const bad = sources.filter((s) => !s.ok).length;
      return el(
        "section",
        { class: "card tenant-health" },
        el(
          "h3",
          {},
          tenant,
          el("span", { class: `pill ${bad ? "pill-bad" : "pill-ok"}`, text: bad ? `${bad} failing` : "All polling" }),
        ),
        el(
          "table",
          { class: "mini health-table" },
          el(
            "thead",
            {},
            el(
              "tr",
              {},
              ...["Source", "Kind", "Last poll", "Last success", "Lag", "Last error"].map((h) => el("th", { text: h })),
            ),
          ),
          el(
            "tbody",
            {},
            ...sources.map((s) =>
              el(
                "tr",
                { class: s.ok ? "" : "bad" },
                el("td", { "data-label": "Source" }, el("span", { class: `health-dot ${s.ok ? "dot-ok" : "dot-bad"}`, "aria-hidden": "true" }), s.source),
                el("td", { "data-label": "Kind", text: label(s.kind) }),
                el("td", { "data-label": "Last poll" }, s.last_poll_at ? timeEl(s.last_poll_at, true) : "never"),
                el("td", { "data-label": "Last success" }, s.last_ok_at ? timeEl(s.last_ok_at, true) : "never"),
                el("td", { "data-label": "Lag", text: duration(s.lag_seconds) }),
                el("td", { "data-label": "Last error", class: s.last_error ? "err" : "muted", text: s.last_error || "—" }),
              ),
            ),
          ),
        ),
      );
    }),
  );
}

// ---------------------------------------------------------------------------------------
// Wiring

function debounce(fn, ms) {
  let t;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

function init() {
  $("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const token = $("token").value.trim();
    message($("signin-error"), "");
    if (!token) {
      message($("signin-error"), "Paste a token first.");
      return;
    }
    $("signin-button").disabled = true;
    try {
      if (!(await signIn(token)) && !$("signin-error").textContent) {
        message($("signin-error"), "That token was refused: it is unknown or revoked.");
      }
    } finally {
      $("signin-button").disabled = false;
    }
  });
  $("signout").addEventListener("click", () => signOut("You are signed out."));

  const onFilter = () => {
    if (filtersKey() !== state.filtersKey) reloadList();
  };
  $("f-q").addEventListener("input", debounce(onFilter, 300));
  for (const id of ["f-tenant", "f-severity", "f-status", "f-source"]) $(id).addEventListener("change", onFilter);
  $("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    onFilter();
  });
  $("f-clear").addEventListener("click", () => {
    $("filters").reset();
    onFilter();
  });
  $("load-more").addEventListener("click", loadMore);
  $("incident-rows").addEventListener("click", (ev) => {
    const row = ev.target.closest("tr[data-id]");
    if (!row || ev.target.closest("a")) return;
    location.hash = `#/incidents/${row.dataset.id}`;
  });
  $("incident-rows").addEventListener("keydown", (ev) => {
    const row = ev.target.closest("tr[data-id]");
    if (row && ev.key === "Enter") location.hash = `#/incidents/${row.dataset.id}`;
  });
  $("detail-back").addEventListener("click", () => {
    location.hash = "#/incidents";
  });
  $("update-form").addEventListener("submit", saveUpdate);
  $("update-form").addEventListener("input", () => ($("update-form").dataset.dirty = "1"));
  $("update-form").addEventListener("change", () => ($("update-form").dataset.dirty = "1"));
  $("c-isolate").addEventListener("click", () => containment("isolate"));
  $("c-move").addEventListener("click", () => containment("move"));
  $("c-release").addEventListener("click", () => containment("release"));
  window.addEventListener("hashchange", route);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && state.token && !$("view-incidents").hidden) refreshList();
  });

  if (state.token) {
    const token = state.token;
    signIn(token).then((ok) => {
      if (!ok && state.token === null && !sessionStorage.getItem(TOKEN_KEY)) return;
      if (!ok) {
        show($("app"), false);
        show($("signin"), true);
      }
    });
  } else {
    signOut("");
  }
}

init();
