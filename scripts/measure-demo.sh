#!/usr/bin/env bash
# End-to-end ingest measurement: the demo with N simulated probes (default 14,000) at one batch
# per 10 s, through the real TLS protocol on loopback. Samples the collector process (the demo's
# parent; the probes run in a child process) over a steady window and prints its CPU and RSS.
# Usage: scripts/measure-demo.sh [SITES] [WARMUP_S] [WINDOW_S]
set -euo pipefail
cd "$(dirname "$0")/.."
sites=${1:-14000}; warm=${2:-60}; window=${3:-60}
cargo build --release -p rie-sim >/dev/null
dir=$(mktemp -d)
./target/release/rie-sim --log-level warn demo --sites "$sites" --interval 10s \
  --duration "$((warm + window + 15))s" --dir "$dir" --api-listen 127.0.0.1:0 >"$dir/out" 2>"$dir/err" &
pid=$!
tick=$(getconf CLK_TCK)
cpu() { awk -v t="$tick" '{print ($14+$15)/t}' "/proc/$1/stat"; }
sleep "$warm"
child=$(pgrep -P "$pid" | head -1)
c1=$(cpu "$pid"); k1=$(cpu "$child"); t1=$(date +%s.%N)
sleep "$window"
c2=$(cpu "$pid"); k2=$(cpu "$child"); t2=$(date +%s.%N)
rss=$(awk '/VmHWM/{print $2}' "/proc/$pid/status")
crss=$(awk '/VmHWM/{print $2}' "/proc/$child/status")
wait "$pid"
grep -E '^\[' "$dir/out" | tail -3
echo "collector: $(echo "($c2-$c1)/($t2-$t1)" | bc -l | cut -c1-5) cores, peak RSS $((rss / 1024)) MiB"
echo "simulated probes: $(echo "($k2-$k1)/($t2-$t1)" | bc -l | cut -c1-5) cores, peak RSS $((crss / 1024)) MiB"
echo "warnings: $(grep -c WARN "$dir/err" || true)"
tail -1 "$dir/out"
rm -rf "$dir"
