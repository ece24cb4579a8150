#!/usr/bin/env bash
# Dependencies for the dashboard browser test (crates/dashboard/ui-tests/page.mjs):
#   - Debian's chromium at /usr/bin/chromium (installed with apt-get if missing)
#   - the npm packages of crates/dashboard/ui-tests (playwright-core; `npm ci` when node_modules is
#     missing or older than package-lock.json)
# Idempotent; prints nothing when everything is already in place. Must run as root (no sudo used).
set -euo pipefail

die() { echo "ui-deps: $*" >&2; exit 1; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UI="$ROOT/crates/dashboard/ui-tests"

if [[ ! -x /usr/bin/chromium ]]; then
  [[ $(id -u) -eq 0 ]] || die "/usr/bin/chromium is missing and installing it needs root"
  command -v apt-get >/dev/null || die "/usr/bin/chromium is missing and apt-get is not available"
  apt_log="$(mktemp)"
  trap 'rm -f "$apt_log"' EXIT
  if ! { apt-get -o DPkg::Lock::Timeout=300 update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
           --no-install-recommends chromium; } >"$apt_log" 2>&1; then
    cat "$apt_log" >&2
    die "installing chromium with apt-get failed"
  fi
  [[ -x /usr/bin/chromium ]] || die "chromium installed but /usr/bin/chromium is still missing"
fi

command -v npm >/dev/null || die "npm is not installed (needed for $UI)"
[[ -f "$UI/package-lock.json" ]] || die "$UI/package-lock.json is missing"
if [[ ! -d "$UI/node_modules" || "$UI/package-lock.json" -nt "$UI/node_modules" ]]; then
  npm_log="$(mktemp)"
  if ! (cd "$UI" && npm ci --no-audit --no-fund --loglevel=error) >"$npm_log" 2>&1; then
    cat "$npm_log" >&2
    rm -f "$npm_log"
    die "npm ci in $UI failed"
  fi
  rm -f "$npm_log"
  touch "$UI/node_modules"
fi
