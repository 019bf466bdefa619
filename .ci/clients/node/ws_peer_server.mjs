// A Node `ws` echo server, the peer of pushloop's WebSocket client.
// Usage: node ws_peer_server.mjs   (run by .ci/clients/ws_peers.sh)
//
// Listens on 127.0.0.1 on a free port and prints `PORT <n>`; echoes every
// message of one connection and pings it every 0.2 s, then prints
//   PEER-CLOSED code=<code> reason=<reason> pongs=<n>
// (code 1006: no Close frame, the connection was lost) and exits. Exits by
// itself after 30 s.
import { WebSocketServer } from 'ws';

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
const limit = setTimeout(() => process.exit(2), 30000);
wss.on('listening', () => console.log(`PORT ${wss.address().port}`));
wss.on('connection', (ws) => {
  let pongs = 0;
  ws.on('pong', () => { pongs += 1; });
  const pinger = setInterval(() => ws.ping('hb'), 200);
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', (error) => console.log(`ERROR ${error.message}`));
  ws.on('close', (code, reason) => {
    clearInterval(pinger);
    console.log(`PEER-CLOSED code=${code} reason=${reason} pongs=${pongs}`);
    clearTimeout(limit);
    wss.close();
  });
});
