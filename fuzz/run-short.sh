#!/usr/bin/env bash
# Builds every fuzz target and runs each for N seconds (default 20); exits
# non-zero if any target crashes (panic, sanitizer report, timeout, OOM) or
# if a saved reproducer in fuzz/regressions/ still fails.
#
#   fuzz/run-short.sh [SECONDS]
#
# Environment:
#   FUZZ_SANITIZER    address (default) or none (no ASan: faster, panics only)
#   SKIP_REGRESSIONS  1 = do not replay fuzz/regressions/*.bin
#   CARGO_TARGET_DIR  default fuzz/target
# Works on a stable toolchain: RUSTC_BOOTSTRAP=1 lets it take the nightly-only
# -Z flags cargo-fuzz passes. Needs `cargo install cargo-fuzz --locked`.
set -uo pipefail

secs="${1:-20}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
cd "$repo"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}"
san="${FUZZ_SANITIZER:-address}"
# One entry per fuzz target (fuzz/Cargo.toml's [[bin]]s).
targets=(decode reassembly flow http1 http1_stream pipeline config classify)

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "cargo-fuzz missing: cargo install cargo-fuzz --locked" >&2
    exit 2
fi

start=$(date +%s)
echo "== build (sanitizer: $san)"
cargo fuzz build --sanitizer "$san" || exit 1

logs="$here/target/run-short-logs"
mkdir -p "$logs"
failed=()

if [ "${SKIP_REGRESSIONS:-0}" != 1 ]; then
    for f in "$here"/regressions/*.bin; do
        [ -e "$f" ] || continue
        t="$(basename "$f")"; t="${t%%-*}"
        log="$logs/regression-$(basename "$f").log"
        if cargo fuzz run --sanitizer "$san" "$t" "$f" -- -runs=1 >"$log" 2>&1; then
            echo "== regression $(basename "$f"): passes"
        else
            echo "== regression $(basename "$f"): FAILS (log: $log)"
            grep -m1 -A1 'panicked at\|ERROR: AddressSanitizer' "$log" | sed 's/^/   /'
            failed+=("regression:$(basename "$f")")
        fi
    done
fi

for t in "${targets[@]}"; do
    mkdir -p "$here/corpus/$t"
    log="$logs/$t.log"
    dict=()
    [ -f "$here/dicts/$t.dict" ] && dict=(-dict="$here/dicts/$t.dict")
    case "$t" in http1|http1_stream|pipeline|flow) dict=(-dict="$here/dicts/http.dict") ;; esac
    cargo fuzz run --sanitizer "$san" "$t" "$here/corpus/$t" "$here/seeds/$t" -- \
        "${dict[@]}" -max_total_time="$secs" -timeout=25 -rss_limit_mb=4096 >"$log" 2>&1
    rc=$?
    done_line="$(grep -a 'DONE' "$log" | tail -1)"
    if [ $rc -eq 0 ]; then
        echo "== $t: ok  ${done_line}"
    else
        echo "== $t: CRASH (exit $rc, log: $log)"
        grep -a -m1 -A1 'panicked at\|ERROR: AddressSanitizer\|ERROR: libFuzzer' "$log" | sed 's/^/   /'
        grep -a 'Test unit written' "$log" | sed 's/^/   /'
        failed+=("$t")
    fi
done

echo "== total $(( $(date +%s) - start ))s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all fuzz targets ok"
