#!/usr/bin/env bash
# Autobahn|Testsuite in client mode: the suite's fuzzing server on 127.0.0.1
# plays each case against pushloop's blocking WebSocket client
# (examples/autobahn_client.rs): first 1-7, 9, 10, then the permessage-deflate
# cases 12.* and 13.* (RFC 7692; the client offers it by default and echoes
# every message compressed), then a diff against the committed expected
# results (expected-client.json), so a regression names its case. Fails on
# any FAILED or NON-STRICT case.
#
#   .ci/autobahn/run-client.sh [AUTOBAHN_CLIENT_BINARY] [OUTDIR]
#
# 12.* and 13.* (216 cases of 1000 compressed echoes each, up to 128 KiB)
# take their time in the suite's Python, so they run as two fuzzing servers
# at once, each with about half the work. AUTOBAHN_DEFLATE_CASES (a list of
# cases) runs only those of 12.* and 13.*, e.g. a sample in CI.
#
# The kit comes from the shared tools folder next to the repository
# (../shared/tools/autobahn/run-client.sh; override with AUTOBAHN_KIT_CLIENT).
# After a deliberate change of behaviour, run everything and record the new
# expectation with
#   python3 .ci/autobahn/compare.py OUTDIR/{base,deflate-a,deflate-b}/reports/clients/index.json \
#     .ci/autobahn/expected-client.json --write
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${1:-$ROOT/target/release/examples/autobahn_client}
OUT=${2:-$ROOT/ci-artifacts/autobahn-client}
KIT=${AUTOBAHN_KIT_CLIENT:-$ROOT/../shared/tools/autobahn/run-client.sh}
[ -x "$KIT" ] || { echo "autobahn: kit not found at $KIT (set AUTOBAHN_KIT_CLIENT)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "autobahn: $BIN missing (cargo build --release --features client --example autobahn_client)" >&2; exit 2; }

status=0
start=$SECONDS
ATS_HTML=0 ATS_TIMEOUT=900 ATS_CASES='1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*' \
  "$KIT" pushloop-client "$OUT/base" "$BIN" || status=$?
echo "autobahn: client 1-7, 9, 10 in $((SECONDS - start)) s"

start=$SECONDS
INDEXES=("$OUT/base/reports/clients/index.json")
COMPARE=()
if [ -n "${AUTOBAHN_DEFLATE_CASES:-}" ]; then
  ATS_HTML=0 ATS_TIMEOUT=1800 ATS_CASES=$AUTOBAHN_DEFLATE_CASES \
    "$KIT" pushloop-client "$OUT/deflate-a" "$BIN" > "$OUT/deflate-a.log" 2>&1 || status=1
  tail -n 1 "$OUT/deflate-a.log"
  INDEXES+=("$OUT/deflate-a/reports/clients/index.json")
  COMPARE=(--subset)
else
  ATS_HTML=0 ATS_TIMEOUT=1800 ATS_CASES='12.1.*,12.2.*,12.3.*,12.4.*' \
    "$KIT" pushloop-client "$OUT/deflate-a" "$BIN" > "$OUT/deflate-a.log" 2>&1 &
  FIRST=$!
  ATS_HTML=0 ATS_TIMEOUT=1800 ATS_CASES='12.5.*,13.*' \
    "$KIT" pushloop-client "$OUT/deflate-b" "$BIN" > "$OUT/deflate-b.log" 2>&1 &
  SECOND=$!
  wait "$FIRST" || status=1
  wait "$SECOND" || status=1
  tail -n 1 "$OUT/deflate-a.log" "$OUT/deflate-b.log"
  INDEXES+=("$OUT/deflate-a/reports/clients/index.json" "$OUT/deflate-b/reports/clients/index.json")
fi
echo "autobahn: client 12.*, 13.* (permessage-deflate${AUTOBAHN_DEFLATE_CASES:+, a sample}) in $((SECONDS - start)) s"

python3 "$HERE/compare.py" "${COMPARE[@]}" "${INDEXES[@]}" "$HERE/expected-client.json" || status=1
exit $status
