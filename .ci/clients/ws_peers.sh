#!/usr/bin/env bash
# pushloop's WebSocket client against real servers: a Python `websockets`
# and a Node `ws` echo server on 127.0.0.1, each pinging every 0.2 s. The
# client (examples/client_ws) sends three lines (ASCII, UTF-8, 100 000
# bytes), must get each echoed, answers the pings meanwhile, and closes with
# 1000; the server must report the client's clean close.
#
#   .ci/clients/ws_peers.sh [CLIENT_WS_BINARY]   (default target/release/examples/client_ws)
#
# Uses the same pinned packages as run.sh (requirements.txt, node/package-lock.json)
# and installs them the same way when missing. Prints one PASS/FAIL line per
# check and a last line `ws peers: N passed, M failed`; everything is time-bounded.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${1:-$ROOT/target/release/examples/client_ws}
LOGDIR=$(mktemp -d)
RESULTS=$LOGDIR/results
: >"$RESULTS"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; fi
  rm -rf "$LOGDIR"
}
trap cleanup EXIT
record() { echo "$1" | tee -a "$RESULTS"; }
finish() {
  local passed failed
  passed=$(grep -c '^PASS ' "$RESULTS")
  failed=$(grep -c '^FAIL ' "$RESULTS")
  echo "ws peers: $passed passed, $failed failed"
  [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
  exit $?
}

[ -x "$BIN" ] || { record "FAIL client binary: $BIN missing (cargo build --release --features client --example client_ws)"; finish; }

# ---- the pinned packages (as run.sh installs them)
VENV=$HERE/.venv
PY=$VENV/bin/python
want_ws=$(sed -n 's/^websockets==//p' "$HERE/requirements.txt")
if ! "$PY" -c "import websockets,sys; sys.exit(websockets.__version__ != '$want_ws')" 2>/dev/null; then
  rm -rf "$VENV"
  python3 -m venv "$VENV" &&
    timeout 150 "$PY" -m pip install -q --disable-pip-version-check -r "$HERE/requirements.txt" >"$LOGDIR/pip.log" 2>&1 ||
    { cat "$LOGDIR/pip.log" >&2; record "FAIL install python websockets==$want_ws"; }
fi
if [ ! -f "$HERE/node/node_modules/ws/package.json" ]; then
  (cd "$HERE/node" && timeout 150 npm ci --no-audit --no-fund --loglevel=error >"$LOGDIR/npm.log" 2>&1) ||
    { cat "$LOGDIR/npm.log" >&2; record "FAIL install node packages (npm ci)"; }
fi

LONG=$(head -c 100000 /dev/zero | tr '\0' 'x')

# peer NAME SERVER_CMD...: one server, one client run, the checks.
peer() {
  local name=$1 port="" out=$LOGDIR/$1.client err=$LOGDIR/$1.client.err log=$LOGDIR/$1.server
  shift
  "$@" >"$log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do
    port=$(sed -n 's/^PORT //p' "$log")
    [ -n "$port" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$port" ]; then
    record "FAIL $name: the server did not start: $(tail -5 "$log")"
    kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""
    return
  fi
  # The lines, then 1 s of quiet for the echoes and a few pings, then EOF:
  # the client closes with 1000.
  { printf 'hello\nh\303\251llo w\303\266rld \360\237\230\200\n%s\n' "$LONG"; sleep 1; } |
    timeout 20 "$BIN" "ws://127.0.0.1:$port/" >"$out" 2>"$err"
  local rc=$?
  for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""
  grep -q '^ERROR' "$log" && record "FAIL $name server error: $(grep -m1 '^ERROR' "$log")"
  if [ $rc -eq 0 ] && grep -qx 'connected to ws://127.0.0.1:'"$port"'/' "$out"; then
    record "PASS $name: connects (RFC 6455 §4.1 handshake accepted)"
  else
    record "FAIL $name: connect, exit $rc: $(tail -3 "$err")"
  fi
  if grep -qx '< hello' "$out" && grep -qx "< h$(printf '\303\251')llo w$(printf '\303\266')rld $(printf '\360\237\230\200')" "$out" &&
     [ "$(awk 'length($0) == 100002' "$out" | wc -l)" -eq 1 ]; then
    record "PASS $name: echoes ASCII, UTF-8 and 100 000 bytes (masked frames accepted, §5.3)"
  else
    record "FAIL $name: echoes: $(cut -c1-80 "$out" | head -5 | tr '\n' '|')"
  fi
  if grep -qx 'closed: 1000 ""' "$out" && grep -q '^PEER-CLOSED code=1000 ' "$log"; then
    record "PASS $name: closes cleanly, 1000 both ways (§7.1.2), pings answered on the way"
  else
    record "FAIL $name: close: client '$(grep closed "$out")', server '$(grep PEER-CLOSED "$log")'"
  fi
  if [ "$name" = node-ws ]; then
    local pongs
    pongs=$(sed -n 's/.* pongs=\([0-9]*\).*/\1/p' "$log")
    if [ "${pongs:-0}" -ge 2 ]; then
      record "PASS $name: $pongs pings answered with pongs (§5.5.2)"
    else
      record "FAIL $name: pongs=${pongs:-none}"
    fi
  fi
}

peer py-websockets "$PY" "$HERE/ws_peer_server.py"
peer node-ws node "$HERE/node/ws_peer_server.mjs"
finish
