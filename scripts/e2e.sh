#!/usr/bin/env bash
# Runs the end-to-end suite (pytest, Debian's python3) against the binaries in $AETHERIS_BIN_DIR,
# bounded in time as a whole; each test also bounds its own waits.
set -euo pipefail
cd "$(dirname "$0")/.."
export AETHERIS_BIN_DIR=${AETHERIS_BIN_DIR:-$PWD/build}
# ASan: report leaks at exit too; UBSan: abort on the first report (the harness greps the log).
# allocator_may_return_null: after a SIGKILL, paho's file persistence can hold a torn record whose
# length asks calloc for ~16 EiB while restoring; glibc returns NULL there and paho copes, and the
# test of exactly that restart must exercise the same path instead of ASan aborting inside paho.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
exec timeout 1800 /usr/bin/python3 -m pytest -p no:cacheprovider -q tests/e2e "$@"
