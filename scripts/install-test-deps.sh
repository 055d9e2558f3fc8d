#!/usr/bin/env bash
# Installs what the integration tests and the demo need from Debian/Ubuntu packages, only
# when missing: the real registry (docker-registry 2.8), a third-party client (skopeo),
# openssl and tar.
# Idempotent and non-interactive; needs root (or sudo) only when something is missing.
set -euo pipefail

missing=()
command -v docker-registry >/dev/null 2>&1 || command -v registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
# The TLS and token-auth tests make certificates and sign tokens with openssl; skopeo's
# OCI-layout test packs a layer with tar.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v tar >/dev/null 2>&1 || missing+=(tar)
if [ ${#missing[@]} -eq 0 ]; then
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
