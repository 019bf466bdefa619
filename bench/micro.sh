#!/usr/bin/env bash
# pushloop microbenchmarks: frame headers, masking, UTF-8, SSE encoding, message decoding,
# permessage-deflate.
#
#   bench/micro.sh                  every case (about 6 s after the build)
#   bench/micro.sh --quick          shorter batches, fewer samples (about 2 s)
#   bench/micro.sh --filter mask    one group: header, mask, utf8, sse, decoder, deflate
#
# Builds bench/micro (release, the same profile as pushloop; a workspace of its own, built
# into bench/target) and runs it pinned to core 0 when taskset and two cores are there.
# Prints one markdown table of medians.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
case "${1:-}" in -h|--help) sed -n '2,11p' "$0"; exit 0 ;; esac
(cd "$HERE/micro" && cargo build --release --quiet --target-dir "$HERE/target") >&2
PIN=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then PIN=(taskset -c 0); fi
if [[ " $* " == *" --quick "* ]]; then SHAPE="5 batches of about 5 ms"; else SHAPE="15 batches of about 20 ms"; fi
echo "### microbenchmarks ($(date -u +%Y-%m-%d), per operation: median and middle half of $SHAPE)"
echo
"${PIN[@]}" "$HERE/target/release/micro" "$@"
