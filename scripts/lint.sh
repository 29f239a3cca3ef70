#!/usr/bin/env bash
# Static checks: the banned C functions (curl's list, STYLE.md 12), TODO markers without a
# ticket, and clang-format (when installed). Exits non-zero naming each offending line.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find common pipeline server tools tests bench -name '*.[ch]')
if grep -nE '\b(sprintf|vsprintf|strcpy|strcat|atoi|atol|strtok|gets)\s*\(' $files; then
  echo "lint: banned function used (use snprintf, memcpy, strtol/strtoull, strtok_r)" >&2
  status=1
fi
if grep -nE 'TODO|FIXME|XXX' $files | grep -v 'XXXXXX'; then
  echo "lint: TODO/FIXME without a ticket" >&2
  status=1
fi
if command -v clang-format >/dev/null; then
  if ! clang-format --dry-run -Werror $files 2>/dev/null; then
    clang-format --dry-run $files 2>&1 | grep warning: | head -20 >&2
    echo "lint: formatting differs from .clang-format (run make format)" >&2
    status=1
  fi
fi
exit $status
