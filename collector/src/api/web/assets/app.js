// RIE status page. Loads the inventory once (/api/v1/status/sites), then polls the compact
// state (/api/v1/status) every POLL_MS and redraws: counters, map (canvas: 14,000 dots redraw
// in a few milliseconds, where 14,000 SVG nodes would make the page sluggish) and the incident
// list. No external code: the page runs on the NOC's closed network.
"use strict";

// A login link (`/#token=rie_…`, printed by the demo or handed out by an admin) carries an API
// token: kept for this tab only (sessionStorage), and removed at once from the address bar and
// the history. Without one, requests carry the session cookie of an OpenID Connect login.
const API_TOKEN = (() => {
  const p = new URLSearchParams(location.hash.slice(1));
  const t = p.get("token");
  if (t && /^rie_[0-9a-f]{12}_[0-9a-f]{64}$/.test(t)) {
    sessionStorage.setItem("rie-token", t);
    p.delete("token");
    const rest = p.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  }
  return sessionStorage.getItem("rie-token");
})();

// A login link opened in a tab already showing the page changes only the fragment: load again
// so that the token above is read.
window.addEventListener("hashchange", () => {
  if (new URLSearchParams(location.hash.slice(1)).has("token")) location.reload();
});

/** fetch() with the tab's API token when it has one; a 401 says how to log in. */
async function apiFetch(url, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  if (API_TOKEN) headers.Authorization = "Bearer " + API_TOKEN;
  const r = await fetch(url, Object.assign({}, opts, { headers }));
  if (r.status === 401) loginNeeded();
  return r;
}

// Who is reading: shown in the header, with a logout link for a person logged in with
// OpenID Connect (a token from a login link is forgotten with the tab).
async function whoAmI() {
  const r = await apiFetch("/auth/me", { cache: "no-store" });
  if (!r.ok) return;
  const me = await r.json();
  if (me.name === "open") return;
  const f = document.getElementById("whoami");
  f.textContent = "Connecté : " + me.name + " (" + me.role + ") ";
  if (!API_TOKEN) f.append(el("a", { href: "/auth/logout" }, "se déconnecter"));
  f.hidden = false;
}

// Why the last password login failed, from `/#login=…` (the redirect of POST /auth/local).
const LOGIN_FAILED = (() => {
  const p = new URLSearchParams(location.hash.slice(1));
  const why = p.get("login");
  if (!why) return null;
  p.delete("login");
  const rest = p.toString();
  history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  return {
    refused: "Identifiant ou mot de passe incorrect.",
    limited: "Trop d'échecs depuis cette adresse : réessayer dans une minute.",
    unavailable: "Le collecteur ne peut pas vérifier les connexions pour le moment.",
  }[why] || "Connexion refusée.";
})();

/** Shows how to log in: a local account's form, and the identity provider when configured
 *  (`/auth/me` names its login route in `x-login`). */
async function loginNeeded() {
  const f = document.getElementById("login");
  if (!f || !f.hidden) return;
  f.hidden = false;
  document.getElementById("login-why").textContent =
    "Connexion requise" + (LOGIN_FAILED ? " : " + LOGIN_FAILED : ".");
  const r = await fetch("/auth/me", { cache: "no-store" });
  const sso = r.headers.get("x-login");
  if (sso) {
    document.querySelector("#login-sso a").setAttribute("href", sso);
    document.getElementById("login-sso").hidden = false;
  }
}

const POLL_MS = 2000;
const STATE_NAMES = ["Opérationnel", "Dégradé", "Sur secours", "Hors service", "Sonde muette", "Inconnu"];
const STATE_COLORS = ["#1b7a35", "#a35200", "#6236b0", "#c00d1e", "#4d4d4d", "#6b7785"];
// Incidents first by severity when agents are equal: down, on backup, silent, degraded.
const SEVERITY = [0, 1, 3, 4, 2, 0];
const MAX_ROWS = 500;
const PROTOCOLS = { "1": "ICMP", "6": "TCP", "17": "UDP", "58": "ICMPv6", "47": "GRE", "50": "ESP" };

// Simplified outlines (lon, lat), about 5 km precision: enough to recognise the country.
const MAINLAND = [
  [2.37, 51.05], [2.9, 50.7], [3.7, 50.3], [4.2, 49.95], [4.85, 50.15], [4.8, 49.8], [5.8, 49.55],
  [6.4, 49.45], [7.0, 49.15], [8.2, 48.97], [7.8, 48.5], [7.55, 47.6], [7.0, 47.45], [6.45, 46.95],
  [6.1, 46.6], [6.1, 46.2], [6.8, 46.0], [7.1, 45.2], [6.6, 45.1], [7.0, 44.2], [7.55, 43.78],
  [7.0, 43.55], [6.6, 43.15], [5.9, 43.1], [5.3, 43.3], [4.6, 43.4], [4.0, 43.5], [3.2, 43.2],
  [3.0, 42.6], [3.17, 42.43], [2.5, 42.35], [1.7, 42.5], [0.7, 42.8], [-0.3, 42.8], [-1.1, 43.0],
  [-1.78, 43.37], [-1.45, 43.65], [-1.25, 44.6], [-1.15, 45.5], [-1.2, 46.2], [-2.1, 46.85],
  [-2.2, 47.25], [-3.0, 47.5], [-4.35, 47.8], [-4.7, 48.1], [-4.78, 48.4], [-4.3, 48.65],
  [-3.5, 48.8], [-2.8, 48.55], [-2.0, 48.65], [-1.55, 48.65], [-1.6, 49.2], [-1.9, 49.7],
  [-1.25, 49.7], [-1.1, 49.4], [-0.2, 49.3], [0.1, 49.45], [0.6, 49.87], [1.5, 50.2], [1.6, 50.9],
];
const CORSICA = [
  [9.4, 43.02], [9.5, 42.6], [9.55, 42.1], [9.4, 41.7], [9.15, 41.38], [8.8, 41.6], [8.6, 41.7],
  [8.55, 42.2], [8.7, 42.6], [9.25, 42.72],
];
// Overseas départements: inset boxes along the bottom of the map, each with its own scale.
const INSETS = [
  { dep: "971", name: "Guadeloupe", lon: [-62.0, -61.0], lat: [15.6, 16.55] },
  { dep: "972", name: "Martinique", lon: [-61.45, -60.75], lat: [14.2, 14.9] },
  { dep: "973", name: "Guyane", lon: [-54.6, -51.6], lat: [2.1, 5.8] },
  { dep: "974", name: "La Réunion", lon: [55.1, 55.9], lat: [-21.45, -20.4] },
  { dep: "976", name: "Mayotte", lon: [44.95, 45.5], lat: [-13.1, -12.35] },
];

const W = 640, MAIN_H = 490, INSET_Y = 500, INSET_W = 122, INSET_H = 112;
const MAIN_BOX = { lon: [-5.3, 9.8], lat: [41.2, 51.2] };

/** A projection fitting `box` (lon/lat ranges) into the rectangle x, y, w, h. */
function projection(box, x, y, w, h) {
  const k = Math.cos(((box.lat[0] + box.lat[1]) / 2) * Math.PI / 180);
  const bw = (box.lon[1] - box.lon[0]) * k, bh = box.lat[1] - box.lat[0];
  const s = Math.min(w / bw, h / bh);
  const ox = x + (w - bw * s) / 2, oy = y + (h - bh * s) / 2;
  return (lon, lat) => [ox + (lon - box.lon[0]) * k * s, oy + (box.lat[1] - lat) * s];
}
const projMain = projection(MAIN_BOX, 10, 5, W - 20, MAIN_H - 10);
const insetProj = INSETS.map((b, i) => projection(b, i * (INSET_W + 5) + 6, INSET_Y + 18, INSET_W - 12, INSET_H - 24));

const inv = { sites: [], ministries: [], departements: [], xy: [] };
let states = "";
const since = new Map();
let nowMs = Date.now();
let lastOk = 0;
let openSite = null;
let pollCount = 0;
// Every collector sharing the database serves the same national picture.
const statusUrl = "/api/v1/status";

const $ = (id) => document.getElementById(id);

/** Creates an element; children are nodes or strings (text, never HTML). */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : String(c));
  return e;
}

function fmtDuration(ms) {
  if (ms == null || !(ms >= 0)) return "—";
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " min";
  const h = Math.floor(m / 60);
  if (h < 48) return h + " h " + String(m % 60).padStart(2, "0") + " min";
  return Math.floor(h / 24) + " j " + (h % 24) + " h";
}
const fmtInt = (n) => n.toLocaleString("fr-FR");
const fmtTime = (ms) => new Date(ms).toLocaleString("fr-FR");

/** Where a site's dot goes: its inset for the five overseas départements, the mainland map
 * otherwise (kept inside the frame: inventory coordinates are approximate), nowhere for the
 * other overseas collectivities (listed, not drawn). */
function place(site) {
  const dep = inv.departements[site[3]][0];
  const clamp = (p, x0, y0, x1, y1) => [Math.min(Math.max(p[0], x0), x1), Math.min(Math.max(p[1], y0), y1)];
  const k = INSETS.findIndex((b) => b.dep === dep);
  if (k >= 0) {
    const x = k * (INSET_W + 5) + 1;
    return clamp(insetProj[k](site[6], site[5]), x + 4, INSET_Y + 18, x + INSET_W - 4, INSET_Y + INSET_H - 4);
  }
  if (dep.length === 3) return null;
  return clamp(projMain(site[6], site[5]), 4, 4, W - 4, MAIN_H - 4);
}

async function loadInventory() {
  const r = await apiFetch("/api/v1/status/sites", { cache: "no-store" });
  if (!r.ok) throw new Error("inventaire : HTTP " + r.status);
  const j = await r.json();
  inv.sites = j.sites;
  inv.ministries = j.ministries;
  inv.departements = j.departements;
  inv.xy = j.sites.map(place);
  const fm = $("f-ministry"), fd = $("f-departement");
  j.ministries.forEach((m, i) => fm.append(el("option", { value: String(i) }, m)));
  j.departements.forEach(([code, name], i) => fd.append(el("option", { value: String(i) }, name ? code + " – " + name : code)));
  const dl = $("site-ids");
  for (const s of j.sites) dl.append(el("option", { value: s[0] }, s[1]));
}

async function poll() {
  try {
    const r = await apiFetch(statusUrl, { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    const j = await r.json();
    if (j.states.length !== inv.sites.length) {
      // The collector restarted with another inventory: start again.
      location.reload();
      return;
    }
    states = j.states;
    nowMs = j.now_ms;
    since.clear();
    for (const [i, t] of j.incidents) since.set(i, t);
    lastOk = Date.now();
    $("freshness").textContent = "Mis à jour à " + new Date(lastOk).toLocaleTimeString("fr-FR");
    render();
    pollCount++;
    if (openSite != null && pollCount % 5 === 0) showSite(openSite, false);
  } catch (e) {
    const ago = lastOk ? " (dernière mise à jour il y a " + fmtDuration(Date.now() - lastOk) + ")" : "";
    $("freshness").textContent = "Collecteur injoignable" + ago;
    if (!$("announce").textContent.startsWith("Collecteur")) $("announce").textContent = "Collecteur injoignable";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

function filters() {
  const v = (id) => $(id).value;
  return { m: v("f-ministry"), d: v("f-departement"), s: v("f-state") };
}

function render() {
  const f = filters();
  const m = f.m === "" ? -1 : +f.m, d = f.d === "" ? -1 : +f.d, st = f.s === "" ? -1 : +f.s;
  const counts = [0, 0, 0, 0, 0, 0];
  let agentsDown = 0, agentsBackup = 0;
  const shown = [];
  const incidents = [];
  for (let i = 0; i < inv.sites.length; i++) {
    const s = inv.sites[i];
    if ((m >= 0 && s[2] !== m) || (d >= 0 && s[3] !== d)) continue;
    const code = states.charCodeAt(i) - 48;
    counts[code]++;
    if (code === 3) agentsDown += s[4];
    if (code === 2) agentsBackup += s[4];
    if (st >= 0 && code !== st) continue;
    shown.push(i);
    if (code >= 1 && code <= 4) incidents.push(i);
  }
  counts.forEach((n, c) => { $("count-" + c).textContent = fmtInt(n); });
  $("agents-affected").textContent = fmtInt(agentsDown);
  $("agents-backup").textContent = fmtInt(agentsBackup);
  drawMap(shown);
  renderIncidents(incidents);
}

function renderIncidents(list) {
  list.sort((a, b) => {
    const sa = inv.sites[a], sb = inv.sites[b];
    return sb[4] - sa[4] || SEVERITY[states.charCodeAt(b) - 48] - SEVERITY[states.charCodeAt(a) - 48] || (sa[0] < sb[0] ? -1 : 1);
  });
  const body = el("tbody");
  for (const i of list.slice(0, MAX_ROWS)) {
    const s = inv.sites[i], code = states.charCodeAt(i) - 48, t = since.get(i);
    const open = el("button", { type: "button", "data-site": s[0] }, s[0] + " — " + s[1]);
    open.addEventListener("click", () => showSite(i, true));
    body.append(el("tr", { "data-site": s[0], "data-state": String(code) },
      el("td", {}, open),
      el("td", { class: "state s" + code }, STATE_NAMES[code]),
      el("td", { class: "num agents" }, fmtInt(s[4])),
      el("td", { title: t ? fmtTime(t) : "" }, t ? fmtDuration(nowMs - t) : "—"),
      el("td", {}, inv.ministries[s[2]]),
      el("td", {}, inv.departements[s[3]][0])));
  }
  if (list.length > MAX_ROWS) {
    body.append(el("tr", {}, el("td", { colspan: "6" }, "… et " + fmtInt(list.length - MAX_ROWS) + " autres (affiner les filtres)")));
  }
  $("incidents").querySelector("tbody").replaceWith(body);
  $("incident-count").textContent = "(" + fmtInt(list.length) + ")";
  // Screen readers hear the number of incidents when it changes, not every poll.
  const said = fmtInt(list.length) + (list.length > 1 ? " incidents en cours" : " incident en cours");
  if ($("announce").textContent !== said) $("announce").textContent = said;
  $("no-incident").hidden = list.length > 0;
}

function drawMap(shown) {
  const c = $("map"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  g.fillStyle = "#ffffff";
  g.strokeStyle = "#7a8591";
  g.lineWidth = 1;
  for (const poly of [MAINLAND, CORSICA]) {
    g.beginPath();
    poly.forEach(([lon, lat], k) => { const [x, y] = projMain(lon, lat); k ? g.lineTo(x, y) : g.moveTo(x, y); });
    g.closePath(); g.fill(); g.stroke();
  }
  g.font = "12px system-ui, Arial, sans-serif";
  INSETS.forEach((b, k) => {
    const x = k * (INSET_W + 5) + 1;
    g.fillStyle = "#ffffff";
    g.fillRect(x, INSET_Y, INSET_W, INSET_H);
    g.strokeRect(x + 0.5, INSET_Y + 0.5, INSET_W - 1, INSET_H - 1);
    g.fillStyle = "#161616";
    g.fillText(b.name + " (" + b.dep + ")", x + 5, INSET_Y + 13);
  });
  // One path per state (a fill per dot would cost 14,000 fills), drawn up sites first and
  // incidents last so that they stay on top.
  const groups = [[], [], [], [], [], []];
  for (const i of shown) if (inv.xy[i]) groups[states.charCodeAt(i) - 48].push(i);
  for (const code of [0, 5, 1, 4, 2, 3]) {
    if (!groups[code].length) continue;
    const r = code === 3 ? 4.5 : code === 0 || code === 5 ? 2.5 : 3.5;
    g.beginPath();
    for (const i of groups[code]) {
      const [x, y] = inv.xy[i];
      g.moveTo(x + r, y);
      g.arc(x, y, r, 0, 2 * Math.PI);
    }
    g.fillStyle = STATE_COLORS[code];
    g.fill();
    if (code !== 0 && code !== 5) { g.strokeStyle = "#ffffff"; g.stroke(); }
  }
}

function siteAt(x, y) {
  let best = -1, bestD = 64; // within 8 px
  const f = filters();
  for (let i = 0; i < inv.sites.length; i++) {
    const p = inv.xy[i];
    if (!p) continue;
    const s = inv.sites[i];
    if ((f.m !== "" && s[2] !== +f.m) || (f.d !== "" && s[3] !== +f.d) || (f.s !== "" && states.charCodeAt(i) - 48 !== +f.s)) continue;
    const dd = (p[0] - x) ** 2 + (p[1] - y) ** 2;
    if (dd < bestD) { bestD = dd; best = i; }
  }
  return best;
}

async function getJson(url) {
  const r = await apiFetch(url, { cache: "no-store" });
  if (r.status === 404) return null;
  if (!r.ok) throw new Error(url + " : HTTP " + r.status);
  return r.json();
}

function fmtBytes(b) {
  const u = ["o", "ko", "Mo", "Go", "To"];
  let k = 0;
  while (b >= 1000 && k < u.length - 1) { b /= 1000; k++; }
  return (k ? b.toFixed(1).replace(".", ",") : String(b)) + " " + u[k];
}

const fmtMs = (v) => v == null ? "—" : v.toFixed(1).replace(".", ",") + " ms";
const fmtPct = (v) => v == null ? "—" : (v * 100).toFixed(1).replace(".", ",") + " %";

/** A small RTT curve (inline SVG) over the minutes of one link, with a text alternative. */
function sparkline(rows, summary) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", "160"); svg.setAttribute("height", "32");
  svg.setAttribute("role", "img"); svg.setAttribute("aria-label", summary);
  const pts = rows.filter((r) => r.rtt_avg_ms != null);
  if (pts.length) {
    const t0 = rows[0].minute, t1 = Math.max(rows[rows.length - 1].minute, t0 + 60);
    const top = Math.max(...pts.map((r) => r.rtt_avg_ms)) || 1;
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts.map((r) => ((r.minute - t0) / (t1 - t0) * 156 + 2).toFixed(1) + "," + (30 - r.rtt_avg_ms / top * 27).toFixed(1)).join(" "));
    line.setAttribute("fill", "none"); line.setAttribute("stroke", "#000091"); line.setAttribute("stroke-width", "1.5");
    svg.append(line);
  }
  return svg;
}

/** Per link: mean and max RTT, loss over the hour, and the RTT curve. */
function historyTable(rows) {
  if (!rows.length) return el("p", {}, "Aucune mesure des liens sur la dernière heure.");
  const byLink = new Map();
  for (const r of rows) { if (!byLink.has(r.link)) byLink.set(r.link, []); byLink.get(r.link).push(r); }
  const t = el("table", { id: "site-history" }, el("thead", {}, el("tr", {},
    ...["Lien", "RTT moyen", "RTT max", "Pertes", "RTT minute par minute"].map((h) => el("th", { scope: "col" }, h)))));
  const tb = el("tbody");
  for (const [link, rs] of byLink) {
    const sent = rs.reduce((a, r) => a + r.sent, 0), recv = rs.reduce((a, r) => a + r.received, 0);
    const rtts = rs.filter((r) => r.rtt_avg_ms != null);
    const mean = rtts.length ? rtts.reduce((a, r) => a + r.rtt_avg_ms, 0) / rtts.length : null;
    const maxes = rs.filter((r) => r.rtt_max_ms != null).map((r) => r.rtt_max_ms);
    const max = maxes.length ? Math.max(...maxes) : null;
    const loss = sent > 0 ? (sent - recv) / sent : null;
    tb.append(el("tr", {}, el("td", {}, link), el("td", {}, fmtMs(mean)), el("td", {}, fmtMs(max)), el("td", {}, fmtPct(loss)),
      el("td", {}, sparkline(rs, "RTT de " + link + " sur " + rs.length + " minutes, moyenne " + fmtMs(mean)))));
  }
  t.append(tb);
  return t;
}

// The address keeps the filters and the open site (by name, not index), so that a view can be
// bookmarked or sent to a colleague: #ministere=Justice&etat=3&site=S1
function saveHash() {
  const p = new URLSearchParams();
  const f = filters();
  if (f.m !== "") p.set("ministere", inv.ministries[+f.m]);
  if (f.d !== "") p.set("departement", inv.departements[+f.d][0]);
  if (f.s !== "") p.set("etat", f.s);
  if (openSite != null) p.set("site", inv.sites[openSite][0]);
  history.replaceState(null, "", p.toString() ? "#" + p.toString() : location.pathname);
}

function loadHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  const m = inv.ministries.indexOf(p.get("ministere"));
  if (m >= 0) $("f-ministry").value = String(m);
  const d = inv.departements.findIndex((x) => x[0] === p.get("departement"));
  if (d >= 0) $("f-departement").value = String(d);
  if (/^[0-5]$/.test(p.get("etat") || "")) $("f-state").value = p.get("etat");
  const i = inv.sites.findIndex((s) => s[0] === p.get("site"));
  if (i >= 0) showSite(i, false);
}

async function showSite(i, focus) {
  openSite = i;
  saveHash();
  const id = inv.sites[i][0];
  const sec = $("site");
  sec.hidden = false;
  $("site-title").textContent = "Site " + id + " — " + inv.sites[i][1];
  const body = el("div", { id: "site-body" });
  const to = new Date(), from = new Date(to.getTime() - 86400000);
  try {
    const enc = encodeURIComponent(id);
    const [site, eps, traffic, history] = await Promise.all([
      getJson("/api/v1/sites/" + enc),
      getJson("/api/v1/sites/" + enc + "/episodes").catch(() => null),
      getJson("/api/v1/flows/totals?site=" + enc + "&from=" + from.toISOString().replace(/\.\d+Z$/, "Z") + "&to=" + to.toISOString().replace(/\.\d+Z$/, "Z")).catch(() => null),
      getJson("/api/v1/sites/" + enc + "/links/history?minutes=60").catch(() => null),
    ]);
    if (!site) throw new Error("site inconnu");
    const code = ["up", "degraded", "on_backup", "down", "silent", "unknown"].indexOf(site.state);
    body.append(el("dl", {},
      el("dt", {}, "État"), el("dd", { class: "state s" + code, id: "site-state" }, STATE_NAMES[code] || site.state),
      el("dt", {}, "Depuis"), el("dd", {}, site.state_since ? fmtTime(Date.parse(site.state_since)) : "—"),
      el("dt", {}, "Ministère"), el("dd", {}, site.ministry),
      el("dt", {}, "Département"), el("dd", {}, site.departement),
      el("dt", {}, "Agents"), el("dd", {}, fmtInt(site.agents)),
      el("dt", {}, "Dernier signe de vie"), el("dd", {}, site.last_seen ? fmtTime(Date.parse(site.last_seen)) : "jamais"),
      el("dt", {}, "Sonde"), el("dd", {}, site.probe && site.probe.probe_version ? site.probe.probe_version + (site.connected ? " (connectée)" : " (déconnectée)") : "—")));

    body.append(el("h3", {}, "Liens (dernières mesures)"));
    const lt = el("table", { id: "site-links" }, el("thead", {}, el("tr", {},
      ...["Lien", "Rôle", "Opérateur", "Technologie", "Débit", "État", "Porte le trafic", "Perte", "RTT moyen"].map((h) => el("th", { scope: "col" }, h)))));
    const lb = el("tbody");
    for (const l of site.links) {
      lb.append(el("tr", {},
        el("td", {}, l.id), el("td", {}, l.role === "primary" ? "principal" : "secours"), el("td", {}, l.operator),
        el("td", {}, l.technology), el("td", {}, fmtInt(l.bandwidth_mbps) + " Mbit/s"),
        el("td", {}, l.up == null ? "—" : l.up ? "actif" : "coupé"),
        el("td", {}, l.active == null ? "—" : l.active ? "oui" : "non"),
        el("td", {}, l.loss_ratio == null ? "—" : (l.loss_ratio * 100).toFixed(1).replace(".", ",") + " %"),
        el("td", {}, l.rtt_avg_ms == null ? "—" : l.rtt_avg_ms.toFixed(1).replace(".", ",") + " ms")));
    }
    lt.append(lb);
    body.append(lt);

    body.append(el("h3", {}, "Latence et pertes de la dernière heure"));
    body.append(historyTable(history || []));

    body.append(el("h3", {}, "Trafic des dernières 24 heures par protocole"));
    const protos = traffic ? Object.entries(traffic.by_protocol) : [];
    if (protos.length === 0) {
      body.append(el("p", {}, "Aucun trafic reçu sur cette période."));
    } else {
      const tt = el("table", { id: "site-traffic" }, el("thead", {}, el("tr", {},
        ...["Protocole", "Octets", "Paquets", "Flux"].map((h, k) => el("th", { scope: "col", class: k ? "num" : "" }, h)))));
      const tb = el("tbody");
      for (const [p, c] of protos.sort((a, b) => b[1].bytes - a[1].bytes)) {
        tb.append(el("tr", {}, el("td", {}, PROTOCOLS[p] || "protocole " + p), el("td", { class: "num" }, fmtBytes(c.bytes)),
          el("td", { class: "num" }, fmtInt(c.packets)), el("td", { class: "num" }, fmtInt(c.flows))));
      }
      tt.append(tb);
      body.append(tt);
    }

    body.append(el("h3", {}, "Historique des épisodes (30 jours)"));
    const kinds = { outage: "Coupure", failover: "Bascule sur secours", degraded: "Dégradation", silent: "Sonde muette" };
    if (!eps || eps.length === 0) {
      body.append(el("p", { id: "site-episodes-empty" }, "Aucun épisode sur la période."));
    } else {
      const et = el("table", { id: "site-episodes" }, el("thead", {}, el("tr", {},
        ...["Type", "Début", "Fin", "Durée", "Lien", "Cause"].map((h) => el("th", { scope: "col" }, h)))));
      const eb = el("tbody");
      for (const e of eps.slice().reverse()) {
        eb.append(el("tr", {}, el("td", {}, kinds[e.kind] || e.kind), el("td", {}, fmtTime(Date.parse(e.start))),
          el("td", {}, e.end ? fmtTime(Date.parse(e.end)) : "en cours"), el("td", {}, fmtDuration(e.duration_s * 1000)),
          el("td", {}, e.link || "—"), el("td", {}, e.cause || "")));
      }
      et.append(eb);
      body.append(et);
    }
  } catch (e) {
    body.append(el("p", { role: "alert" }, "Fiche indisponible : " + e.message));
  }
  $("site-body").replaceWith(body);
  if (focus) sec.focus();
}

function init() {
  for (const id of ["f-ministry", "f-departement", "f-state"]) $(id).addEventListener("change", () => { render(); saveHash(); });
  const closeSite = () => { openSite = null; $("site").hidden = true; saveHash(); $("incidents-title").focus(); };
  $("site-close").addEventListener("click", closeSite);
  $("site").addEventListener("keydown", (ev) => { if (ev.key === "Escape") closeSite(); });
  const c = $("map");
  c.addEventListener("click", (ev) => {
    const r = c.getBoundingClientRect();
    const i = siteAt((ev.clientX - r.left) * c.width / r.width, (ev.clientY - r.top) * c.height / r.height);
    if (i >= 0) showSite(i, true);
  });
  $("site-search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = $("f-site").value.trim();
    const i = inv.sites.findIndex((s) => s[0] === q);
    if (i >= 0) showSite(i, true); else $("f-site").setCustomValidity("Site inconnu");
    $("f-site").reportValidity();
  });
  $("f-site").addEventListener("input", () => $("f-site").setCustomValidity(""));
  whoAmI().catch(() => {});
  loadInventory().then(() => { loadHash(); poll(); }, (e) => { $("freshness").textContent = "Erreur : " + e.message; });
}

init();

// --- Resilience investment plan (docs/resilience-plan.md): the national headline and the first
// investments by net yearly benefit over the last 30 days, refreshed every 10 minutes (the plan
// reads 30 days of episodes: no need to poll it like the states).
const PLAN_ROWS = 5;
const PLAN_REFRESH_MS = 10 * 60 * 1000;
const CONFIDENCE = { low: "faible", medium: "moyenne", high: "élevée" };

/** Integer cents as French euros ("1 234,56 €"), without going through a float. */
function fmtCents(c) {
  const a = Math.abs(c);
  return (c < 0 ? "-" : "") + fmtInt(Math.floor(a / 100)) + "," + String(a % 100).padStart(2, "0") + "\u00a0€";
}

async function loadPlan() {
  try {
    const p = await getJson("/api/v1/indicators/resilience-plan?limit=" + PLAN_ROWS);
    $("plan-headline").textContent = p.national.headline;
    const conf = $("plan-confidence");
    conf.textContent = String(p.period.days).replace(".", ",") + " jours d'épisodes, confiance " +
      CONFIDENCE[p.period.confidence] + " ; " + p.national.worthwhile.investments + " investissements rentables sur " +
      p.national.all_candidates.investments + " candidats" + (p.period.low_confidence ? ". " + p.period.warning : ".");
    conf.className = p.period.low_confidence ? "hint low" : "hint";
    const tbody = el("tbody");
    for (const r of p.investments) {
      const offer = r.proposal.technology + (r.proposal.contracted_link ? " (tarif de " + r.proposal.contracted_link + ")" : "");
      tbody.append(el("tr", { "data-site": r.site },
        el("td", {}, r.site + " – " + r.name), el("td", {}, r.ministry), el("td", {}, offer),
        el("td", { class: "num" }, fmtCents(r.yearly_cost_cents)),
        el("td", { class: "num" }, fmtCents(r.value_per_year_cents)),
        el("td", { class: "num" }, fmtCents(r.net_benefit_per_year_cents)),
        el("td", { class: "num" }, r.payback_months == null ? "jamais" : String(r.payback_months).replace(".", ","))));
    }
    $("plan-top").tBodies[0].replaceWith(tbody);
  } catch (e) {
    $("plan-headline").textContent = "Plan indisponible : " + e.message;
  }
}

loadPlan();
setInterval(loadPlan, PLAN_REFRESH_MS);
