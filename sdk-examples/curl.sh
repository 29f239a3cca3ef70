#!/usr/bin/env bash
# Aetheris API from the shell with curl.
#   AETHERIS_URL      base URL (default http://127.0.0.1:8080)
#   AETHERIS_API_KEY  sent as X-API-Key when set
# Commands:
#   curl.sh post '<json object or array>'        ingest events (POST /v1/events)
#   curl.sh decisions [account] [action]         every decision, following next_cursor
#   curl.sh stream [max_events] [max_seconds]    follow GET /v1/stream, one JSON line per event
set -euo pipefail
URL=${AETHERIS_URL:-http://127.0.0.1:8080}
AUTH=()
[ -n "${AETHERIS_API_KEY:-}" ] && AUTH=(-H "X-API-Key: $AETHERIS_API_KEY")

case ${1:-} in
post)
  curl -sS --fail-with-body "${AUTH[@]}" -H 'Content-Type: application/json' \
    --data-binary "${2:?post needs a JSON body}" "$URL/v1/events"
  echo
  ;;
decisions)
  query="" # the server's default page size; optional filters
  [ -n "${2:-}" ] && query="$query&account=$2"
  [ -n "${3:-}" ] && query="$query&action=$3"
  cursor=""
  while :; do
    page=$(curl -sS --fail-with-body "${AUTH[@]}" "$URL/v1/decisions?${query#&}${cursor:+&cursor=$cursor}")
    # One decision per line; the cursor is opaque: passed back unchanged (URL-safe by design).
    python3 -c 'import json,sys; [print(json.dumps(i)) for i in json.load(sys.stdin)["items"]]' <<<"$page"
    cursor=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["next_cursor"] or "")' <<<"$page")
    [ -n "$cursor" ] || break
  done
  ;;
stream)
  max=${2:-0} secs=${3:-0} n=0 event=""
  timeout_args=()
  [ "$secs" -gt 0 ] && timeout_args=(--max-time "$secs")
  # -N: no buffering; each "data:" line after an "event:" line is one event.
  while IFS= read -r line; do
    line=${line%$'\r'}
    case $line in
    event:*) event=${line#event: } ;;
    data:*)
      if [ "$event" = anomaly ] || [ "$event" = decision ]; then
        printf '{"event":"%s","data":%s}\n' "$event" "${line#data: }"
        n=$((n + 1))
        [ "$max" -gt 0 ] && [ "$n" -ge "$max" ] && exit 0
      fi
      ;;
    esac
  done < <(curl -sN "${AUTH[@]}" "${timeout_args[@]}" "$URL/v1/stream" || true)
  ;;
*)
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
  ;;
esac
