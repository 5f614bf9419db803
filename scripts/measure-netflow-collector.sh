#!/usr/bin/env bash
# NetFlow over UDP loopback into the real collector: a release `rie-collector serve
# --netflow-listen` (fixture inventory, fresh PKI and database) receives the netflow_decode
# bench's paced stream (30-record datagrams, 64 observation domains) for 5 s; prints the
# records sent and the records the collector decoded (rie_collector_netflow_records_total).
#
# Usage: scripts/measure-netflow-collector.sh [DATAGRAMS_PER_S=10000] [VERSION=9|10] [DECODE_THREADS=2]
# Needs: cargo build --release -p rie-collector; cargo bench -p rie-probe --bench netflow_decode --no-run
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-10000}
version=${2:-9}
threads=${3:-2}
bench=$(ls -t target/release/deps/netflow_decode-* | grep -v '\.d$' | head -1)
dir=$(mktemp -d)
trap 'kill -TERM $pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
target/release/rie-collector pki init --dir "$dir/pki" >/dev/null
mkdir -p "$dir/inv" && cp tests/data/inventory/*.csv "$dir/inv/"
printf '[netflow]\nflush_interval = "1s"\ndecode_threads = %s\n' "$threads" > "$dir/c.toml"
target/release/rie-collector serve --config "$dir/c.toml" --data-dir "$dir/data" \
  --inventory "$dir/inv" --pki-dir "$dir/pki" --probe-listen 127.0.0.1:0 \
  --api-listen 127.0.0.1:0 --netflow-listen 127.0.0.1:0 > "$dir/out" 2> "$dir/log" &
pid=$!
for _ in $(seq 50); do grep -q netflow= "$dir/out" && break; sleep 0.1; done
nf=$(grep -o 'netflow=[^ ]*' "$dir/out" | cut -d= -f2)
api=$(grep -o 'api=[^ ]*' "$dir/out" | cut -d= -f2)
NETFLOW_BENCH_SEND=$nf NETFLOW_BENCH_RATE=$rate NETFLOW_BENCH_VERSION=$version "$bench"
sleep 3
echo "decode_threads=$threads, collector decoded:"
curl -s "http://$api/metrics" | grep -E '^rie_collector_netflow_records_total|^rie_collector_decode_errors_total\{reason="no_template"\}'
