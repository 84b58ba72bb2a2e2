// Aeon's dashboard: one page over the agent's JSON API. No framework, no build step: the file
// is served as written, from the binary.
"use strict";

const state = { csrf: null, repositories: [], view: null, restoresTimer: null, overviewTimer: null };

// --- helpers ---------------------------------------------------------------------------------

function $(selector) { return document.querySelector(selector); }

// Builds an element; strings become text nodes (never HTML).
function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attributes || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    // Through the CSSOM: the page's CSP refuses style attributes.
    else if (k === "style") Object.assign(node.style, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(n < 10 ? 2 : 1)) + " " + units[i];
}

function when(text) {
  if (!text) return "–";
  const t = new Date(text);
  if (isNaN(t)) return text;
  const pad = (x) => String(x).padStart(2, "0");
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
}

function ago(text) {
  if (!text) return "";
  const s = (Date.now() - new Date(text).getTime()) / 1000;
  const abs = Math.abs(s);
  const span = abs < 90 ? `${Math.round(abs)} s` : abs < 5400 ? `${Math.round(abs / 60)} min`
    : abs < 172800 ? `${Math.round(abs / 3600)} h` : `${Math.round(abs / 86400)} days`;
  return s >= 0 ? `${span} ago` : `in ${span}`;
}

async function api(path, options = {}) {
  const init = { method: options.method || "GET", headers: {}, credentials: "same-origin" };
  if (options.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  if (init.method !== "GET" && state.csrf) init.headers["X-Aeon-CSRF"] = state.csrf;
  const response = await fetch(path, init);
  let data = null;
  try { data = await response.json(); } catch (_) { /* not JSON */ }
  if (response.status === 401 && path !== "/api/login") { showLogin(); }
  if (!response.ok) throw new Error((data && data.error) || `${response.status} ${response.statusText}`);
  return data;
}

function badge(text, kind) { return el("span", { class: `badge ${kind}` }, text); }

function fillRepositorySelects() {
  for (const select of document.querySelectorAll(".repo-select")) {
    const current = select.value;
    select.replaceChildren(...state.repositories.map((r) => el("option", { value: r }, r)));
    if (state.repositories.includes(current)) select.value = current;
  }
}

// --- login -----------------------------------------------------------------------------------

function showLogin() {
  state.csrf = null;
  clearInterval(state.overviewTimer);
  clearInterval(state.restoresTimer);
  $("#app").hidden = true;
  $("#login").hidden = false;
  $("#secret").focus();
}

async function enter() {
  const session = await api("/api/session");
  state.csrf = session.csrf;
  state.repositories = session.repositories;
  $("#login").hidden = true;
  $("#app").hidden = false;
  fillRepositorySelects();
  route();
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = $("#login-button");
  button.disabled = true;
  $("#login-error").textContent = "";
  try {
    await api("/api/login", { method: "POST", body: { secret: $("#secret").value } });
    $("#secret").value = "";
    await enter();
  } catch (e) {
    $("#login-error").textContent = e.message;
  } finally {
    button.disabled = false;
  }
});

$("#logout").addEventListener("click", async () => {
  try { await api("/api/logout", { method: "POST" }); } finally { showLogin(); }
});

// --- views -----------------------------------------------------------------------------------

function route() {
  const view = (location.hash || "#overview").slice(1).split("?")[0];
  const known = ["overview", "points", "restore", "audit"].includes(view) ? view : "overview";
  state.view = known;
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${known}`;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === known);
  clearInterval(state.overviewTimer);
  if (known === "overview") {
    loadOverview();
    state.overviewTimer = setInterval(loadOverview, 5000);
  } else if (known === "points") loadPoints();
  else if (known === "restore") { loadRestorePoints(); loadRestores(); }
  else if (known === "audit") loadAudit();
}
window.addEventListener("hashchange", () => { if (state.csrf) route(); });

async function loadOverview() {
  let data;
  try { data = await api("/api/overview"); } catch (e) { return; }
  $("#host").textContent = `agent on ${data.host} · aeon ${data.version} · since ${when(data.started)}`;
  $("#repositories").replaceChildren(...data.repositories.map(repositoryCard));
  $("#jobs tbody").replaceChildren(...data.jobs.map((j) => el("tr", {},
    el("td", {}, j.job, j.running ? badge("running", "info") : null),
    el("td", { class: "path" }, j.repository),
    el("td", {}, when(j.last_start)),
    el("td", {}, j.last_outcome === null ? "–" : j.last_outcome === "ok" ? badge("ok", "good") : badge(j.last_outcome, "bad")),
    el("td", { class: "num" }, j.last_seconds === null ? "–" : `${j.last_seconds.toFixed(1)} s`),
    el("td", {}, when(j.last_success), el("small", { class: "muted" }, " ", ago(j.last_success))),
    el("td", {}, j.on_changes ? "on changes" : [when(j.next_run), el("small", { class: "muted" }, " ", ago(j.next_run))]),
  )));
  const notices = data.notices.length ? data.notices.map((n) => el("li", { class: n.level },
    el("span", { class: "muted" }, when(n.time), " "), badge(n.level, n.level === "error" ? "bad" : "warn"), " ",
    n.message, " ", el("code", {}, JSON.stringify(Object.fromEntries(Object.entries(n).filter(([k]) => !["time", "level", "message"].includes(k))))),
  )) : [el("li", { class: "muted" }, "Nothing to report.")];
  $("#notices").replaceChildren(...notices);
}

function repositoryCard(r) {
  const report = r.report;
  if (!report) {
    return el("div", { class: "card" }, el("h3", { class: "path" }, r.repository),
      el("p", { class: "muted" }, "Not read yet (the agent reads it at start and after each run)."));
  }
  const quota = report.quota;
  const check = report.verification.last_check;
  const scrub = report.verification.scrub_coverage_percent;
  const newest = report.sources.map((s) => s.last_backup).filter(Boolean).sort().pop();
  const points = report.sources.reduce((n, s) => n + s.points, 0);
  const rows = [
    ["Profiles", r.profiles.join(", ") || "–"],
    ["Recovery points", `${points} from ${report.sources.length} source${report.sources.length === 1 ? "" : "s"}`],
    ["Newest point", newest ? `${when(newest)} (${ago(newest)})` : "none yet"],
    ["Storage used", bytes(quota.used_bytes) + (quota.limit_bytes ? ` of ${bytes(quota.limit_bytes)}` : "")],
    ["Last check", check ? [check.outcome === "ok" ? badge("ok", "good") : badge(check.outcome, "bad"), " ", when(check.time), check.arguments.includes("--read-data") ? " (all data read)" : ""] : badge("never checked", "warn")],
    ["Scrub", scrub === null || scrub === undefined ? "no scrub yet" : `${scrub.toFixed(1)}% of the data read this pass`],
    ["Audit log", report.audit.intact ? [badge("intact", "good"), ` ${report.audit.records} records`] : badge(`${report.audit.problems.length} problem(s)`, "bad")],
    ["Retention", report.retention.adheres ? badge("as policy says", "good") : badge(`${report.retention.beyond_policy.length} beyond policy`, "warn")],
  ];
  const health = report.unreadable_points.length ? badge(`${report.unreadable_points.length} unreadable point(s)`, "bad")
    : check && check.outcome !== "ok" ? badge("damage found", "bad") : badge("healthy", "good");
  const meter = quota.used_percent === null || quota.used_percent === undefined ? null
    : el("div", { class: "meter", title: `${quota.used_percent.toFixed(1)}% of the quota` },
      el("div", { style: { width: `${Math.min(100, quota.used_percent).toFixed(1)}%` }, class: quota.used_percent > 90 ? "bad" : "" }));
  return el("div", { class: "card" },
    el("h3", {}, el("span", { class: "path" }, r.repository), " ", health),
    meter,
    el("dl", {}, rows.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
  );
}

// --- recovery points -------------------------------------------------------------------------

async function loadPoints() {
  const repository = $("#points-repo").value;
  if (!repository) return;
  let data;
  try { data = await api(`/api/points?repository=${encodeURIComponent(repository)}`); }
  catch (e) { $("#unreadable").textContent = e.message; return; }
  $("#points-count").textContent = `${data.points.length} recovery point${data.points.length === 1 ? "" : "s"}`;
  drawTimeline(data.points);
  $("#points tbody").replaceChildren(...data.points.map((p) => el("tr", { "data-id": p.id },
    el("td", {}, el("code", { title: p.id }, p.short_id), p.protected ? badge("protected", "info") : null),
    el("td", {}, when(p.time)),
    el("td", {}, p.host),
    el("td", { class: "path" }, p.paths.join(", ")),
    el("td", {}, p.tags.map((t) => badge(t, "tag"))),
    el("td", { class: "num" }, p.files.toLocaleString()),
    el("td", { class: "num" }, bytes(p.bytes)),
    el("td", { class: "num" }, bytes(p.added_bytes)),
    el("td", {}, healthBadge(p)),
    el("td", {}, el("button", { class: "quiet", onclick: () => restoreFrom(repository, p.id) }, "Restore…")),
  )));
  $("#unreadable").textContent = data.unreadable.map((u) => `unreadable: ${u.name}: ${u.error}`).join("\n");
}

function healthBadge(p) {
  const h = p.health;
  if (!h) return badge("unknown", "warn");
  const condition = h.condition === "complete" ? badge("complete", "good")
    : h.condition === "partial" ? badge(`${p.errors} file(s) missing`, "warn") : badge("repaired", "warn");
  return [condition, " ", h.verified_at ? badge("verified", "good") : el("small", { class: "muted" }, "not yet read back")];
}

// One row per host, a dot per point at its time; the newest day at the right.
function drawTimeline(points) {
  const box = $("#timeline");
  if (!points.length) { box.replaceChildren(el("p", { class: "muted" }, "No recovery points yet.")); return; }
  const hosts = [...new Set(points.map((p) => p.host))].sort();
  const times = points.map((p) => new Date(p.time).getTime());
  const last = Math.max(...times);
  const first = Math.min(...times, last - 3600 * 1000);
  const width = 900, label = 140, rowH = 28, height = hosts.length * rowH + 24;
  const x = (t) => label + 10 + (width - label - 20) * ((t - first) / Math.max(1, last - first));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "recovery points by host and time");
  const add = (tag, attrs, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.append(n);
    return n;
  };
  hosts.forEach((host, i) => {
    const y = 14 + i * rowH;
    add("text", { x: 4, y: y + 4, class: "axis" }, host);
    add("line", { x1: label, x2: width - 4, y1: y, y2: y, class: "lane" });
  });
  for (const p of points) {
    const y = 14 + hosts.indexOf(p.host) * rowH;
    const kind = !p.health ? "unknown" : p.health.condition === "complete" ? "good" : "warn";
    const dot = add("circle", { cx: x(new Date(p.time).getTime()), cy: y, r: 6, class: `dot ${kind}` });
    const title = document.createElementNS(ns, "title");
    title.textContent = `${p.short_id} ${when(p.time)} ${p.paths.join(", ")}`;
    dot.append(title);
  }
  add("text", { x: label, y: height - 2, class: "axis" }, when(new Date(first).toISOString()));
  add("text", { x: width - 4, y: height - 2, class: "axis end" }, when(new Date(last).toISOString()));
  box.replaceChildren(svg);
}

$("#points-repo").addEventListener("change", loadPoints);

// --- restore ---------------------------------------------------------------------------------

function restoreFrom(repository, point) {
  $("#restore-repo").value = repository;
  state.pendingPoint = point;
  location.hash = "#restore";
}

async function loadRestorePoints() {
  const repository = $("#restore-repo").value;
  if (!repository) return;
  let data;
  try { data = await api(`/api/points?repository=${encodeURIComponent(repository)}`); }
  catch (e) { $("#restore-error").textContent = e.message; return; }
  $("#restore-point").replaceChildren(...data.points.map((p) => el("option", { value: p.id },
    `${p.short_id} · ${when(p.time)} · ${p.host} · ${p.paths.join(", ")}`)));
  if (state.pendingPoint) { $("#restore-point").value = state.pendingPoint; state.pendingPoint = null; }
  browse($("#restore-path").value || "/");
}

// Lists the folder at `path` of the chosen point; a click on a folder opens it, on a file
// chooses it.
async function browse(path) {
  const repository = $("#restore-repo").value, point = $("#restore-point").value;
  const box = $("#browser");
  if (!repository || !point) { box.replaceChildren(); return; }
  let data;
  try {
    data = await api(`/api/ls?repository=${encodeURIComponent(repository)}&point=${encodeURIComponent(point)}&path=${encodeURIComponent(path)}`);
  } catch (e) { box.replaceChildren(el("p", { class: "error" }, e.message)); return; }
  const up = data.path === "/" ? null : data.path.replace(/\/[^/]*$/, "") || "/";
  const isDir = data.entries.length !== 1 || data.entries[0].path !== data.path;
  if (isDir) $("#restore-path").value = data.path;
  box.replaceChildren(
    el("div", { class: "crumb" }, el("code", {}, data.path), up !== null ? el("button", { type: "button", class: "quiet", onclick: () => browse(up) }, "up") : null),
    el("ul", {}, data.entries.map((e) => el("li", {},
      el("button", { type: "button", class: `link ${e.type}`, onclick: () => e.type === "dir" ? browse(e.path) : ($("#restore-path").value = e.path) },
        e.type === "dir" ? `${e.name}/` : e.name),
      e.type === "file" ? el("small", { class: "muted" }, " ", bytes(e.size)) : null,
    ))),
  );
}

$("#restore-repo").addEventListener("change", loadRestorePoints);
$("#restore-point").addEventListener("change", () => browse($("#restore-path").value || "/"));

$("#restore-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#restore-error").textContent = "";
  const button = $("#restore-button");
  button.disabled = true;
  try {
    await api("/api/restores", { method: "POST", body: {
      repository: $("#restore-repo").value,
      point: $("#restore-point").value,
      path: $("#restore-path").value,
      target: $("#restore-target").value,
      overwrite: $("#restore-overwrite").value,
    } });
    await loadRestores();
  } catch (e) {
    $("#restore-error").textContent = e.message;
  } finally {
    button.disabled = false;
  }
});

async function loadRestores() {
  let data;
  try { data = await api("/api/restores"); } catch (e) { return; }
  $("#restores").replaceChildren(...(data.restores.length ? data.restores.map(restoreCard)
    : [el("p", { class: "muted" }, "No restore started from this agent yet.")]));
  clearTimeout(state.restoresTimer);
  if (data.restores.some((r) => r.state === "running") && state.view === "restore") {
    state.restoresTimer = setTimeout(loadRestores, 500);
  }
}

function restoreCard(r) {
  const total = r.bytes_total || 0;
  const percent = r.state === "finished" ? 100 : total ? Math.min(100, (100 * r.bytes_done) / total) : 0;
  const stateBadge = r.state === "finished" ? badge("finished", "good") : r.state === "running" ? badge("running", "info") : badge(r.state, "bad");
  const result = r.result || {};
  let detail;
  if (r.state === "running") detail = `${r.files_done.toLocaleString()}${r.files_total ? " of " + r.files_total.toLocaleString() : ""} files, ${bytes(r.bytes_done)}${total ? " of " + bytes(total) : ""}`;
  else if (r.state === "failed") detail = result.error;
  else detail = `${result.files} files, ${result.dirs} folders, ${bytes(result.bytes)} in ${result.duration_seconds.toFixed(2)} s` +
    (result.errors && result.errors.length ? ` · ${result.errors.length} error(s): ${result.errors.slice(0, 3).join("; ")}` : "") +
    (result.no_space ? ` · stopped: ${result.no_space}` : "");
  return el("div", { class: "card restore", "data-id": r.id, "data-state": r.state },
    el("h3", {}, `#${r.id} `, stateBadge, " ", el("code", {}, r.point.slice(0, 8)), el("span", { class: "path" }, ` ${r.path} → ${r.target}`)),
    el("div", { class: "meter" }, el("div", { style: { width: `${percent.toFixed(1)}%` } })),
    el("p", { class: "detail" }, detail),
    r.warnings.length ? el("ul", { class: "notices" }, r.warnings.map((w) => el("li", {}, w))) : null,
  );
}

// --- audit -----------------------------------------------------------------------------------

async function loadAudit() {
  const repository = $("#audit-repo").value;
  if (!repository) return;
  let data;
  try { data = await api(`/api/audit?repository=${encodeURIComponent(repository)}`); }
  catch (e) { $("#audit-state").textContent = e.message; return; }
  $("#audit-state").replaceChildren(data.intact ? badge("chain intact", "good") : badge("chain damaged", "bad"),
    el("span", { class: "muted" }, ` newest ${data.records.length} of ${data.total} records`));
  $("#audit tbody").replaceChildren(...data.records.map((r) => el("tr", {},
    el("td", {}, when(r.time)),
    el("td", {}, el("code", { title: r.id }, r.id.slice(0, 8))),
    el("td", {}, `${r.user}@${r.host}`),
    el("td", {}, r.operation),
    el("td", { class: "path" }, (r.arguments || []).join(" ")),
    el("td", {}, r.outcome === "ok" ? badge("ok", "good") : badge(r.outcome, "bad")),
    el("td", { class: "num" }, `+${(r.added || []).length} −${(r.removed || []).length}`),
  )));
}

$("#audit-repo").addEventListener("change", loadAudit);

// --- start -----------------------------------------------------------------------------------

enter().catch(() => showLogin());
