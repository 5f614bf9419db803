#!/usr/bin/env bash
# Stops what start.sh started in DIR (any part of it: safe after a failed start, and twice).
# Patroni nodes first (SIGTERM: each stops its PostgreSQL), then HAProxy and etcd. Whatever
# has not exited after 30 s is killed, and a PostgreSQL left behind is stopped immediately.
# Usage: stop.sh DIR
set -uo pipefail
DIR=${1:?usage: stop.sh DIR}
BIN_DIR=${BIN_DIR:-/usr/lib/postgresql/15/bin}

alive() { kill -0 "$1" 2>/dev/null; }
# stop NAME...: SIGTERM each session, wait for their leaders, SIGKILL what remains.
stop() {
  local pids=() name pid
  for name in "$@"; do
    [ -f "$DIR/$name.pid" ] || continue
    pid=$(cat "$DIR/$name.pid")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    pids+=("$pid")
  done
  for _ in $(seq 300); do
    local left=0
    for pid in "${pids[@]}"; do alive "$pid" && left=1; done
    [ $left = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null; kill -KILL "$pid" 2>/dev/null; done
  for name in "$@"; do rm -f "$DIR/$name.pid"; done
}

nodes=()
for f in "$DIR"/n*.yml; do [ -e "$f" ] && nodes+=("$(basename "$f" .yml)"); done
stop "${nodes[@]}"
for n in "${nodes[@]}"; do
  if [ -f "$DIR/$n/postmaster.pid" ]; then
    if [ "$(id -u)" = 0 ]; then
      runuser -u postgres -- "$BIN_DIR/pg_ctl" -D "$DIR/$n" -m immediate -w -t 30 stop >/dev/null 2>&1
    else
      "$BIN_DIR/pg_ctl" -D "$DIR/$n" -m immediate -w -t 30 stop >/dev/null 2>&1
    fi
  fi
done
stop haproxy etcd
exit 0
