'use strict';
// Peer server for pushloop's benchmarks: Node's own stack on one process.
//
//   GET  /echo     WebSocket echo (text and binary) on the `ws` package
//   GET  /chat     WebSocket subscriber: every publish, as one text message
//   GET  /events   Server-Sent Events on node:http
//   POST /publish  body -> one event `data:` to every subscriber of either kind
//
// permessage-deflate is on with `ws`'s defaults (context takeover both ways,
// threshold 1 KiB, zlib's level): it applies only to clients that offer it,
// so the runs without `--deflate` are unchanged.
//
// Usage: node server.js --addr 127.0.0.1:9004   (or PORT=9004 node server.js)

const http = require('node:http');
const { WebSocketServer } = require('ws');

// Largest message accepted: the benchmark asks for at least 16 MiB.
const MAX_MESSAGE = 64 << 20;

function addrFromArgs() {
  const i = process.argv.indexOf('--addr');
  const addr = i >= 0 ? process.argv[i + 1] : `127.0.0.1:${process.env.PORT || 9004}`;
  const colon = addr.lastIndexOf(':');
  return { host: addr.slice(0, colon), port: Number(addr.slice(colon + 1)) };
}

const subscribers = new Set();
const sockets = new Set();

// One event in text/event-stream form: every line of the body is a `data:` line.
function eventBytes(body) {
  return 'data: ' + body.split(/\r\n|\r|\n/).join('\ndata: ') + '\n\n';
}

const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  if (req.method === 'GET' && path === '/events') {
    res.writeHead(200, {
      'Content-Type': 'text/event-stream',
      'Cache-Control': 'no-cache',
      Connection: 'keep-alive',
    });
    res.flushHeaders();
    res.socket.setNoDelay(true);
    subscribers.add(res);
    res.on('close', () => subscribers.delete(res));
    return;
  }
  if (req.method === 'POST' && path === '/publish') {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const frame = eventBytes(body);
      for (const sub of subscribers) sub.write(frame);
      for (const ws of sockets) ws.send(body);
      res.writeHead(204);
      res.end();
    });
    return;
  }
  res.writeHead(404);
  res.end();
});

const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE, perMessageDeflate: true });

server.on('upgrade', (req, socket, head) => {
  const path = req.url.split('?')[0];
  if (path !== '/echo' && path !== '/chat') {
    socket.destroy();
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.on('error', () => {});
    if (path === '/chat') {
      sockets.add(ws);
      ws.on('close', () => sockets.delete(ws));
      return;
    }
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
});

const { host, port } = addrFromArgs();
server.listen(port, host, () => console.error(`node peer listening on ${host}:${port}`));
