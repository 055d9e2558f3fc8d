#!/usr/bin/env bash
# The demo: a local registry in a temporary directory, filled, planned, frozen, swept, verified.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
cargo run --release --locked -- demo "$@"
