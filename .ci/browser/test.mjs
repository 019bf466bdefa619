// Drives the pushloop demo page in headless Chromium and checks that one feed reaches
// all four transports, that chat works, that the lab shows the page's own wire (frames
// with their header bytes, charts for every transport, the comparison table filled in),
// and that every column recovers after a dropped connection and after a server restart,
// losing nothing. Started by run.sh, which
// starts the server and passes it in the environment:
//   PUSHLOOP_BIN, PUSHLOOP_PORT, PUSHLOOP_PID (the server to kill), PUSHLOOP_LOG
//   (server output, appended to by the restarted server), PUSHLOOP_PIDFILE (this script
//   writes the restarted server's pid there so run.sh can clean up), PUSHLOOP_ARTIFACTS.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdirSync, openSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

const BIN = process.env.PUSHLOOP_BIN;
const PORT = Number(process.env.PUSHLOOP_PORT);
const FIRST_PID = Number(process.env.PUSHLOOP_PID);
const LOG = process.env.PUSHLOOP_LOG;
const PIDFILE = process.env.PUSHLOOP_PIDFILE;
const ARTIFACTS = process.env.PUSHLOOP_ARTIFACTS ?? 'ci-artifacts';
// TLS (PUSHLOOP_TLS_CERT and PUSHLOOP_TLS_KEY set, a binary built with --features tls):
// the server listens for TLS only, the page loads over https:// and its columns use
// https:// and wss://; Chromium is told to accept the throwaway certificate, Node's fetch
// trusts it through NODE_EXTRA_CA_CERTS (run.sh sets it).
const TLS = process.env.PUSHLOOP_TLS_CERT
  ? ['--tls-addr', `127.0.0.1:${PORT}`, '--tls-cert', process.env.PUSHLOOP_TLS_CERT, '--tls-key', process.env.PUSHLOOP_TLS_KEY]
  : null;
const BASE = `${TLS ? 'https' : 'http'}://127.0.0.1:${PORT}`;
const COLS = ['short', 'long', 'sse', 'ws'];
const NAMES = { short: 'short poll', long: 'long poll', sse: 'SSE', ws: 'WebSocket' };
const t0 = Date.now();

let passed = 0, failed = 0;
const secs = (ms) => (ms / 1000).toFixed(1) + ' s';
function pass(what) { passed++; console.log(`PASS ${what}`); }
function fail(what, why) { failed++; console.log(`FAIL ${what}: ${why}`); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

if (!BIN || !PORT) { console.log('FAIL setup: PUSHLOOP_BIN and PUSHLOOP_PORT must be set (use run.sh)'); process.exit(1); }

// The whole test has a hard deadline, so a hang is a failure, not a stuck CI.
const deadline = setTimeout(() => {
  fail('deadline', 'the browser test took more than 90 s');
  finish().then(() => process.exit(1));
}, 90_000);

let restarted = null;   // the server this script started
let browser = null;

async function publish(text, event, topic) {
  const params = [];
  if (event) params.push(`event=${encodeURIComponent(event)}`);
  if (topic) params.push(`topic=${encodeURIComponent(topic)}`);
  const url = `${BASE}/publish` + (params.length ? '?' + params.join('&') : '');
  const res = await fetch(url, { method: 'POST', body: text });
  if (!res.ok) throw new Error(`POST ${url} → ${res.status} ${await res.text()}`);
  return (await res.json()).id;
}

function portOpen() {
  return new Promise((resolve) => {
    const s = net.connect(PORT, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

async function until(what, timeoutMs, fn, everyMs = 100) {
  const start = Date.now();
  let last;
  for (;;) {
    last = await fn();
    if (last && last.ok) return { ...last, ms: Date.now() - start };
    if (Date.now() - start > timeoutMs) return { ...(last || {}), ok: false, ms: Date.now() - start };
    await sleep(everyMs);
  }
}

// Per column: when a row with this id (or this chat text) first shows in the DOM.
async function waitInColumns(page, label, timeoutMs, match) {
  const seenAt = {};
  const start = Date.now();
  await until(label, timeoutMs, async () => {
    const found = await page.evaluate(({ cols, match }) => {
      const out = {};
      for (const c of cols) {
        const rows = [...document.querySelectorAll(`#col-${c} ol.events li`)];
        const row = rows.find((li) => (match.id !== undefined ? li.dataset.id === String(match.id)
          : li.dataset.event === match.event && li.querySelector('.data').textContent === match.data));
        out[c] = row ? row.dataset.id : null;
      }
      return out;
    }, { cols: COLS, match });
    for (const c of COLS) if (found[c] && !(c in seenAt)) seenAt[c] = { ms: Date.now() - start, id: found[c] };
    return { ok: COLS.every((c) => c in seenAt) };
  });
  for (const c of COLS) {
    if (c in seenAt) pass(`${label}: ${NAMES[c]} column shows id ${seenAt[c].id} after ${secs(seenAt[c].ms)}`);
    else fail(`${label}: ${NAMES[c]} column`, `not shown within ${secs(timeoutMs)}`);
  }
  return seenAt;
}

const states = (page) => page.evaluate((cols) => Object.fromEntries(cols.map((c) => {
  const s = document.querySelector(`#col-${c} .status`);
  return [c, { state: s.dataset.state, text: s.textContent }];
})), COLS);

async function allConnected(page, label, timeoutMs) {
  const r = await until(label, timeoutMs, async () => {
    const st = await states(page);
    return { ok: COLS.every((c) => st[c].state === 'ok'), st };
  }, 200);
  if (r.ok) pass(`${label}: all four status lines connected after ${secs(r.ms)}`);
  else fail(label, 'status lines: ' + COLS.map((c) => `${NAMES[c]}=${r.st[c].state} "${r.st[c].text}"`).join('; '));
}

async function noDuplicates(page, label) {
  const dups = await page.evaluate((cols) => Object.fromEntries(cols.map((c) => {
    const ids = [...document.querySelectorAll(`#col-${c} ol.events li`)].map((li) => li.dataset.id);
    return [c, ids.filter((id, i) => ids.indexOf(id) !== i)];
  })), COLS);
  const bad = COLS.filter((c) => dups[c].length);
  if (bad.length) fail(label, bad.map((c) => `${NAMES[c]} shows ${dups[c].join(', ')} twice`).join('; '));
  else pass(`${label}: no column shows an id twice`);
}

function startServer() {
  return new Promise((resolve, reject) => {
    const out = LOG ? openSync(LOG, 'a') : 'ignore';
    const listen = TLS ?? ['--addr', `127.0.0.1:${PORT}`];
    const child = spawn(BIN, [...listen, '--tick-ms', '500'], { stdio: ['ignore', 'pipe', out] });
    if (PIDFILE) writeFileSync(PIDFILE, String(child.pid));
    let text = '';
    const timer = setTimeout(() => reject(new Error('no "serving" line within 5 s')), 5000);
    child.stdout.on('data', (d) => {
      text += d;
      if (text.includes('serving')) { clearTimeout(timer); resolve(child); }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited with ${code}: ${text}`)); });
  });
}

// The wire panel, the explanations, the charts and the table (see 2b).
async function checkLab(page, publishedId, chat) {
  const live = await page.waitForSelector('#lab-status[data-state=ok]', { timeout: 5000 }).then(() => true, () => false);
  if (live) pass('lab: /lab/events is live for the page\'s session');
  else fail('lab', 'status: ' + await page.textContent('#lab-status'));

  // The published event went out to the WebSocket as a text frame (server frames are
  // not masked: 0x81, then the length); the chat message came in masked, with its key.
  // Chromium negotiates permessage-deflate, so a frame may carry RSV1 (0xc1, RFC 7692 §6).
  const frames = await until('lab frames', 8000, async () => {
    const found = await page.evaluate(({ id, chat }) => {
      const rows = [...document.querySelectorAll('#wire li[data-cls=ws]')];
      const out = rows.find((li) => li.dataset.what === 'frame' && li.dataset.dir === '→' &&
        li.textContent.includes('\\"id\\":' + id));
      const inIdx = rows.findIndex((li, i) => li.dataset.what === 'frame' && li.dataset.dir === '←' &&
        rows[i + 1] && rows[i + 1].textContent.includes(chat));
      const text = (li, sel) => (li && li.querySelector(sel) ? li.querySelector(sel).textContent : null);
      return { outHex: text(out, '.hex'), outText: out && out.textContent,
               inHex: text(rows[inIdx], '.hex'), inText: rows[inIdx] && rows[inIdx].textContent };
    }, { id: publishedId, chat });
    return { ok: found.outHex && found.inHex, found };
  }, 250);
  const f = frames.found || {};
  if (f.outHex && /^[8c]1 [0-9a-f]{2}/.test(f.outHex) && /op=0x1 text\s+MASK=0 len=\d+ \((7|16)-bit\)/.test(f.outText)) {
    pass(`lab: the published event's frame on the wire: ${f.outHex} · ${f.outText.match(/FIN=.*?\)/)[0]}`);
  } else fail('lab: published frame', JSON.stringify(f));
  if (f.inHex && /^[8c]1 [89a-f][0-9a-f]( [0-9a-f]{2}){4}$/.test(f.inHex) && /MASK=1 key=[0-9a-f]{8} len=\d+ \(7-bit\)/.test(f.inText)) {
    pass(`lab: the chat frame from the browser, masked: ${f.inHex}`);
  } else fail('lab: chat frame', JSON.stringify(f));

  // Clicking the line explains it: the header bytes decoded, each field with its section.
  await page.evaluate(() => document.getElementById('lab').scrollIntoView());
  await page.click('#wire-bar button[data-filter=ws]');
  const chatFrame = await page.evaluateHandle((chat) => {
    const rows = [...document.querySelectorAll('#wire li[data-cls=ws]')];
    return rows.find((li, i) => li.dataset.what === 'frame' && li.dataset.dir === '←' &&
      rows[i + 1] && rows[i + 1].textContent.includes(chat));
  }, chat);
  const chatRow = chatFrame.asElement();
  if (chatRow) {
    await chatRow.evaluate((li) => li.scrollIntoView({ block: 'center' }));
    await (await chatRow.$('.fld[data-field=key]')).click();
    const explained = await page.evaluate(() => ({
      hit: document.querySelector('#explain dt.hit')?.textContent,
      key: [...document.querySelectorAll('#explain td')].some((td) => td.textContent === 'masking key'),
      link: !!document.querySelector('#explain a[href="https://www.rfc-editor.org/rfc/rfc6455#section-5.3"]'),
    }));
    if (explained.hit === 'masking key' && explained.key && explained.link) {
      pass('lab: clicking key= explains the masking key, with the header decoded and a link to RFC 6455 §5.3');
    } else fail('lab: explanation', JSON.stringify(explained));
  } else fail('lab: explanation', 'no chat frame line to click');

  // Charts: points of latency and of bytes for every transport. Table: numbers.
  const charts = await until('charts', 15000, async () => {
    const pts = await page.evaluate(() => Object.fromEntries(['short', 'long', 'sse', 'ws'].map((k) => {
      const svg = document.querySelector(`#chart-${k} svg`);
      return [k, [Number(svg.dataset.latencyPoints), Number(svg.dataset.bytesPoints)]];
    })));
    return { ok: COLS.every((c) => pts[c][0] > 0 && pts[c][1] > 0), pts };
  }, 500);
  if (charts.ok) pass('lab charts: ' + COLS.map((c) => `${NAMES[c]} ${charts.pts[c][0]} latency / ${charts.pts[c][1]} bytes points`).join(', '));
  else fail('lab charts', JSON.stringify(charts.pts));
  const table = await until('table', 10000, async () => {
    const rows = await page.evaluate(() => Object.fromEntries(['short', 'long', 'sse', 'ws'].map((k) => [k,
      [...document.querySelectorAll(`#compare-${k} td.num`)].map((td) => td.textContent)])));
    const numeric = (r) => /^\d+\.\d\d$/.test(r[0]) && /^[\d.]+ (B|KiB)$/.test(r[1]) &&
      /^[\d.]+ m?s$/.test(r[2]) && /^\d+\.\d\d$/.test(r[3]);
    return { ok: COLS.every((c) => numeric(rows[c])), rows };
  }, 500);
  if (table.ok) pass('lab table (requests/event, bytes/event, median latency, held): ' +
    COLS.map((c) => `${NAMES[c]} ${table.rows[c].join(' · ')}`).join('; '));
  else fail('lab table', JSON.stringify(table.rows));

  // The screenshot: the lab at 1280×900, the WebSocket's lines, the chat frame explained.
  if (chatRow) await (await chatRow.$('.what')).click();
  await page.evaluate(() => window.scrollTo(0, document.getElementById('lab').offsetTop - 8));
  mkdirSync(ARTIFACTS, { recursive: true });
  const shot = path.resolve(ARTIFACTS, TLS ? 'lab-tls.png' : 'lab.png');
  await page.screenshot({ path: shot });
  console.log(`     screenshot: ${shot}`);
  await page.click('#wire-bar button[data-filter=all]');
}

async function finish() {
  try {
    if (browser) await browser.close();
  } catch (_) { /* already gone */ }
  if (restarted && restarted.exitCode === null) restarted.kill('SIGTERM');
  clearTimeout(deadline);
  console.log(`browser${TLS ? ' (https)' : ''}: ${passed} passed, ${failed} failed (${secs(Date.now() - t0)})`);
}

try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: [...(TLS ? ['--ignore-certificate-errors'] : []), '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ignoreHTTPSErrors: Boolean(TLS) });
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));

  // 1. The page loads; a publish from its box shows in all four columns.
  const res = await page.goto(BASE + '/');
  if (res.ok() && (await page.title()).includes('pushloop')) pass(`GET / serves the demo page (${res.status()})`);
  else fail('GET /', `status ${res.status()}, title "${await page.title()}"`);
  await allConnected(page, 'load', 10_000);

  // 1a. Chromium offers permessage-deflate and the server accepts it (RFC 7692): the
  // page's own socket says so, and a large compressible echo comes back intact.
  const extensions = await page.evaluate(() => window.pushloop.wsExtensions());
  if (typeof extensions === 'string' && extensions.includes('permessage-deflate')) {
    pass(`WebSocket extensions: "${extensions}"`);
  } else {
    fail('WebSocket extensions', `expected permessage-deflate, got ${JSON.stringify(extensions)}`);
  }
  const echoed = await page.evaluate(() => new Promise((resolve) => {
    const big = JSON.stringify(Array.from({ length: 400 }, (_, i) => ({ id: i, text: 'compressible' })));
    // wss:// on an https page (a ws:// socket there is mixed content, refused).
    const s = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/echo`);
    s.onopen = () => s.send(big);
    s.onmessage = (m) => { resolve({ same: m.data === big, bytes: big.length, extensions: s.extensions }); s.close(); };
    s.onerror = () => resolve({ same: false, error: true });
    setTimeout(() => resolve({ same: false, timeout: true }), 5000);
  }));
  if (echoed.same && echoed.extensions.includes('permessage-deflate')) {
    pass(`compressed echo: ${echoed.bytes} bytes of JSON back intact`);
  } else {
    fail('compressed echo', JSON.stringify(echoed));
  }

  const text1 = `hello from the browser test ${Math.random().toString(36).slice(2, 8)}`;
  await page.fill('#pub-text', text1);
  await page.fill('#pub-event', 'news');
  await page.click('#pub-send');
  const id1 = await page.waitForSelector('#pub-result[data-id]', { timeout: 5000 })
    .then((e) => e.getAttribute('data-id')).catch(() => null);
  if (id1) {
    pass(`publish box: POST /publish?event=news answered id ${id1}`);
    await waitInColumns(page, 'publish', 10_000, { id: id1 });
    const lat = await page.evaluate((id) => Object.fromEntries(['short', 'long', 'sse', 'ws'].map((c) => {
      const li = document.querySelector(`#col-${c} li[data-id="${id}"]`);
      return [c, li ? li.dataset.latency : undefined];
    })), id1);
    const missing = COLS.filter((c) => lat[c] === undefined);
    if (missing.length) fail('latency', `no latency for the page's own event in ${missing.map((c) => NAMES[c]).join(', ')}`);
    else pass('latency per column: ' + COLS.map((c) => `${NAMES[c]} ${lat[c]} ms`).join(', '));
  } else {
    fail('publish box', 'no id shown: ' + await page.textContent('#pub-result'));
  }

  // 2. Chat over the WebSocket reaches every column as type chat.
  const chat = `chat from the browser test ${Math.random().toString(36).slice(2, 8)}`;
  await page.waitForSelector('#chat-send:not([disabled])', { timeout: 5000 });
  await page.fill('#chat-text', chat);
  await page.click('#chat-send');
  const chatSeen = await waitInColumns(page, 'chat', 10_000, { event: 'chat', data: chat });
  const chatIds = new Set(Object.values(chatSeen).map((s) => s.id));
  if (chatIds.size === 1) pass('chat: the same id in every column');
  else fail('chat', `different ids per column: ${[...chatIds].join(', ')}`);

  // 2b. The lab: the wire panel shows this page's frames with their header bytes, a
  // click explains them, the charts have points for all four transports and the
  // comparison table has numbers. A screenshot of it for people.
  await checkLab(page, id1, chat);

  // 3a. Drop the page's WebSocket and EventSource (as if they died), publish while they
  // are down, and check they come back with what they missed.
  await page.evaluate(() => { window.pushloop.dropWebSocket(); window.pushloop.dropEventSource(); });
  const idDropped = await publish('published while the WebSocket and EventSource were down');
  await waitInColumns(page, 'drop + resume', 10_000, { id: idDropped });
  await allConnected(page, 'drop + resume', 10_000);
  await noDuplicates(page, 'drop + resume');

  // 3b. Restart the server on the same port: a fresh history with larger ids, so every
  // column's cursor is "from an earlier run" and must resync.
  const before = await page.evaluate(() => Object.fromEntries(
    Object.entries(window.pushloop.cols).map(([k, c]) => [k, c.seen.size])));
  console.log('     before restart, ids seen: ' + COLS.map((c) => `${NAMES[c]} ${before[c]}`).join(', '));
  process.kill(FIRST_PID, 'SIGTERM');
  const down = await until('server down', 5000, async () => ({ ok: !(await portOpen()) }));
  if (down.ok) pass(`restart: SIGTERM stopped the server (port closed after ${secs(down.ms)})`);
  else fail('restart', 'the port still accepts connections 5 s after SIGTERM');
  await sleep(1500);
  const outage = await states(page);
  console.log('     during the outage: ' + COLS.map((c) => `${NAMES[c]}="${outage[c].text}"`).join('; '));
  const stillOk = ['long', 'sse', 'ws'].filter((c) => outage[c].state === 'ok');
  if (stillOk.length) fail('outage', `status still "connected" with the server down: ${stillOk.map((c) => NAMES[c]).join(', ')}`);
  else pass('outage: long poll, SSE and WebSocket status lines show it');

  restarted = await startServer();
  pass(`restart: the same binary serves on port ${PORT} again (pid ${restarted.pid})`);
  const after = [];
  after.push(await publish('first event after the restart'));
  await waitInColumns(page, 'after restart', 20_000, { id: after[0] });
  await allConnected(page, 'after restart', 10_000);
  const resynced = await page.evaluate((cols) => cols.filter((c) => !document.querySelector(`#col-${c}`).dataset.resynced), COLS);
  if (resynced.length) fail('resync', `no resync shown in ${resynced.map((c) => NAMES[c]).join(', ')}`);
  else pass('resync: every column got a resync and rebuilt from the new history');

  // Nothing published after recovery is missing: a few more events, then every id the
  // new server holds must be in every column.
  for (let i = 2; i <= 4; i++) { after.push(await publish(`event ${i} after the restart`, i === 3 ? 'alert' : undefined)); await sleep(150); }
  const history = await (await fetch(`${BASE}/poll?after=0`)).json();
  const want = history.filter((e) => e.event !== 'resync').map((e) => e.id);
  const complete = await until('complete', 6000, async () => {
    const missing = await page.evaluate((want) => Object.fromEntries(Object.entries(window.pushloop.cols)
      .map(([k, c]) => [k, want.filter((id) => !c.seen.has(id))])), want);
    return { ok: COLS.every((c) => missing[c].length === 0), missing };
  }, 250);
  if (complete.ok) pass(`nothing missing: all ${want.length} events of the new history (incl. ${after.length} published after recovery) in every column`);
  else fail('nothing missing', COLS.filter((c) => complete.missing[c].length)
    .map((c) => `${NAMES[c]} lacks ${complete.missing[c].join(', ')}`).join('; '));
  await noDuplicates(page, 'after restart');

  // 4. Rooms: follow two rooms; an event published to the second reaches every column,
  //    and the JSON transports show its room.
  const followed = await page.evaluate(() => window.pushloop.follow('feed,news'));
  if (followed) pass('rooms: the page follows feed and news');
  else fail('rooms', 'follow("feed,news") was refused');
  await allConnected(page, 'rooms', 8000);
  const newsId = await publish('breaking: rooms work', 'news', 'news');
  await waitInColumns(page, 'rooms: news event', 8000, { id: newsId });
  const rooms = await page.evaluate((id) => [...document.querySelectorAll(`ol.events li[data-id="${id}"] .room`)]
    .map((r) => r.textContent), newsId);
  if (rooms.filter((r) => r === '#news').length >= 3) pass('rooms: polls and WebSocket rows say #news');
  else fail('rooms: room labels', JSON.stringify(rooms));

  if (pageErrors.length) fail('page errors', pageErrors.join(' | '));
  else pass('no uncaught errors in the page');

  // 5. A screenshot for people.
  mkdirSync(ARTIFACTS, { recursive: true });
  const shot = path.resolve(ARTIFACTS, TLS ? 'browser-tls.png' : 'browser.png');
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: shot });
  console.log(`     screenshot: ${shot}`);
} catch (e) {
  fail('test aborted', e.stack || String(e));
}
await finish();
process.exit(failed ? 1 : 0);
