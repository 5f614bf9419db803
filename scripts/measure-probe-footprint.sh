#!/usr/bin/env bash
# Probe footprint while metering live traffic, next to softflowd metering the same traffic.
# Two network namespaces joined by a veth (created here, removed at exit); a collector and the
# probe run in namespace A, the probe capturing the veth; softflowd captures the same veth and
# exports NetFlow v9 to a local UDP sink. Namespace B sends UDP to A at about RATE Mbit/s spread
# over FLOWS destination ports (so FLOWS active flows) for SECONDS. Prints CPU (share of one
# core) and peak RSS of both meters over the steady window. Needs root, iproute2, softflowd,
# python3. Usage: scripts/measure-probe-footprint.sh [RATE_MBIT] [FLOWS] [SECONDS]
# With CHECKS=1 the probe also runs its link checks over the veth as a site would (link S1-P;
# ICMP, TCP and HTTP targets every 10 s, 5 attempts each, against a Python server in B).
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-100}; flows=${2:-10000}; secs=${3:-30}
cargo build --release -p rie-collector -p rie-probe >/dev/null
work=$(mktemp -d); a=rie-fp-a-$$; b=rie-fp-b-$$
cleanup() { kill $(jobs -p) 2>/dev/null || true; ip netns del "$a" 2>/dev/null || true; ip netns del "$b" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ip netns add "$a"; ip netns add "$b"
ip link add fpa netns "$a" type veth peer name fpb netns "$b"
ip -n "$a" addr add 10.97.0.1/24 dev fpa; ip -n "$b" addr add 10.97.0.2/24 dev fpb
for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
ip -n "$a" link set fpa up; ip -n "$b" link set fpb up
./target/release/rie-collector pki init --dir "$work/pki" >/dev/null
common=(--data-dir "$work/data" --inventory tests/data/inventory --pki-dir "$work/pki")
ip netns exec "$a" ./target/release/rie-collector --log-level warn serve "${common[@]}" \
  --probe-listen 127.0.0.1:7443 --api-listen 127.0.0.1:8480 >/dev/null 2>&1 &
sleep 1
./target/release/rie-collector probe-config "${common[@]}" --site S1 --address 127.0.0.1:7443 --out "$work/p.toml" >/dev/null
sed -i "s#/var/lib/rie-probe#$work/probe#" "$work/p.toml"
printf '\n[capture]\ninterfaces = ["fpa"]\n[meter]\nsite_prefixes = ["10.97.0.1/32"]\n' >> "$work/p.toml"
if [ "${CHECKS:-0}" = 1 ]; then
  (cd "$work" && exec ip netns exec "$b" python3 -m http.server -b 10.97.0.2 8080 >/dev/null 2>&1) &
  cat >> "$work/p.toml" <<TOML
[[links]]
id = "S1-P"
role = "primary"
interface = "fpa"
[checks]
interval = "10s"
attempts = 5
timeout = "1s"
[[checks.targets]]
kind = "icmp"
target = "10.97.0.2"
name = "pop"
[[checks.targets]]
kind = "tcp"
target = "10.97.0.2:8080"
name = "tcp"
[[checks.targets]]
kind = "http"
target = "http://10.97.0.2:8080/"
name = "http"
TOML
fi
ip netns exec "$a" ./target/release/rie-probe --log-level warn run --config "$work/p.toml" 2>"$work/probe.log" &
probe=$!
ip netns exec "$a" softflowd -d -i fpa -n 127.0.0.1:9995 -v 9 -c none -t maxlife=60 >/dev/null 2>&1 &
sfd=$!
sleep 2
cat > "$work/gen.py" <<PY
import socket, time
rate = $rate * 1_000_000 / 8; flows = $flows; secs = $secs; size = 1000
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = bytes(size - 28)
end = time.time() + secs; sent = 0; start = time.time(); port = 0
while time.time() < end:
    for _ in range(100):
        s.sendto(payload, ("10.97.0.1", 20000 + port)); port = (port + 1) % flows; sent += size
    ahead = sent / rate - (time.time() - start)
    if ahead > 0: time.sleep(ahead)
print(f"sent {sent * 8 / (time.time() - start) / 1e6:.1f} Mbit/s")
PY
ip netns exec "$b" python3 "$work/gen.py" > "$work/gen.out" &
gen=$!
tick=$(getconf CLK_TCK)
cpu() { awk -v t="$tick" '{print ($14+$15)/t}' "/proc/$1/stat"; }
pid_of() { pgrep -P "$1" | head -1 || echo "$1"; }   # ip netns exec may exec directly
pp=$probe; sp=$sfd
sleep 5
p1=$(cpu "$pp"); s1=$(cpu "$sp"); t1=$(date +%s.%N)
sleep $((secs - 10))
p2=$(cpu "$pp"); s2=$(cpu "$sp"); t2=$(date +%s.%N)
prss=$(awk '/VmHWM/{print $2}' "/proc/$pp/status"); srss=$(awk '/VmHWM/{print $2}' "/proc/$sp/status")
wait "$gen"
cat "$work/gen.out"
echo "rie-probe : $(echo "100*($p2-$p1)/($t2-$t1)" | bc -l | cut -c1-5) % of one core, peak RSS $((prss / 1024)) MiB"
echo "softflowd : $(echo "100*($s2-$s1)/($t2-$t1)" | bc -l | cut -c1-5) % of one core, peak RSS $((srss / 1024)) MiB"
sleep 2
m() { awk -v n="$1" '$1 ~ "^"n"[{]" {print $2}' "$work/probe/metrics.prom"; }
echo "rie-probe : $(m rie_probe_capture_packets_total) IP packets captured, $(m rie_probe_capture_kernel_drops_total) dropped by the kernel"
grep -i "error\|warn" "$work/probe.log" | head -3 || true
