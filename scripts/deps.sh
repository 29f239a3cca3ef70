#!/usr/bin/env bash
# Installs the Debian packages Aetheris needs to build, test and run, and only those that are
# missing. Safe to run repeatedly; does nothing (and needs no root) when everything is present.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libmicrohttpd-dev libhiredis-dev libmongoc-dev libbson-dev libcurl4-openssl-dev
  libjansson-dev libpaho-mqtt-dev libssl-dev libsqlite3-dev
  mosquitto mosquitto-clients redis-server
  python3 python3-pytest python3-paho-mqtt python3-yaml python3-jsonschema nodejs
  prometheus
  curl
  wrk
  clang libclang-rt-14-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing missing Debian packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps: need root or sudo to apt-get install" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts these services on install where an init system runs; the project starts its own
# instances on free loopback ports, so the system ones are not needed.
for svc in mosquitto redis-server prometheus; do
  $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
done
