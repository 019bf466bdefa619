#!/usr/bin/env bash
# pushloop benchmarks, side by side with the stacks an embedder would otherwise use.
#
#   bench/run.sh                 full run: every scenario, R=3 interleaved rounds
#   bench/run.sh --quick         a small version of each scenario, one round (< 1 min)
#   bench/run.sh --rounds 5      more rounds (or ROUNDS=5)
#   bench/run.sh --only churn    scenarios whose name contains a word (repeatable);
#                                --only micro runs just the microbenchmarks (bench/micro.sh)
#   bench/run.sh --baseline REV  also an earlier pushloop, built from git revision REV, as
#                                the server `pushloop@REV` in the same interleaved rounds
#
# Builds pushloop (repo root, one package or a workspace), the peers and the load
# generator (bench/), µWebSockets (../shared/peers/uws/build.sh, if present), installs the
# Node peer (npm ci), then for each scenario runs every server R times in turn
# (A B C, A B C, ...), a fresh server process per run, the server pinned to core 0 and
# the load generator to core 1. Prints one markdown table of medians with each server's
# ratio to pushloop, the key metrics with one column per server, the before/after table
# (with --baseline), the footprint table, then the microbenchmarks (bench/micro.sh).
# Raw JSON lines go to bench/results/.
# Everything talks to 127.0.0.1 only, and every run stops by itself.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
ROUNDS_GIVEN=${ROUNDS:+1}
ROUNDS=${ROUNDS:-3}
QUICK=0
ONLY=()
BASELINE_REV=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --rounds) ROUNDS=$2; ROUNDS_GIVEN=1; shift ;;
    --only) ONLY+=("$2"); shift ;;
    --baseline) BASELINE_REV=$2; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ] && [ -z "$ROUNDS_GIVEN" ]; then ROUNDS=1; fi

log() { echo "run.sh: $*" >&2; }

SPID=""
BASE_TREE=""
cleanup() {
  if [ -n "$SPID" ]; then stop_server; fi
  if [ -n "$BASE_TREE" ]; then
    git -C "$ROOT" worktree remove --force "$BASE_TREE" >/dev/null 2>&1 || rm -rf "$BASE_TREE"
    BASE_TREE=""
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 1. Build -----------------------------------------------------------------------
# target_dir DIR: where cargo puts what it builds for the workspace at DIR
# (CARGO_TARGET_DIR and build.target-dir respected).
target_dir() {
  local meta
  if ! meta=$(cd "$1" && cargo metadata --no-deps --format-version 1 2>/dev/null); then
    echo "$1/target"
    return
  fi
  meta=${meta#*\"target_directory\":\"}
  echo "${meta%%\"*}"
}
# build_pushloop DIR: build the `pushloop` binary of the checkout at DIR (release) and
# print its path. DIR may be one package or a workspace whose member has the binary:
# `--workspace --bin pushloop` finds it in either, and builds only what it needs.
build_pushloop() {
  (cd "$1" && cargo build --release --quiet --workspace --bin pushloop) >&2 || return 1
  local bin
  bin="$(target_dir "$1")/release/pushloop"
  [ -x "$bin" ] || return 1
  echo "$bin"
}
# pushloop_flags BIN: the benchmark's flags, those of them that BIN knows (an earlier
# build may lack some); bounded in time in case BIN does not know --help either.
pushloop_flags() {
  local help flags=()
  help=$(timeout 5 "$1" --help 2>&1 </dev/null || true)
  if [[ $help == *--no-tick* ]]; then flags+=(--no-tick); fi
  if [[ $help == *--max-connections* ]]; then flags+=(--max-connections 20000); fi
  if [[ $help == *--max-message-bytes* ]]; then flags+=(--max-message-bytes 16777216); fi
  echo "${flags[*]}"
}
# crates_of DIR [PACKAGE [FEATURES]]: distinct crates in the normal-dependency tree, the
# package itself excluded (for a workspace, its other crates count); "–" if cargo cannot tell.
crates_of() {
  local tree
  if ! tree=$(cd "$1" && cargo tree -e normal --prefix none ${2:+-p "$2"} ${3:+--features "$3"} 2>/dev/null); then
    echo "–"
    return
  fi
  echo "$tree" | sed 's/ (\*)$//; s/ (proc-macro)$//' | sort -u | awk 'NF' | wc -l | awk '{print $1 - 1}'
}

# pushloop with TLS (--features tls), for the wss:// scenarios, copied out to
# bench/target/pushloop-tls before the default build relinks the same path.
log "building pushloop --features tls (repo root, release)"
PUSHLOOP_TLS=""
PUSHLOOP_TLS_CRATES="–"
if (cd "$ROOT" && cargo build --release --quiet --workspace --bin pushloop --features pushloop/tls) >&2; then
  mkdir -p "$HERE/target"
  cp "$(target_dir "$ROOT")/release/pushloop" "$HERE/target/pushloop-tls"
  PUSHLOOP_TLS="$HERE/target/pushloop-tls"
  PUSHLOOP_TLS_CRATES=$(crates_of "$ROOT" pushloop tls)
else
  log "pushloop --features tls did not build; the wss:// scenarios leave it out"
fi

log "building pushloop (repo root, release)"
PUSHLOOP=""
PUSHLOOP_FLAGS=""
PUSHLOOP_CRATES="–"
if PUSHLOOP=$(build_pushloop "$ROOT"); then
  PUSHLOOP_FLAGS=$(pushloop_flags "$PUSHLOOP")
  PUSHLOOP_CRATES=$(crates_of "$ROOT" pushloop)
else
  log "pushloop did not build; it is left out"
  PUSHLOOP=""
fi
# The same without default features (no permessage-deflate), for the footprint
# table only; its own target dir, so the binary above stays what it is.
PUSHLOOP_PLAIN=""
if [ -n "$PUSHLOOP" ] && (cd "$ROOT" && CARGO_TARGET_DIR="$HERE/target/no-default-features" \
    cargo build --release --quiet --workspace --bin pushloop --no-default-features) >&2; then
  PUSHLOOP_PLAIN="$HERE/target/no-default-features/release/pushloop"
fi

# An earlier pushloop, side by side: REV checked out in a temporary worktree, built with
# its own target dir under bench/target (kept, so its dependencies build once), the binary
# copied out and the worktree removed. Ratios stay against the current pushloop.
BASE_LABEL=""
BASE_BIN=""
BASE_FLAGS=""
BASE_CRATES="–"
if [ -n "$BASELINE_REV" ]; then
  if ! BASE_COMMIT=$(git -C "$ROOT" rev-parse --verify --quiet "$BASELINE_REV^{commit}"); then
    log "--baseline $BASELINE_REV: no such revision"
    exit 2
  fi
  BASE_LABEL="pushloop@$BASELINE_REV"
  log "building $BASE_LABEL (commit ${BASE_COMMIT:0:12}, release, in a temporary worktree)"
  BASE_TREE=$(mktemp -d "${TMPDIR:-/tmp}/pushloop-baseline.XXXXXX")
  git -C "$ROOT" worktree add --detach --quiet "$BASE_TREE" "$BASE_COMMIT" >&2
  mkdir -p "$HERE/target/baseline"
  if bin=$(CARGO_TARGET_DIR="$HERE/target/baseline" build_pushloop "$BASE_TREE"); then
    BASE_BIN="$HERE/target/baseline/pushloop-$BASE_COMMIT"
    cp "$bin" "$BASE_BIN"
    BASE_FLAGS=$(pushloop_flags "$BASE_BIN")
    BASE_CRATES=$(crates_of "$BASE_TREE" pushloop)
  else
    log "$BASE_LABEL did not build; it is left out"
  fi
  cleanup
fi

log "building peers and load generator (bench/, release)"
(cd "$HERE" && cargo build --release --quiet --target-dir "$HERE/target") >&2
BIN="$HERE/target/release"
LOADGEN="$BIN/loadgen"

# µWebSockets (C++), from the vendored sources in shared/, a sibling of the repository
# (on CI too; UWS_DIR overrides). Built into bench/target/uws when its sources are newer
# than the binary. Nothing of it is copied into this repository.
UWS_LABEL="µWebSockets"
UWS_DIR=${UWS_DIR:-$ROOT/../shared/peers/uws}
UWS_BIN=""
UWS_VERSION=""
if [ -f "$UWS_DIR/build.sh" ]; then
  UWS_DIR=$(cd "$UWS_DIR" && pwd)
  UWS_OUT="$HERE/target/uws"
  UWS_VERSION=$(grep -o 'tag v[0-9][0-9.]*' "$UWS_DIR/vendor/SOURCES.md" 2>/dev/null | head -n 1 | cut -d' ' -f2 || true)
  if [ -x "$UWS_OUT/peer-uws" ] && [ -z "$(find "$UWS_DIR" -newer "$UWS_OUT/peer-uws" -print -quit)" ]; then
    UWS_BIN="$UWS_OUT/peer-uws"
  else
    log "building µWebSockets ($UWS_DIR/build.sh, C++)"
    if bash "$UWS_DIR/build.sh" "$UWS_OUT" >&2; then
      UWS_BIN="$UWS_OUT/peer-uws"
    else
      log "µWebSockets did not build (g++ >= 12 needed); it is left out"
    fi
  fi
else
  log "no $UWS_DIR/build.sh (shared/ beside the repository); µWebSockets is left out"
fi

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

# A throwaway certificate for the wss:// scenarios (self-signed, localhost and
# 127.0.0.1, ECDSA P-256 as browsers and Let's Encrypt default to), made now: no key
# is kept in the repository. Without openssl the wss:// scenarios are skipped.
TLS_DIR="$HERE/target/tls"
TLS_CERT=""
TLS_KEY=""
if command -v openssl >/dev/null && mkdir -p "$TLS_DIR" &&
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -addext basicConstraints=critical,CA:FALSE \
    -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" 2>/dev/null; then
  TLS_CERT="$TLS_DIR/cert.pem"
  TLS_KEY="$TLS_DIR/key.pem"
else
  log "no openssl: the wss:// scenarios are skipped"
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
# server_cmd LABEL ADDR [KIND]: the command line that starts LABEL on ADDR; KIND wss
# starts its TLS build (pushloop --features tls, tungstenite-tls-echo) with TLS_CERT.
server_cmd() {
  if [ "${3:-}" = wss ]; then
    case "$1" in
      pushloop) echo "$PUSHLOOP_TLS --tls-addr $2 --tls-cert $TLS_CERT --tls-key $TLS_KEY $PUSHLOOP_FLAGS" ;;
      tokio-tungstenite) echo "$BIN/tungstenite-tls-echo --addr $2 --cert $TLS_CERT --key $TLS_KEY" ;;
    esac
    return
  fi
  case "$1" in
    pushloop) echo "$PUSHLOOP --addr $2 $PUSHLOOP_FLAGS" ;;
    "pushloop takeover") echo "$PUSHLOOP --addr $2 $PUSHLOOP_FLAGS --deflate-takeover" ;;
    "pushloop no deflate") echo "$PUSHLOOP --addr $2 $PUSHLOOP_FLAGS --no-deflate" ;;
    "$THREADS_LABEL") echo "$PUSHLOOP --addr $2 $PUSHLOOP_FLAGS --threads 2" ;;
    "$BASE_LABEL") echo "$BASE_BIN --addr $2 $BASE_FLAGS" ;;
    "$UWS_LABEL") echo "$UWS_BIN --addr $2" ;;
    tokio-tungstenite) echo "$BIN/tungstenite-echo --addr $2" ;;
    fastwebsockets) echo "$BIN/fastws-echo --addr $2" ;;
    axum) echo "$BIN/axum-sse --addr $2" ;;
    "node ws"|"node http") echo "node $HERE/node/server.js --addr $2" ;;
  esac
}
available() {
  if [ "${2:-}" = wss ]; then
    [ -n "$TLS_CERT" ] || return 1
    case "$1" in
      pushloop) [ -n "$PUSHLOOP_TLS" ] ;;
      *) true ;;
    esac
    return
  fi
  case "$1" in
    pushloop) [ -n "$PUSHLOOP" ] ;;
    "pushloop takeover") [ -n "$PUSHLOOP" ] && [[ $PUSHLOOP_HELP == *--deflate-takeover* ]] ;;
    "pushloop no deflate") [ -n "$PUSHLOOP" ] && [[ $PUSHLOOP_HELP == *--no-deflate* ]] ;;
    "$THREADS_LABEL") [ -n "$PUSHLOOP" ] && [[ $PUSHLOOP_HELP == *--threads* ]] ;;
    "$BASE_LABEL") [ -n "$BASE_BIN" ] ;;
    "$UWS_LABEL") [ -n "$UWS_BIN" ] ;;
    node*) [ "$NODE_OK" = 1 ] ;;
    *) true ;;
  esac
}

# pushloop with two loops (--threads 2), pinned like every server to core 0: both loops
# share that core, so its CPU per message against `pushloop` is the cost of crossing
# loops (the shared topics' lock, the inboxes, the wake-ups), not a speed-up.
THREADS_LABEL="pushloop×2"
PUSHLOOP_HELP=$([ -n "$PUSHLOOP" ] && timeout 5 "$PUSHLOOP" --help 2>&1 </dev/null || true)
PUSHLOOPS=(pushloop "$THREADS_LABEL")
if [ -n "$BASE_LABEL" ]; then PUSHLOOPS+=("$BASE_LABEL"); fi
WS_PEERS=("${PUSHLOOPS[@]}" "$UWS_LABEL" tokio-tungstenite fastwebsockets "node ws")
SSE_PEERS=("${PUSHLOOPS[@]}" "$UWS_LABEL" axum "node http")
# µWebSockets sits out pipelined publishes: uWS closes a connection on which a request
# arrives while an earlier response is still pending (it allows only synchronous
# pipelining, HttpContext.h), and peer-uws answers a publish after its fan-out, from a loop
# post-handler. That is the peer's design, not a fault in the load.
SSE_PIPELINED_PEERS=("${PUSHLOOPS[@]}" axum "node http")
# permessage-deflate (RFC 7692): the load offers it as browsers do. pushloop in its
# shared mode (the default), with a context per socket, and declining it (the same
# load, uncompressed: the reference); Node ws with perMessageDeflate (its defaults:
# context takeover, threshold 1 KiB).
DEFLATE_ECHO_PEERS=("${PUSHLOOPS[@]}" "pushloop takeover" "pushloop no deflate" "node ws")
DEFLATE_FANOUT_PEERS=("${PUSHLOOPS[@]}" "pushloop no deflate" "node ws")
DEFLATE_HOLD_PEERS=("${PUSHLOOPS[@]}" "pushloop takeover" "pushloop no deflate")
# Over TLS: pushloop --features tls and tokio-tungstenite behind tokio-rustls, both on
# rustls 0.23 with ring (TLS 1.3, ALPN http/1.1), so the comparison is of the servers.
WSS_PEERS=(pushloop tokio-tungstenite)
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
  "opens: ${HOLD[1]} WebSocket opens, 256 at a time|opens --timeout 120 --conns ${HOLD[1]}|ws"
  "SSE fan-out ${FANOUT[1]} subscribers x ${FANOUT[3]} events, back to back|fanout --timeout 120 --window 1 ${FANOUT[*]}|sse"
  "SSE fan-out ${FANOUT[1]} subscribers x ${FANOUT[3]} events, 16 pipelined|fanout --timeout 120 --window 16 ${FANOUT[*]}|sse-pipelined"
  "SSE fan-out ${FANOUT[1]} subscribers x ${FANOUT[3]} events, one every 10 ms|fanout --timeout 120 --interval-us 10000 ${FANOUT[*]}|sse"
  "churn: open, echo 1, close; 16 slots|churn --max-msgs 10000000 --timeout 60 ${CHURN[*]}|ws"
  "deflate: echo 1 KiB JSON compressed, 64 conns x 16 in flight|echo --deflate --conns 64 --depth 16 --size 1024 --max-msgs 100000000 --timeout 60 ${ECHO_T[*]}|deflate-echo"
  "deflate: WebSocket fan-out ${FANOUT[1]} subscribers x ${FANOUT[3]} events of 4 KiB, back to back|wsfanout --deflate --timeout 120 --window 1 --size 4096 ${FANOUT[*]}|deflate-fanout"
  "deflate: hold ${HOLD[1]} idle compressed WebSockets, each after one 1 KiB echo|hold --deflate --warm-msgs 1 --size 1024 --timeout 120 ${HOLD[*]}|deflate-hold"
  "wss: echo 20 B text, 64 conns x 16 in flight|echo --tls-ca $TLS_CERT --conns 64 --depth 16 --size 20 --max-msgs 100000000 --timeout 60 ${ECHO_T[*]}|wss"
  "wss: hold ${HOLD[1]} idle WebSockets over TLS|hold --tls-ca $TLS_CERT --timeout 120 ${HOLD[*]}|wss"
  "wss: opens: ${HOLD[1]} TLS handshakes (full, TLS 1.3) + WebSocket opens, 256 at a time|opens --tls-ca $TLS_CERT --timeout 120 --conns ${HOLD[1]}|wss"
)

mkdir -p "$HERE/results"
RESULTS="$HERE/results/run-$(date +%Y%m%d-%H%M%S).jsonl"
IDLE="$RESULTS.idle"
: >"$RESULTS"
: >"$IDLE"
PORT=$((17000 + RANDOM % 2000))

# start_server LABEL [KIND]: start a fresh LABEL pinned to core 0; sets SPID and ADDR.
start_server() {
  PORT=$((PORT + 1))
  ADDR="127.0.0.1:$PORT"
  # shellcheck disable=SC2046
  "${PIN_SERVER[@]}" $(server_cmd "$1" "$ADDR" "${2:-}") >/dev/null 2>&1 &
  SPID=$!
  for _ in $(seq 100); do
    if ! kill -0 "$SPID" 2>/dev/null; then return 1; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      sleep 0.2 # let it go idle before the baseline
      cut -f1 "$IDLE" | grep -qxF -- "$1" || printf '%s\t%s\n' "$1" "$(awk '/^VmRSS:/ {print $2}' "/proc/$SPID/status")" >>"$IDLE"
      return 0
    fi
    sleep 0.05
  done
  return 1
}

stop_server() {
  [ -n "$SPID" ] || return 0
  kill "$SPID" 2>/dev/null || true
  for _ in $(seq 40); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$SPID" 2>/dev/null || true
  wait "$SPID" 2>/dev/null || true
  SPID=""
}

# ---- 4. Run: per scenario, R rounds of every server in turn ----------------------------
STARTED=$SECONDS
for entry in "${SCENARIOS[@]}"; do
  IFS='|' read -r name loadargs kind <<<"$entry"
  if [ ${#ONLY[@]} -gt 0 ]; then
    keep=0
    for w in "${ONLY[@]}"; do case "$name" in *"$w"*) keep=1 ;; esac; done
    [ "$keep" = 1 ] || continue
  fi
  case "$kind" in
    sse) servers=("${SSE_PEERS[@]}") ;;
    sse-pipelined) servers=("${SSE_PIPELINED_PEERS[@]}") ;;
    deflate-echo) servers=("${DEFLATE_ECHO_PEERS[@]}") ;;
    deflate-fanout) servers=("${DEFLATE_FANOUT_PEERS[@]}") ;;
    deflate-hold) servers=("${DEFLATE_HOLD_PEERS[@]}") ;;
    wss) servers=("${WSS_PEERS[@]}") ;;
    *) servers=("${WS_PEERS[@]}") ;;
  esac
  for round in $(seq "$ROUNDS"); do
    for label in "${servers[@]}"; do
      available "$label" "$kind" || continue
      log "[$name] round $round/$ROUNDS: $label"
      if ! start_server "$label" "$kind"; then
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
echo
echo "pushloop = $(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')$([ -n "$BASE_BIN" ] && echo "; $BASE_LABEL = ${BASE_COMMIT:0:12}")"
if [ -s "$RESULTS" ]; then
  echo
  REPORT=(--baseline pushloop)
  if [ -n "$BASE_BIN" ]; then REPORT+=(--before "$BASE_LABEL"); fi
  "$LOADGEN" report "$RESULTS" "${REPORT[@]}"
  echo
  echo "server pinned to core 0, load generator to core 1; CPU from /proc/PID/task/*/schedstat (ns;"
  echo "/proc/PID/stat ticks as the fallback); 'busy' = CPU-seconds / wall seconds of the measured interval."
  if [ -n "$UWS_BIN" ] && grep -q '16 pipelined' "$RESULTS"; then
    echo "$UWS_LABEL sits out the pipelined fan-out: uWS closes a connection that sends a request while"
    echo "an earlier response is pending (synchronous pipelining only), and peer-uws answers a publish after its fan-out."
  fi
  [ -n "$PUSHLOOP" ] && grep -q '"label":"pushloop"' "$RESULTS" || echo "pushloop was not measured (not built, or no /echo yet): ratios are '–'."
  if grep -q '"loop_split"' "$RESULTS"; then
    echo
    echo "$THREADS_LABEL: connections per loop (from its /stats, all open; the probe's own connection counted):"
    grep '"loop_split"' "$RESULTS" | sed 's/.*"scenario":"\([^"]*\)".*"loop_split":"\([^"]*\)".*/- \1: \2/; s/.*"loop_split":"\([^"]*\)".*"scenario":"\([^"]*\)".*/- \2: \1/' | sort | uniq
  fi
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
idle_of() { awk -F'\t' -v l="$1" '$1 == l {printf "%.1f MiB", $2 / 1024; found = 1; exit} END {if (!found) printf "–"}' "$IDLE"; }

echo
echo "### footprint"
echo
echo "| server | stripped release binary | runtime crates (cargo tree -e normal) | idle RSS at start |"
echo "|---|---:|---:|---:|"
if [ -n "$PUSHLOOP" ]; then
  echo "| pushloop | $(size_of "$PUSHLOOP") KiB | $PUSHLOOP_CRATES | $(idle_of pushloop) |"
fi
if [ -n "$PUSHLOOP_PLAIN" ]; then
  plain_crates=$(cd "$ROOT" && cargo tree -e normal --prefix none -p pushloop --no-default-features 2>/dev/null |
    sed 's/ (\*)$//; s/ (proc-macro)$//' | sort -u | awk 'NF' | wc -l | awk '{print $1 - 1}')
  echo "| pushloop \`--no-default-features\` (no permessage-deflate) | $(size_of "$PUSHLOOP_PLAIN") KiB | $plain_crates | – |"
fi
if [ -n "$PUSHLOOP_TLS" ]; then
  echo "| pushloop --features tls (rustls + ring) | $(size_of "$PUSHLOOP_TLS") KiB | $PUSHLOOP_TLS_CRATES | – |"
fi
if [ -n "$BASE_BIN" ]; then
  echo "| $BASE_LABEL | $(size_of "$BASE_BIN") KiB | $BASE_CRATES | $(idle_of "$BASE_LABEL") |"
fi
if [ -n "$UWS_BIN" ]; then
  echo "| $UWS_LABEL ${UWS_VERSION:-?} (C++, g++ -O3 -flto) | $(size_of "$UWS_BIN") KiB + libstdc++ (shared) | – (uWebSockets headers + uSockets, vendored) | $(idle_of "$UWS_LABEL") |"
fi
for p in "tokio-tungstenite tungstenite-echo" "tokio-tungstenite+rustls tungstenite-tls-echo" "fastwebsockets fastws-echo" "axum axum-sse"; do
  read -r label bin <<<"$p"
  echo "| $label | $(size_of "$BIN/$bin") KiB | $(crates_of "$HERE" "$bin") | $(idle_of "$label") |"
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
  for w in "${ONLY[@]}"; do if [[ micro == *"$w"* ]]; then MICRO=1; fi; done
fi
if [ "$MICRO" = 1 ]; then
  echo
  MICRO_ARGS=()
  if [ "$QUICK" = 1 ]; then MICRO_ARGS=(--quick); fi
  # micro links pushloop's library: a change in its crate layout or API can break it
  # (fix bench/micro/Cargo.toml's path and imports); the tables above stand anyway.
  "$HERE/micro.sh" "${MICRO_ARGS[@]}" || log "the microbenchmarks did not build or run (see above)"
fi
