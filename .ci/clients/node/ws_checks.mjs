// Node `ws` client checks against a running pushloop server.
// Usage: node ws_checks.mjs HOST:PORT
// With PUSHLOOP_TLS_CA=FILE (a PEM to trust) every check runs over wss://.
// Prints one `PASS name` / `FAIL name: why` line per check; every check is time-bounded.
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';

const require = createRequire(import.meta.url);
const WS_VERSION = require('ws/package.json').version;
const ADDR = process.argv[2];
const CA = process.env.PUSHLOOP_TLS_CA ? readFileSync(process.env.PUSHLOOP_TLS_CA) : undefined;
const SCHEME = CA ? 'wss' : 'ws';
const ECHO = `${SCHEME}://${ADDR}/echo`;
const CHAT = `${SCHEME}://${ADDR}/chat`;
const CHECK_TIMEOUT_MS = 15000;

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function open(url, options = {}) {
  // perMessageDeflate is on by default in a `ws` client: every check offers it.
  const ws = new WebSocket(url, { handshakeTimeout: 5000, ...(CA ? { ca: CA } : {}), ...options });
  // queue every message so no check races the 'message' event
  ws.inbox = [];
  ws.waiters = [];
  ws.on('message', (data, isBinary) => {
    const msg = { data, isBinary };
    const w = ws.waiters.shift();
    if (w) w(msg);
    else ws.inbox.push(msg);
  });
  ws.closed = new Promise((resolve) => {
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
  });
  ws.on('error', () => {}); // reported through 'close' / timeouts
  return withTimeout(
    new Promise((resolve, reject) => {
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    }),
    5000,
    `open ${url}`,
  );
}

function next(ws, ms = 5000) {
  if (ws.inbox.length) return Promise.resolve(ws.inbox.shift());
  return withTimeout(new Promise((resolve) => ws.waiters.push(resolve)), ms, 'a message');
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function finish(ws) {
  if (ws.readyState === WebSocket.OPEN) ws.close(1000, 'done');
  await withTimeout(ws.closed, 5000, 'close').catch(() => ws.terminate());
}

const checks = [
  ['node-ws /echo text', async () => {
    const ws = await open(ECHO);
    const msg = 'hello from node ws \u00e9\u20ac\u{1F600}';
    ws.send(msg);
    const got = await next(ws);
    assert(!got.isBinary, 'echo came back binary');
    assert(got.data.toString('utf8') === msg, `echo ${got.data}`);
    await finish(ws);
  }],
  ['node-ws /echo binary', async () => {
    const ws = await open(ECHO);
    const msg = randomBytes(4096);
    ws.send(msg);
    const got = await next(ws);
    assert(got.isBinary, 'echo came back as text');
    assert(Buffer.compare(got.data, msg) === 0, 'binary payload differs');
    await finish(ws);
  }],
  ['node-ws /echo fragmented text (fin:false ... fin:true)', async () => {
    const ws = await open(ECHO);
    ws.send('part-1|', { fin: false });
    ws.send('part-\u00e9-2|', { fin: false });
    ws.send('part-3', { fin: true });
    const got = await next(ws);
    assert(!got.isBinary, 'echo came back binary');
    assert(got.data.toString('utf8') === 'part-1|part-\u00e9-2|part-3', `echo ${got.data}`);
    await finish(ws);
  }],
  ['node-ws /echo fragmented binary (fin:false ... fin:true)', async () => {
    const ws = await open(ECHO);
    const parts = [randomBytes(100), randomBytes(2000), randomBytes(1)];
    parts.forEach((p, i) => ws.send(p, { binary: true, fin: i === parts.length - 1 }));
    const got = await next(ws);
    assert(got.isBinary, 'echo came back as text');
    assert(Buffer.compare(got.data, Buffer.concat(parts)) === 0, 'binary payload differs');
    await finish(ws);
  }],
  ['node-ws /echo 1 MiB binary + text', async () => {
    const ws = await open(ECHO);
    const bin = randomBytes(1024 * 1024);
    ws.send(bin);
    let got = await next(ws, 10000);
    assert(got.isBinary && Buffer.compare(got.data, bin) === 0, `1 MiB binary differs (${got.data.length} bytes)`);
    const text = 'y'.repeat(1024 * 1024);
    ws.send(text);
    got = await next(ws, 10000);
    assert(!got.isBinary && got.data.toString() === text, `1 MiB text differs (${got.data.length} bytes)`);
    await finish(ws);
  }],
  ['node-ws /echo ping with payload -> pong', async () => {
    const ws = await open(ECHO);
    const payload = Buffer.from('node-ping-payload-42');
    const pong = new Promise((resolve) => ws.once('pong', resolve));
    ws.ping(payload);
    const data = await withTimeout(pong, 5000, 'pong');
    assert(Buffer.compare(data, payload) === 0, `pong payload ${data}`);
    await finish(ws);
  }],
  ...[[1000, 'bye'], [4001, 'custom']].map(([code, reason]) => [
    `node-ws /echo close ${code} '${reason}' echoed`,
    async () => {
      const ws = await open(ECHO);
      ws.close(code, reason);
      const closed = await withTimeout(ws.closed, 5000, 'close');
      assert(closed.code === code, `server close code ${closed.code} (${closed.reason}), want ${code}`);
      return `server close frame: code=${closed.code} reason='${closed.reason}'`;
    },
  ]),
  ['node-ws /echo invalid UTF-8 text -> close 1007', async () => {
    const ws = await open(ECHO);
    // ws does not validate outgoing text: a Buffer sent with binary:false goes out as a text frame
    ws.send(Buffer.from([0x6f, 0x6b, 0x20, 0xc3, 0x28, 0xff]), { binary: false });
    const closed = await withTimeout(ws.closed, 5000, 'close');
    assert(closed.code === 1007, `server close code ${closed.code} (${closed.reason}), want 1007`);
    return `server close frame: code=${closed.code} reason='${closed.reason}'`;
  }],
  ['node-ws /echo permessage-deflate agreed, 256 KiB of JSON both ways', async () => {
    const ws = await open(ECHO, { perMessageDeflate: true });
    assert(ws.extensions.includes('permessage-deflate'), `extensions "${ws.extensions}"`);
    const json = JSON.stringify(Array.from({ length: 6000 }, (_, i) => ({ id: i, topic: 'news', data: 'hello' })));
    ws.send(json);
    const got = await next(ws, 10000);
    assert(!got.isBinary && got.data.toString() === json, `echo differs (${got.data.length} bytes)`);
    const note = `${ws.extensions}; ${json.length} bytes`;
    await finish(ws);
    return note;
  }],
  ['node-ws /echo three compressed echoes in a row, then a client that offers nothing', async () => {
    // The server answers any offer with no context takeover either way (its
    // shared mode): each message stands alone, however many follow.
    const ws = await open(ECHO);
    assert(ws.extensions.includes('permessage-deflate'), `extensions "${ws.extensions}"`);
    for (let i = 0; i < 3; i++) {
      const msg = `${i} ` + 'x'.repeat(5000) + 'y'.repeat(5000);
      ws.send(msg);
      const got = await next(ws);
      assert(got.data.toString() === msg, `round ${i}: echo differs`);
    }
    await finish(ws);
    const plain = await open(ECHO, { perMessageDeflate: false });
    assert(plain.extensions === '', `extensions "${plain.extensions}" without an offer`);
    const msg = 'z'.repeat(10000);
    plain.send(msg);
    assert((await next(plain)).data.toString() === msg, 'uncompressed echo differs');
    await finish(plain);
  }],
  ['node-ws /chat two clients get the chat event', async () => {
    const marker = `chat-from-node-${process.pid}`;
    const a = await open(CHAT);
    const b = await open(CHAT);
    await new Promise((r) => setTimeout(r, 200));
    a.send(marker);
    const waitChat = async (ws, who) => {
      for (;;) {
        const m = await next(ws);
        assert(!m.isBinary, `${who}: got binary`);
        const ev = JSON.parse(m.data.toString());
        if (ev.event === 'chat' && ev.data === marker) return ev;
      }
    };
    const [ea, eb] = await Promise.all([waitChat(a, 'sender'), waitChat(b, 'other')]);
    assert(Number.isInteger(ea.id) && ea.id === eb.id, `ids ${ea.id} ${eb.id}`);
    await finish(a);
    await finish(b);
  }],
];

console.log(`# node ${process.version}, ws ${WS_VERSION}`);
for (const [name, fn] of checks) {
  try {
    const note = await withTimeout(fn(), CHECK_TIMEOUT_MS, name);
    console.log(`PASS ${CA ? 'wss: ' : ''}${name}${note ? ` (${note})` : ''}`);
  } catch (e) {
    console.log(`FAIL ${CA ? 'wss: ' : ''}${name}: ${e && e.message}`);
  }
}
process.exit(0);
