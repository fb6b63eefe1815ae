#!/usr/bin/env bash
# Prepares the real-browser test (tests/browser_test.ts): Debian's Chromium at /usr/bin/chromium
# (from apt, never a browser download) and playwright-core from package-lock.json (npm ci).
# Called by .ci/prepare; safe to run again. On any failure it says why and exits non-zero, and
# the test then skips with a printed reason. apt-get needs root, as CI and the sessions have.
set -uo pipefail
cd "$(dirname "$0")"

status=0

if [ -x /usr/bin/chromium ]; then
  echo "browser: $(/usr/bin/chromium --version 2>/dev/null || echo 'chromium') is already installed"
elif ! command -v apt-get >/dev/null 2>&1; then
  echo "browser: /usr/bin/chromium is missing and there is no apt-get to install it" >&2
  status=1
elif [ "$(id -u)" -ne 0 ]; then
  echo "browser: /usr/bin/chromium is missing and apt-get needs root (this is uid $(id -u))" >&2
  status=1
else
  export DEBIAN_FRONTEND=noninteractive
  echo "browser: installing Debian's chromium with apt-get"
  log=$(mktemp)
  # apt's output goes to a log; its last lines are shown when it fails.
  if ! apt-get update -q >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "browser: apt-get update failed (see above)" >&2
    status=1
  elif ! apt-get install -y -q --no-install-recommends chromium >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "browser: apt-get install chromium failed (see above)" >&2
    status=1
  elif ! /usr/bin/chromium --version; then
    echo "browser: chromium was installed but /usr/bin/chromium --version fails" >&2
    status=1
  fi
  rm -f "$log"
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "browser: npm is missing, so playwright-core cannot be installed" >&2
  status=1
elif ! npm ci --no-audit --no-fund; then
  echo "browser: npm ci failed in tests/browser (see above)" >&2
  status=1
fi

exit "$status"
