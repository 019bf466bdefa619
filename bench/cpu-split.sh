#!/usr/bin/env bash
# Where a server's echo time goes: user space or the kernel.
#
#   bench/cpu-split.sh              3 interleaved rounds, pushloop and µWebSockets
#   bench/cpu-split.sh --rounds 5
#
# For each server and round: the 20 B echo (64 conns × 16 in flight) and the 16 KiB echo
# (16 × 4), one unmeasured second first, then SECS measured seconds. The server's user
# and system time come from /proc/PID/stat (utime, stime: clock ticks), taken before and
# after the measured part and divided by the messages echoed in it. With `perf` present,
# the server's recv/send/writev/epoll_wait calls are counted for one second of each
# 20 B run (tracepoints syscalls:sys_enter_*), to show both servers make the same calls.
#
# Uses the binaries bench/run.sh builds (run it once first): the repository's release
# pushloop, bench/target/uws/peer-uws and bench/target/release/loadgen. Server on core
# 0, load on core 1, as in run.sh.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROUNDS=3
SECS=${SECS:-6}
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift ;;
    *) echo "cpu-split.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

LOADGEN="$HERE/target/release/loadgen"
PUSHLOOP="$ROOT/target/release/pushloop"
UWS="$HERE/target/uws/peer-uws"
for bin in "$LOADGEN" "$PUSHLOOP"; do
  [ -x "$bin" ] || { echo "cpu-split.sh: $bin missing; run bench/run.sh --quick first" >&2; exit 2; }
done
SERVERS=(pushloop)
[ -x "$UWS" ] && SERVERS+=(µWebSockets)
TICKS=$(getconf CLK_TCK)
PIN_SERVER=(taskset -c 0)
PIN_LOADGEN=(taskset -c 1)
HAVE_PERF=0
command -v perf >/dev/null && perf stat -e syscalls:sys_enter_sendto true >/dev/null 2>&1 && HAVE_PERF=1

server_cmd() {
  case "$1" in
    pushloop) echo "$PUSHLOOP --addr $2" ;;
    µWebSockets) echo "$UWS --addr $2" ;;
  esac
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }

# one SERVER SCENARIO-NAME LOADGEN-ARGS...
one() {
  local server=$1 scenario=$2
  shift 2
  local port pid try
  # A port free a moment ago can be taken by the time the server binds it: a server
  # that is gone after 0.3 s is started again on another, up to three times.
  for try in 1 2 3; do
    port=$(free_port)
    # shellcheck disable=SC2046
    "${PIN_SERVER[@]}" $(server_cmd "$server" "127.0.0.1:$port") >/dev/null 2>&1 &
    pid=$!
    sleep 0.3
    kill -0 "$pid" 2>/dev/null && break
    if [ "$try" = 3 ]; then
      echo "| $scenario | $server | did not start | | | | |"
      return
    fi
  done
  "${PIN_LOADGEN[@]}" "$LOADGEN" echo --addr "127.0.0.1:$port" "$@" --secs 1 --warmup 0 --timeout 60 >/dev/null 2>&1
  local u0 s0 u1 s1 msgs calls=""
  read -r u0 s0 < <(ticks "$pid")
  "${PIN_LOADGEN[@]}" "$LOADGEN" echo --addr "127.0.0.1:$port" "$@" --secs "$SECS" --warmup 0 --timeout 60 >"$TMP/run.json" 2>&1 &
  local load=$!
  if [ "$HAVE_PERF" = 1 ] && [ "$scenario" = "echo 20 B" ]; then
    sleep 1
    perf stat -x, -e syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_writev,syscalls:sys_enter_epoll_wait \
      -p "$pid" -o "$TMP/calls.csv" -- sleep 1 >/dev/null 2>&1 || true
    calls=$(awk -F, '$1 ~ /^[0-9]+$/ && $1 > 0 {sub("syscalls:sys_enter_", "", $3); printf "%s%s %s/s", sep, $3, $1; sep = "; "}' "$TMP/calls.csv" 2>/dev/null || true)
  fi
  wait "$load"
  if ! read -r u1 s1 < <(ticks "$pid" 2>/dev/null); then
    echo "| $scenario | $server | exited during the run | | | | |"
    return
  fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  msgs=$(grep -o '"msgs":[0-9]*' "$TMP/run.json" | cut -d: -f2)
  python3 -c "
m = $msgs / 1e6
user, system = ($u1 - $u0) / $TICKS / m, ($s1 - $s0) / $TICKS / m
rate = $msgs / $SECS
print(f'| $scenario | $server | {user:.3f} | {system:.3f} | {user + system:.3f} | {rate:,.0f} | $calls |')"
}

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "| scenario | server | user CPU-s / 1M msgs | system CPU-s / 1M msgs | total | msgs/s | system calls (1 s) |"
echo "|---|---|---:|---:|---:|---:|---|"
for round in $(seq "$ROUNDS"); do
  for server in "${SERVERS[@]}"; do
    one "$server" "echo 20 B" --conns 64 --depth 16 --size 20
  done
  for server in "${SERVERS[@]}"; do
    one "$server" "echo 16 KiB" --conns 16 --depth 4 --size 16384 --binary
  done
  echo "cpu-split.sh: round $round/$ROUNDS done" >&2
done
