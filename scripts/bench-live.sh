#!/usr/bin/env bash
# Live-capture load test: tcpreplay --topspeed (or --pps RATE) replays a
# capture over a veth pair into `apisensor run` (2 workers) capturing the
# other end inside a network namespace; then the same file goes through
# `apisensor replay` for reference.
#   scripts/bench-live.sh FILE.pcap [PPS...]
# Without PPS values it runs --topspeed once. Prints offered pps, kernel
# drops, queue drops and exchanges recovered vs replay. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh bench
file="$1"; shift || true
rates=("$@"); [ "${#rates[@]}" -gt 0 ] || rates=(topspeed)
cargo build --release --locked -q
bin=$PWD/target/release/apisensor
ns="asbench-$$"
work=$(mktemp -d)
cleanup() {
  set +e
  [ -n "${spid:-}" ] && kill -TERM "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
  ip netns del "$ns" 2>/dev/null
  ip link del asb-out 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
ip link add asb-out type veth peer name asb-in netns "$ns"
ip link set asb-out up mtu 9000
ip netns exec "$ns" ip link set asb-in up mtu 9000
ip netns exec "$ns" ip link set lo up
ref=$("$bin" replay --format none -w 2 "$file" 2>&1 >/dev/null | awk '/^replay:/{print $2, $8}')
ref_packets=${ref% *}; ref_ex=${ref#* }
echo "reference replay: $ref_packets packets, $ref_ex exchanges"
printf '%-10s %12s %14s %12s %12s %12s %10s\n' rate offered_pps kernel_drops queue_drops pcap_recv exchanges vs_replay
for rate in "${rates[@]}"; do
  cat > "$work/s.toml" <<TOML
[pipeline]
workers = 2
queue_batches = ${QUEUE_BATCHES:-256}
[[capture.interfaces]]
name = "asb-in"
promiscuous = true
buffer_bytes = 268435456
[service]
exchanges_path = "$work/ex.jsonl"
stats_interval_secs = 60
TOML
  rm -f "$work/ex.jsonl"
  ip netns exec "$ns" "$bin" --config "$work/s.toml" run 2> "$work/run.err" &
  spid=$!
  sleep 1
  if [ "$rate" = topspeed ]; then opt=--topspeed; else opt="--pps=$rate"; fi
  out=$(tcpreplay -i asb-out $opt "$file" 2>&1)
  pps=$(grep -oE 'Rated: [0-9.]+ Bps, [0-9.]+ Mbps, [0-9.]+ pps' <<<"$out" | awk '{print $6}')
  sleep 2
  kill -TERM "$spid"; wait "$spid"; spid=""
  kd=$(grep -oE 'capture.pcap_dropped_kernel [0-9]+' "$work/run.err" | awk '{print $2}' || true); kd=${kd:-0}
  qd=$(grep -oE 'pipeline.packets_dropped_queue_full=[0-9]+' "$work/run.err" | cut -d= -f2 || true); qd=${qd:-0}
  rx=$(grep -oE 'capture.pcap_received [0-9]+' "$work/run.err" | awk '{print $2}' || true); rx=${rx:-0}
  ex=$(wc -l < "$work/ex.jsonl")
  printf '%-10s %12s %14s %12s %12s %12s %9.1f%%\n' "$rate" "${pps:-?}" "$kd" "$qd" "$rx" "$ex" \
    "$(awk "BEGIN{print 100*$ex/$ref_ex}")"
done
