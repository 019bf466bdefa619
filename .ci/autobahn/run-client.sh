#!/usr/bin/env bash
# Autobahn|Testsuite in client mode: the suite's fuzzing server on 127.0.0.1
# plays each case against pushloop's blocking WebSocket client
# (examples/autobahn_client.rs), then a diff against the committed expected
# results (expected-client.json), so a regression names its case. Fails on
# any FAILED or NON-STRICT case.
#
#   .ci/autobahn/run-client.sh [AUTOBAHN_CLIENT_BINARY] [OUTDIR]
#
# The kit comes from the shared tools folder next to the repository
# (../shared/tools/autobahn/run-client.sh; override with AUTOBAHN_KIT_CLIENT).
# After a deliberate change of behaviour, record the new expectation with
#   python3 .ci/autobahn/compare.py OUTDIR/reports/clients/index.json .ci/autobahn/expected-client.json --write
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${1:-$ROOT/target/release/examples/autobahn_client}
OUT=${2:-$ROOT/ci-artifacts/autobahn-client}
KIT=${AUTOBAHN_KIT_CLIENT:-$ROOT/../shared/tools/autobahn/run-client.sh}
[ -x "$KIT" ] || { echo "autobahn: kit not found at $KIT (set AUTOBAHN_KIT_CLIENT)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "autobahn: $BIN missing (cargo build --release --features client --example autobahn_client)" >&2; exit 2; }

# The cases, one group a line. The permessage-deflate groups join once
# ws::session speaks RFC 7692: uncomment the line, run, record with --write.
CASES=(
  "1.*" "2.*" "3.*" "4.*" "5.*" "6.*" "7.*" "9.*" "10.*"
  # "12.*" "13.*"
)

status=0
ATS_HTML=0 ATS_TIMEOUT=900 ATS_CASES=$(IFS=,; echo "${CASES[*]}") \
  "$KIT" pushloop-client "$OUT" "$BIN" || status=$?
python3 "$HERE/compare.py" "$OUT/reports/clients/index.json" "$HERE/expected-client.json" || status=1
exit $status
