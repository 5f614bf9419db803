#!/usr/bin/env bash
# NetFlow over UDP loopback, three collectors side by side in one invocation: for each rate,
# each target gets the same paced stream from the netflow_decode bench's sender (30-record
# datagrams, 64 observation domains, templates first, then SECONDS of data) and the same
# socket receive buffer, one after the other; then a table:
#   rie      a release `rie-collector serve --netflow-listen`, the sender's address (127.0.0.1)
#            declared as a site's exporter (per-site aggregation, directions, top talkers on);
#            counted by what it *stored*: `/api/v1/flows/totals` (records and bytes, compared
#            with what was sent), and its kernel-drop metric
#   nfcapd   nfdump's collector (`-B` socket buffer); counted by `nfdump -R DIR -I`
#   nfacctd  pmacct's collector, minimal: print plugin, aggregate by protocol, CSV every
#            second; counted as the sum of its FLOWS column and BYTES column
# Columns: records sent, received, lost (%), kernel socket drops (datagrams, from
# /proc/net/udp, read before the target stops), the target's CPU time over the run (all its
# processes: user + system, from /proc/PID/stat) and records per CPU-second, and whether the
# received bytes equal the sent bytes ("exact").
#
# Usage: scripts/measure-netflow-collector.sh [RATES="2000000 3000000"] [TARGETS="rie nfcapd nfacctd"]
#   RATES are records/s (30 per datagram). Env: VERSION (9|10, default 9), SECONDS_PER_RUN
#   (default 4), RCVBUF (bytes asked, default 4194304: Linux doubles it, 8 MiB shown by `ss`,
#   and caps it at net.core.rmem_max), DECODE_THREADS (rie, default 1), REPEAT (default 1),
#   NFACCTD_BUFFER (bytes, e.g. 10240: nfacctd's plugin_buffer_size, pipe 1000 times that).
# Needs: cargo build --release -p rie-collector; cargo bench -p rie-flow --bench netflow_decode --no-run
#        nfcapd/nfdump (apt-get install nfdump), nfacctd (apt-get install pmacct).
set -euo pipefail
cd "$(dirname "$0")/.."
rates=${1:-2000000 3000000}
targets=${2:-rie nfcapd nfacctd}
version=${VERSION:-9}
seconds=${SECONDS_PER_RUN:-4}
rcvbuf=${RCVBUF:-4194304}
threads=${DECODE_THREADS:-1}
repeat=${REPEAT:-1}
bench=$(ls -t target/release/deps/netflow_decode-* | grep -v '\.d$' | head -1)
work=$(mktemp -d)
pid=
# nfacctd's core process stops (and flushes its plugins) on SIGINT, not SIGTERM.
stop() { [ -n "$pid" ] && kill -"$1" "$pid" 2>/dev/null; wait 2>/dev/null || true; pid=; }
trap 'stop INT; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# CPU ticks (user + system) of every process in session $1 (each target runs in its own).
session_ticks() {
  python3 - "$1" <<'EOF'
import os, sys
sid, n = sys.argv[1], 0
for p in os.listdir('/proc'):
    if not p.isdigit():
        continue
    try:
        f = open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()
    except OSError:
        continue
    # After the comm: state ppid pgrp session ... utime(12) stime(13) (0-based from state).
    if f[3] == sid:
        n += int(f[11]) + int(f[12])
print(n)
EOF
}

kernel_drops() {
  local port_hex
  port_hex=$(printf '%04X' "$1")
  awk -v p=":$port_hex" '$2 ~ p"$" { print $NF }' /proc/net/udp | head -1
}

# One run: target $1 at $2 records/s; prints one result line (tab-separated).
run() {
  local target=$1 rate=$2 dir to api port
  dir=$(mktemp -d -p "$work")
  case $target in
  rie)
    target/release/rie-collector pki init --dir "$dir/pki" >/dev/null
    mkdir -p "$dir/inv" && cp tests/data/inventory/*.csv "$dir/inv/"
    # The sender (127.0.0.1) is site S1's router; S1's prefix holds part of the generated
    # addresses, so that records get a direction and top talkers, as in production.
    python3 - "$dir/inv/sites.csv" <<'EOF'
import csv, sys
rows = list(csv.reader(open(sys.argv[1], newline='')))
head = rows[0]
if 'site_prefixes' not in head:
    head.append('site_prefixes')
    for r in rows[1:]:
        r.append('')
e, p = head.index('netflow_exporters'), head.index('site_prefixes')
for r in rows[1:]:
    if r[0] == 'S1':
        r[e], r[p] = '127.0.0.1', '0.0.0.0/25'
csv.writer(open(sys.argv[1], 'w', newline='')).writerows(rows)
EOF
    printf '[netflow]\nflush_interval = "1s"\ndecode_threads = %s\nreceive_buffer_bytes = %s\n' \
      "$threads" "$rcvbuf" > "$dir/c.toml"
    setsid target/release/rie-collector --log-level warn serve --config "$dir/c.toml" \
      --data-dir "$dir/data" --inventory "$dir/inv" --pki-dir "$dir/pki" \
      --probe-listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --netflow-listen 127.0.0.1:0 \
      > "$dir/out" 2> "$dir/log" &
    pid=$!
    for _ in $(seq 100); do grep -qs netflow= "$dir/out" && break; sleep 0.1; done
    to=$(grep -o 'netflow=[^ ]*' "$dir/out" | cut -d= -f2)
    api=$(grep -o 'api=[^ ]*' "$dir/out" | cut -d= -f2)
    ;;
  nfcapd)
    port=$(free_port)
    mkdir -p "$dir/flows"
    setsid nfcapd -B "$rcvbuf" -b 127.0.0.1 -p "$port" -w "$dir/flows" > "$dir/log" 2>&1 &
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
      printf 'plugin_buffer_size: %s\nplugin_pipe_size: %s\n' "$NFACCTD_BUFFER" \
        $((NFACCTD_BUFFER * 1000)) >> "$dir/nfacctd.conf"
    fi
    setsid nfacctd -f "$dir/nfacctd.conf" > "$dir/log" 2>&1 &
    pid=$!
    to=127.0.0.1:$port
    sleep 1
    ;;
  *)
    echo "unknown target $target (rie, nfcapd or nfacctd)" >&2
    exit 2
    ;;
  esac
  local t0 sent sent_records sent_bytes drops t1 received bytes
  t0=$(session_ticks "$pid")
  sent=$(NETFLOW_BENCH_SEND=$to NETFLOW_BENCH_RATE=$((rate / 30)) NETFLOW_BENCH_VERSION=$version \
    NETFLOW_BENCH_SECONDS=$seconds "$bench")
  sent_records=$(echo "$sent" | sed -E 's/.*templates. records: ([0-9]+) records.*/\1/')
  sent_bytes=$(echo "$sent" | sed -E 's/.* ([0-9]+) bytes$/\1/')
  sleep 2
  drops=$(kernel_drops "${to##*:}")
  case $target in
  rie)
    # Stored totals (the flush interval is 1 s): wait until two reads agree.
    local last=
    for _ in $(seq 20); do
      received=$(curl -s "http://$api/api/v1/flows/totals?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z" |
        python3 -c 'import json,sys; t=json.load(sys.stdin); print(t["flows"], t["bytes"])')
      [ "$received" = "$last" ] && break
      last=$received
      sleep 1
    done
    bytes=${received#* }
    received=${received% *}
    local metric
    metric=$(curl -s "http://$api/metrics" |
      awk '/^rie_collector_netflow_kernel_drops_total/ { n += $2 } END { printf "%d", n }')
    t1=$(session_ticks "$pid")
    stop TERM
    drops="$drops (metric $metric)"
    ;;
  nfcapd)
    t1=$(session_ticks "$pid")
    stop TERM
    received=$(nfdump -R "$dir/flows" -I | awk '/^Flows:/ { print $2 }')
    bytes=$(nfdump -R "$dir/flows" -I | awk '/^Bytes:/ { print $2 }')
    ;;
  nfacctd)
    sleep 1
    t1=$(session_ticks "$pid")
    stop INT
    local fcol bcol
    fcol=$(head -1 "$dir/print.csv" | tr ',' '\n' | grep -n '^FLOWS$' | cut -d: -f1)
    bcol=$(head -1 "$dir/print.csv" | tr ',' '\n' | grep -n '^BYTES$' | cut -d: -f1)
    received=$(awk -F, -v c="$fcol" '$1 !~ /^[A-Z_]+$/ { n += $c } END { printf "%d", n }' "$dir/print.csv")
    bytes=$(awk -F, -v c="$bcol" '$1 !~ /^[A-Z_]+$/ { n += $c } END { printf "%d", n }' "$dir/print.csv")
    ;;
  esac
  local ticks=$((t1 - t0)) hz
  hz=$(getconf CLK_TCK)
  local lost=$((sent_records - received))
  local exact=no
  [ "$lost" = 0 ] && [ "$bytes" = "$sent_bytes" ] && exact=yes
  printf '%s\t%d\t%d\t%d\t%d\t%.2f %%\t%s\t%.2f s\t%.2f M\t%s\t%s\n' "$target" "$rate" \
    "$sent_records" "$received" "$lost" "$(echo "100 * $lost / $sent_records" | bc -l)" \
    "${drops:-?}" "$(echo "$ticks / $hz" | bc -l)" \
    "$(echo "$received / ($ticks / $hz) / 1000000" | bc -l 2>/dev/null || echo 0)" "$exact" \
    "$(uptime | sed 's/.*load average: //')"
}

echo "NetFlow v$version, $seconds s per run, RCVBUF $rcvbuf (rmem_max $(sysctl -n net.core.rmem_max)), rie decode_threads $threads, $(nproc) cores"
printf 'target\trecords/s\tsent\treceived\tlost\tloss\tkernel drops\tCPU\trec/CPU-s\texact\tload\n'
for _ in $(seq "$repeat"); do
  for rate in $rates; do
    for target in $targets; do
      run "$target" "$rate"
    done
  done
done
