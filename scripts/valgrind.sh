#!/usr/bin/env bash
# Runs the unit tests and the integration tests once under valgrind memcheck
# (not part of CI: slow). Built with `--no-default-features`, i.e. the system
# allocator instead of mimalloc, so memcheck sees every allocation; child
# `apisensor` processes the tests spawn run under valgrind too
# (--trace-children=yes), so the whole packet path is checked.
#
#   scripts/valgrind.sh            # needs `scripts/setup.sh bench` (valgrind)
#
# Skipped, and why:
#   corpus, floods   87 traces / 5 million flows with wall-clock limits:
#                    hours under memcheck; the packet path they drive is
#                    covered below by replaying every fixture and a sample
#                    of the shared corpus through the binary under memcheck;
#   live, systemd    network namespaces and systemd tools, whose child
#                    processes (ip, python, curl) are not ours to check;
#   service          signal timing (SIGHUP/SIGTERM deadlines) too tight at
#                    memcheck speed.
# Exit status non-zero on any memcheck error or definite leak.
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/valgrind}"
logs="$CARGO_TARGET_DIR/valgrind-logs"
mkdir -p "$logs"
vg=(valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --error-exitcode=97 --trace-children=yes
    --num-callers=30 -q)
skip='^(corpus|floods|live|systemd|service)$'

cargo build --no-default-features --bins -q || exit 1
mapfile -t bins < <(cargo test --no-default-features --all-targets --no-run \
        --message-format=json -q 2>/dev/null |
    jq -r 'select(.reason == "compiler-artifact" and .profile.test == true and .executable != null)
           | "\(.target.kind[0]) \(.target.name) \(.executable)"')
failed=()
for line in "${bins[@]}"; do
    read -r kind name exe <<<"$line"
    [ "$kind" = bench ] && continue
    if [[ "$kind" = test && "$name" =~ $skip ]]; then
        echo "== $kind $name: skipped"
        continue
    fi
    log="$logs/$kind-$name.log"
    start=$(date +%s)
    "${vg[@]}" --log-file="$log.%p" "$exe" --test-threads=2 >"$log" 2>&1
    rc=$?
    errs=$(cat "$log".* 2>/dev/null | grep -c 'ERROR SUMMARY: [1-9]\|definitely lost: [1-9]' || true)
    echo "== $kind $name: exit $rc, $(grep -h 'test result' "$log" | tail -1) ($(( $(date +%s) - start ))s, memcheck reports: $errs)"
    [ $rc -ne 0 ] || [ "$errs" -ne 0 ] && failed+=("$kind:$name")
done

# The binary itself on every fixture and a sample of the shared corpus.
bin="$CARGO_TARGET_DIR/debug/apisensor"
traces=(fixtures/pcap/*.pcap fixtures/pcap/*.pcapng)
corpus=../shared/corpus/zeek-http
if [ -d "$corpus" ]; then
    for t in "$corpus"/261-variant-*.pcap "$corpus"/http-desync-*.pcap "$corpus"/smuggle-*.pcap \
             "$corpus"/get-gzip.pcap "$corpus"/content-length-overflow.pcap "$corpus"/curl_http_09.pcap; do
        [ -e "$t" ] && traces+=("$t")
    done
fi
for t in "${traces[@]}"; do
    log="$logs/replay-$(basename "$t").log"
    "${vg[@]}" --error-exitcode=97 "$bin" replay --workers 2 -o /dev/null "$t" >"$log" 2>&1
    rc=$?
    echo "== replay $(basename "$t"): exit $rc"
    [ $rc -ne 0 ] && failed+=("replay:$(basename "$t")")
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "valgrind: FAILED: ${failed[*]} (logs in $logs)"
    exit 1
fi
echo "valgrind: no memcheck errors, no definite leaks (logs in $logs)"
