#!/usr/bin/env bash
# curl checks against a running pushloop server: /events, /poll, /longpoll, 400s and 413.
# Usage: curl_checks.sh HOST:PORT PYTHON
# With PUSHLOOP_TLS_CA=FILE (a PEM to trust) every check runs over https://, plus the
# TLS ones: ALPN http/1.1, plain HTTP on the TLS port answered 400, /stats' TLS counters.
# Prints one `PASS name` / `FAIL name: why` line per check. Every curl has --max-time.
set -u
ADDR=$1
PY=${2:-python3}
BASE="http://$ADDR"
PREFIX=""
if [ -n "${PUSHLOOP_TLS_CA:-}" ]; then
  BASE="https://$ADDR"
  PREFIX="https: "
  # Every curl below trusts the test certificate.
  curl() { command curl --cacert "$PUSHLOOP_TLS_CA" "$@"; }
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

pass() { echo "PASS $PREFIX$1${2:+ ($2)}"; }
fail() { echo "FAIL $PREFIX$1: $2"; }
echo "# $(curl --version | head -1)"

# publish BODY_FILE [EVENT] → prints the id
publish() {
  local q=""
  [ -n "${2:-}" ] && q="?event=$2"
  curl -sS --max-time 5 --data-binary "@$1" "$BASE/publish$q" |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}

# ---- 1. curl -N /events: headers, retry line, a published event's id:/data: lines
name="curl -N /events headers, retry:, id:/data: of a published event"
printf 'sse line one\nsse line two' > "$TMP/sse_body"
curl -sS -N --max-time 1.5 -D "$TMP/sse_headers" -o "$TMP/sse_out" "$BASE/events" 2> "$TMP/sse_err" &
curl_pid=$!
sleep 0.4
sse_id=$(publish "$TMP/sse_body" curlnamed)
wait $curl_pid
rc=$?
hdr=$(tr -d '\r' < "$TMP/sse_headers" | tr 'A-Z' 'a-z')
# (command substitution drops the block's closing blank line: the python check adds it back)
want_block=$(printf 'id: %s\nevent: curlnamed\ndata: sse line one\ndata: sse line two' "$sse_id")
if [ $rc -ne 28 ]; then
  fail "$name" "curl exit $rc (want 28 = stream held open until --max-time)"
elif ! grep -qx 'content-type: text/event-stream' <<<"$hdr"; then
  fail "$name" "content-type header: $(grep '^content-type' <<<"$hdr")"
elif ! grep -qx 'cache-control: no-cache' <<<"$hdr"; then
  fail "$name" "cache-control header: $(grep '^cache-control' <<<"$hdr")"
elif ! cmp -s -n 13 "$TMP/sse_out" <(printf 'retry: 2000\n\n'); then
  fail "$name" "stream does not start with 'retry: 2000\\n\\n': $(head -c 40 "$TMP/sse_out" | od -c | head -2)"
elif ! "$PY" -c 'import sys; sys.exit(0 if open(sys.argv[2]).read() == "retry: 2000\n\n" + sys.argv[1] + "\n\n" else 1)' "$want_block" "$TMP/sse_out"; then
  fail "$name" "stream is not exactly retry + the event block; stream was: $(od -c "$TMP/sse_out" | head -8)"
else
  pass "$name" "id $sse_id"
fi

# ---- 2. /poll?after=0 with JSON escaping of quotes, backslash, newline, control chars
name="curl /poll?after=0 JSON array holds an event with escaped data"
printf 'q"uote\\back\\\\slash\nnew\ttab\001ctl\037us \xc3\xa9\xe2\x82\xac </script>' > "$TMP/esc_body"
esc_id=$(publish "$TMP/esc_body" escaping)
code=$(curl -sS --max-time 5 -D "$TMP/poll_headers" -o "$TMP/poll_out" -w '%{http_code}' "$BASE/poll?after=0")
if [ "$code" != 200 ]; then
  fail "$name" "HTTP $code"
elif out=$("$PY" - "$TMP/poll_out" "$TMP/esc_body" "$esc_id" <<'EOF' 2>&1
import json, sys
raw = open(sys.argv[1], 'rb').read()
want = open(sys.argv[2], 'rb').read().decode('utf-8')
eid = int(sys.argv[3])
events = json.loads(raw)                # strict: control chars must be escaped
assert isinstance(events, list), f"not an array: {type(events).__name__}"
for e in events:
    assert set(e) == {"id", "topic", "event", "data"}, f"keys {sorted(e)}"
ids = [e["id"] for e in events]
assert ids == sorted(ids) and len(set(ids)) == len(ids), "ids not strictly increasing"
match = [e for e in events if e["id"] == eid]
assert match, f"published id {eid} not in /poll?after=0 ({len(events)} events)"
e = match[0]
assert e["event"] == "escaping", f"event {e['event']!r}"
assert e["data"] == want, f"data {e['data']!r} != {want!r}"
for c in (b"\n", b"\t", b"\x01", b"\x1f"):
    assert c not in raw, f"raw control byte {c!r} in the JSON text"
print(len(events))
EOF
); then
  pass "$name" "$out events, id $esc_id"
else
  fail "$name" "$out"
fi

# ---- 3. /longpoll?after=LATEST is held until a publish
name="curl /longpoll?after=LATEST held until a publish (>= 0.4 s)"
printf 'longpoll wakeup' > "$TMP/lp_body"
latest=$(publish "$TMP/lp_body" lp-before)
curl -sS --max-time 10 -o "$TMP/lp_out" -w '%{http_code} %{time_total}' "$BASE/longpoll?after=$latest" > "$TMP/lp_meta" &
curl_pid=$!
sleep 0.5
lp_id=$(publish "$TMP/lp_body" lp-wake)
wait $curl_pid
rc=$?
read -r code took < "$TMP/lp_meta"
if [ $rc -ne 0 ] || [ "$code" != 200 ]; then
  fail "$name" "curl exit $rc, HTTP $code"
elif out=$("$PY" - "$TMP/lp_out" "$lp_id" "$took" <<'EOF' 2>&1
import json, sys
events = json.load(open(sys.argv[1]))
lp_id, took = int(sys.argv[2]), float(sys.argv[3])
assert [(e["id"], e["event"], e["data"]) for e in events] == [(lp_id, "lp-wake", "longpoll wakeup")], f"got {events}"
assert took >= 0.4, f"answered after {took:.3f} s: not held"
print(f"held {took:.2f} s")
EOF
); then
  pass "$name" "$out"
else
  fail "$name" "$out"
fi

# ---- 4. 400 on a non-numeric cursor
for path in "/poll?after=abc" "/longpoll?after=abc" "/events?after=abc" "/chat?after=abc"; do
  name="curl $path -> 400"
  code=$(curl -sS --max-time 3 -o /dev/null -w '%{http_code}' "$BASE$path")
  if [ "$code" = 400 ]; then pass "$name"; else fail "$name" "HTTP $code"; fi
done
name="curl /events with Last-Event-ID: abc -> 400"
code=$(curl -sS --max-time 3 -o /dev/null -w '%{http_code}' -H 'Last-Event-ID: abc' "$BASE/events")
if [ "$code" = 400 ]; then pass "$name"; else fail "$name" "HTTP $code"; fi

# ---- 5. 413 on a 2 MiB publish
name="curl POST /publish 2 MiB -> 413"
head -c $((2 * 1024 * 1024)) /dev/zero | tr '\0' 'z' > "$TMP/big"
code=$(curl -sS --max-time 10 -o "$TMP/big_out" -w '%{http_code}' --data-binary "@$TMP/big" "$BASE/publish" 2> "$TMP/big_err")
if [ "$code" = 413 ]; then
  pass "$name"
else
  fail "$name" "HTTP $code $(head -c 200 "$TMP/big_err")"
fi

# ---- 6. TLS only: ALPN, plain HTTP on the TLS port, the counters
if [ -n "${PUSHLOOP_TLS_CA:-}" ]; then
  name="curl over TLS negotiates HTTP/1.1 (ALPN http/1.1, RFC 7301)"
  got=$(curl -sS --max-time 5 -o /dev/null -w '%{http_version} %{ssl_verify_result}' "$BASE/poll?after=0")
  if [ "$got" = "1.1 0" ]; then pass "$name"; else fail "$name" "http_version, verify result: $got"; fi

  name="plain http:// on the TLS port -> 400 in plain text"
  body=$(command curl -sS --max-time 5 -w ' %{http_code}' "http://$ADDR/" 2>&1)
  case $body in
    *"use https://"*" 400") pass "$name" ;;
    *) fail "$name" "$body" ;;
  esac

  name="/stats counts handshakes and the plain-HTTP fault"
  if out=$(curl -sS --max-time 5 "$BASE/stats" | "$PY" -c '
import json, sys
tls = json.load(sys.stdin)["transports"]["tls"]
assert tls["handshakes"] > 0, tls
assert tls["faults"]["plain_http"] >= 1, tls
print("%d handshakes, %d close_notify sent" % (tls["handshakes"], tls["close_notify_sent"]))
' 2>&1); then
    pass "$name" "$out"
  else
    fail "$name" "$out"
  fi
fi
