#!/usr/bin/env bash
# Runs the benchmarks against the build in $1 (default build/) and prints one JSON object per line,
# each preceded by machine and date. Every run is bounded in time. Results and the commands that
# produced them are recorded in docs/benchmarks.md.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
echo "{\"machine\":\"$(uname -m) $(nproc) cores\",\"kernel\":\"$(uname -r)\",\"date\":\"$(date -u +%FT%TZ)\"}"
for accounts in 1000 100000 1000000; do
  timeout 300 "$BUILD/bench/bench_edge" "$accounts" 5000000
done
