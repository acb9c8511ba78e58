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

# Python packages the tests drive as independent implementations (PyPI,
# pinned in scripts/requirements-test.txt), in a venv under target/ so the
# system Python stays untouched. Reinstalled only when the list changes.
if [ -s "$here/requirements-test.txt" ]; then
  venv="${CARGO_TARGET_DIR:-$here/../target}/test-venv"
  stamp="$venv/.requirements.sha256"
  want="$(sha256sum "$here/requirements-test.txt" | cut -d' ' -f1)"
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements-test.txt"
    echo "$want" > "$stamp"
    echo "setup: python test packages installed in $venv" >&2
  fi
fi
