#!/usr/bin/env bash
# Project issue 11, "One client must never stall the loop or grow memory without bound":
# the attacks of items 1, 2 and 4, against an earlier pushloop and the current one.
#
#   bench/hostile.sh                  before = 9d7a182 (the last release before the fix)
#   bench/hostile.sh --baseline REV   before = the demo binary built from git revision REV
#   bench/hostile.sh --quick          5 s floods, 100 long-poll connections, one round
#   bench/hostile.sh --rounds N       floods N times each, the worst wait reported (3)
#
# Builds the current demo binary (repo root, release), the one of REV (in a temporary
# worktree, target dir bench/target/baseline, kept; the binary is cached as
# bench/target/baseline/pushloop-COMMIT) and the hostile client (bench/hostile). Then,
# for each attack, runs a fresh `pushloop --no-tick` of each build on 127.0.0.1 (server
# pinned to core 0, client to core 1 when there are two cores) and prints one markdown
# table: item, attack and measure, before, after. A flood's figure is the worst of its
# rounds: whether a flood starves the old loop depends on whether the flooder outpaces
# it, which varies with the machine's load. Raw lines go to bench/results/.
# Everything talks to 127.0.0.1 only; every attack is bounded in count and in time and
# stops by itself, and a server whose RSS passes 12 GB is killed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
BASELINE_REV=9d7a182
QUICK=0
ROUNDS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --baseline) BASELINE_REV=$2; shift ;;
    --quick) QUICK=1 ;;
    --rounds) ROUNDS=$2; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "hostile.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

log() { echo "hostile.sh: $*" >&2; }

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

# ---- 1. Build ------------------------------------------------------------------------
# target_dir DIR: where cargo puts what it builds for the workspace at DIR.
target_dir() {
  local meta
  if ! meta=$(cd "$1" && cargo metadata --no-deps --format-version 1 2>/dev/null); then
    echo "$1/target"
    return
  fi
  meta=${meta#*\"target_directory\":\"}
  echo "${meta%%\"*}"
}
build_pushloop() {
  (cd "$1" && cargo build --release --quiet --workspace --bin pushloop) >&2 || return 1
  local bin
  bin="$(target_dir "$1")/release/pushloop"
  [ -x "$bin" ] || return 1
  echo "$bin"
}

log "building pushloop (repo root, release)"
AFTER_BIN=$(build_pushloop "$ROOT")
# Named after the last commit that changed the server (tests and bench/ do not count).
AFTER_LABEL="$(git -C "$ROOT" log -1 --format=%h --abbrev=9 -- src proto Cargo.toml Cargo.lock)$(git -C "$ROOT" diff --quiet HEAD -- src proto Cargo.toml Cargo.lock 2>/dev/null || echo '+changes')"

BASE_COMMIT=$(git -C "$ROOT" rev-parse --verify --quiet "$BASELINE_REV^{commit}") || {
  log "--baseline $BASELINE_REV: no such revision"
  exit 2
}
BEFORE_BIN="$HERE/target/baseline/pushloop-$BASE_COMMIT"
if [ ! -x "$BEFORE_BIN" ]; then
  log "building pushloop@$BASELINE_REV (commit ${BASE_COMMIT:0:12}, release, in a temporary worktree)"
  BASE_TREE=$(mktemp -d "${TMPDIR:-/tmp}/pushloop-baseline.XXXXXX")
  git -C "$ROOT" worktree add --detach --quiet "$BASE_TREE" "$BASE_COMMIT" >&2
  mkdir -p "$HERE/target/baseline"
  bin=$(CARGO_TARGET_DIR="$HERE/target/baseline" build_pushloop "$BASE_TREE")
  cp "$bin" "$BEFORE_BIN"
  cleanup
fi
BEFORE_LABEL=${BASE_COMMIT:0:9}

log "building the hostile client (bench/, release)"
(cd "$HERE" && cargo build --release --quiet -p hostile --target-dir "$HERE/target") >&2
HOSTILE="$HERE/target/release/hostile"

# ---- 2. Limits, pinning, attacks --------------------------------------------------------
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  PIN_SERVER=(taskset -c 0)
  PIN_CLIENT=(taskset -c 1)
else
  PIN_SERVER=()
  PIN_CLIENT=()
fi
if [ "$QUICK" = 1 ]; then
  SECS=5
  POLLERS=100
  ROUNDS=${ROUNDS:-1}
else
  SECS=10
  POLLERS=500
  ROUNDS=${ROUNDS:-3}
fi
WORST=""
if [ "$ROUNDS" -gt 1 ]; then WORST=" (worst of $ROUNDS runs)"; fi
# item|attack and measure|hostile arguments (a sigterm attack gives two rows)
ATTACKS=(
  "1|ping flood ${SECS} s (the flooder reads all): longest wait of a \`GET /stats\` probe every 100 ms$WORST, s|flood --kind ping --secs $SECS"
  "1|echo flood ${SECS} s, 1-byte messages: longest probe wait$WORST, s|flood --kind echo --secs $SECS"
  "1|pipelined \`GET /stats\` flood ${SECS} s: longest probe wait$WORST, s|flood --kind http --secs $SECS"
  "1|SIGTERM 2 s into a ${SECS} s ping flood: the flooder gets Close 1001 after, s · the process exits after, s|sigterm --secs $SECS"
  "2|124 KB of pipelined \`GET /poll\` (full history, 346 KB answers), never read: server RSS growth, MB|pipeline --path /poll --bytes 124000 --fill"
  "2|216 KB of pipelined \`GET /\`, never read: server RSS growth, MB|pipeline --path / --bytes 216000"
  "2|${POLLERS} connections × 100 pipelined \`/longpoll\`, one 64 KiB publish, never read: server RSS growth, MB|longpolls --conns $POLLERS --depth 100 --event 65536"
  "2|1 M pings of 125 B on one WebSocket, pongs never read: server RSS growth, MB|pings --count 1000000 --payload 125"
  "4|slow reader (600 KB/s) of 30 pipelined \`GET /poll\`, the last \`Connection: close\`: bytes received|slowread --requests 30 --rate 600000"
)

PORT=$((19000 + RANDOM % 2000))
start_server() {
  PORT=$((PORT + 1))
  ADDR="127.0.0.1:$PORT"
  "${PIN_SERVER[@]}" "$1" --addr "$ADDR" --no-tick >/dev/null 2>&1 &
  SPID=$!
  for _ in $(seq 100); do
    if ! kill -0 "$SPID" 2>/dev/null; then return 1; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      sleep 0.2
      return 0
    fi
    sleep 0.05
  done
  return 1
}
stop_server() {
  [ -n "$SPID" ] || return 0
  kill "$SPID" 2>/dev/null || true
  for _ in $(seq 200); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$SPID" 2>/dev/null || true
  wait "$SPID" 2>/dev/null || true
  SPID=""
}

mkdir -p "$HERE/results"
RESULTS="$HERE/results/hostile-$(date +%Y%m%d-%H%M%S).tsv"
: >"$RESULTS"
# run LABEL BIN ARGS...: one attack on a fresh server; sets VALUE to the value(s).
run() {
  local label=$1 bin=$2 line
  shift 2
  VALUE="–"
  if ! start_server "$bin"; then
    log "  $label did not start listening"
    stop_server
    return
  fi
  if line=$("${PIN_CLIENT[@]}" "$HOSTILE" "$@" --addr "$ADDR" --pid "$SPID"); then
    printf '%s\t%s\t%s\n' "$label" "$*" "$line" >>"$RESULTS"
    log "  $label: ${line##*$'\t'}"
    VALUE=${line%$'\t'*}
  else
    log "  hostile $* failed against $label"
  fi
  stop_server
}

# ---- 3. Run ------------------------------------------------------------------------
STARTED=$SECONDS
ROWS=()
for entry in "${ATTACKS[@]}"; do
  IFS='|' read -r item what args <<<"$entry"
  log "[$item] $what"
  read -r -a argv <<<"$args"
  rounds=1
  if [ "${argv[0]}" = flood ]; then rounds=$ROUNDS; fi
  before="" after=""
  # Interleaved (before, after, before, after, ...), so a busy moment hits both.
  for _ in $(seq "$rounds"); do
    run "$BEFORE_LABEL" "$BEFORE_BIN" "${argv[@]}"
    before="$before $VALUE"
    run "$AFTER_LABEL" "$AFTER_BIN" "${argv[@]}"
    after="$after $VALUE"
  done
  if [ "$rounds" -gt 1 ]; then
    before=$(echo "$before" | tr ' ' '\n' | grep -v '^$' | sort -g | tail -n 1)
    after=$(echo "$after" | tr ' ' '\n' | grep -v '^$' | sort -g | tail -n 1)
  else
    before=${before# } after=${after# }
  fi
  if [[ $what == *" · "* ]]; then
    # Two measures: "value<TAB>value" each.
    ROWS+=("$item|${what% · *}|${before%%$'\t'*}|${after%%$'\t'*}")
    ROWS+=("$item|${what%%:*}: ${what##* · }|${before##*$'\t'}|${after##*$'\t'}")
  else
    ROWS+=("$item|$what|$before|$after")
  fi
done
log "measured in $((SECONDS - STARTED)) s; raw lines in $RESULTS"

# ---- 4. Report ---------------------------------------------------------------------
echo
echo "## Issue 11 attacks: before ($BEFORE_LABEL) and after ($AFTER_LABEL), $(date -u +%Y-%m-%d)"
echo
echo "| item | attack: measure | before | after |"
echo "|---|---|---:|---:|"
for row in "${ROWS[@]}"; do
  IFS='|' read -r item what before after <<<"$row"
  echo "| $item | $what | $before | $after |"
done
