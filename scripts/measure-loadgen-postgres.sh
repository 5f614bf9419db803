#!/usr/bin/env bash
# National-scale load test on the PostgreSQL store: a PostgreSQL 15 server of its own (temporary
# directory on loopback, optionally with a synchronous standby), COLLECTORS release
# `rie-collector serve` processes sharing it, and `rie-sim loadgen` (another process, same
# machine) with PROBES simulated probes spread over the collectors, one batch per INTERVAL
# through the real TLS protocol. Prints the load generator's JSON report (ack latency p50/p99/
# max, produced/acked/stored), then CPU over the steady window and memory of each collector and
# of PostgreSQL (all its processes), and the database and WAL growth converted to a day.
# Usage: scripts/measure-loadgen-postgres.sh [PROBES] [DURATION_S] [COLLECTORS] [INTERVAL]
#   STANDBY=1 adds a synchronous standby (synchronous_commit=on, as in production).
#   Needs postgresql-15 (Debian) and root (PostgreSQL runs as the postgres user).
set -euo pipefail
cd "$(dirname "$0")/.."
probes=${1:-14000}; duration=${2:-90}; ncol=${3:-1}; interval=${4:-10s}
pgbin=/usr/lib/postgresql/15/bin
[ -x "$pgbin/postgres" ] || { echo "PostgreSQL 15 server missing: apt-get install postgresql-15" >&2; exit 2; }
cargo build --release -p rie-collector -p rie-sim >/dev/null
bin=./target/release/rie-collector
sim=./target/release/rie-sim
dir=$(mktemp -d -p "${DATA_PARENT:-/tmp}")
chmod 755 "$dir"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for d in "$dir/pg" "$dir/standby"; do
    [ -f "$d/postmaster.pid" ] && runuser -u postgres -- "$pgbin/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
  done
  rm -rf "$dir"
}
trap cleanup EXIT
asu() { runuser -u postgres -- "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# PostgreSQL: durable settings (fsync, synchronous_commit on), sized for this machine.
pgport=$(free_port)
# PostgreSQL refuses to run as root: its directories belong to postgres.
mkdir "$dir/pgsock" "$dir/pg" "$dir/standby" "$dir/pglog"
chown postgres: "$dir/pgsock" "$dir/pg" "$dir/standby" "$dir/pglog"
chmod 700 "$dir/pg" "$dir/standby"
asu "$pgbin/initdb" -N -D "$dir/pg" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
cat >>"$dir/pg/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $pgport
unix_socket_directories = '$dir/pgsock'
max_connections = 200
shared_buffers = 512MB
synchronous_commit = on
EOF
if [ "${STANDBY:-0}" = 1 ]; then
  echo "synchronous_standby_names = 'FIRST 1 (standby1)'" >>"$dir/pg/postgresql.conf"
fi
asu "$pgbin/pg_ctl" -D "$dir/pg" -l "$dir/pglog/pg.log" -w start >/dev/null
psql_() { psql -h 127.0.0.1 -p "$pgport" -U postgres -Atq "$@"; }
psql_ -d postgres -c "CREATE DATABASE rie"
if [ "${STANDBY:-0}" = 1 ]; then
  sport=$(free_port)
  asu "$pgbin/pg_basebackup" -d "host=127.0.0.1 port=$pgport user=postgres application_name=standby1" \
    -D "$dir/standby" -R -X stream -c fast
  printf "port = %s\nsynchronous_standby_names = ''\n" "$sport" >>"$dir/standby/postgresql.auto.conf"
  asu "$pgbin/pg_ctl" -D "$dir/standby" -l "$dir/pglog/standby.log" -w start >/dev/null
  timeout 20 bash -c "until [ \"\$(psql -h 127.0.0.1 -p $pgport -U postgres -Atc 'select sync_state from pg_stat_replication' postgres)\" = sync ]; do sleep 0.1; done"
fi
url="postgresql://postgres@127.0.0.1:$pgport/rie"

$bin inventory generate --sites "$probes" --seed 1 --out "$dir/inv" >/dev/null
$bin pki init --dir "$dir/pki" >/dev/null
addrs=(); metrics=()
for i in $(seq "$ncol"); do
  cat >"$dir/collector-$i.toml" <<EOF
data_dir = "$dir/data-$i"
inventory = "$dir/inv"
[probes]
listen = "127.0.0.1:0"
# Each process stays within the machine's hard limit of 20,000 open files.
max_connections = $((probes + 1000))
[api]
listen = "127.0.0.1:0"
[tls]
pki_dir = "$dir/pki"
[store]
backend = "postgres"
[store.postgres]
url = "$url"
EOF
  $bin --log-level warn serve --config "$dir/collector-$i.toml" >"$dir/serve-$i.out" 2>"$dir/serve-$i.err" &
  pids+=($!)
  for _ in $(seq 100); do grep -q listening "$dir/serve-$i.out" 2>/dev/null && break; sleep 0.2; done
  addrs+=("$(grep -o 'probes=[^ ]*' "$dir/serve-$i.out" | cut -d= -f2)")
  metrics+=("http://$(grep -o 'api=[^ ]*' "$dir/serve-$i.out" | cut -d= -f2)/metrics")
done
tick=$(getconf CLK_TCK)
pg_pids() { local pm; pm=$(head -1 "$dir/pg/postmaster.pid"); echo "$pm $(pgrep -P "$pm" | tr '\n' ' ')"; }
cpu() { local t=0; for p in "$@"; do t=$(awk -v t="$t" -v k="$tick" '{print t+($14+$15)/k}' "/proc/$p/stat" 2>/dev/null || echo "$t"); done; echo "$t"; }
size() { psql_ -d rie -c "SELECT pg_database_size('rie')"; }
wal() { psql_ -d rie -c "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"; }
$sim --log-level warn loadgen --probes "$probes" --interval "$interval" --duration "${duration}s" \
  --collector "$(IFS=,; echo "${addrs[*]}")" --ca "$dir/pki/ca.pem" --data-dir "$dir/data-1" \
  --collector-config "$dir/collector-1.toml" --inventory "$dir/inv" \
  --metrics "$(IFS=,; echo "${metrics[*]}")" >"$dir/report.json" 2>"$dir/loadgen.err" &
lg=$!
# Steady window: after the fleet has connected (20 s), until 10 s before the end.
sleep 20
pgp1=$(pg_pids)
declare -a c1
for i in $(seq "$ncol"); do c1[$i]=$(cpu "${pids[$((i - 1))]}"); done
p1=$(cpu $pgp1); s1=$(size); w1=$(wal); t1=$(date +%s.%N)
sleep $((duration - 30))
declare -a c2
for i in $(seq "$ncol"); do c2[$i]=$(cpu "${pids[$((i - 1))]}"); done
p2=$(cpu $pgp1 $(pgrep -P "$(head -1 "$dir/pg/postmaster.pid")" | tr '\n' ' ')); s2=$(size); w2=$(wal); t2=$(date +%s.%N)
pss=0; for p in $(pg_pids); do
  v=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0); pss=$((pss + ${v:-0})); done
wait "$lg"
cat "$dir/report.json"
cat "$dir/loadgen.err"
span=$(echo "$t2-$t1" | bc -l)
for i in $(seq "$ncol"); do
  rss=$(awk '/VmHWM/{print $2}' "/proc/${pids[$((i - 1))]}/status")
  echo "collector $i: $(echo "(${c2[$i]}-${c1[$i]})/$span" | bc -l | cut -c1-5) cores over the steady window, peak RSS $((rss / 1024)) MiB, warnings/errors: $(grep -cE 'WARN|ERROR' "$dir/serve-$i.err" || true)"
done
echo "postgresql: $(echo "($p2-$p1)/$span" | bc -l | cut -c1-5) cores (all its processes; backends that ended in the window are not counted), PSS $((pss / 1024)) MiB${STANDBY:+ (primary only; a synchronous standby ran too)}"
echo "database: $(size) bytes now; grew $(echo "($s2-$s1)/$span*86400/1048576" | bc -l | cut -c1-7) MiB/day, WAL $(echo "($w2-$w1)/$span*86400/1073741824" | bc -l | cut -c1-7) GiB/day at this load"
for m in "${metrics[@]}"; do
  curl -s "$m" | awk '
    /^rie_collector_store_commit_seconds_bucket\{le="0.25"\}/ {fast=$2}
    /^rie_collector_store_commit_seconds_count/ {n=$2}
    /^rie_collector_store_commit_seconds_sum/ {sum=$2}
    /^rie_collector_store_stale_mark_conflicts_total/ {stale=$2}
    END {printf "store commits: %d, mean %.1f ms, slower than 250 ms: %d, stale-mark conflicts: %d\n", n, 1000*sum/n, n-fast, stale}'
done
