#!/usr/bin/env bash
# `make run`: starts redis-server and mosquitto under ./var on loopback (unless something already
# listens on their ports), starts aetherisd with the default configuration, replays the bundled
# dataset, prints what happened and where to look, and keeps serving until Ctrl-C, which stops
# everything this script started.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
VAR=$PWD/var
# Each run is a fresh demo: the previous ./var (store, journal, snapshot, broker and Redis data)
# is kept as ./var.prev, otherwise every replayed event would be a duplicate of the last run.
if [ -d "$VAR" ]; then
  rm -rf "$PWD/var.prev"
  mv "$VAR" "$PWD/var.prev"
  echo "run: previous ./var kept as ./var.prev; starting clean"
fi
mkdir -p "$VAR/redis" "$VAR/mosquitto"
API=http://127.0.0.1:8080
PIDS=()

cleanup() {
  echo
  echo "stopping..."
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "stopped. Logs and data stay in $VAR"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 100); do listening "$1" && return 0; sleep 0.1; done
  echo "run: nothing listens on port $1 after 10 s (see $2)" >&2
  exit 1
}

if listening 6379; then
  echo "redis: something already listens on 127.0.0.1:6379; using it"
else
  redis-server --port 6379 --bind 127.0.0.1 --dir "$VAR/redis" --appendonly yes \
    --save '' --logfile "$VAR/redis.log" &
  PIDS+=($!)
  wait_port 6379 "$VAR/redis.log"
fi

if listening 1883; then
  echo "mosquitto: something already listens on 127.0.0.1:1883; using it"
else
  user=$(id -un)
  cat > "$VAR/mosquitto/mosquitto.conf" <<CONF
listener 1883 127.0.0.1
allow_anonymous true
persistence true
persistence_location $VAR/mosquitto/
max_queued_messages 0
user $user
set_tcp_nodelay true
CONF
  mosquitto -c "$VAR/mosquitto/mosquitto.conf" > "$VAR/mosquitto.log" 2>&1 &
  PIDS+=($!)
  wait_port 1883 "$VAR/mosquitto.log"
fi

if listening 8080; then
  echo "run: port 8080 is taken; stop whatever serves it (another aetherisd?) and retry" >&2
  exit 1
fi
"$BUILD/server/aetherisd" --data-dir "$VAR" --sqlite-path "$VAR/aetheris.db" \
  > "$VAR/aetherisd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do
  curl -fs "$API/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "$API/readyz" >/dev/null || { echo "run: aetherisd not ready; see $VAR/aetherisd.log" >&2; exit 1; }
echo "aetherisd is ready at $API"
echo "replaying data/transactions.csv (50,000 rows) over MQTT..."
"$BUILD/tools/aetheris-replay" --file data/transactions.csv --progress

metric() { curl -fs "$API/v1/metrics" | python3 -c "import json,sys; c=json.load(sys.stdin)['counters']; print($1)"; }
for _ in $(seq 1 300); do
  [ "$(metric "c['scored'] + c['duplicates'] + sum(v for k, v in c.items() if k.startswith('invalid_'))")" -ge 50000 ] && break
  sleep 0.1
done
sleep 1 # the agents' batch windows
echo
metric "'scored %d events (%d duplicates), %d anomalies (%d immediate, %d batch); decisions: %d APPROVE, %d REVIEW, %d BLOCK' % (c['scored'], c['duplicates'], c['anomalies_immediate'] + c['anomalies_batch'], c['anomalies_immediate'], c['anomalies_batch'], c['decisions_approve'], c['decisions_review'], c['decisions_block'])"
ID=$(curl -fs "$API/v1/decisions?action=BLOCK&limit=1" | python3 -c "import json,sys; i=json.load(sys.stdin)['items']; print(i[0]['transaction_id'] if i else '')")
cat <<MSG

Try:
  curl -s $API/v1/health
  curl -s '$API/v1/anomalies?priority=immediate&limit=5'
  curl -s '$API/v1/decisions?action=BLOCK&limit=5'
  curl -s $API/v1/decisions/${ID:-<transaction_id>}
  curl -s $API/v1/metrics
  curl -s $API/metrics
Logs: $VAR/aetherisd.log (JSON lines), $VAR/redis.log, $VAR/mosquitto.log
Publish your own: mosquitto_pub -t aetheris/transactions/A1/1 -m '{"transactionId":1,"accountOrigin":"A1","amount":10}'

Serving until Ctrl-C.
MSG
wait "${PIDS[-1]}"
