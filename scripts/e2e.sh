#!/usr/bin/env bash
# Runs the end-to-end suite (pytest, Debian's python3) against the binaries in $AETHERIS_BIN_DIR,
# bounded in time as a whole (E2E_TIMEOUT_S, default 1800); each test also bounds its own waits.
# Extra arguments go to pytest (e.g. -k sigkill, -x, -v). pytest's summary line is printed last;
# when the bound is hit, a line saying so follows instead.
set -euo pipefail
cd "$(dirname "$0")/.."
export AETHERIS_BIN_DIR=${AETHERIS_BIN_DIR:-$PWD/build}
LIMIT=${E2E_TIMEOUT_S:-1800}
for bin in server/aetherisd tools/aetheris-replay; do
  if [ ! -x "$AETHERIS_BIN_DIR/$bin" ]; then
    echo "e2e: $AETHERIS_BIN_DIR/$bin is missing; build first (make build-asan)" >&2
    exit 2
  fi
done
# ASan: report leaks at exit too; UBSan: abort on the first report (the harness greps the log).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# timeout runs pytest in a process group of its own and signals the whole group when the bound
# passes, so the servers the harness started (redis-server, mosquitto, aetherisd) go with it;
# -k: SIGKILL 30 s after the SIGTERM if anything ignores it.
status=0
timeout -k 30 "$LIMIT" /usr/bin/python3 -m pytest -p no:cacheprovider -q -rs tests/e2e "$@" ||
  status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "e2e: FAILED: the suite did not finish within ${LIMIT} s and was stopped"
fi
exit "$status"
