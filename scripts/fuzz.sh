#!/usr/bin/env bash
# Runs every libFuzzer target of $FUZZ_BUILD_DIR (default build-fuzz, built by `make fuzz-build`)
# for FUZZ_SECONDS seconds each (default 60), one after another. Each target starts from its seed
# corpus (tests/fuzz/corpus/<name>/: seeds and the regression inputs of past findings, all
# replayed first) and grows a working corpus in $FUZZ_BUILD_DIR/fuzz-corpus/<name>, so a longer
# run continues where the last one stopped; tests/fuzz/<name>.dict is used when present.
# A crash, leak, sanitizer report, timeout (FUZZ_TIMEOUT_S per input) or an input using more than
# FUZZ_RSS_MB fails the run; the input is saved as $FUZZ_BUILD_DIR/fuzz-artifacts/<name>-*
# and the script exits 1 after trying every target. Arguments: target names to run only those.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
SECONDS_EACH=${FUZZ_SECONDS:-60}
TIMEOUT_S=${FUZZ_TIMEOUT_S:-10}
RSS_MB=${FUZZ_RSS_MB:-1024}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for src in tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    targets+=("${name#fuzz_}")
  done
fi
mkdir -p "$BUILD/fuzz-artifacts"
failed=()
for name in "${targets[@]}"; do
  bin="$BUILD/tests/fuzz/fuzz_$name"
  if [ ! -x "$bin" ]; then
    echo "fuzz: $bin is missing; build first (make fuzz-build)" >&2
    exit 2
  fi
  work="$BUILD/fuzz-corpus/$name"
  mkdir -p "$work"
  args=(-max_total_time="$SECONDS_EACH" -timeout="$TIMEOUT_S" -rss_limit_mb="$RSS_MB"
        -artifact_prefix="$BUILD/fuzz-artifacts/$name-" -print_final_stats=1)
  [ -f "tests/fuzz/$name.dict" ] && args+=(-dict="tests/fuzz/$name.dict")
  log="$BUILD/fuzz-artifacts/$name.log"
  # The outer bound: libFuzzer stops itself at max_total_time; this only catches a hang in
  # startup or teardown.
  if timeout -k 10 $((SECONDS_EACH + 60)) "$bin" "${args[@]}" "$work" "tests/fuzz/corpus/$name" \
       >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "fuzz: $name: ok, ${runs:-?} inputs in ${SECONDS_EACH} s"
  else
    echo "fuzz: $name: FAILED (log $log); the end of it:"
    summary=$(grep -E "ERROR|SUMMARY|fuzz_$name:|Test unit written" "$log" | tail -8 || true)
    if [ -n "$summary" ]; then echo "$summary"; else tail -20 "$log"; fi
    failed+=("$name")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}"
  exit 1
fi
