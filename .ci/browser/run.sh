#!/usr/bin/env bash
# Browser test of the demo page: headless Chromium (Debian's package) driven by
# playwright-core. Usage: .ci/browser/run.sh [path/to/pushloop]  (default
# target/release/pushloop, relative to the repo root). Builds nothing; installs
# chromium (apt) and node_modules (npm ci) if missing. Exits non-zero on any failure.
# With PUSHLOOP_TLS_CERT and PUSHLOOP_TLS_KEY (PEM files; a binary built with --features
# tls) the same test runs over https:// and wss:// (see test.mjs).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-target/release/pushloop}
case $bin in /*) ;; *) bin=$root/$bin ;; esac
if [ ! -x "$bin" ]; then
  echo "FAIL browser: no pushloop binary at $bin (build it first)"
  echo "browser: 0 passed, 1 failed"
  exit 1
fi

apt_updated=
need_apt() {
  [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
if [ ! -x /usr/bin/chromium ]; then
  echo "browser: installing chromium (apt)"
  need_apt chromium
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "browser: installing nodejs and npm (apt)"
  need_apt nodejs npm
fi
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)

artifacts=$root/ci-artifacts
mkdir -p "$artifacts"
log=$artifacts/browser-server.log
pidfile=$(mktemp)
: >"$log"

# A free port: bind port 0, read it back, close (the server binds it right after).
port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')

listen=(--addr "127.0.0.1:$port")
if [ -n "${PUSHLOOP_TLS_CERT:-}" ]; then
  # TLS: see test.mjs. Node's fetch (publishing from the test) trusts the certificate.
  listen=(--tls-addr "127.0.0.1:$port" --tls-cert "$PUSHLOOP_TLS_CERT" --tls-key "$PUSHLOOP_TLS_KEY")
  export NODE_EXTRA_CA_CERTS=$PUSHLOOP_TLS_CERT
  log=$artifacts/browser-tls-server.log
  : >"$log"
fi
"$bin" "${listen[@]}" --tick-ms 500 >>"$log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  restarted=$(cat "$pidfile" 2>/dev/null || true)
  [ -z "$restarted" ] || kill "$restarted" 2>/dev/null || true
  rm -f "$pidfile"
}
trap cleanup EXIT

for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

set +e
PUSHLOOP_BIN=$bin PUSHLOOP_PORT=$port PUSHLOOP_PID=$pid PUSHLOOP_LOG=$log \
  PUSHLOOP_PIDFILE=$pidfile PUSHLOOP_ARTIFACTS=$artifacts \
  node "$here/test.mjs"
status=$?
set -e
if [ "$status" -ne 0 ]; then
  echo "--- server output (last 40 lines of $log) ---"
  tail -n 40 "$log"
fi
exit "$status"
