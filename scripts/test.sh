#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, formatting, lints, all tests,
# then a short fuzz run of every target (fuzz/run-short.sh).
#
# Fuzz budget: CI has 2 cores and 90 minutes; the rest takes ~3 minutes, the
# ASan build of the fuzz targets a few. FUZZ_SECS (default 45) per target
# keeps the fuzz step under ~12 minutes with up to 8 targets
# (build ~4 min + regressions ~0.5 min + 8 x 45 s). SKIP_FUZZ=1 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
# A one-off build gains nothing from incremental caches (~0.8 GB); CI's disk
# can be short, so keep the build small and say how much room there is.
export CARGO_INCREMENTAL=0
df -h . | sed 's/^/disk: /'
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets

if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  # On CI the clone is thrown away: the test build's 1.4 GB is not needed by
  # the sanitizer build that follows, so give the room back first.
  if [ -n "${CI:-}" ]; then cargo clean --profile dev -q; fi
  df -h . | sed 's/^/disk: /'
  if ! command -v cargo-fuzz >/dev/null 2>&1; then
    # Pinned for reproducible CI runs; stable rustc takes its -Z flags
    # through RUSTC_BOOTSTRAP=1 (set by run-short.sh).
    cargo install cargo-fuzz --locked --version 0.13.2
  fi
  bash fuzz/run-short.sh "${FUZZ_SECS:-45}"
fi
