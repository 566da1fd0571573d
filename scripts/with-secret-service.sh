#!/usr/bin/env bash
# Runs a command inside a private D-Bus session with an unlocked,
# headless gnome-keyring (a real Secret Service), and tells the tests one
# is there (IBMCR_TEST_SECRET_SERVICE=1) so they never skip silently.
# Usage: scripts/with-secret-service.sh CMD [ARGS…]
set -euo pipefail
if [ "${1:-}" = "--inside" ]; then
  shift
  # The password only unlocks this throwaway keyring in a temp HOME.
  keyring_home=$(mktemp -d)
  trap 'rm -rf "$keyring_home"' EXIT
  export XDG_DATA_HOME="$keyring_home/data" XDG_RUNTIME_DIR="$keyring_home/run"
  mkdir -p "$XDG_DATA_HOME" "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
  eval "$(printf 'test-password' | gnome-keyring-daemon --unlock --components=secrets)"
  export IBMCR_TEST_SECRET_SERVICE=1
  unset XDG_DATA_HOME
  status=0
  "$@" || status=$?
  [ -n "${GNOME_KEYRING_PID:-}" ] && kill "$GNOME_KEYRING_PID" 2>/dev/null || true
  exit "$status"
fi
exec dbus-run-session -- "$0" --inside "$@"
