#!/usr/bin/env bash
# The storage backends under the fan-out load (issue 17), one markdown table of medians:
#
#   1. publish → delivery over SSE with history in memory (one node), in Redis Streams
#      (one node), and in Redis Streams across two nodes on this box (subscribers on B,
#      publishes on A: every event goes A → Redis → B);
#   2. file log appends per second per fsync policy (always, every 10 ms, never), with
#      memory beside them: publishes answered per second, pipelined 16 deep, one subscriber.
#
#   bench/storage.sh               # 3 interleaved rounds (about 2 min after the build)
#   bench/storage.sh --rounds 1    # a smoke run
#
# Builds pushloop with --features redis and the load generator, in release mode. Needs
# redis-server (Debian: apt-get install redis-server); each round starts its own on a
# free port with persistence off. Every server (pushloop nodes and redis-server) is
# pinned to core 0 and the load generator to core 1, as in run.sh. Raw JSON lines go to
# bench/results/storage-*.jsonl (git-ignored).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROUNDS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    *) echo "usage: bench/storage.sh [--rounds N]" >&2; exit 2 ;;
  esac
done
log() { printf '[storage] %s\n' "$*" >&2; }
command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }

log "building pushloop --features redis and the load generator (release)"
(cd "$ROOT" && cargo build --release --features redis --bin pushloop >&2)
(cd "$HERE" && cargo build --release -p loadgen >&2)
TARGET=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
PUSHLOOP=$TARGET/release/pushloop
LOADGEN=$HERE/target/release/loadgen
mkdir -p "$HERE/results"
OUT=$HERE/results/storage-$(date +%Y%m%d-%H%M%S).jsonl
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  PIN_SERVER=(taskset -c 0)
  PIN_LOADGEN=(taskset -c 1)
else
  PIN_SERVER=()
  PIN_LOADGEN=()
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_node ARGS...: a demo on a free port; sets NODE_ADDR and NODE_PID once it listens
# (and, on Redis, once its link is up).
start_node() {
  local port
  port=$(free_port)
  "${PIN_SERVER[@]}" "$PUSHLOOP" --addr "127.0.0.1:$port" --no-tick --quiet "$@" >/dev/null 2>&1 &
  NODE_PID=$!
  PIDS+=("$NODE_PID")
  NODE_ADDR=127.0.0.1:$port
  for _ in $(seq 200); do
    if curl -fsS "http://$NODE_ADDR/stats" 2>/dev/null | grep -q '"connected":true'; then return 0; fi
    sleep 0.05
  done
  echo "node on $NODE_ADDR did not come up" >&2
  exit 1
}

start_redis() {
  REDIS_PORT=$(free_port)
  "${PIN_SERVER[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  for _ in $(seq 100); do
    if redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then return 0; fi
    sleep 0.05
  done
  echo "redis-server did not start" >&2
  exit 1
}

stop_all() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}

# run SCENARIO LABEL LOADGEN-ARGS...: one loadgen fanout run, its JSON line kept.
run() {
  local scenario=$1 label=$2
  shift 2
  "${PIN_LOADGEN[@]}" "$LOADGEN" fanout --addr "$SUB_ADDR" --pid "$SUB_PID" \
    --scenario "$scenario" --label "$label" --timeout 120 "$@" >>"$OUT"
}

# setup LABEL: the nodes for LABEL; sets SUB_ADDR/SUB_PID (subscribers) and PUB (extra args).
setup() {
  PUB=()
  case "$1" in
    memory) start_node ;;
    redis) start_redis; start_node --redis "redis://127.0.0.1:$REDIS_PORT" ;;
    "redis, 2 nodes")
      start_redis
      start_node --redis "redis://127.0.0.1:$REDIS_PORT"
      PUB=(--publish-addr "$NODE_ADDR")
      start_node --redis "redis://127.0.0.1:$REDIS_PORT" ;;
    "file, fsync always") start_node --log-dir "$WORK/log-$RANDOM" --fsync always ;;
    "file, fsync 10ms") start_node --log-dir "$WORK/log-$RANDOM" --fsync 10ms ;;
    "file, fsync never") start_node --log-dir "$WORK/log-$RANDOM" --fsync never ;;
  esac
  SUB_ADDR=$NODE_ADDR
  SUB_PID=$NODE_PID
}

FANOUT_SCENARIO="SSE fan-out 100 subscribers x 500 events, 16 pipelined"
PACED_SCENARIO="SSE fan-out 100 subscribers x 200 events, one every 10 ms"
APPEND_SCENARIO="publishes, 1 subscriber x 5000 events, 16 pipelined"
for round in $(seq "$ROUNDS"); do
  for label in memory redis "redis, 2 nodes"; do
    log "round $round/$ROUNDS: $label"
    setup "$label"
    run "$FANOUT_SCENARIO" "$label" --conns 100 --events 500 --window 16 "${PUB[@]}"
    stop_all
    setup "$label"
    run "$PACED_SCENARIO" "$label" --conns 100 --events 200 --interval-us 10000 "${PUB[@]}"
    stop_all
  done
  for label in memory "file, fsync always" "file, fsync 10ms" "file, fsync never"; do
    log "round $round/$ROUNDS: $label"
    setup "$label"
    run "$APPEND_SCENARIO" "$label" --conns 1 --events 5000 --window 16
    stop_all
  done
done

log "raw lines: $OUT"
python3 - "$OUT" <<'EOF'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")
order = []
for r in rows:
    key = (r["scenario"], r["label"])
    if key not in order:
        order.append(key)
print("| scenario | backend | runs | deliveries/s | publishes/s | p50 µs | p99 µs | lost |")
print("|---|---|---|---|---|---|---|---|")
for scenario, label in order:
    rs = [r for r in rows if (r["scenario"], r["label"]) == (scenario, label)]
    print(f"| {scenario} | {label} | {len(rs)} | {med([r.get('deliveries_per_s') for r in rs]):,.0f} "
          f"| {med([r.get('publishes_per_s') for r in rs]):,.0f} "
          f"| {med([r.get('latency_p50_us') for r in rs]):,.0f} | {med([r.get('latency_p99_us') for r in rs]):,.0f} "
          f"| {sum(r.get('lost', 0) for r in rs)} |")
EOF
