"""Python `websockets` client checks against a running pushloop server.

Usage: py_checks.py HOST:PORT
With PUSHLOOP_TLS_CA=FILE (a PEM to trust) every check runs over wss://.
Prints one `PASS name` / `FAIL name: why` line per check; exits 0 (the caller counts).
Every check is bounded by CHECK_TIMEOUT seconds.
"""

import asyncio
import json
import os
import ssl
import sys
import traceback

import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

CHECK_TIMEOUT = 15
ADDR = sys.argv[1]
CA = os.environ.get("PUSHLOOP_TLS_CA")
SSL = ssl.create_default_context(cafile=CA) if CA else None
SCHEME = "wss" if CA else "ws"
HTTP = "https" if CA else "http"
PREFIX = "wss: " if CA else ""
ECHO = f"{SCHEME}://{ADDR}/echo"
CHAT = f"{SCHEME}://{ADDR}/chat"


def ws_connect(url, **options):
    # proxy=None: never route loopback traffic through an environment proxy.
    # max_size: room for the 1 MiB echo plus slack.
    # compression: websockets offers permessage-deflate by default.
    tls = {"ssl": SSL} if SSL else {}
    return connect(url, proxy=None, max_size=4 * 1024 * 1024, open_timeout=5, close_timeout=5, **tls, **options)


async def recv(ws, timeout=5):
    return await asyncio.wait_for(ws.recv(), timeout)


async def check_text():
    async with ws_connect(ECHO) as ws:
        msg = "hello, pushloop \u00e9\u20ac\U0001F600"
        await ws.send(msg)
        got = await recv(ws)
        assert got == msg, f"echo {got!r} != {msg!r}"


async def check_binary():
    async with ws_connect(ECHO) as ws:
        msg = bytes(range(256)) * 4
        await ws.send(msg)
        got = await recv(ws)
        assert isinstance(got, bytes), f"got {type(got).__name__}, want bytes"
        assert got == msg, "binary payload differs"


async def check_fragmented_text():
    async with ws_connect(ECHO) as ws:
        parts = ["frag-one|", "frag-\u00e9-two|", "frag-three"]
        await ws.send(parts)  # an iterable of str → one text message in 3 frames
        got = await recv(ws)
        assert got == "".join(parts), f"echo {got!r}"


async def check_fragmented_binary_async():
    async def chunks():
        for i in range(5):
            yield bytes([i]) * 1000
            await asyncio.sleep(0.01)

    async with ws_connect(ECHO) as ws:
        await ws.send(chunks())  # an async iterator of bytes → one binary message in 5 frames
        got = await recv(ws)
        want = b"".join(bytes([i]) * 1000 for i in range(5))
        assert got == want, f"got {len(got)} bytes, want {len(want)}"


async def check_large():
    async with ws_connect(ECHO) as ws:
        msg = os.urandom(1024 * 1024)
        await ws.send(msg)
        got = await recv(ws, timeout=10)
        assert got == msg, f"1 MiB echo differs (got {len(got)} bytes)"
        text = "x" * (1024 * 1024)
        await ws.send(text)
        got = await recv(ws, timeout=10)
        assert got == text, f"1 MiB text echo differs (got {len(got)} chars)"


async def check_ping():
    async with ws_connect(ECHO) as ws:
        # websockets resolves the waiter only on a pong carrying the same payload
        waiter = await ws.ping(b"ping-payload-123")
        latency = await asyncio.wait_for(waiter, 5)
        assert latency >= 0
        # and the connection still echoes afterwards
        await ws.send("after ping")
        assert await recv(ws) == "after ping"


async def close_with(code, reason):
    ws = await ws_connect(ECHO)
    await ws.send("before close")
    assert await recv(ws) == "before close"
    await asyncio.wait_for(ws.close(code, reason), 8)
    sent, rcvd = ws.protocol.close_sent, ws.protocol.close_rcvd
    assert sent is not None and sent.code == code, f"close sent {sent}"
    assert rcvd is not None, "server sent no close frame (close_code %r)" % ws.close_code
    assert ws.close_code == code, f"server close code {ws.close_code}, want {code}"
    return f"server close frame: code={rcvd.code} reason={rcvd.reason!r}"


async def check_close_1000():
    return await close_with(1000, "bye")


async def check_close_4001():
    return await close_with(4001, "custom")


async def check_invalid_utf8():
    ws = await ws_connect(ECHO)
    try:
        # low-level API: a text frame whose payload is not UTF-8
        async with ws.send_context():
            ws.protocol.send_text(b"ok \xc3\x28 bad")
        try:
            got = await recv(ws, timeout=5)
            raise AssertionError(f"server echoed {got!r} instead of closing")
        except ConnectionClosed as closed:
            rcvd = closed.rcvd
            assert rcvd is not None, "connection dropped without a close frame"
            assert rcvd.code == 1007, f"server close code {rcvd.code} ({rcvd.reason!r}), want 1007"
            return f"server close frame: code={rcvd.code} reason={rcvd.reason!r}"
    finally:
        await ws.close()


async def check_chat():
    marker = f"chat-from-python-{os.getpid()}"
    async with ws_connect(CHAT) as a, ws_connect(CHAT) as b:
        await asyncio.sleep(0.2)  # both subscribed before the publish
        await a.send(marker)

        async def wait_for_chat(ws, who):
            while True:
                raw = await ws.recv()
                assert isinstance(raw, str), f"{who}: got a binary message"
                ev = json.loads(raw)
                if ev.get("event") == "chat" and ev.get("data") == marker:
                    assert isinstance(ev.get("id"), int), f"{who}: id {ev.get('id')!r}"
                    return ev

        ea, eb = await asyncio.wait_for(
            asyncio.gather(wait_for_chat(a, "sender"), wait_for_chat(b, "other")), 5
        )
        assert ea["id"] == eb["id"], f"ids differ {ea['id']} {eb['id']}"


async def check_deflate():
    async with ws_connect(ECHO) as ws:
        agreed = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert "permessage-deflate" in agreed, f"extensions {agreed!r}"
        assert [e.name for e in ws.protocol.extensions] == ["permessage-deflate"]
        msg = json.dumps([{"id": i, "topic": "news", "data": "hello"} for i in range(5000)])
        await ws.send(msg)
        got = await recv(ws, timeout=10)
        assert got == msg, f"compressed echo differs ({len(got)} chars)"
        return f"{agreed}; {len(msg)} bytes"


async def check_no_compression():
    async with ws_connect(ECHO, compression=None) as ws:
        agreed = ws.response.headers.get("Sec-WebSocket-Extensions")
        assert agreed is None, f"extensions {agreed!r} without an offer"
        msg = "z" * 100_000
        await ws.send(msg)
        assert await recv(ws) == msg, "uncompressed echo differs"


async def check_two_rooms():
    async with ws_connect(f"{CHAT}?topics=feed,news") as a, ws_connect(f"{CHAT}?topics=news") as b:
        await asyncio.sleep(0.2)  # both subscribed before the publishes
        marker = f"py-{os.getpid()}"
        await a.send(f"@news {marker} to news")  # "@room text" publishes to that room
        await a.send(f"{marker} to feed")  # else the first room followed

        async def collect(ws, want):
            got = []
            while len(got) < want:
                ev = json.loads(await ws.recv())
                if ev.get("event") == "chat" and str(ev.get("data", "")).startswith(marker):
                    got.append(ev)
            return got

        got_a, got_b = await asyncio.wait_for(asyncio.gather(collect(a, 2), collect(b, 1)), 5)
        rooms_a = [ev["topic"] for ev in got_a]
        assert rooms_a == ["news", "feed"], f"sender got {rooms_a}"
        assert [ev["topic"] for ev in got_b] == ["news"], f"news-only got {got_b}"
        assert got_a[0]["id"] < got_a[1]["id"], "one id space, increasing"


async def check_metrics():
    """GET /metrics parses with the Prometheus client's own text parser."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    def fetch():
        with urlopen(f"{HTTP}://{ADDR}/metrics", timeout=5, context=SSL) as res:
            assert res.status == 200, f"HTTP {res.status}"
            assert res.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            return res.read().decode()

    text = await asyncio.get_running_loop().run_in_executor(None, fetch)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("pushloop_connections", "pushloop_requests", "pushloop_closes", "pushloop_events_published"):
        assert name in families, f"{name} missing from {sorted(families)}"
    transports = {s.labels.get("transport") for s in families["pushloop_connections"].samples}
    assert transports == {"http", "poll", "longpoll", "sse", "websocket"}, transports
    closes = families["pushloop_closes"].samples
    assert any(s.labels["transport"] == "websocket" for s in closes), "no WebSocket ending counted yet"
    return f"{len(families)} families, {sum(len(f.samples) for f in families.values())} samples"


CHECKS = [
    ("py-websockets /echo permessage-deflate agreed, 200 KiB JSON echoed", check_deflate),
    ("py-websockets /echo compression=None: no extension, plain echo", check_no_compression),
    ("py-websockets /echo text", check_text),
    ("py-websockets /echo binary", check_binary),
    ("py-websockets /echo fragmented text (iterable)", check_fragmented_text),
    ("py-websockets /echo fragmented binary (async iterator)", check_fragmented_binary_async),
    ("py-websockets /echo 1 MiB binary + text", check_large),
    ("py-websockets /echo ping with payload -> pong", check_ping),
    ("py-websockets /echo close 1000 'bye' echoed", check_close_1000),
    ("py-websockets /echo close 4001 'custom' echoed", check_close_4001),
    ("py-websockets /echo invalid UTF-8 text -> close 1007", check_invalid_utf8),
    ("py-websockets /chat two clients get the chat event", check_chat),
    ("py-websockets /chat?topics=feed,news follows two rooms", check_two_rooms),
    ("prometheus_client parses GET /metrics", check_metrics),
]


async def main():
    print(f"# python websockets {websockets.__version__}", flush=True)
    for name, fn in CHECKS:
        try:
            note = await asyncio.wait_for(fn(), CHECK_TIMEOUT)
            print(f"PASS {PREFIX}{name}" + (f" ({note})" if note else ""), flush=True)
        except asyncio.TimeoutError:
            print(f"FAIL {PREFIX}{name}: timed out after {CHECK_TIMEOUT}s", flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
            print(f"FAIL {PREFIX}{name}: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc(file=sys.stderr)


asyncio.run(main())
