#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, formatting, lints, all tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets
