#!/usr/bin/env bash
# Installs what the tests and the demo need, only when missing: from Debian/Ubuntu packages
# the real registry (docker-registry 2.8), a third-party client (skopeo), openssl, tar,
# kubectl, Lua 5.1 (lua5.1) and promtool (prometheus); from PyPI the chart tests' packages
# (tests/chart/requirements.txt).
# Idempotent and non-interactive; needs root (or sudo) only when something is missing.
set -euo pipefail

missing=()
command -v docker-registry >/dev/null 2>&1 || command -v registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
# The TLS and token-auth tests make certificates and sign tokens with openssl; skopeo's
# OCI-layout test packs a layer with tar.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v tar >/dev/null 2>&1 || missing+=(tar)
# The operator's end-to-end tests drive the in-process API server with the real kubectl.
command -v kubectl >/dev/null 2>&1 || missing+=(kubectl)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-pip)
# tests/health runs the Argo CD health check (deploy/gitops/argocd-health.lua) with the real
# Lua 5.1 interpreter, the Lua version Argo CD's scripts are written for.
command -v lua5.1 >/dev/null 2>&1 || missing+=(lua5.1)
# tests/alerts checks and unit-tests the alerting rules with the real promtool (Debian ships
# it in the prometheus package).
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)

install_python_packages() {
  if ! python3 -c 'import helm_python, kubernetes_validate, pytest, yaml, jsonschema, celpy' >/dev/null 2>&1; then
    echo "install-test-deps: installing the chart tests' PyPI packages" >&2
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
      -r "$(dirname "$0")/../tests/chart/requirements.txt" \
      || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
        -r "$(dirname "$0")/../tests/chart/requirements.txt"
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  install_python_packages
  exit 0
fi

echo "install-test-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-test-deps: run as root: apt-get install docker-registry skopeo" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
install_python_packages
