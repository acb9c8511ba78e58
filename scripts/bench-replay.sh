#!/usr/bin/env bash
# Replay benchmark: apisensor against tcpdump on the same file, same session.
#   scripts/bench-replay.sh FILE.pcap [RUNS]
# Without FILE it generates the benchmark capture with ../shared/scripts/make_pcap.sh
# into target/bench-pcap/ first (needs root: network namespaces).
# Prints packets/s, Gbit/s, exchanges/s, peak RSS and the ratio to tcpdump for
# 1 and 2 workers, with JSON output to /dev/null and with --format none.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh bench
file="${1:-}"
runs="${2:-3}"
if [ -z "$file" ]; then
  mkdir -p target/bench-pcap
  file=target/bench-pcap/api-1.pcap
  [ -f "$file" ] || OUT_DIR=target/bench-pcap bash ../shared/scripts/make_pcap.sh
fi
cargo build --release --locked -q
bin=target/release/apisensor
cat "$file" > /dev/null # page cache: both tools read from memory

measure() { # label, command...: best wall time of $runs and its peak RSS
  local label="$1"; shift
  local best="" rss="" out
  for _ in $(seq "$runs"); do
    out=$( { /usr/bin/time -f "TIME %e %M" "$@" > /dev/null 2> /tmp/bench-stderr.$$; } 2>&1; cat /tmp/bench-stderr.$$ )
    local t m
    t=$(grep '^TIME' <<<"$out" | awk '{print $2}')
    m=$(grep '^TIME' <<<"$out" | awk '{print $3}')
    if [ -z "$best" ] || awk "BEGIN{exit !($t < $best)}"; then best=$t; rss=$m; fi
  done
  echo "$label $best $rss"
  rm -f /tmp/bench-stderr.$$
}

ref=$(measure tcpdump tcpdump -r "$file" -w /dev/null)
ref_t=$(awk '{print $2}' <<<"$ref")
npk=$($bin replay --format none -w 1 "$file" 2>&1 >/dev/null | awk '/^replay:/{print $2}')
bytes=$(stat -c %s "$file")
printf '%-28s %8s %12s %9s %14s %10s %7s\n' run secs packets/s Gbit/s exchanges/s peakRSS_MB ratio
printf '%-28s %8s %12.0f %9.2f %14s %10.1f %7s\n' tcpdump "$ref_t" "$(awk "BEGIN{print $npk/$ref_t}")" \
  "$(awk "BEGIN{print $bytes*8/$ref_t/1e9}")" - "$(awk "BEGIN{print $(awk '{print $3}' <<<"$ref")/1024}")" 1.00
for workers in 1 2; do
  for format in none json; do
    r=$(measure x "$bin" replay --format "$format" -w "$workers" "$file")
    t=$(awk '{print $2}' <<<"$r"); m=$(awk '{print $3}' <<<"$r")
    ex=$("$bin" replay --format none -w "$workers" "$file" 2>&1 >/dev/null | sed -n 's/.* flows, \([0-9]*\) exchanges.*/\1/p')
    printf '%-28s %8s %12.0f %9.2f %14.0f %10.1f %7.2f\n' "apisensor -w $workers --format $format" "$t" \
      "$(awk "BEGIN{print $npk/$t}")" "$(awk "BEGIN{print $bytes*8/$t/1e9}")" "$(awk "BEGIN{print $ex/$t}")" \
      "$(awk "BEGIN{print $m/1024}")" "$(awk "BEGIN{print $ref_t/$t}")"
  done
done
