// RIE status page, probe fleet section: polls /api/v1/fleet every FLEET_POLL_MS and shows the
// probes by version and protocol version, how many report a spool backlog (and whose keeps
// growing), and the probes with the longest backlog; polls /api/v1/plans/rollouts (NOC and
// admin; hidden for other roles) and shows the latest check plan rollout wave by wave. Loaded after app.js, whose helpers ($, el,
// fmtInt, fmtBytes, apiFetch, showSite, inv) it uses. No external code.
"use strict";

const FLEET_POLL_MS = 30000;
const FLEET_ROWS = 10;

function fleetTable(id, caption, heads, rows) {
  return el("table", { id },
    el("caption", {}, caption),
    el("thead", {}, el("tr", {}, ...heads.map((h, k) => el("th", { scope: "col", class: k ? "num" : "" }, h)))),
    el("tbody", {}, ...rows));
}

function renderFleet(j) {
  const c = j.counts;
  const n = (k, one, many) => fmtInt(k) + " " + (k > 1 ? many : one);
  $("fleet-summary").textContent = n(c.sites, "site", "sites") + " ; " +
    n(c.reporting_health, "sonde rend compte de son état", "sondes rendent compte de leur état") + " ; " +
    n(c.with_backlog, "avec des lots en attente", "avec des lots en attente") +
    " (" + n(c.spool_batches, "lot", "lots") + "), dont " + fmtInt(c.backlog_growing) + " en hausse.";
  const versions = Object.entries(c.by_probe_version)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([v, n]) => el("tr", {}, el("td", {}, v === "none" ? "jamais connectée" : v), el("td", { class: "num" }, fmtInt(n))));
  const protocols = Object.entries(c.by_protocol_version)
    .map(([v, n]) => el("tr", {}, el("td", {}, v === "none" ? "protocole : inconnu" : "protocole " + v), el("td", { class: "num" }, fmtInt(n))));
  $("fleet-versions").replaceWith(fleetTable("fleet-versions", "Sondes par version", ["Version", "Sites"], versions.concat(protocols)));
  const rows = j.probes
    .filter((p) => p.health && p.health.spool_batches > 0)
    .slice(0, FLEET_ROWS)
    .map((p) => {
      const i = inv.sites.findIndex((s) => s[0] === p.id);
      const link = el("a", { href: "#site=" + p.id }, p.id + " — " + p.name);
      link.addEventListener("click", (e) => { e.preventDefault(); if (i >= 0) showSite(i, true); });
      return el("tr", { class: p.health.backlog_growing ? "growing" : "" },
        el("td", {}, link),
        el("td", { class: "num" }, fmtInt(p.health.spool_batches) + (p.health.backlog_growing ? " ↑" : "")),
        el("td", { class: "num" }, fmtBytes(p.health.spool_bytes)),
        el("td", { class: "num" }, p.probe_version || "–"));
    });
  $("fleet-backlog").replaceWith(fleetTable("fleet-backlog", "Files d'attente les plus longues",
    ["Site", "Lots", "Taille", "Version"], rows));
  $("fleet-backlog-empty").hidden = rows.length > 0;
}

async function pollFleet() {
  try {
    const r = await apiFetch("/api/v1/fleet?limit=" + FLEET_ROWS, { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    renderFleet(await r.json());
  } catch (e) {
    $("fleet-summary").textContent = "Parc indisponible : " + e.message;
  } finally {
    setTimeout(pollFleet, FLEET_POLL_MS);
  }
}

const ROLLOUT_STATES = {
  preparing: "en préparation", running: "en cours", halted: "ARRÊTÉ", done: "terminé", rolled_back: "annulé (retour au plan précédent)",
};

// The API names waves in English ("canary", "wave 2 (50%)").
function waveName(n) {
  return n === "canary" ? "canari" : n.replace(/^wave (\d+) \((.*)%\)$/, "vague $1 ($2 %)");
}

function renderRollout(j) {
  const r = j.rollouts[0];
  $("rollout").hidden = !r;
  if (!r) return;
  const p = r.progress;
  $("rollout-summary").textContent = "Déploiement n° " + r.id + " du plan v" + r.version + " (" + r.scope + ") : " +
    (ROLLOUT_STATES[r.state] || r.state) + ", " + waveName(r.wave_name) + ". Sites servis : " + fmtInt(p.released) +
    " sur " + fmtInt(p.scope_sites) + " ; refus : " + fmtInt(p.refused) + " ; dégradés ou coupés après application : " +
    fmtInt(p.bad) + "." + (r.reason ? " " + r.reason : "");
  $("rollout-summary").className = r.state === "halted" ? "halted" : "";
  const rows = p.waves.map((w) => el("tr", { class: w.released ? "" : "waiting" },
    el("td", {}, waveName(w.name)), el("td", { class: "num" }, fmtInt(w.sites)),
    ...(w.released ? [w.applied, w.pending, w.refused, w.bad].map((n) => el("td", { class: "num" }, fmtInt(n)))
      : [el("td", { class: "num", colspan: "4" }, "pas encore servie")])));
  $("rollout-waves").replaceWith(fleetTable("rollout-waves", "Avancement par vague",
    ["Vague", "Sites", "Appliqué", "En attente", "Refusé", "Dégradé après"], rows));
}

async function pollRollout() {
  try {
    const r = await apiFetch("/api/v1/plans/rollouts", { cache: "no-store" });
    if (r.status === 403) return; // Not for this role: the section stays hidden, no polling.
    if (!r.ok) throw new Error("HTTP " + r.status);
    renderRollout(await r.json());
  } catch (e) {
    $("rollout-summary").textContent = "Déploiement indisponible : " + e.message;
  }
  setTimeout(pollRollout, FLEET_POLL_MS / 3);
}

pollFleet();
pollRollout();
