#!/usr/bin/env bash
# Starts the example stack in DIR: one etcd member, one Patroni-managed PostgreSQL node per
# port of PG_PORTS, and HAProxy leading HAPROXY_PORT to the primary. Every process runs in its
# own session; its pid is in DIR/<name>.pid for stop.sh. Returns once the cluster has a
# primary, a synchronous standby, the database DB_NAME, and HAProxy leads to the primary.
#
# A demonstration and test stack on one machine (all on 127.0.0.1). For production, run each
# node on its own machine from the same templates (see README.md), with three etcd members.
#
# Usage: start.sh DIR    (as root: PostgreSQL and Patroni then run as user postgres)
# Environment (defaults in brackets):
#   PG_PORTS ["5433 5434"]  API_PORTS ["8008 8009"]  one per node, same order
#   ETCD_CLIENT_PORT [2379]  ETCD_PEER_PORT [2380]  HAPROXY_PORT [5000]
#   SUPERUSER_PASSWORD, REPLICATION_PASSWORD (required)   DB_NAME [rie]
#   TTL [30]  LOOP_WAIT [10]  RETRY_TIMEOUT [10]   BIN_DIR [/usr/lib/postgresql/15/bin]
set -euo pipefail

DIR=${1:?usage: start.sh DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
PG_PORTS=${PG_PORTS:-"5433 5434"}
API_PORTS=${API_PORTS:-"8008 8009"}
ETCD_CLIENT_PORT=${ETCD_CLIENT_PORT:-2379}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-2380}
HAPROXY_PORT=${HAPROXY_PORT:-5000}
DB_NAME=${DB_NAME:-rie}
TTL=${TTL:-30}
LOOP_WAIT=${LOOP_WAIT:-10}
RETRY_TIMEOUT=${RETRY_TIMEOUT:-10}
BIN_DIR=${BIN_DIR:-/usr/lib/postgresql/15/bin}
: "${SUPERUSER_PASSWORD:?set SUPERUSER_PASSWORD}" "${REPLICATION_PASSWORD:?set REPLICATION_PASSWORD}"

missing=()
for b in patroni patronictl etcd haproxy curl; do
  command -v "$b" >/dev/null || missing+=("$b")
done
[ -x "$BIN_DIR/postgres" ] || missing+=("$BIN_DIR/postgres")
if [ ${#missing[@]} -gt 0 ]; then
  echo "missing: ${missing[*]}: apt-get install patroni etcd-server etcd-client haproxy postgresql-15 curl" >&2
  exit 3
fi

read -r -a pg_ports <<<"$PG_PORTS"
read -r -a api_ports <<<"$API_PORTS"
[ ${#pg_ports[@]} -eq ${#api_ports[@]} ] || { echo "PG_PORTS and API_PORTS differ in length" >&2; exit 2; }

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$DIR"
  runuser -u postgres -- test -w "$DIR" || {
    echo "$DIR is not reachable by user postgres (a parent directory is private): use a directory postgres can enter" >&2
    exit 2
  }
fi
# Every wait has a deadline: wait SECONDS WHAT COMMAND...
wait_for() {
  local t=$1 what=$2; shift 2
  if ! timeout "$t" bash -c "until $*; do sleep 0.1; done"; then
    echo "timed out after ${t}s waiting for $what; logs in $DIR" >&2
    for log in "$DIR"/*.log; do echo "--- $log" >&2; tail -n 15 "$log" >&2; done
    exit 1
  fi
}
# Starts a command in its own session, logging to DIR/NAME.log, pid in DIR/NAME.pid.
spawn() {
  local name=$1; shift
  setsid "$@" >"$DIR/$name.log" 2>&1 < /dev/null &
  echo $! >"$DIR/$name.pid"
}

etcd_hosts=127.0.0.1:$ETCD_CLIENT_PORT
spawn etcd etcd --name e1 --data-dir "$DIR/etcd" \
  --listen-client-urls "http://$etcd_hosts" --advertise-client-urls "http://$etcd_hosts" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "e1=http://127.0.0.1:$ETCD_PEER_PORT"
wait_for 20 etcd "curl -sf http://$etcd_hosts/health >/dev/null"

cp "$HERE/haproxy.cfg.in" "$DIR/haproxy.cfg"
sed -i "s|@PRIMARY_LISTEN@|127.0.0.1:$HAPROXY_PORT|" "$DIR/haproxy.cfg"
for i in "${!pg_ports[@]}"; do
  n=n$((i + 1))
  sed -e "s|@NAME@|$n|g; s|@SCOPE@|rie|g; s|@API_LISTEN@|127.0.0.1:${api_ports[$i]}|g" \
      -e "s|@PG_LISTEN@|127.0.0.1:${pg_ports[$i]}|g; s|@ETCD_HOSTS@|$etcd_hosts|g" \
      -e "s|@DATA_DIR@|$DIR/$n|g; s|@RUN_DIR@|$DIR|g; s|@BIN_DIR@|$BIN_DIR|g" \
      -e "s|@CLIENT_NET@|127.0.0.1/32|g; s|@SUPERUSER_PASSWORD@|$SUPERUSER_PASSWORD|g" \
      -e "s|@REPLICATION_PASSWORD@|$REPLICATION_PASSWORD|g; s|@TTL@|$TTL|g" \
      -e "s|@LOOP_WAIT@|$LOOP_WAIT|g; s|@RETRY_TIMEOUT@|$RETRY_TIMEOUT|g" \
      "$HERE/patroni.yml.in" >"$DIR/$n.yml"
  chmod 600 "$DIR/$n.yml"
  [ "$(id -u)" = 0 ] && chown postgres: "$DIR/$n.yml"
  echo "  server $n 127.0.0.1:${pg_ports[$i]} check port ${api_ports[$i]}" >>"$DIR/haproxy.cfg"
done

# The first node bootstraps the cluster and becomes primary; the others clone it.
for i in "${!pg_ports[@]}"; do
  n=n$((i + 1))
  # Debian's python3, which has Patroni's modules (an earlier python3 on PATH may not).
  if [ "$(id -u)" = 0 ]; then
    spawn "$n" runuser -u postgres -- /usr/bin/python3 "$(command -v patroni)" "$DIR/$n.yml"
  else
    spawn "$n" /usr/bin/python3 "$(command -v patroni)" "$DIR/$n.yml"
  fi
  if [ "$i" = 0 ]; then
    wait_for 60 "$n to become primary" "curl -sf http://127.0.0.1:${api_ports[$i]}/primary >/dev/null"
  else
    wait_for 60 "$n to replicate" "curl -sf http://127.0.0.1:${api_ports[$i]}/replica >/dev/null"
  fi
done
# Strict synchronous mode: no write commits before a standby is synchronous.
wait_for 60 "a synchronous standby" \
  "for p in ${api_ports[*]:1}; do curl -sf http://127.0.0.1:\$p/sync >/dev/null && exit 0; done; false"

if ! as_pg "$BIN_DIR/psql" -X -h "$DIR" -p "${pg_ports[0]}" -U postgres -d postgres -Atc \
    "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep -q 1; then
  as_pg "$BIN_DIR/psql" -X -q -h "$DIR" -p "${pg_ports[0]}" -U postgres -d postgres \
    -c "CREATE DATABASE $DB_NAME"
fi

spawn haproxy haproxy -f "$DIR/haproxy.cfg" -db
# HAProxy counts a server up until its first checks fail: ready once several sessions in a
# row (balanced over all servers still up) all reach the primary.
on_primary="PGPASSWORD='$SUPERUSER_PASSWORD' $BIN_DIR/psql -X -h 127.0.0.1 -p $HAPROXY_PORT -U postgres -d $DB_NAME -Atc 'SELECT pg_is_in_recovery()' 2>/dev/null | grep -qx f"
wait_for 20 "HAProxy to lead only to the primary" \
  "(for k in \$(seq $((2 * ${#pg_ports[@]} + 2))); do $on_primary || exit 1; done)"
echo "ready: primary at 127.0.0.1:$HAPROXY_PORT (database $DB_NAME); patronictl -c $DIR/n1.yml list"
