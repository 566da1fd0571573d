#!/usr/bin/env bash
# Installs the Debian packages the tests, the end-to-end suite and the
# benchmarks need. Idempotent: does nothing when all are present.
set -euo pipefail

packages=(
  # a private Secret Service for the keyring tests
  dbus dbus-user-session gnome-keyring libsecret-tools
  # a skewed clock for the clock tests
  faketime
  # real clients of the helper
  python3-docker python3-dockerpycreds
  # end to end: engine, registry, TLS front, containers tools
  docker.io docker-registry nginx podman buildah skopeo openssl curl
  # the Debian package's man page: rendered without warnings, found by man
  man-db groff-base
  # benchmarks and the helpers they compare against
  hyperfine time amazon-ecr-credential-helper golang-docker-credential-helpers
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
echo "info: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
