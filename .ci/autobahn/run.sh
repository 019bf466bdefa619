#!/usr/bin/env bash
# Autobahn|Testsuite (fuzzingclient) against the demo's /echo: cases 1-7, 9, 10,
# then the permessage-deflate cases 12.* and 13.* (RFC 7692), then a diff
# against the committed expected results (expected.json), so a regression
# names its case. Fails on any FAILED, NON-STRICT or UNIMPLEMENTED case.
#
#   .ci/autobahn/run.sh [PUSHLOOP_BINARY] [OUTDIR]
#
# 1-10 run alone: some of their verdicts depend on timing (octet-wise sends,
# fail-fast UTF-8), and a busy machine can turn them NON-STRICT. 12.* and 13.*
# (216 cases of 1000 compressed echoes each, up to 128 KiB) take their time in
# the suite's own Python, one core each: they run as two suites side by side,
# split so that each has about half the work (12.1-12.4; 12.5 and 13.*).
# AUTOBAHN_DEFLATE_CASES (a list of cases) runs only those of 12.* and 13.*,
# in one suite, and the comparison leaves out the expected cases not run
# (the TLS run does so: the transform is the same, over TLS too).
# A permessage-deflate case that fails is run once more, alone, and reported:
# on a starved machine a client can go silent for longer than the server's
# heartbeat allows (ping after 25 s, gone 20 s later), which is the server
# doing its job, not a conformance fault; a real fault fails twice.
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
start=$SECONDS
ATS_HTML=0 ATS_TIMEOUT=900 "$KIT" "$URL" pushloop "$OUT/base" \
  '1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*' || status=$?
echo "autobahn: 1-7, 9, 10 in $((SECONDS - start)) s"

start=$SECONDS
INDEXES=("$OUT/base/reports/servers/index.json")
COMPARE=()
if [ -n "${AUTOBAHN_DEFLATE_CASES:-}" ]; then
  ATS_HTML=0 ATS_TIMEOUT=1800 "$KIT" "$URL" pushloop "$OUT/deflate-a" "$AUTOBAHN_DEFLATE_CASES" \
    > "$OUT/deflate-a.log" 2>&1 || true
  tail -n 1 "$OUT/deflate-a.log"
  INDEXES+=("$OUT/deflate-a/reports/servers/index.json")
  COMPARE=(--subset)
else
  ATS_HTML=0 ATS_TIMEOUT=1800 "$KIT" "$URL" pushloop "$OUT/deflate-a" \
    '12.1.*,12.2.*,12.3.*,12.4.*' > "$OUT/deflate-a.log" 2>&1 &
  FIRST=$!
  ATS_HTML=0 ATS_TIMEOUT=1800 "$KIT" "$URL" pushloop "$OUT/deflate-b" \
    '12.5.*,13.*' > "$OUT/deflate-b.log" 2>&1 &
  SECOND=$!
  wait "$FIRST" || true
  wait "$SECOND" || true
  tail -n 1 "$OUT/deflate-a.log" "$OUT/deflate-b.log"
  INDEXES+=("$OUT/deflate-a/reports/servers/index.json" "$OUT/deflate-b/reports/servers/index.json")
fi
echo "autobahn: 12.*, 13.* (permessage-deflate${AUTOBAHN_DEFLATE_CASES:+, a sample}) in $((SECONDS - start)) s"

RETRY=$(python3 - "${INDEXES[@]:1}" <<'PY'
import json, sys
failed = []
for path in sys.argv[1:]:
    try:
        cases = next(iter(json.load(open(path)).values()))
    except (OSError, ValueError, StopIteration):
        continue
    failed += [cid for cid, case in cases.items() if case["behavior"] != "OK"]
print(",".join(failed))
PY
)
if [ -n "$RETRY" ]; then
  echo "autobahn: running again, alone: $RETRY"
  ATS_HTML=0 ATS_TIMEOUT=1800 "$KIT" "$URL" pushloop "$OUT/retry" "$RETRY" || true
  INDEXES+=("$OUT/retry/reports/servers/index.json")
fi

kill -0 "$SERVER" 2>/dev/null || { echo "autobahn: the server died during the run" >&2; exit 1; }
# A later report's verdict on a case replaces an earlier one's (the retry).
python3 "$HERE/compare.py" "${COMPARE[@]}" "${INDEXES[@]}" "$HERE/expected.json" || status=1
exit $status
