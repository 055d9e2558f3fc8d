#!/usr/bin/env bash
# Installs what the tests and the demo need from Debian's packages, only when missing:
# the real registry (docker-registry 2.8) and a third-party client (skopeo). Idempotent,
# non-interactive; needs root (or sudo) only when something is missing.
set -euo pipefail
missing=()
command -v docker-registry >/dev/null 2>&1 || command -v registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
command -v tar >/dev/null 2>&1 || missing+=(tar)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing ${missing[*]} from the system packages" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
