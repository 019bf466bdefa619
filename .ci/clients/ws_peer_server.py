"""A Python `websockets` echo server, the peer of pushloop's WebSocket client.

Usage: ws_peer_server.py   (run by .ci/clients/ws_peers.sh)

Listens on 127.0.0.1 on a free port and prints `PORT <n>`; echoes every
message of one connection, pinging it every 0.2 s (an unanswered ping
closes the connection with 1011 after 1 s), then prints

    PEER-CLOSED code=<code> reason=<reason>

where code is what the client's Close frame said (1006: no Close frame, the
connection was lost) and exits. Exits by itself after 30 s.
"""

import asyncio

from websockets.asyncio.server import serve


async def main():
    done = asyncio.get_running_loop().create_future()

    async def echo(ws):
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            print(f"PEER-CLOSED code={ws.close_code} reason={ws.close_reason}", flush=True)
            if not done.done():
                done.set_result(None)

    async with serve(echo, "127.0.0.1", 0, ping_interval=0.2, ping_timeout=1) as server:
        print("PORT", server.sockets[0].getsockname()[1], flush=True)
        await asyncio.wait_for(done, 30)


asyncio.run(main())
