#!/usr/bin/env bash
# The operator on this machine, without a cluster: the test harness's in-process API server and
# simulated kubelet, a registry Deployment running the real registry (filled with the demo's
# images), the operator, and an example policy applied with the real kubectl. Runs until
# Ctrl-C or SIGTERM, then removes everything it started.
#
#   bash scripts/operator-demo.sh [--kubeconfig PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
kubeconfig=""
while [ $# -gt 0 ]; do
  case "$1" in
    --kubeconfig) kubeconfig="$2"; shift 2 ;;
    --kubeconfig=*) kubeconfig="${1#*=}"; shift ;;
    *) echo "usage: $0 [--kubeconfig PATH]" >&2; exit 2 ;;
  esac
done
bash scripts/install-test-deps.sh
# Build first, then run the test binary itself, so signals reach it and not cargo.
bin=$(cargo test --locked --test operator_e2e --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "operator_e2e" and m.get("executable"):
        print(m["executable"])')
[ -n "$bin" ] || { echo "operator-demo: could not build the end-to-end test binary" >&2; exit 1; }
if [ -n "$kubeconfig" ]; then
  export REGSWEEP_DEMO_KUBECONFIG="$(realpath -m "$kubeconfig")"
fi
export CARGO_MANIFEST_DIR="$PWD"
exec "$bin" --ignored --exact operator_on_one_machine --nocapture
