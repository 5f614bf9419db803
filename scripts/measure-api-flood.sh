#!/usr/bin/env bash
# Does a flood of bad requests slow authenticated ones? A release collector on the generated
# national inventory (14,000 sites, API requiring tokens), then `rie-sim api-flood`: p50/p99 of
# an authenticated GET (from 127.0.0.2) without and during BAD_RATE bad requests/s (from
# 127.0.0.1), once with no token (401) and once with a wrong token (401, then 429 once the
# address is limited). Prints the two JSON reports.
# Usage: scripts/measure-api-flood.sh [BAD_RATE] [PHASE] [PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-2000}; phase=${2:-20s}; path=${3:-/api/v1/sites}
cargo build --release --locked -p rie-collector -p rie-sim >/dev/null
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
c=./target/release/rie-collector
$c inventory generate --sites 14000 --seed 1 --out "$dir/inv" >/dev/null
$c pki init --dir "$dir/pki" >/dev/null
printf '[auth]\nrequired = true\n' >"$dir/collector.toml"
args=(--config "$dir/collector.toml" --data-dir "$dir/data" --inventory "$dir/inv" --pki-dir "$dir/pki")
token=$($c token create --role noc --name flood "${args[@]}" 2>/dev/null)
$c --log-level warn serve "${args[@]}" --probe-listen 127.0.0.1:0 --api-listen 127.0.0.1:18480 >"$dir/out" 2>"$dir/err" &
pid=$!
until curl -sf http://127.0.0.1:18480/healthz >/dev/null; do sleep 0.2; done
for bad in missing token; do
  ./target/release/rie-sim --log-level warn api-flood --api http://127.0.0.1:18480 --path "$path" \
    --token "$token" --bad "$bad" --bad-rate "$rate" --phase "$phase"
done
echo "collector peak RSS $(($(awk '/VmHWM/{print $2}' "/proc/$pid/status") / 1024)) MiB"
