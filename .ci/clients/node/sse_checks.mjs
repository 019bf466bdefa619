// Node `eventsource` (WHATWG EventSource for Node) checks against pushloop's /events.
// Usage: node sse_checks.mjs HOST:PORT PUSHLOOP_BINARY RESTART_PORT
//   HOST:PORT      a running server (named events, multi-line data)
//   RESTART_PORT   a free port: this script starts its own server there, SIGTERMs it and
//                  starts it again on the same port to force a reconnect with Last-Event-ID.
// Prints one `PASS name` / `FAIL name: why` line per check; every wait is time-bounded.
import { createRequire } from 'node:module';
import { spawn } from 'node:child_process';
import { EventSource } from 'eventsource';

const require = createRequire(import.meta.url);
const ES_VERSION = require('eventsource/package.json').version;
const [ADDR, BINARY, RESTART_PORT] = process.argv.slice(2);
const CHECK_TIMEOUT_MS = 30000;

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function publish(addr, body, event, topic) {
  const query = [event && `event=${encodeURIComponent(event)}`, topic && `topic=${encodeURIComponent(topic)}`]
    .filter(Boolean).join('&');
  const url = `http://${addr}/publish${query ? `?${query}` : ''}`;
  const res = await withTimeout(fetch(url, { method: 'POST', body }), 5000, `POST ${url}`);
  const text = await res.text();
  assert(res.status === 200, `POST ${url} -> ${res.status} ${text}`);
  const { id } = JSON.parse(text);
  assert(Number.isInteger(id), `publish answered ${text}`);
  return id;
}

// An EventSource whose every request's headers are logged, and whose events of the
// given types are queued so a check can await "the next event of type T matching f".
function openSource(url, types) {
  const requests = [];
  const es = new EventSource(url, {
    fetch: (input, init) => {
      requests.push({ url: String(input), headers: { ...(init && init.headers) } });
      return fetch(input, init);
    },
  });
  const seen = [];
  const waiters = [];
  const deliver = (ev) => {
    seen.push(ev);
    for (const w of [...waiters]) {
      if (w.type === ev.type && w.match(ev)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(ev);
      }
    }
  };
  for (const type of types) es.addEventListener(type, deliver);
  const errors = [];
  es.addEventListener('error', (e) => errors.push(e));
  const waitFor = (type, match = () => true, ms = 5000) => {
    const old = seen.find((ev) => ev.type === type && match(ev));
    if (old) return Promise.resolve(old);
    return withTimeout(
      new Promise((resolve) => waiters.push({ type, match, resolve })),
      ms,
      `SSE event '${type}'`,
    );
  };
  const opened = withTimeout(
    new Promise((resolve, reject) => {
      es.addEventListener('open', resolve, { once: true });
      es.addEventListener('error', (e) => reject(new Error(`error before open: ${e.message}`)), { once: true });
    }),
    5000,
    'open',
  );
  return { es, requests, seen, errors, waitFor, opened };
}

function startServer(port) {
  const child = spawn(BINARY, ['--addr', `127.0.0.1:${port}`, '--no-tick'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stderr.on('data', (d) => { out += d; });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const listening = withTimeout(
    new Promise((resolve, reject) => {
      child.stdout.on('data', (d) => {
        out += d;
        if (out.includes('serving')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`server exited with ${code}: ${out}`)));
    }),
    5000,
    `server on port ${port} to listen`,
  );
  return { child, exited, listening, output: () => out };
}

async function stopServer(server) {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return server.exited;
  server.child.kill('SIGTERM');
  try {
    return await withTimeout(server.exited, 5000, 'server to exit after SIGTERM');
  } catch (e) {
    server.child.kill('SIGKILL');
    throw e;
  }
}

const checks = [
  ['node-eventsource /events named event (addEventListener greet)', async () => {
    const src = openSource(`http://${ADDR}/events`, ['greet', 'message']);
    try {
      await src.opened;
      const id = await publish(ADDR, 'hello from greet', 'greet');
      const ev = await src.waitFor('greet', (e) => e.data === 'hello from greet');
      assert(ev.lastEventId === String(id), `lastEventId ${ev.lastEventId}, published id ${id}`);
      assert(!src.seen.some((e) => e.type === 'message' && e.data === 'hello from greet'),
        'named event also dispatched as message');
    } finally {
      src.es.close();
    }
  }],
  ['node-eventsource /events multi-line data', async () => {
    const src = openSource(`http://${ADDR}/events`, ['message']);
    try {
      await src.opened;
      const cases = [
        ['a\nb\nc', 'a\nb\nc'],
        ['line1\n\nline3\n', 'line1\n\nline3\n'], // empty line inside and trailing newline
        ['x\r\ny\rz', 'x\ny\nz'], // CR and CRLF are line breaks in SSE: they arrive as \n
      ];
      for (const [body, want] of cases) {
        const id = await publish(ADDR, body);
        const ev = await src.waitFor('message', (e) => e.lastEventId === String(id));
        assert(ev.data === want, `published ${JSON.stringify(body)}, got ${JSON.stringify(ev.data)}, want ${JSON.stringify(want)}`);
      }
    } finally {
      src.es.close();
    }
  }],
  ['node-eventsource /events?topics=feed,news follows two rooms, in id order', async () => {
    const src = openSource(`http://${ADDR}/events?topics=feed,news`, ['message']);
    try {
      await src.opened;
      const ids = [
        await publish(ADDR, 'to feed', null, 'feed'),
        await publish(ADDR, 'to news', null, 'news'),
        await publish(ADDR, 'to chat', null, 'chat'),
        await publish(ADDR, 'to feed again', null, 'feed'),
      ];
      await src.waitFor('message', (e) => e.lastEventId === String(ids[3]));
      const got = src.seen.filter((e) => e.type === 'message').map((e) => Number(e.lastEventId));
      const want = [ids[0], ids[1], ids[3]];
      assert(JSON.stringify(got) === JSON.stringify(want), `got ids ${got}, want ${want} (chat is not followed)`);
    } finally {
      src.es.close();
    }
  }],
  ['node-eventsource /events reconnect after server restart: Last-Event-ID sent, resync, new event', async () => {
    const addr = `127.0.0.1:${RESTART_PORT}`;
    let server = startServer(RESTART_PORT);
    await server.listening;
    const src = openSource(`http://${addr}/events`, ['message', 'resync']);
    try {
      await src.opened;
      const before = await publish(addr, 'before restart');
      await src.waitFor('message', (e) => e.data === 'before restart');
      assert(src.es.readyState === EventSource.OPEN, 'not open before restart');

      const exit = await stopServer(server);
      assert(exit.code === 0, `server exit after SIGTERM: ${JSON.stringify(exit)}`);
      // the client notices the drop and goes back to CONNECTING (it must not give up)
      await withTimeout((async () => {
        while (src.es.readyState !== EventSource.CONNECTING) await sleep(20);
      })(), 3000, 'readyState CONNECTING after the drop');

      server = startServer(RESTART_PORT);
      await server.listening;
      // The drain's last `retry:` is spread over reconnect_spread (10 s by
      // default, so a restart does not bring every client back at once):
      // the reconnect comes within 10 s of the drop, plus the restart.
      const resync = await src.waitFor('resync', () => true, 16000);
      const reconnect = src.requests[src.requests.length - 1];
      assert(src.requests.length >= 2, 'no reconnect request was made');
      assert(reconnect.headers['Last-Event-ID'] === String(before),
        `reconnect sent Last-Event-ID ${JSON.stringify(reconnect.headers['Last-Event-ID'])}, want "${before}"`);
      const info = JSON.parse(resync.data);
      assert(info.reason === 'unknown id', `resync data ${resync.data}`);
      const after = await publish(addr, 'after restart');
      const ev = await src.waitFor('message', (e) => e.data === 'after restart');
      assert(ev.lastEventId === String(after), `lastEventId ${ev.lastEventId}, published ${after}`);
      assert(after > before, `id after restart ${after} <= id before ${before}`);
      return `Last-Event-ID: ${before}; resync ${resync.data}; requests made ${src.requests.length}`;
    } finally {
      src.es.close();
      await stopServer(server).catch(() => {});
    }
  }],
];

console.log(`# node ${process.version}, eventsource ${ES_VERSION}`);
for (const [name, fn] of checks) {
  try {
    const note = await withTimeout(fn(), CHECK_TIMEOUT_MS, name);
    console.log(`PASS ${name}${note ? ` (${note})` : ''}`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e && e.message}`);
  }
}
process.exit(0);
