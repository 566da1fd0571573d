#!/usr/bin/env bash
# The test command (see README.md): installs what the tests need, runs the
# unit and integration tests inside a private Secret Service (so the
# keyring tests never skip), builds and checks the Debian package
# (installed with dpkg, run, removed again), then the end-to-end suite
# with real clients.
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh
scripts/with-secret-service.sh cargo test --locked --workspace
scripts/deb.sh
e2e/run.sh
