#!/usr/bin/env bash
# Autobahn|Testsuite (fuzzingclient, cases 1-7, 9, 10) against the demo's /echo,
# then a diff against the committed expected results (expected.json), so a
# regression names its case. Fails on any FAILED or NON-STRICT case.
#
#   .ci/autobahn/run.sh [PUSHLOOP_BINARY] [OUTDIR]
#
# The suite itself comes from the shared tools folder next to the repository
# (../shared/tools/autobahn/run.sh; override with AUTOBAHN_KIT) and installs
# itself into a cache folder the first time.
#
# With PUSHLOOP_TLS_CERT and PUSHLOOP_TLS_KEY (PEM files; a binary built with
# --features tls) the server listens for TLS only and the suite runs against
# wss://127.0.0.1:PORT/echo. Its client (Twisted's ClientContextFactory, used
# when the spec names no "hostname") encrypts but checks no certificate, so a
# throwaway self-signed one does; the expectations are the same.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${1:-$ROOT/target/release/pushloop}
OUT=${2:-$ROOT/ci-artifacts/autobahn}
KIT=${AUTOBAHN_KIT:-$ROOT/../shared/tools/autobahn/run.sh}
[ -x "$KIT" ] || { echo "autobahn: kit not found at $KIT (set AUTOBAHN_KIT)" >&2; exit 2; }

mkdir -p "$ROOT/ci-artifacts"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LISTEN=(--addr "127.0.0.1:$PORT")
URL="ws://127.0.0.1:$PORT/echo"
LOG=$ROOT/ci-artifacts/autobahn-server.log
if [ -n "${PUSHLOOP_TLS_CERT:-}" ]; then
  LISTEN=(--tls-addr "127.0.0.1:$PORT" --tls-cert "$PUSHLOOP_TLS_CERT" --tls-key "$PUSHLOOP_TLS_KEY")
  URL="wss://127.0.0.1:$PORT/echo"
  LOG=$ROOT/ci-artifacts/autobahn-tls-server.log
fi
"$BIN" "${LISTEN[@]}" --no-tick > "$LOG" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done

status=0
ATS_HTML=0 ATS_TIMEOUT=900 "$KIT" "$URL" pushloop "$OUT" || status=$?
kill -0 "$SERVER" 2>/dev/null || { echo "autobahn: the server died during the run" >&2; exit 1; }
python3 "$HERE/compare.py" "$OUT/reports/servers/index.json" "$HERE/expected.json" || status=1
exit $status
