#!/usr/bin/env bash
# The test command: installs the real registry, skopeo, openssl and tar when missing, checks
# formatting and that the committed CRD is current (tests/crd.rs), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
cargo fmt --check
cargo test --locked "$@"
