#!/usr/bin/env bash
# Runs the benchmarks against the build in $1 (default build/) and prints one JSON object per line,
# the first naming the machine and date. Every run is bounded in time; the Python benchmarks start
# their own mosquitto, redis-server and aetherisd on free loopback ports. Results and the commands
# that produced them are recorded in docs/benchmarks.md.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
echo "{\"machine\":\"$(uname -m) $(nproc) cores\",\"kernel\":\"$(uname -r)\",\"date\":\"$(date -u +%FT%TZ)\",\"build\":\"$BUILD\"}"
for accounts in 1000 100000 1000000; do
  timeout 300 "$BUILD/bench/bench_edge" "$accounts" 5000000
done
timeout 300 "$BUILD/bench/bench_memory" 512 2000000
timeout 300 "$BUILD/bench/bench_parse" 1000000
timeout 1200 /usr/bin/python3 bench/bench_ingest.py --build "$BUILD" --events 200000 --connections 2
timeout 1500 /usr/bin/python3 bench/bench_service.py --build "$BUILD"
# item 7 of the benchmark issue: the daemon's RSS after a million accounts
timeout 900 /usr/bin/python3 bench/bench_service.py --build "$BUILD" --only rss --accounts 1000000
