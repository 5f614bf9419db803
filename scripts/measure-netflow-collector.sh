#!/usr/bin/env bash
# NetFlow over UDP loopback: the netflow_decode bench's paced stream (30-record datagrams,
# 64 observation domains, templates first, then 5 s of data) sent to one collector, which
# then reports how many flow records it received:
#   rie      a release `rie-collector serve --netflow-listen` (fixture inventory, fresh PKI and
#            database); counted by its rie_collector_netflow_records_total
#   nfcapd   nfdump's collector (`-B` socket buffer as below); counted by `nfdump -R DIR -I`
#   nfacctd  pmacct's collector, minimal: print plugin, aggregate by protocol, CSV every
#            second; counted as the sum of its FLOWS column (reference: the records the
#            plugin accounted, after the core process and its pipe)
# All three ask for the same socket receive buffer (RCVBUF, default 16 MiB); Linux caps it at
# net.core.rmem_max (printed below). Prints one line: target, offered, sent, received, lost.
#
# Usage: scripts/measure-netflow-collector.sh [DATAGRAMS_PER_S=10000] [VERSION=9|10]
#                                             [DECODE_THREADS=2] [TARGET=rie|nfcapd|nfacctd]
# Needs: cargo build --release -p rie-collector; cargo bench -p rie-flow --bench netflow_decode --no-run
#        nfcapd/nfdump (apt-get install nfdump), nfacctd (apt-get install pmacct) for those targets.
# Env:   RCVBUF (bytes, default 16777216); NFACCTD_BUFFER (bytes, e.g. 10240): nfacctd's
#        plugin_buffer_size, with plugin_pipe_size 1000 times that (default: unbuffered, 4 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-10000}
version=${2:-9}
threads=${3:-2}
target=${4:-rie}
rcvbuf=${RCVBUF:-16777216}
bench=$(ls -t target/release/deps/netflow_decode-* | grep -v '\.d$' | head -1)
dir=$(mktemp -d)
pid=
# nfacctd's core process stops (and flushes its plugins) on SIGINT, not SIGTERM.
stop() { [ -n "$pid" ] && kill -"$1" "$pid" 2>/dev/null; wait 2>/dev/null || true; pid=; }
trap 'stop INT; [ -n "${KEEP:-}" ] || rm -rf "$dir"' EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

case $target in
rie)
  target/release/rie-collector pki init --dir "$dir/pki" >/dev/null
  mkdir -p "$dir/inv" && cp tests/data/inventory/*.csv "$dir/inv/"
  printf '[netflow]\nflush_interval = "1s"\ndecode_threads = %s\nreceive_buffer_bytes = %s\n' \
    "$threads" "$rcvbuf" > "$dir/c.toml"
  target/release/rie-collector serve --config "$dir/c.toml" --data-dir "$dir/data" \
    --inventory "$dir/inv" --pki-dir "$dir/pki" --probe-listen 127.0.0.1:0 \
    --api-listen 127.0.0.1:0 --netflow-listen 127.0.0.1:0 > "$dir/out" 2> "$dir/log" &
  pid=$!
  for _ in $(seq 50); do grep -q netflow= "$dir/out" && break; sleep 0.1; done
  to=$(grep -o 'netflow=[^ ]*' "$dir/out" | cut -d= -f2)
  api=$(grep -o 'api=[^ ]*' "$dir/out" | cut -d= -f2)
  ;;
nfcapd)
  port=$(free_port)
  mkdir -p "$dir/flows"
  nfcapd -B "$rcvbuf" -b 127.0.0.1 -p "$port" -w "$dir/flows" > "$dir/log" 2>&1 &
  pid=$!
  to=127.0.0.1:$port
  sleep 1
  ;;
nfacctd)
  port=$(free_port)
  cat > "$dir/nfacctd.conf" <<EOF
daemonize: false
nfacctd_ip: 127.0.0.1
nfacctd_port: $port
nfacctd_pipe_size: $rcvbuf
plugins: print
aggregate: proto, flows
print_output: csv
print_output_file: $dir/print.csv
print_output_file_append: true
print_refresh_time: 1
EOF
  if [ -n "${NFACCTD_BUFFER:-}" ]; then
    # pmacct's advice for heavy loads: buffer the core-to-plugin queue, ratio 1:1000.
    printf 'plugin_buffer_size: %s\nplugin_pipe_size: %s\n' "$NFACCTD_BUFFER" \
      $((NFACCTD_BUFFER * 1000)) >> "$dir/nfacctd.conf"
  fi
  nfacctd -f "$dir/nfacctd.conf" > "$dir/log" 2>&1 &
  pid=$!
  to=127.0.0.1:$port
  sleep 1
  ;;
*)
  echo "unknown target $target (rie, nfcapd or nfacctd)" >&2
  exit 2
  ;;
esac

sent=$(NETFLOW_BENCH_SEND=$to NETFLOW_BENCH_RATE=$rate NETFLOW_BENCH_VERSION=$version "$bench")
sent_records=$(echo "$sent" | sed -E 's/^sent [0-9]+ datagrams, ([0-9]+) records.*/\1/')
# The 64 template datagrams carry 30 records each too.
sent_records=$((sent_records + 64 * 30))
sleep 3
# What the kernel dropped on the socket (buffer full), from /proc/net/udp: the rest of the
# loss, if any, happened inside the collector (nfacctd: between its core process and plugin).
port_hex=$(printf '%04X' "${to##*:}")
kernel_drops=$(awk -v p=":$port_hex" '$2 ~ p"$" { print $NF }' /proc/net/udp | head -1)

case $target in
rie)
  received=$(curl -s "http://$api/metrics" |
    awk '/^rie_collector_netflow_records_total/ { n += $2 } END { printf "%d", n }')
  ;;
nfcapd)
  stop TERM
  received=$(nfdump -R "$dir/flows" -I | awk '/^Flows:/ { print $2 }')
  ;;
nfacctd)
  sleep 1
  stop INT
  col=$(head -1 "$dir/print.csv" | tr ',' '\n' | grep -n '^FLOWS$' | cut -d: -f1)
  received=$(awk -F, -v c="$col" '$1 != "PROTOCOL" && $1 !~ /^[A-Z_]+$/ { n += $c } END { printf "%d", n }' "$dir/print.csv")
  ;;
esac
lost=$((sent_records - received))
printf '%s: v%s, %d records/s offered (%d datagrams/s), rmem_max %s, sent %d records, received %d, lost %d (%.1f %%; kernel socket drops: %s datagrams)%s\n' \
  "$target" "$version" $((rate * 30)) "$rate" "$(sysctl -n net.core.rmem_max)" "$sent_records" \
  "$received" "$lost" "$(echo "100 * $lost / $sent_records" | bc -l)" "${kernel_drops:-?}" \
  "$([ "$target" = rie ] && echo ", decode_threads=$threads")"
