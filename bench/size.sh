#!/usr/bin/env bash
# Where a pushloop binary's bytes go.
#
#   bench/size.sh
#
# Builds, with the release profile of the repository (lto, one codegen unit, stripped):
# - the floor (bench/size-floor): std with its panic machinery, one mio poll and listener,
#   what any Rust server on mio carries before it does anything of its own;
# - the smallest pushloop server (examples/echo), without and with default features;
# - the demo (the `pushloop` binary), without and with default features.
# Prints their stripped sizes and each one's excess over the floor, then, with cargo-bloat
# installed (`cargo install cargo-bloat`), the demo's machine code by part, the floor's
# beside it, and the ELF sections of the stripped demo (`size -A`).
# Builds into bench/target/size, so the binaries bench/run.sh uses stay as they are.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
OUT="$HERE/target/size"
mkdir -p "$OUT"

kib() { echo $(( $(stat -c %s "$1") / 1024 )); }

# build NAME FEATURES ARTIFACT: one release build of the root ("plain": no default
# features), in a target dir per feature set, copied to $OUT/NAME.
build() {
  local name=$1 features=$2 kind=${3%% *} artifact=${3##* }
  local dir="$OUT/target-$features" flags=()
  [ "$features" = plain ] && flags=(--no-default-features)
  (cd "$ROOT" && CARGO_TARGET_DIR="$dir" cargo build --release --quiet "${flags[@]}" "$kind" "$artifact") >&2
  if [ "$kind" = --example ]; then cp "$dir/release/examples/$artifact" "$OUT/$name"
  else cp "$dir/release/$artifact" "$OUT/$name"; fi
}

echo "size.sh: building (release profile: lto, codegen-units = 1, strip)" >&2
(cd "$HERE" && cargo build --release --quiet -p size-floor) >&2
cp "$HERE/target/release/size-floor" "$OUT/floor"
build echo-plain plain "--example echo"
build echo default "--example echo"
build demo-plain plain "--bin pushloop"
build demo default "--bin pushloop"

floor=$(kib "$OUT/floor")
echo
echo "| binary | stripped | over the floor |"
echo "|---|---:|---:|"
row() { echo "| $1 | $(kib "$OUT/$2") KiB | $(( $(kib "$OUT/$2") - floor )) KiB |"; }
echo "| floor: std, a caught panic, a mio poll and listener (bench/size-floor) | $floor KiB | – |"
row "examples/echo \`--no-default-features\` (the smallest pushloop server)" echo-plain
row "examples/echo (permessage-deflate)" echo
row "demo \`--no-default-features\`" demo-plain
row "demo (default features: permessage-deflate)" demo

if ! cargo bloat --version >/dev/null 2>&1; then
  echo
  echo "(cargo-bloat not installed: no breakdown by part)"
  exit 0
fi

echo "size.sh: cargo bloat (it rebuilds with symbols)" >&2
(cd "$HERE" && cargo bloat --release -p size-floor --bin size-floor -n 0 --message-format json 2>/dev/null) >"$OUT/floor.bloat.json"
(cd "$ROOT" && CARGO_TARGET_DIR="$OUT/target-plain" \
  cargo bloat --release --bin pushloop --no-default-features -n 0 --message-format json 2>/dev/null) >"$OUT/demo-plain.bloat.json"

echo
echo "Machine code (.text) by part, demo \`--no-default-features\` and the floor:"
echo
modules=$(sed -n 's/^pub mod \([a-z_]*\);/\1/p' "$ROOT/src/lib.rs" | tr '\n' ' ')
python3 - "$OUT/demo-plain.bloat.json" "$OUT/floor.bloat.json" "$modules" <<'PY'
import json, re, sys
from collections import Counter

LIBRARY_MODULES = sys.argv[3].split()

def part(function):
    name, crate = function["name"], function.get("crate", "?")
    if crate == "std":
        if re.search(r"gimli|addr2line|backtrace|demangle|miniz_oxide|symbolize", name):
            return "std: backtrace printer (the default panic hook's)"
        if re.search(r"float|flt2dec|dec2flt|fmt::num|fmt::Formatter|core::fmt", name):
            return "std: formatting"
        if re.search(r"thread|mpmc|mpsc|sync::", name):
            return "std: threads and channels"
        if re.search(r"::fs::|std::path|sys::fs", name):
            return "std: files"
        return "std: the rest"
    if crate == "pushloop":
        # The library and the demo binary are both called pushloop: a path in one of
        # the library's modules is the library's, any other the demo's own code.
        module = re.match(r"<?pushloop::(\w+)", name)
        if not module:
            return "pushloop (generic code instantiated here)"
        if module.group(1) in LIBRARY_MODULES:
            return "pushloop::" + module.group(1)
        return "the demo's own code (src/bin/pushloop)"
    if crate in ("?", "std?"):
        return "not attributed by cargo-bloat"
    return crate

def parts(path):
    counts = Counter()
    for function in json.load(open(path))["functions"]:
        counts[part(function)] += function["size"]
    return counts

demo, floor = parts(sys.argv[1]), parts(sys.argv[2])
print("| part | demo | floor |")
print("|---|---:|---:|")
for name, size in demo.most_common():
    if size >= 1024 or floor.get(name, 0) >= 1024:
        print(f"| {name} | {size / 1024:.1f} KiB | {floor.get(name, 0) / 1024:.1f} KiB |")
print(f"| total | {sum(demo.values()) / 1024:.1f} KiB | {sum(floor.values()) / 1024:.1f} KiB |")
PY

echo
echo "Sections of the stripped demo \`--no-default-features\` (the demo page, $(( $(stat -c %s "$ROOT/src/bin/pushloop/page.html") / 1024 )) KiB, is in .rodata):"
echo
echo "| section | demo | floor |"
echo "|---|---:|---:|"
join <(size -A "$OUT/demo-plain" | awk '$2 >= 1024 {print $1, $2}' | sort) \
  <(size -A "$OUT/floor" | awk '{print $1, $2}' | sort) |
  awk '$2 ~ /^[0-9]+$/' | sort -k2 -n -r |
  awk '{printf "| %s | %.1f KiB | %.1f KiB |\n", ($1 == "Total" ? "all" : $1), $2 / 1024, $3 / 1024}'
