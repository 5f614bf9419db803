#!/usr/bin/env bash
# Status page at national scale: the demo with N simulated sites (default 14,000; probes speak
# the real protocol), the page opened in headless Chromium through chromedriver, then in the
# page: size and fetch time of /api/v1/status and /api/v1/status/sites, and the time of one full
# redraw (counters, 14,000 dots, incident list), averaged over 20 redraws.
# Usage: scripts/measure-status-page.sh [SITES] [WARMUP_S]   (needs chromium, chromium-driver, jq)
set -euo pipefail
cd "$(dirname "$0")/.."
sites=${1:-14000}; warm=${2:-60}
cargo build -p rie-sim >/dev/null
dir=$(mktemp -d)
port=$((20000 + RANDOM % 20000)); dport=$((port + 1))
./target/debug/rie-sim --log-level warn demo --sites "$sites" --interval 30s --incident-rate 0.01 \
  --duration "$((warm + 120))s" --dir "$dir" --api-listen "127.0.0.1:$port" >"$dir/out" 2>"$dir/err" &
demo=$!
chromedriver --port="$dport" >/dev/null 2>&1 &
drv=$!
trap 'kill $demo $drv 2>/dev/null || true; rm -rf "$dir"' EXIT
sleep "$warm"
wd="http://127.0.0.1:$dport"
sid=$(curl -s "$wd/session" -d '{"capabilities":{"alwaysMatch":{"goog:chromeOptions":{"binary":"/usr/bin/chromium",
  "args":["--headless","--no-sandbox","--disable-gpu","--disable-background-networking","--no-first-run",
  "--window-size=1400,1100","--user-data-dir='"$dir"'/profile"]}}}}' | jq -r .value.sessionId)
curl -s "$wd/session/$sid/url" -d "{\"url\":\"http://127.0.0.1:$port/\"}" >/dev/null
sleep 5
script='const done = arguments[0]; (async () => {
  const t = async (u) => { const a = performance.now(); const b = await (await fetch(u)).text(); return [b.length, performance.now() - a]; };
  const [ss, st] = await t("/api/v1/status"); const [is, it] = await t("/api/v1/status/sites");
  const a = performance.now(); for (let k = 0; k < 20; k++) render(); const r = (performance.now() - a) / 20;
  done({status_bytes: ss, status_ms: Math.round(st), sites_bytes: is, sites_ms: Math.round(it), render_ms: +r.toFixed(1),
        incidents: document.querySelectorAll("#incidents tbody tr[data-site]").length, sites: inv.sites.length});
})();'
curl -s "$wd/session/$sid/execute/async" -d "$(jq -n --arg s "$script" '{script: $s, args: []}')" | jq -c .value
curl -s -X DELETE "$wd/session/$sid" >/dev/null
grep -E '^\[' "$dir/out" | tail -1
