#!/usr/bin/env bash
# Time for a new check plan to reach a national fleet: a release `rie-collector serve` on a
# generated inventory, `rie-sim loadgen` with N simulated probes (another process, same
# machine, real TLS protocol version 2), then, once every probe is connected, `rie-collector
# plan add` of a national plan and then of a plan for one ministry; for each, the time from
# the command's return until /api/v1/plans counts every concerned probe as `applied`.
# Usage: scripts/measure-plans.sh [PROBES] [DURATION_S]
set -euo pipefail
cd "$(dirname "$0")/.."
probes=${1:-14000}; duration=${2:-120}
[ -n "${NO_BUILD:-}" ] || cargo build --release -p rie-collector -p rie-sim >/dev/null
bin=./target/release/rie-collector
sim=./target/release/rie-sim
dir=$(mktemp -d -p "${DATA_PARENT:-/tmp}")
trap 'kill "$pid" "$lg" 2>/dev/null || true; rm -rf "$dir"' EXIT
$bin inventory generate --sites "$probes" --seed 1 --out "$dir/inv" >/dev/null
$bin pki init --dir "$dir/pki" >/dev/null
cat >"$dir/collector.toml" <<EOT
data_dir = "$dir/data"
inventory = "$dir/inv"
[probes]
listen = "127.0.0.1:0"
max_connections = $((probes + 1000))
[api]
listen = "127.0.0.1:0"
[tls]
pki_dir = "$dir/pki"
EOT
$bin --log-level warn serve --config "$dir/collector.toml" >"$dir/serve.out" 2>"$dir/serve.err" &
pid=$!
for _ in $(seq 50); do grep -q listening "$dir/serve.out" 2>/dev/null && break; sleep 0.2; done
probe_addr=$(grep -o 'probes=[^ ]*' "$dir/serve.out" | cut -d= -f2)
api_addr=$(grep -o 'api=[^ ]*' "$dir/serve.out" | cut -d= -f2)
$sim --log-level warn loadgen --probes "$probes" --interval 10s --duration "${duration}s" \
  --address "$probe_addr" --ca "$dir/pki/ca.pem" --data-dir "$dir/data" --inventory "$dir/inv" \
  >"$dir/report.json" 2>"$dir/loadgen.err" &
lg=$!
connected() { curl -s "http://$api_addr/healthz" | sed -E 's/.*"probes_connected":([0-9]+).*/\1/'; }
for _ in $(seq 600); do [ "$(connected)" = "$probes" ] && break; sleep 0.2; done
echo "probes connected: $(connected)"
applied() { curl -s "http://$api_addr/api/v1/plans" | sed -E 's/.*"applied":([0-9]+).*/\1/'; }
# Time from the end of `plan add` until `applied` reaches $1.
measure() {
  local want=$1 t0 n
  t0=$(date +%s.%N)
  for _ in $(seq 600); do
    n=$(applied); [ "$n" -ge "$want" ] && break; sleep 0.1
  done
  echo "$n applied after $(echo "$(date +%s.%N)-$t0" | bc -l | cut -c1-5) s"
}
cat >"$dir/national.toml" <<EOT
[primary]
interval = "10s"
attempts = 5
timeout = "1s"
max_loss_pct = 2.0
max_rtt_ms = 150
[[primary.targets]]
kind = "icmp"
target = "10.255.0.1"
name = "core"
[[primary.targets]]
kind = "dns"
target = "10.255.0.53"
query = "rie.gouv.fr"
EOT
$bin plan add --config "$dir/collector.toml" "$dir/national.toml" --scope national
echo "national plan: $(measure "$probes")"
ministry=$(awk -F, 'NR==2{print $3}' "$dir/inv/sites.csv")
printf '[primary]\ninterval = "30s"\n' >"$dir/ministry.toml"
$bin plan add --config "$dir/collector.toml" "$dir/ministry.toml" --scope "ministry:$ministry"
# The ministry's sites move to version 2: done when none is left outdated (answered 1) or
# pending, once the collector has loaded version 2.
state() { curl -s "http://$api_addr/api/v1/plans" | sed -E "s/.*\"$1\":([0-9]+).*/\1/"; }
t0=$(date +%s.%N)
for _ in $(seq 300); do [ "$(state outdated)" != 0 ] || [ "$(state pending)" != 0 ] && break; sleep 0.05; done
for _ in $(seq 600); do [ "$(state outdated)" = 0 ] && [ "$(state pending)" = 0 ] && break; sleep 0.1; done
n=$(curl -s "http://$api_addr/api/v1/plans?state=applied" | grep -o '"effective_version":2,"state":"applied","reported_version":2' | wc -l)
echo "ministry $ministry plan: $n sites applied version 2 after $(echo "$(date +%s.%N)-$t0" | bc -l | cut -c1-5) s; applied in all: $(state applied)"
echo "collector warnings/errors: $(grep -cE 'WARN|ERROR' "$dir/serve.err" || true)"
curl -s "http://$api_addr/metrics" | grep -E '^rie_collector_plan' || true
