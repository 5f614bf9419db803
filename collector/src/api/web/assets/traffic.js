// RIE status page, national traffic section: polls /api/v1/national/traffic every
// TRAFFIC_POLL_MS for the chosen window (last hour or day) and draws the traffic in and out as
// an inline SVG chart (average rate per bucket), the window's totals, the top sites by traffic
// and the sites of current incidents by agents affected. Loaded after app.js, whose helpers
// ($, el, fmtBytes, fmtInt, showSite, inv, STATE_NAMES) it uses. No external code.
"use strict";

const TRAFFIC_POLL_MS = 10000;
const SVG_NS = "http://www.w3.org/2000/svg";
const CHART = { w: 900, h: 220, left: 70, right: 10, top: 12, bottom: 28 };
const SERIES = [
  { key: "inbound_bytes", name: "Entrant", cls: "in" },
  { key: "outbound_bytes", name: "Sortant", cls: "out" },
  { key: "unknown_bytes", name: "Sens inconnu", cls: "unknown" },
];
const STATE_CODES = ["up", "degraded", "on_backup", "down", "silent", "unknown"];
let trafficWindow = "1h";
let trafficTimer = null;

/** Bits per second with a French decimal comma: "6,9 kbit/s". */
function fmtRate(bps) {
  const u = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"];
  let k = 0;
  while (bps >= 1000 && k < u.length - 1) { bps /= 1000; k++; }
  return (k ? bps.toFixed(1).replace(".", ",") : String(Math.round(bps))) + " " + u[k];
}

function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text != null) e.textContent = text;
  return e;
}

const fmtHourMin = (s) => new Date(s * 1000).toLocaleTimeString("fr-FR", { hour: "2-digit", minute: "2-digit" });

/** The chart: one line per direction (unknown only when some), rate = bytes * 8 / bucket. */
function trafficChart(j) {
  const { w, h, left, right, top, bottom } = CHART;
  const shown = SERIES.filter((s) => s.key !== "unknown_bytes" || j.totals.unknown_bytes > 0);
  const rate = (b, s) => b[s.key] * 8 / j.bucket_s;
  const peak = Math.max(0, ...j.buckets.flatMap((b) => shown.map((s) => rate(b, s))));
  const ymax = peak || 1;
  const x = (k) => left + (w - left - right) * (j.buckets.length > 1 ? k / (j.buckets.length - 1) : 0);
  const y = (v) => top + (h - top - bottom) * (1 - v / ymax);
  const label = "Trafic national " + (j.window === "1h" ? "de la dernière heure" : "des dernières 24 heures") +
    " : " + shown.map((s) => s.name.toLowerCase() + " " + fmtBytes(j.totals[s.key])).join(", ") + " ; pic " + fmtRate(peak) + ".";
  const root = svgEl("svg", { id: "traffic-chart", viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": label,
    "data-peak-bps": peak, "data-buckets": j.buckets.length });
  root.append(svgEl("rect", { x: left, y: top, width: w - left - right, height: h - top - bottom, class: "frame" }));
  for (const f of [0, 0.5, 1]) {
    root.append(svgEl("line", { x1: left, x2: w - right, y1: y(ymax * f), y2: y(ymax * f), class: "grid" }));
    root.append(svgEl("text", { x: left - 6, y: y(ymax * f) + 4, class: "axis", "text-anchor": "end" }, fmtRate(peak * f)));
  }
  const n = j.buckets.length;
  for (const k of [0, Math.floor(n / 2), n - 1]) {
    if (n === 0) break;
    root.append(svgEl("text", { x: x(k), y: h - 8, class: "axis", "text-anchor": k === 0 ? "start" : k === n - 1 ? "end" : "middle" }, fmtHourMin(j.buckets[k].start)));
  }
  for (const s of shown) {
    const pts = j.buckets.map((b, k) => x(k).toFixed(1) + "," + y(rate(b, s)).toFixed(1)).join(" ");
    root.append(svgEl("polyline", { points: pts, class: "series " + s.cls, "data-series": s.cls }));
  }
  return root;
}

function siteButton(s) {
  const label = s.name ? s.id + " — " + s.name : s.id;
  const b = el("button", { type: "button", "data-site": s.id }, label);
  b.addEventListener("click", () => {
    const i = inv.sites.findIndex((x) => x[0] === s.id);
    if (i >= 0) showSite(i, true);
  });
  return b;
}

const siteTotal = (s) => s.inbound_bytes + s.outbound_bytes + s.unknown_bytes;

function trafficTable(id, caption, heads, rows) {
  const t = el("table", { id }, el("caption", {}, caption),
    el("thead", {}, el("tr", {}, ...heads.map((hd, k) => el("th", { scope: "col", class: k ? "num" : "" }, hd)))));
  const tb = el("tbody");
  for (const r of rows) tb.append(r);
  t.append(tb);
  return t;
}

function renderTraffic(j) {
  $("traffic-chart").replaceWith(trafficChart(j));
  for (const s of SERIES) {
    const e = $("traffic-total-" + s.cls);
    e.textContent = fmtBytes(j.totals[s.key]);
    e.setAttribute("data-bytes", String(j.totals[s.key]));
  }
  $("traffic-total-unknown").parentElement.hidden = j.totals.unknown_bytes === 0;
  $("traffic-peak").textContent = $("traffic-chart").getAttribute("data-peak-bps") > 0 ? fmtRate(+$("traffic-chart").getAttribute("data-peak-bps")) : "—";

  const top = j.top_sites_by_traffic.map((s) => el("tr", { "data-site": s.id },
    el("td", {}, siteButton(s)),
    el("td", { class: "num", "data-bytes": String(s.inbound_bytes) }, fmtBytes(s.inbound_bytes)),
    el("td", { class: "num", "data-bytes": String(s.outbound_bytes) }, fmtBytes(s.outbound_bytes)),
    el("td", { class: "num", "data-bytes": String(siteTotal(s)) }, fmtBytes(siteTotal(s)))));
  $("top-traffic").replaceWith(trafficTable("top-traffic", "Sites au trafic le plus élevé",
    ["Site", "Entrant", "Sortant", "Total"], top));
  $("top-traffic-empty").hidden = top.length > 0;

  const aff = j.top_sites_by_agents_affected.map((s) => {
    const code = STATE_CODES.indexOf(s.state);
    return el("tr", { "data-site": s.id },
      el("td", {}, siteButton(s)),
      el("td", { class: "state s" + code }, STATE_NAMES[code] || s.state),
      el("td", { class: "num" }, fmtInt(s.agents)),
      el("td", { class: "num", "data-bytes": String(siteTotal(s)) }, fmtBytes(siteTotal(s))));
  });
  $("top-affected").replaceWith(trafficTable("top-affected", "Sites en incident, par agents affectés",
    ["Site", "État", "Agents", "Trafic"], aff));
  $("top-affected-empty").hidden = aff.length > 0;
  $("traffic-affected").textContent = fmtInt(j.agents_affected) + " agents sur " + fmtInt(j.incidents) +
    (j.incidents > 1 ? " sites en incident" : " site en incident");
  $("traffic-freshness").textContent = "Mis à jour à " + new Date().toLocaleTimeString("fr-FR");
}

async function pollTraffic() {
  clearTimeout(trafficTimer);
  const asked = trafficWindow;
  try {
    const r = await apiFetch("/api/v1/national/traffic?window=" + asked, { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    const j = await r.json();
    // A click on the other window while this answer was on its way: drop it.
    if (asked === trafficWindow) renderTraffic(j);
  } catch (e) {
    $("traffic-freshness").textContent = "Trafic indisponible : " + e.message;
  } finally {
    trafficTimer = setTimeout(pollTraffic, TRAFFIC_POLL_MS);
  }
}

function initTraffic() {
  for (const [id, win] of [["tw-1h", "1h"], ["tw-1d", "1d"]]) {
    $(id).addEventListener("click", () => {
      trafficWindow = win;
      for (const b of ["tw-1h", "tw-1d"]) $(b).setAttribute("aria-pressed", String(b === id));
      pollTraffic();
    });
  }
  pollTraffic();
}

initTraffic();
