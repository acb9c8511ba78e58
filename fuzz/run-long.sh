#!/usr/bin/env bash
# Long local fuzzing campaign: builds every target once (ASan), snapshots the
# binaries (so a rebuild meanwhile cannot disturb a run), then runs each
# target for SECONDS (default 600), one after another, under `nice -n 10`.
# New inputs go to fuzz/corpus/<target>, crashes to fuzz/artifacts/<target>/.
# Prints one Markdown table row per target with libFuzzer's final numbers
# (for the table in fuzz/README.md; CPU s needs /usr/bin/time) and exits non-zero if any target crashed.
#
#   fuzz/run-long.sh [SECONDS] [TARGET...]
#
# Environment: FUZZ_SANITIZER (address | none), CARGO_TARGET_DIR, NO_BUILD=1.
set -uo pipefail

secs="${1:-600}"
shift || true
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$(dirname "$here")"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}"
san="${FUZZ_SANITIZER:-address}"
if [ $# -gt 0 ]; then targets=("$@"); else
    targets=(decode reassembly flow http1 http1_stream pipeline config classify)
fi
triple="$(rustc -vV | sed -n 's/^host: //p')"
# The binaries run directly, not through `cargo fuzz run`, so they need the
# ASan option cargo-fuzz sets itself: libdeflate (behind libdeflater) builds
# its decompressor template twice (generic and BMI2), each copy with its own
# function-local `static const` table of the same name, which ASan's ODR
# check reports at start-up although the two are distinct objects.
if [ "$san" = address ]; then
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0"
fi
if [ "${NO_BUILD:-0}" != 1 ]; then
    cargo fuzz build --sanitizer "$san" || exit 1
fi
bin="$CARGO_TARGET_DIR/long-bin"
logs="$CARGO_TARGET_DIR/long-logs"
mkdir -p "$bin" "$logs"
failed=()
echo "| target | date | wall s | CPU s | executions | cov | ft | corpus | result |"
echo "|---|---|---|---|---|---|---|---|---|"
for t in "${targets[@]}"; do
    cp "$CARGO_TARGET_DIR/$triple/release/$t" "$bin/$t"
    mkdir -p "$here/corpus/$t" "$here/artifacts/$t"
    dict=()
    case "$t" in http1|http1_stream|pipeline|flow) dict=(-dict="$here/dicts/http.dict") ;; esac
    log="$logs/$t.log"
    start=$(date +%s)
    timer=()
    command -v /usr/bin/time >/dev/null && timer=(/usr/bin/time -f '%U %S' -o "$logs/$t.time")
    "${timer[@]}" nice -n 10 "$bin/$t" "$here/corpus/$t" "$here/seeds/$t" "${dict[@]}" \
        -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$here/artifacts/$t/" >"$log" 2>&1
    rc=$?
    took=$(( $(date +%s) - start ))
    last="$(grep -a -E '^#[0-9]+' "$log" | grep -a 'cov:' | tail -1)"
    execs="$(grep -a -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')"
    cov="$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")"
    ft="$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")"
    corp="$(sed -n 's/.*corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")"
    cpu="$(awk '{printf "%d", $1 + $2}' "$logs/$t.time" 2>/dev/null)"
    result=ok
    if [ $rc -ne 0 ]; then result="CRASH (exit $rc, $log)"; failed+=("$t"); fi
    echo "| \`$t\` | $(date -u +%F) | $took | ${cpu:-?} | ${execs:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | $result |"
done
if [ ${#failed[@]} -gt 0 ]; then echo "FAILED: ${failed[*]}" >&2; exit 1; fi
