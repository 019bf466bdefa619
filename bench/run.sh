#!/usr/bin/env bash
# pushloop benchmarks, side by side with the stacks an embedder would otherwise use.
#
#   bench/run.sh                 full run: every scenario, R=3 interleaved rounds
#   bench/run.sh --quick         a small version of each scenario, one round (< 1 min)
#   bench/run.sh --rounds 5      more rounds (or ROUNDS=5)
#   bench/run.sh --only churn    scenarios whose name contains a word (repeatable);
#                                --only micro runs just the microbenchmarks (bench/micro.sh)
#
# Builds pushloop (repo root), the peers and the load generator (bench/), installs the
# Node peer (npm ci), then for each scenario runs every server R times in turn
# (A B C, A B C, ...), a fresh server process per run, the server pinned to core 0 and
# the load generator to core 1. Prints one markdown table of medians with each server's
# ratio to pushloop, then the footprint table, then the microbenchmarks (bench/micro.sh).
# Raw JSON lines go to bench/results/.
# Everything talks to 127.0.0.1 only, and every run stops by itself.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
ROUNDS_GIVEN=${ROUNDS:+1}
ROUNDS=${ROUNDS:-3}
QUICK=0
ONLY=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --rounds) ROUNDS=$2; ROUNDS_GIVEN=1; shift ;;
    --only) ONLY+=("$2"); shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ] && [ -z "$ROUNDS_GIVEN" ]; then ROUNDS=1; fi

log() { echo "run.sh: $*" >&2; }

# ---- 1. Build -----------------------------------------------------------------------
log "building pushloop (repo root, release)"
PUSHLOOP="$ROOT/target/release/pushloop"
if ! (cd "$ROOT" && cargo build --release --quiet) >&2; then
  log "pushloop did not build; it is left out"
  PUSHLOOP=""
fi
log "building peers and load generator (bench/, release)"
(cd "$HERE" && cargo build --release --quiet) >&2
BIN="$HERE/target/release"
LOADGEN="$BIN/loadgen"

NODE_OK=0
if command -v node >/dev/null && command -v npm >/dev/null; then
  if [ ! -d "$HERE/node/node_modules/ws" ] || [ "$HERE/node/package-lock.json" -nt "$HERE/node/node_modules" ]; then
    log "installing the Node peer (npm ci)"
    (cd "$HERE/node" && npm ci --no-audit --no-fund --loglevel=error) >&2 && NODE_OK=1
  else
    NODE_OK=1
  fi
else
  log "node/npm not found; the Node peers are left out"
fi

# ---- 2. Limits and pinning -------------------------------------------------------------
HOLD_CONNS=10000
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $((HOLD_CONNS + 200)) ]; then
  HOLD_CONNS=$((NOFILE - 200))
  log "ulimit -n is $NOFILE: hold uses $HOLD_CONNS connections"
fi
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  PIN_SERVER=(taskset -c 0)
  PIN_LOADGEN=(taskset -c 1)
else
  log "no taskset or fewer than 2 cores: server and load generator are not pinned"
  PIN_SERVER=()
  PIN_LOADGEN=()
fi

# ---- 3. Servers and scenarios -------------------------------------------------------
# server_cmd LABEL ADDR: the command line that starts LABEL on ADDR.
server_cmd() {
  case "$1" in
    pushloop) echo "$PUSHLOOP --addr $2 --no-tick --max-connections 20000 --max-message-bytes 16777216" ;;
    tokio-tungstenite) echo "$BIN/tungstenite-echo --addr $2" ;;
    fastwebsockets) echo "$BIN/fastws-echo --addr $2" ;;
    axum) echo "$BIN/axum-sse --addr $2" ;;
    "node ws"|"node http") echo "node $HERE/node/server.js --addr $2" ;;
  esac
}
available() {
  case "$1" in
    pushloop) [ -n "$PUSHLOOP" ] && [ -x "$PUSHLOOP" ] ;;
    node*) [ "$NODE_OK" = 1 ] ;;
    *) true ;;
  esac
}

WS_PEERS=(pushloop tokio-tungstenite fastwebsockets "node ws")
SSE_PEERS=(pushloop axum "node http")
if [ "$QUICK" = 1 ]; then
  ECHO_T=(--secs 1 --warmup 0.3)
  HOLD=(--conns 1000 --settle-ms 300)
  FANOUT=(--conns 100 --events 50)
  CHURN=(--slots 16 --secs 1 --warmup 0.3)
else
  ECHO_T=(--secs 5 --warmup 1)
  HOLD=(--conns "$HOLD_CONNS" --settle-ms 1000)
  FANOUT=(--conns 1000 --events 200)
  CHURN=(--slots 16 --secs 5 --warmup 1)
fi
# Bounds in count as well as time; --timeout is the hard stop of each run.
SCENARIOS=(
  "echo 20 B text, 64 conns x 16 in flight|echo --conns 64 --depth 16 --size 20 --max-msgs 100000000 --timeout 60 ${ECHO_T[*]}|ws"
  "echo 16 KiB binary, 16 conns x 4 in flight|echo --conns 16 --depth 4 --size 16384 --binary --max-msgs 100000000 --timeout 60 ${ECHO_T[*]}|ws"
  "hold ${HOLD[1]} idle WebSockets|hold --timeout 120 ${HOLD[*]}|ws"
  "SSE fan-out ${FANOUT[1]} subscribers x ${FANOUT[3]} events, back to back|fanout --timeout 120 --window 1 ${FANOUT[*]}|sse"
  "SSE fan-out ${FANOUT[1]} subscribers x ${FANOUT[3]} events, 16 pipelined|fanout --timeout 120 --window 16 ${FANOUT[*]}|sse"
  "churn: open, echo 1, close; 16 slots|churn --max-msgs 10000000 --timeout 60 ${CHURN[*]}|ws"
)

mkdir -p "$HERE/results"
RESULTS="$HERE/results/run-$(date +%Y%m%d-%H%M%S).jsonl"
IDLE="$RESULTS.idle"
: >"$RESULTS"
: >"$IDLE"
PORT=$((17000 + RANDOM % 2000))

# start_server LABEL: start a fresh LABEL pinned to core 0; sets SPID and ADDR.
start_server() {
  PORT=$((PORT + 1))
  ADDR="127.0.0.1:$PORT"
  # shellcheck disable=SC2046
  "${PIN_SERVER[@]}" $(server_cmd "$1" "$ADDR") >/dev/null 2>&1 &
  SPID=$!
  for _ in $(seq 100); do
    if ! kill -0 "$SPID" 2>/dev/null; then return 1; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      sleep 0.2 # let it go idle before the baseline
      grep -q "^$1"$'\t' "$IDLE" || printf '%s\t%s\n' "$1" "$(awk '/^VmRSS:/ {print $2}' "/proc/$SPID/status")" >>"$IDLE"
      return 0
    fi
    sleep 0.05
  done
  return 1
}

stop_server() {
  kill "$SPID" 2>/dev/null || true
  for _ in $(seq 40); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$SPID" 2>/dev/null || true
  wait "$SPID" 2>/dev/null || true
}

trap 'stop_server 2>/dev/null; exit 130' INT TERM

# ---- 4. Run: per scenario, R rounds of every server in turn ----------------------------
STARTED=$SECONDS
for entry in "${SCENARIOS[@]}"; do
  IFS='|' read -r name loadargs kind <<<"$entry"
  if [ ${#ONLY[@]} -gt 0 ]; then
    keep=0
    for w in "${ONLY[@]}"; do case "$name" in *"$w"*) keep=1 ;; esac; done
    [ "$keep" = 1 ] || continue
  fi
  if [ "$kind" = sse ]; then servers=("${SSE_PEERS[@]}"); else servers=("${WS_PEERS[@]}"); fi
  for round in $(seq "$ROUNDS"); do
    for label in "${servers[@]}"; do
      available "$label" || continue
      log "[$name] round $round/$ROUNDS: $label"
      if ! start_server "$label"; then
        log "  $label did not start listening; skipped"
        stop_server
        continue
      fi
      # shellcheck disable=SC2086
      if ! "${PIN_LOADGEN[@]}" "$LOADGEN" $loadargs --addr "$ADDR" --pid "$SPID" \
          --label "$label" --scenario "$name" >>"$RESULTS"; then
        log "  loadgen failed against $label"
      fi
      stop_server
    done
  done
done

# ---- 5. Report ----------------------------------------------------------------------
log "measured in $((SECONDS - STARTED)) s"
echo
echo "## pushloop benchmarks ($(date -u +%Y-%m-%d), $ROUNDS round(s)$([ "$QUICK" = 1 ] && echo ', --quick'), medians)"
if [ -s "$RESULTS" ]; then
  echo
  "$LOADGEN" report "$RESULTS" --baseline pushloop
  echo
  echo "server pinned to core 0, load generator to core 1; CPU from /proc/PID/task/*/schedstat (ns;"
  echo "/proc/PID/stat ticks as the fallback); 'busy' = CPU-seconds / wall seconds of the measured interval."
  [ -n "$PUSHLOOP" ] && grep -q '"label":"pushloop"' "$RESULTS" || echo "pushloop was not measured (not built, or no /echo yet): ratios are '–'."
fi

# ---- 6. Footprint -------------------------------------------------------------------
size_of() { # stripped size of a binary, in KiB
  local tmp
  tmp=$(mktemp)
  cp "$1" "$tmp"
  strip "$tmp" 2>/dev/null || true
  echo $(( $(stat -c %s "$tmp") / 1024 ))
  rm -f "$tmp"
}
crates_of() { # distinct crates in the normal-dependency tree, the package itself excluded
  (cd "$1" && cargo tree -e normal --prefix none ${2:+-p "$2"} 2>/dev/null) |
    sed 's/ (\*)$//; s/ (proc-macro)$//' | sort -u | awk 'NF' | wc -l | awk '{print $1 - 1}'
}
idle_of() { awk -F'\t' -v l="$1" '$1 == l {printf "%.1f MiB", $2 / 1024; found = 1; exit} END {if (!found) printf "–"}' "$IDLE"; }

echo
echo "### footprint"
echo
echo "| server | stripped release binary | runtime crates (cargo tree -e normal) | idle RSS at start |"
echo "|---|---:|---:|---:|"
if [ -n "$PUSHLOOP" ] && [ -x "$PUSHLOOP" ]; then
  echo "| pushloop | $(size_of "$PUSHLOOP") KiB | $(crates_of "$ROOT") | $(idle_of pushloop) |"
fi
for p in "tokio-tungstenite tungstenite-echo" "fastwebsockets fastws-echo" "axum axum-sse"; do
  set -- $p
  echo "| $1 | $(size_of "$BIN/$2") KiB | $(crates_of "$HERE" "$2") | $(idle_of "$1") |"
done
if [ "$NODE_OK" = 1 ]; then
  node_idle=$(idle_of "node ws")
  [ "$node_idle" != "–" ] || node_idle=$(idle_of "node http")
  echo "| node $(node --version) + ws $(node -p 'require(process.argv[1]).version' "$HERE/node/node_modules/ws/package.json") | node itself: $(( $(stat -c %s "$(readlink -f "$(command -v node)")") / 1024 )) KiB | npm packages: 1 (ws, no deps) | $node_idle |"
fi
echo
echo "raw results: ${RESULTS#"$ROOT"/}"

# ---- 7. Microbenchmarks ---------------------------------------------------------------
MICRO=1
if [ ${#ONLY[@]} -gt 0 ]; then
  MICRO=0
  for w in "${ONLY[@]}"; do case micro in *"$w"*) MICRO=1 ;; esac; done
fi
if [ "$MICRO" = 1 ]; then
  echo
  if [ "$QUICK" = 1 ]; then "$HERE/micro.sh" --quick; else "$HERE/micro.sh"; fi
fi
