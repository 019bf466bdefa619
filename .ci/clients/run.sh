#!/usr/bin/env bash
# Real client libraries against the pushloop demo server.
#
#   .ci/clients/run.sh [PUSHLOOP_BINARY]     (default: target/release/pushloop of this repo)
#
# Installs what it needs itself (Debian, as root in CI): curl, python3 + venv, node + npm;
# Python `websockets` into .ci/clients/.venv (requirements.txt), Node `ws` and `eventsource`
# with `npm ci` (node/package-lock.json). Starts the server on a free port with --no-tick,
# runs every check, stops the server, prints one PASS/FAIL line per check and a last line
# `clients: N passed, M failed`; exits non-zero on any failure. Everything is time-bounded.
#
# TLS: with PUSHLOOP_TLS_CERT=FILE and PUSHLOOP_TLS_KEY=FILE (a binary built with
# --features tls, a certificate for 127.0.0.1), the server listens for TLS only and the
# curl, Python websockets and Node ws checks run over https:// and wss://, trusting that
# certificate. (The Node eventsource checks restart plain servers, so they sit out.)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
if [ $# -ge 1 ]; then
  BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
else
  BIN=$ROOT/target/release/pushloop
fi
RESULTS=$(mktemp)
LOGDIR=$(mktemp -d)
SERVER_PID=""

cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID" 2>/dev/null
  fi
  rm -f "$RESULTS"
}
trap cleanup EXIT

say() { echo "clients: $*" >&2; }
record() { echo "$1" | tee -a "$RESULTS"; }
finish() {
  local passed failed
  passed=$(grep -c '^PASS ' "$RESULTS")
  failed=$(grep -c '^FAIL ' "$RESULTS")
  echo "clients: $passed passed, $failed failed"
  [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
  exit $?
}

if [ ! -x "$BIN" ]; then
  record "FAIL pushloop binary: $BIN is not an executable (cargo build --release first)"
  finish
fi

# ---- tools: curl, python3 with venv, node + npm (apt-get only for what is missing)
need=()
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]} with apt-get"
  timeout 150 apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive timeout 150 apt-get install -y -qq "${need[@]}" >/dev/null ||
    say "apt-get install ${need[*]} failed"
fi

# ---- Python websockets and prometheus-client in a venv (pinned in requirements.txt)
VENV=$HERE/.venv
PY=$VENV/bin/python
want_ws=$(sed -n 's/^websockets==//p' "$HERE/requirements.txt")
if ! "$PY" -c "import websockets, prometheus_client, sys; sys.exit(websockets.__version__ != '$want_ws')" 2>/dev/null; then
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian splits ensurepip out of python3
    say "python3 -m venv failed: installing python3-venv"
    rm -rf "$VENV"
    timeout 150 apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive timeout 150 apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$VENV" >/dev/null 2>&1
  fi
  timeout 150 "$PY" -m pip install -q --disable-pip-version-check -r "$HERE/requirements.txt" >"$LOGDIR/pip.log" 2>&1 ||
    { cat "$LOGDIR/pip.log" >&2; record "FAIL install python websockets==$want_ws (pip)"; }
fi

# ---- Node ws + eventsource (npm ci from the committed lock file)
if ! (cd "$HERE/node" && timeout 150 npm ci --no-audit --no-fund --loglevel=error >"$LOGDIR/npm.log" 2>&1); then
  cat "$LOGDIR/npm.log" >&2
  record "FAIL install node packages (npm ci)"
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
PORT=$(free_port)
RESTART_PORT=$(free_port)
while [ "$RESTART_PORT" = "$PORT" ]; do RESTART_PORT=$(free_port); done
ADDR=127.0.0.1:$PORT

# ---- start the server and wait (bounded) for its listening line
LISTEN=(--addr "$ADDR")
if [ -n "${PUSHLOOP_TLS_CERT:-}" ]; then
  LISTEN=(--tls-addr "$ADDR" --tls-cert "$PUSHLOOP_TLS_CERT" --tls-key "$PUSHLOOP_TLS_KEY")
  export PUSHLOOP_TLS_CA=$PUSHLOOP_TLS_CERT
fi
"$BIN" "${LISTEN[@]}" --no-tick >"$LOGDIR/server.out" 2>"$LOGDIR/server.err" &
SERVER_PID=$!
for _ in $(seq 100); do
  grep -q 'serving' "$LOGDIR/server.out" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q 'serving' "$LOGDIR/server.out"; then
  record "FAIL server start on $ADDR: $(cat "$LOGDIR/server.out" "$LOGDIR/server.err")"
  finish
fi
say "server pid $SERVER_PID on $ADDR ($BIN)"

# run_group NAME TIMEOUT CMD...: its PASS/FAIL lines are recorded; a crash or time-out is a FAIL
run_group() {
  local name=$1 limit=$2 rc
  shift 2
  timeout "$limit" "$@" >"$LOGDIR/$name.out" 2>"$LOGDIR/$name.err"
  rc=$?
  grep '^#' "$LOGDIR/$name.out"
  while IFS= read -r line; do record "$line"; done < <(grep -E '^(PASS|FAIL) ' "$LOGDIR/$name.out")
  if [ $rc -ne 0 ]; then
    record "FAIL $name checks: exit $rc$([ $rc -eq 124 ] && echo " (timed out after ${limit}s)")"
    tail -20 "$LOGDIR/$name.err" >&2
  fi
}

run_group py-websockets 60 "$PY" "$HERE/py_checks.py" "$ADDR"
run_group node-ws 60 node "$HERE/node/ws_checks.mjs" "$ADDR"
if [ -z "${PUSHLOOP_TLS_CERT:-}" ]; then
  run_group node-eventsource 60 node "$HERE/node/sse_checks.mjs" "$ADDR" "$BIN" "$RESTART_PORT"
fi
run_group curl 40 bash "$HERE/curl_checks.sh" "$ADDR" "$PY"

# ---- the server survived all of that, and shuts down gracefully on SIGTERM
if kill -0 "$SERVER_PID" 2>/dev/null; then
  kill -TERM "$SERVER_PID"
  rc=""
  for _ in $(seq 50); do
    kill -0 "$SERVER_PID" 2>/dev/null || { wait "$SERVER_PID"; rc=$?; break; }
    sleep 0.1
  done
  if [ "$rc" = 0 ]; then
    record "PASS server alive after all checks, exit 0 on SIGTERM"
  else
    record "FAIL server exit on SIGTERM: ${rc:-still running after 5 s}"
  fi
else
  wait "$SERVER_PID"
  record "FAIL server died during the checks (exit $?): $(tail -5 "$LOGDIR/server.err")"
fi
SERVER_PID=""
rm -rf "$LOGDIR"
finish
