#!/usr/bin/env bash
# Prints the stripped size of each program in src/bin and its cost over std_only.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
(cd "$HERE" && cargo build --release --quiet --bins) >&2
base=$(stat -c %s "$HERE/target/release/std_only")
echo "| program | stripped bytes | over std_only |"
echo "|---|---|---|"
for bin in std_only miniz_oxide zlib_rs ws_deflate; do
    size=$(stat -c %s "$HERE/target/release/$bin")
    echo "| $bin | $size | +$(( (size - base + 500) / 1000 )) KB |"
done
