#!/usr/bin/env bash
# Installs the system packages apisensor builds and tests with (Debian).
# Lists live in scripts/packages*.txt; nothing else is installed by hand.
#   scripts/setup.sh          build + test packages (packages.txt)
#   scripts/setup.sh bench    also the benchmark tools (packages-bench.txt)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
lists=("$here/packages.txt")
for extra in "$@"; do lists+=("$here/packages-$extra.txt"); done
mapfile -t wanted < <(cat "${lists[@]}" | grep -v '^\s*#' | sed '/^\s*$/d')
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
  echo "setup: installed ${missing[*]}" >&2
fi
