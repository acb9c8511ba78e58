#!/usr/bin/env bash
# Soak: replays PCAP again and again in ONE `apisensor replay` process for
# MINUTES (each pass follows the previous one in packet time; flow state is
# carried over, never reset between passes), samples the process's resident
# memory every 10 s into a CSV, and prints min/max RSS after the warm-up.
#
#   scripts/soak.sh PCAP [MINUTES]        (default 30)
#
# Environment: SOAK_DIR (default target/soak), WARMUP_SECS (default 300),
# SOAK_CONFIG (a sensor.toml to use), SOAK_WORKERS, SOAK_INTERVAL_SECS (10).
# The benchmark capture: /work/bench/api-1.pcap (regenerate with
# `OUT_DIR=/work/bench bash ../shared/scripts/make_pcap.sh`).
set -euo pipefail
pcap="${1:?usage: scripts/soak.sh PCAP [MINUTES]}"
minutes="${2:-30}"
cd "$(dirname "$0")/.."
dir="${SOAK_DIR:-target/soak}"
warmup="${WARMUP_SECS:-300}"
interval="${SOAK_INTERVAL_SECS:-10}"
mkdir -p "$dir"
cargo build --release --locked -q
args=(replay --loop-for-secs "$((minutes * 60))" -o /dev/null --stats-json "$dir/stats.json")
[ -n "${SOAK_CONFIG:-}" ] && args=(--config "$SOAK_CONFIG" "${args[@]}")
[ -n "${SOAK_WORKERS:-}" ] && args+=(--workers "$SOAK_WORKERS")
csv="$dir/rss.csv"
echo "elapsed_secs,rss_kib,hwm_kib" >"$csv"
start=$(date +%s)
target/release/apisensor "${args[@]}" "$pcap" 2>"$dir/stderr.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' INT TERM
while kill -0 "$pid" 2>/dev/null; do
    if [ -r "/proc/$pid/status" ]; then
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        [ -n "$rss" ] && echo "$(( $(date +%s) - start )),$rss,$hwm" >>"$csv"
    fi
    sleep "$interval"
done
wait "$pid"
echo "soak: $(grep -c . "$csv") samples in $csv; $(head -1 "$dir/stderr.log")"
awk -F, -v w="$warmup" 'NR > 1 && $1 >= w {
        if (min == "" || $2 < min) min = $2; if ($2 > max) max = $2; n++ }
    NR > 1 && $1 < w { if ($2 > wmax) wmax = $2 }
    END { if (n == 0) { print "soak: no samples after the warm-up"; exit 1 }
          printf "soak: warm-up (< %d s) max RSS %.1f MiB; after warm-up (%d samples) min %.1f MiB, max %.1f MiB, growth %.1f%%\n",
                 w, wmax / 1024, n, min / 1024, max / 1024, (max - min) * 100 / min }' "$csv"
python3 - "$dir/stats.json" <<'PY' || true
import json, sys
d = json.load(open(sys.argv[1]))
s = d["stats"]
print("soak: passes %d, packets %d, exchanges %d, flows created %d, idle-evicted %d, capacity-evicted %d, reused %d, closed %d"
      % (d.get("passes", 1), s["decode"]["packets"], d["exchanges_written"], s["flow"]["flows_created"],
         s["flow"]["flows_evicted_idle"], s["flow"]["flows_evicted_capacity"], s["flow"]["flows_reused_by_syn"], s["flow"]["flows_closed"]))
PY
