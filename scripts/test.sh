#!/usr/bin/env bash
# The test command: installs what the tests need when missing (scripts/install-test-deps.sh),
# checks formatting, runs every Rust test (the committed CRD's drift is tests/crd.rs), then
# the Helm chart's tests (tests/chart, against the binary cargo just built) and the GitOps
# health checks (tests/health: the Argo CD Lua script with lua5.1, the kstatus rules) and the
# CRD's admission checks (tests/crd: its schema and CEL rules on valid and invalid policies)
# and the alerting rules (tests/alerts: promtool check and unit tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
cargo fmt --check
cargo test --locked "$@"
python3 -m pytest -q -p no:cacheprovider tests/chart tests/health tests/crd tests/alerts
