#!/usr/bin/env bash
# National-scale load test: a release `rie-collector serve` on a generated 14,000-site inventory,
# and `rie-sim loadgen` (another process, same machine) with N simulated probes at one
# batch per interval through the real TLS protocol. Prints the load generator's JSON report
# (batches/s, ack latency p50/p99/max, produced/acked/stored) and the collector's CPU over a
# steady window and its peak RSS.
# Usage: scripts/measure-loadgen.sh [PROBES] [DURATION_S] [INFLUX_V2_URL]
#   DATA_PARENT=/dev/shm puts the collector's database on tmpfs (isolates fsync from a busy disk).
#   With INFLUX_V2_URL (e.g. a local VictoriaMetrics), the InfluxDB sink is on.
#   INTERVAL=2s raises the load (one batch per probe per INTERVAL; default 10s).
set -euo pipefail
cd "$(dirname "$0")/.."
probes=${1:-14000}; duration=${2:-90}; influx=${3:-}
cargo build --release -p rie-collector -p rie-sim >/dev/null
bin=./target/release/rie-collector
sim=./target/release/rie-sim
dir=$(mktemp -d -p "${DATA_PARENT:-/tmp}")
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
$bin inventory generate --sites "$probes" --seed 1 --out "$dir/inv" >/dev/null
$bin pki init --dir "$dir/pki" >/dev/null
cat >"$dir/collector.toml" <<EOF
data_dir = "$dir/data"
inventory = "$dir/inv"
[probes]
listen = "127.0.0.1:0"
# Each process stays within the machine's hard limit of 20,000 open files.
max_connections = $((probes + 1000))
[api]
listen = "127.0.0.1:0"
[tls]
pki_dir = "$dir/pki"
EOF
if [ -n "$influx" ]; then
  printf '[influx]\nurl = "%s"\norg = "rie"\nbucket = "telemetry"\ntoken = "t"\n' "$influx" >>"$dir/collector.toml"
fi
$bin --log-level warn serve --config "$dir/collector.toml" >"$dir/serve.out" 2>"$dir/serve.err" &
pid=$!
for _ in $(seq 50); do grep -q listening "$dir/serve.out" 2>/dev/null && break; sleep 0.2; done
probe_addr=$(grep -o 'probes=[^ ]*' "$dir/serve.out" | cut -d= -f2)
api_addr=$(grep -o 'api=[^ ]*' "$dir/serve.out" | cut -d= -f2)
tick=$(getconf CLK_TCK)
cpu() { awk -v t="$tick" '{print ($14+$15)/t}' "/proc/$1/stat"; }
$sim --log-level warn loadgen --probes "$probes" --interval "${INTERVAL:-10s}" --duration "${duration}s" \
  --address "$probe_addr" --ca "$dir/pki/ca.pem" --data-dir "$dir/data" --inventory "$dir/inv" \
  --metrics "http://$api_addr/metrics" >"$dir/report.json" 2>"$dir/loadgen.err" &
lg=$!
# Steady window: after the fleet has connected (20 s), until 10 s before the end.
sleep 20
c1=$(cpu "$pid"); t1=$(date +%s.%N)
sleep $((duration - 30))
c2=$(cpu "$pid"); t2=$(date +%s.%N)
wait "$lg"
rss=$(awk '/VmHWM/{print $2}' "/proc/$pid/status")
cat "$dir/report.json"
cat "$dir/loadgen.err"
echo "collector: $(echo "($c2-$c1)/($t2-$t1)" | bc -l | cut -c1-5) cores over the steady window, peak RSS $((rss / 1024)) MiB"
echo "collector warnings/errors: $(grep -cE 'WARN|ERROR' "$dir/serve.err" || true)"
# The most frequent ones, without their variable fields.
grep -E 'WARN|ERROR' "$dir/serve.err" | sed -E 's/\x1b\[[0-9;]*m//g; s/^[^ ]+ +//; s/[0-9]+/N/g' | cut -c1-160 | sort | uniq -c | sort -rn | head -5 || true
# Group commits (fsync included) slower than 250 ms explain ack-latency spikes on a shared disk.
curl -s "http://$api_addr/metrics" | awk '
  /^rie_collector_store_commit_seconds_bucket\{le="0.25"\}/ {fast=$2}
  /^rie_collector_store_commit_seconds_count/ {n=$2}
  /^rie_collector_store_commit_seconds_sum/ {sum=$2}
  END {printf "store commits: %d, mean %.1f ms, slower than 250 ms: %d\n", n, 1000*sum/n, n-fast}'

if [ -n "$influx" ]; then
  curl -s "http://$api_addr/metrics" | grep -E '^rie_collector_influx_' || true
  # Probes have stopped: how long the sink takes to empty its backlog (its throughput).
  b0=$(curl -s "http://$api_addr/metrics" | awk '/^rie_collector_influx_points_buffered /{print $2}')
  t0=$(date +%s.%N)
  for _ in $(seq 120); do
    b=$(curl -s "http://$api_addr/metrics" | awk '/^rie_collector_influx_points_buffered /{print $2}')
    [ "$b" = 0 ] && break
    sleep 0.5
  done
  echo "influx backlog $b0 -> $b in $(echo "$(date +%s.%N)-$t0" | bc -l | cut -c1-5) s"
fi
