#!/usr/bin/env bash
# Prepares the interop tests (tests/interop_test.ts): oidc-provider under Node, exactly as pinned in
# package-lock.json. Called by .ci/prepare; safe to run again. On failure it says why and exits
# non-zero, and the interop tests then skip with a printed reason.
set -uo pipefail
cd "$(dirname "$0")"

if ! command -v npm >/dev/null 2>&1; then
  echo "interop: npm is missing, so oidc-provider cannot be installed" >&2
  exit 1
fi
if ! npm ci --no-audit --no-fund; then
  echo "interop: npm ci failed in tests/interop (see above)" >&2
  exit 1
fi
echo "interop: oidc-provider $(node -p 'require("oidc-provider/package.json").version') is installed"
