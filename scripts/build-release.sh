#!/usr/bin/env bash
# Builds the release binaries (CMake Release, no sanitizers) and installs them under PREFIX:
#   PREFIX/bin/{aetherisd,aetheris-replay,aetheris-seed,aetheris-keygen}
#   PREFIX/share/aetheris/{transactions.csv,ATTRIBUTION.md,openapi.yaml}
# The Dockerfile's build stage runs exactly this script, and tests/e2e/test_deploy.py runs it on
# the test machine, so the image's build steps are exercised even where no Docker engine runs.
# Usage: scripts/build-release.sh PREFIX [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:?usage: scripts/build-release.sh PREFIX [BUILD_DIR]}
build=${2:-build-release}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DAETHERIS_WERROR=ON >/dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" \
  --target aetherisd aetheris-replay aetheris-seed aetheris-keygen >/dev/null
mkdir -p "$prefix/bin" "$prefix/share/aetheris"
install -m 0755 "$build/server/aetherisd" "$build/tools/aetheris-replay" \
  "$build/tools/aetheris-seed" "$build/tools/aetheris-keygen" "$prefix/bin/"
install -m 0644 data/transactions.csv data/ATTRIBUTION.md openapi/openapi.yaml "$prefix/share/aetheris/"
echo "build-release: installed under $prefix"
