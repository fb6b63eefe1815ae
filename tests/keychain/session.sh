#!/usr/bin/env bash
# A throwaway GNOME Keyring for tests/keyring_test.ts, run as `dbus-run-session -- bash session.sh DIR`.
# Reads the keyring's password from the first line of stdin (never an argument), creates and unlocks
# the "login" keyring in DIR/keyrings (never the real ~/.local/share/keyrings), waits until the daemon
# owns its bus name, checks that the default collection is unlocked, then prints
#   DBUS_SESSION_BUS_ADDRESS=…, KEYRING_PID=… and READY
# and waits for the rest of stdin: when the test closes it, the script ends, and dbus-run-session ends
# the bus and the daemon with it.
set -euo pipefail
: "${DBUS_SESSION_BUS_ADDRESS:?run me under dbus-run-session}"
export XDG_DATA_HOME="$1"
IFS= read -r password
# Creates DIR/keyrings/login.keyring with this password (or unlocks it) and makes it the default
# collection; it returns at once, before the daemon owns org.freedesktop.secrets.
printf '%s' "$password" | gnome-keyring-daemon --unlock --components=secrets >/dev/null
# A client that calls before the name is owned would start a second daemon (D-Bus activation) with no
# unlocked keyring: wait for the name (measured: up to about 300 ms).
owned=""
for _ in $(seq 1 100); do
  if dbus-send --session --print-reply=literal --dest=org.freedesktop.DBus /org/freedesktop/DBus \
    org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q true; then
    owned=yes
    break
  fi
  sleep 0.05
done
[ -n "$owned" ] || { echo "session: gnome-keyring-daemon never took org.freedesktop.secrets" >&2; exit 1; }
locked=$(dbus-send --session --print-reply=literal --dest=org.freedesktop.secrets \
  /org/freedesktop/secrets/aliases/default org.freedesktop.DBus.Properties.Get \
  string:org.freedesktop.Secret.Collection string:Locked)
case "$locked" in
  *false*) ;;
  *) echo "session: the default keyring is missing or locked: $locked" >&2; exit 1 ;;
esac
pid=$(dbus-send --session --print-reply=literal --dest=org.freedesktop.DBus /org/freedesktop/DBus \
  org.freedesktop.DBus.GetConnectionUnixProcessID string:org.freedesktop.secrets | awk '{print $2}')
echo "DBUS_SESSION_BUS_ADDRESS=$DBUS_SESSION_BUS_ADDRESS"
echo "KEYRING_PID=$pid"
echo "READY"
cat >/dev/null
