#!/usr/bin/env bash
# Prepares the keyring suite (tests/keyring_test.ts): Debian's GNOME Keyring, secret-tool and D-Bus
# (gnome-keyring, libsecret-tools, dbus; dbus-x11 so that apt does not pick dbus-user-session for
# gnome-keyring's session bus). Called by .ci/prepare; safe to run again. On any failure it says why
# and exits non-zero, and the suite then skips (fails in CI) with its reason. apt-get needs root.
set -uo pipefail

missing=()
for tool in gnome-keyring-daemon secret-tool dbus-run-session dbus-send; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "keychain: gnome-keyring, secret-tool and dbus are already installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "keychain: ${missing[*]} missing and there is no apt-get to install them" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "keychain: ${missing[*]} missing and apt-get needs root (this is uid $(id -u))" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "keychain: installing gnome-keyring, libsecret-tools and dbus with apt-get"
log=$(mktemp)
status=0
if ! apt-get update -q >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  echo "keychain: apt-get update failed (see above)" >&2
  status=1
elif ! apt-get install -y -q --no-install-recommends gnome-keyring libsecret-tools dbus dbus-x11 >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  echo "keychain: apt-get install failed (see above)" >&2
  status=1
fi
rm -f "$log"
for tool in gnome-keyring-daemon secret-tool dbus-run-session dbus-send; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "keychain: $tool is still missing after apt-get" >&2
    status=1
  fi
done
exit "$status"
