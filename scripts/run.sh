#!/usr/bin/env bash
# shellcheck disable=SC2317  # stop_child and cleanup run from the EXIT trap (not unreachable)
# `make run` (scripts/run.sh <build dir>): starts redis-server and mosquitto under ./var on
# loopback (or uses the ones already listening on 6379 and 1883, after checking that they answer
# as Redis and as an MQTT broker), starts aetherisd with the default configuration, replays the
# bundled dataset, prints what happened and where to look, and keeps serving until Ctrl-C, which
# stops what this script started: aetherisd first (it drains into Redis and the broker), then
# mosquitto, then redis-server.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
for bin in server/aetherisd tools/aetheris-replay; do
  [ -x "$BUILD/$bin" ] || { echo "run: $BUILD/$bin not found; run 'make build' first" >&2; exit 1; }
done
for tool in redis-server redis-cli mosquitto mosquitto_pub curl python3; do
  command -v "$tool" >/dev/null || { echo "run: $tool not found; run scripts/deps.sh" >&2; exit 1; }
done

VAR=$PWD/var
API=http://127.0.0.1:8080
# Each run is a fresh demo: the previous ./var (store, journal, snapshot, broker and Redis data)
# is kept as ./var.prev, otherwise every replayed event would be a duplicate of the last run.
if [ -d "$VAR" ]; then
  rm -rf "$PWD/var.prev"
  mv "$VAR" "$PWD/var.prev"
  echo "run: previous ./var kept as ./var.prev; starting clean"
fi
mkdir -p "$VAR/redis" "$VAR/mosquitto"

REDIS_PID="" MOSQ_PID="" DAEMON_PID=""

# Sends SIGTERM to a child and waits for it (SIGKILL after $3 seconds).
stop_child() {
  local pid=$1 name=$2 limit=$3
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((limit * 10))); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; echo "  $name stopped"; return 0; }
    sleep 0.1
  done
  echo "  $name did not stop within ${limit} s; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  trap - EXIT INT TERM
  echo
  echo "stopping..."
  stop_child "$DAEMON_PID" aetherisd 30
  stop_child "$MOSQ_PID" mosquitto 10
  stop_child "$REDIS_PID" redis-server 10
  echo "stopped. Logs and data stay in $VAR"
}
trap cleanup EXIT
trap 'exit 0' INT TERM
# The servers run in sessions of their own (setsid): Ctrl-C in the terminal reaches only this
# script, which then stops them in order, instead of all of them at once.

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits up to 10 s for a port, failing if the process we started has already exited.
wait_port() {
  local port=$1 pid=$2 log=$3
  for _ in $(seq 1 100); do
    listening "$port" && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "run: nothing listens on 127.0.0.1:$port (see $log)" >&2
  tail -5 "$log" >&2 2>/dev/null || true
  exit 1
}

if listening 6379; then
  if [ "$(timeout 5 redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" != "PONG" ]; then
    echo "run: 127.0.0.1:6379 is taken by something that does not answer Redis PING" \
      "(a Redis with a password?); free the port and retry" >&2
    exit 1
  fi
  echo "redis: a Redis server already listens on 127.0.0.1:6379; using it"
else
  setsid redis-server --port 6379 --bind 127.0.0.1 --dir "$VAR/redis" --appendonly yes \
    --appendfsync everysec --save '' --daemonize no --logfile "$VAR/redis.log" &
  REDIS_PID=$!
  wait_port 6379 "$REDIS_PID" "$VAR/redis.log"
  echo "redis: started (pid $REDIS_PID, data in var/redis, log var/redis.log)"
fi

if listening 1883; then
  if ! timeout 5 mosquitto_pub -h 127.0.0.1 -p 1883 -q 1 -t aetheris/run/probe -n \
    -i "aetheris-run-probe-$$" 2>/dev/null; then
    echo "run: 127.0.0.1:1883 is taken by something that does not accept an anonymous MQTT" \
      "publish; free the port and retry" >&2
    exit 1
  fi
  echo "mosquitto: an MQTT broker already listens on 127.0.0.1:1883; using it"
else
  # persistence: the daemon's persistent session survives a broker restart; max_queued_messages
  # 0 (unlimited): messages queued for the daemon while it is down are not dropped; user: keep
  # the invoking user (root would otherwise switch to "mosquitto", which cannot write ./var);
  # set_tcp_nodelay: QoS 1 acknowledgements without the ~40 ms Nagle/delayed-ACK stall.
  cat > "$VAR/mosquitto/mosquitto.conf" <<CONF
listener 1883 127.0.0.1
allow_anonymous true
persistence true
persistence_location $VAR/mosquitto/
max_queued_messages 0
user $(id -un)
set_tcp_nodelay true
log_dest file $VAR/mosquitto.log
CONF
  setsid mosquitto -c "$VAR/mosquitto/mosquitto.conf" >> "$VAR/mosquitto.log" 2>&1 &
  MOSQ_PID=$!
  wait_port 1883 "$MOSQ_PID" "$VAR/mosquitto.log"
  echo "mosquitto: started (pid $MOSQ_PID, persistence in var/mosquitto, log var/mosquitto.log)"
fi

if listening 8080; then
  echo "run: port 8080 is taken; stop whatever serves it (another aetherisd?) and retry" >&2
  exit 1
fi
# A local demo on loopback: API keys are switched off (auth_disabled), and said so below. A real
# deployment configures api_keys (tools/aetheris-keygen) and leaves auth on.
# Webhook receivers on this machine are allowed through the SSRF guard explicitly.
echo "aetherisd: starting with auth_disabled=true (local demo: no API key needed on 127.0.0.1)"
echo "aetherisd: webhook_allow_cidrs=127.0.0.0/8,::1/128 (local webhook receivers allowed)"
setsid "$BUILD/server/aetherisd" --data-dir "$VAR" --sqlite-path "$VAR/aetheris.db" \
  --auth-disabled=true --webhook-allow-cidrs=127.0.0.0/8,::1/128 > "$VAR/aetherisd.log" 2>&1 &
DAEMON_PID=$!
ready=0
for _ in $(seq 1 200); do
  if curl -fs "$API/readyz" >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "$DAEMON_PID" 2>/dev/null || break
  sleep 0.1
done
if [ "$ready" -ne 1 ]; then
  echo "run: aetherisd is not ready after 20 s; the end of $VAR/aetherisd.log:" >&2
  tail -15 "$VAR/aetherisd.log" >&2 || true
  exit 1
fi
echo "aetherisd: ready at $API (pid $DAEMON_PID, log var/aetherisd.log)"
echo
echo "replaying data/transactions.csv (50,000 rows) over MQTT..."
"$BUILD/tools/aetheris-replay" --file data/transactions.csv --progress

# Reads GET /v1/metrics and prints a Python expression over its counters `c`.
metric() {
  curl -fs "$API/v1/metrics" |
    python3 -c "import json,sys; c=json.load(sys.stdin)['counters']; print($1)"
}
# Wait (bounded) until every replayed event is accounted for and every anomaly is decided.
for _ in $(seq 1 600); do
  done_in=$(metric "c['scored'] + c['duplicates'] + sum(v for k, v in c.items() if k.startswith('invalid_'))")
  pending=$(metric "c['anomalies_immediate'] + c['anomalies_batch'] - c['decisions_approve'] - c['decisions_review'] - c['decisions_block']")
  [ "$done_in" -ge 50000 ] && [ "$pending" -le 0 ] && break
  sleep 0.1
done
echo
echo "Summary (GET /v1/metrics):"
metric "'  events scored      %d (%d duplicates, %d invalid)\n  anomalies          %d (%d immediate, %d batch)\n  decisions          %d APPROVE, %d REVIEW, %d BLOCK' % (c['scored'], c['duplicates'], sum(v for k, v in c.items() if k.startswith('invalid_')), c['anomalies_immediate'] + c['anomalies_batch'], c['anomalies_immediate'], c['anomalies_batch'], c['decisions_approve'], c['decisions_review'], c['decisions_block'])"
# The newest decision's "<transaction_id> <account>" (BLOCK first), or "" when there is none.
first_decision() {
  curl -fs "$API/v1/decisions?$1limit=1" |
    python3 -c "import json,sys; i=json.load(sys.stdin)['items']; print(f\"{i[0]['transaction_id']} {i[0]['account_origin']}\" if i else '')"
}
DECISION=$(first_decision 'action=BLOCK&')
[ -n "$DECISION" ] || DECISION=$(first_decision '')
ID=${DECISION%% *}
ACCOUNT=${DECISION#* }
cat <<MSG

API: $API (OpenAPI spec in openapi/openapi.yaml). Try:
  curl -s $API/v1/health
  curl -s '$API/v1/anomalies?priority=immediate&limit=5'
  curl -s '$API/v1/decisions?action=BLOCK&limit=5'
  curl -s $API/v1/decisions/${ID:-<transaction_id>}
  curl -s $API/v1/accounts/${ACCOUNT:-<account>}
  curl -s $API/v1/queues
  curl -s -i $API/v1/metrics            (X-Cache: HIT until new events arrive)
  curl -sN $API/v1/stream               (live anomalies and decisions; Ctrl-C stops it)
  curl -s $API/openapi.json
Webhooks (a receiver of yours on port 9000, say):
  curl -s -X POST $API/v1/webhooks -d '{"url":"http://127.0.0.1:9000/hook","actions":["BLOCK"]}'
  curl -s $API/v1/webhooks/<id>/deliveries
Prometheus text: curl -s $API/metrics
Logs: $VAR/aetherisd.log (JSON lines), $VAR/redis.log, $VAR/mosquitto.log
Store: $VAR/aetheris.db (sqlite3: tables transactions, exceptions, decisions, webhooks, webhook_outbox)
Publish your own: mosquitto_pub -t aetheris/transactions/A1/1 -m '{"transactionId":1,"accountOrigin":"A1","amount":10}'

Auth is disabled for this local demo (auth_disabled=true); see README "Authentication".
Serving until Ctrl-C.
MSG
wait "$DAEMON_PID" || true
echo "run: aetherisd exited on its own; see $VAR/aetherisd.log" >&2
exit 1
