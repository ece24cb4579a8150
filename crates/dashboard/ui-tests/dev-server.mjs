// Fake dashboard server for developing crates/dashboard/assets and smoke-testing page.mjs.
//
//   node dev-server.mjs [port]          (default 8765; 0 picks a free port, printed on stdout)
//
// Serves ../assets at / and /assets/*, plus /api/snapshot and /api/stream (Server-Sent Events,
// `event: snapshot`) with a made-up snapshot that evolves: rows grow every 500 ms, a throughput
// series, a verify result with differing ids, a cutover frozen a few seconds ago, hub queues with one
// dead letter. Environment:
//   TOKEN=...        require ?token=... on /api/* (like the real server on a non-localhost bind)
//   DROP_AFTER=secs  close every stream after that many seconds (to watch the page reconnect)
//   STILL=1          rows never grow (to see page.mjs --expect-moving fail)
// Node standard library only.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const assets = path.resolve(here, '..', 'assets');
const port = Number(process.argv[2] ?? process.env.PORT ?? 8765);
const TOKEN = process.env.TOKEN || null;
const DROP_AFTER = Number(process.env.DROP_AFTER || 0);
const STILL = !!process.env.STILL;

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };

// --------------------------------------------------------------------------------------------
// The evolving fake migration

const started = Date.now();
const TABLES = [
  { table: 'users', service: 'auth', rowsTotal: 250_000, rate: 9000, bytesPerRow: 310 },
  { table: 'sessions', service: 'auth', rowsTotal: 1_200_000, rate: 26000, bytesPerRow: 120 },
  { table: 'payments', service: 'payments', rowsTotal: 4_800_000, rate: 31000, bytesPerRow: 420 },
  { table: 'refunds', service: 'payments', rowsTotal: 180_000, rate: 4000, bytesPerRow: 260 },
  { table: 'payment_events', service: 'payments', rowsTotal: 9_500_000, rate: 52000, bytesPerRow: 180 },
  { table: 'audit_log', service: 'admin', rowsTotal: 2_000_000, rate: 0, startAfter: 20, bytesPerRow: 350 },
  { table: 'admin_users', service: 'admin', rowsTotal: 1_250, rate: 500, bytesPerRow: 280 },
  { table: 'profiles', service: 'profile', rowsTotal: 240_000, rate: 7000, bytesPerRow: 900 },
  { table: 'addresses_with_a_rather_long_table_name', service: 'profile', rowsTotal: 310_000, rate: 6000, bytesPerRow: 150 },
].map((t) => ({ ...t, base: t.rowsTotal, rows: 0, state: 'not started', indexUntil: 0, lastRate: 0 }));

const throughput = [];
let lastTick = Date.now();
const frozenAt = new Date(Date.now() - 4200).toISOString();

function tick() {
  const now = Date.now();
  const dt = (now - lastTick) / 1000;
  lastTick = now;
  const sinceStart = (now - started) / 1000;
  for (const t of TABLES) {
    if (t.state === 'done') { t.lastRate = 0; continue; }
    if (t.state === 'indexing') {
      t.lastRate = 0;
      if (now >= t.indexUntil) t.state = 'done';
      continue;
    }
    if (t.startAfter && sinceStart < t.startAfter) continue;
    const rate = (t.rate || 15000) * (0.75 + Math.random() * 0.5);
    t.state = 'loading';
    t.rows = Math.min(t.rowsTotal, t.rows + Math.round(rate * dt));
    t.lastRate = rate;
    if (t.rows >= t.rowsTotal) { t.state = 'indexing'; t.indexUntil = now + 3000; }
  }
  // Everything finished: grow every table again so the page always has something moving (rows only
  // ever increase, which page.mjs --expect-moving relies on).
  if (TABLES.every((t) => t.state === 'done')) for (const t of TABLES) { t.rowsTotal += t.base; t.state = 'loading'; }
}

if (!STILL) setInterval(tick, 500);
setInterval(() => {
  const rps = TABLES.reduce((a, t) => a + t.lastRate, 0);
  throughput.push({ at: new Date().toISOString(), rowsPerSecond: Math.round(rps) });
  if (throughput.length > 600) throughput.shift();
}, 1000);

// Pre-fill two minutes of history so the chart has a shape at once.
for (let i = 120; i > 0; i--) {
  throughput.push({
    at: new Date(started - i * 1000).toISOString(),
    rowsPerSecond: Math.round(90000 + 40000 * Math.sin(i / 15) + Math.random() * 15000),
  });
}

function snapshot() {
  const now = Date.now();
  const tables = TABLES.map((t) => {
    const chunks = Math.max(1, Math.ceil(t.rowsTotal / 50_000));
    const left = t.rowsTotal - t.rows;
    return {
      table: t.table,
      service: t.service,
      state: t.state,
      rows: t.rows,
      rowsTotal: t.rowsTotal,
      bytes: t.rows * t.bytesPerRow,
      chunksDone: Math.floor((t.rows / t.rowsTotal) * chunks),
      chunks,
      rowsPerSecond: Math.round(t.lastRate),
      etaSeconds: t.lastRate > 0 ? left / t.lastRate : null,
    };
  });
  const rows = tables.reduce((a, t) => a + t.rows, 0);
  const rowsTotal = tables.reduce((a, t) => a + t.rowsTotal, 0);
  const rps = tables.reduce((a, t) => a + t.rowsPerSecond, 0);
  return {
    version: 1,
    generatedAt: new Date(now).toISOString(),
    mode: 'live',
    phase: {
      name: 'copy', state: 'running', startedAt: new Date(started).toISOString(),
      elapsedSeconds: (now - started) / 1000, error: null,
    },
    notes: [
      'copy started with 8 workers',
      'audit_log waits for admin_users to finish <b>not bold</b>',
    ],
    totals: { rows, rowsTotal, bytes: tables.reduce((a, t) => a + t.bytes, 0), rowsPerSecond: rps, etaSeconds: rps > 0 ? (rowsTotal - rows) / rps : null },
    tables,
    throughput,
    verify: {
      at: new Date(started - 60_000).toISOString(), ok: false, seconds: 12.4,
      tables: [
        { table: 'users', service: 'auth', legacyRows: 250000, targetRows: 250000, ok: true, missing: [], extra: [], changed: [], missingCount: 0, extraCount: 0, changedCount: 0 },
        { table: 'payments', service: 'payments', legacyRows: 4800000, targetRows: 4799997, ok: false,
          missing: [1042, 77311, 901233], extra: [], changed: ['pay_8f3a', 'pay_91bc'], missingCount: 3, extraCount: 0, changedCount: 2 },
        { table: 'profiles', service: 'profile', legacyRows: 240000, targetRows: 240012, ok: false,
          missing: [], extra: Array.from({ length: 20 }, (_, i) => 239990 + i), changed: [], missingCount: 0, extraCount: 12040, changedCount: 0 },
      ],
      orphans: [
        { foreignKey: 'refunds.payment_id', reference: 'payments.id', orphans: 2, examples: [55, 56] },
      ],
    },
    sync: {
      lagBytes: 1_300_000 + Math.round(Math.random() * 200_000), lagSeconds: 2.4 + Math.random(), changesPerSecond: 180 + Math.random() * 40,
      slot: 'mfe_migrate',
      positions: [
        { service: 'auth', position: '0/3A1B2C8', transactions: 1200 + Math.floor((now - started) / 100), commitTime: new Date(now - 1200).toISOString() },
        { service: 'payments', position: '0/3A1B1F0', transactions: 8200, commitTime: new Date(now - 2100).toISOString() },
        { service: 'admin', position: '0/3A19000', transactions: 95, commitTime: null },
        { service: 'profile', position: '0/3A1B2C8', transactions: 640, commitTime: new Date(now - 900).toISOString() },
      ],
    },
    cutover: { state: 'frozen', step: 'waiting for sync to drain', frozenAt, freezeSeconds: null, at: null },
    rollback: { state: 'not started', step: null, frozenAt: null, appliedAt: null, doneAt: null },
    hub: {
      available: true, error: null,
      queues: [
        { queue: 'payments.events', messages: 12, consumers: 2, deadLetters: 0 },
        { queue: 'auth.user-created', messages: 0, consumers: 1, deadLetters: 0 },
        { queue: 'profile.sync', messages: 3, consumers: 1, deadLetters: 1 },
      ],
    },
  };
}

// --------------------------------------------------------------------------------------------
// HTTP

function authorized(url) {
  return !TOKEN || url.searchParams.get('token') === TOKEN;
}

function sendFile(res, file) {
  fs.readFile(path.join(assets, file), (err, buf) => {
    if (err) { res.writeHead(404, { 'content-type': 'text/plain' }); res.end('not found\n'); return; }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream', 'cache-control': 'no-store' });
    res.end(buf);
  });
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  const p = url.pathname;
  if (req.method !== 'GET' && req.method !== 'HEAD') { res.writeHead(405); res.end(); return; }
  if (p === '/' || p === '/index.html') return sendFile(res, 'index.html');
  if (p === '/assets/app.js') return sendFile(res, 'app.js');
  if (p === '/assets/style.css') return sendFile(res, 'style.css');
  if (p.startsWith('/api/') && !authorized(url)) {
    res.writeHead(401, { 'content-type': 'text/plain' });
    res.end('token required\n');
    return;
  }
  if (p === '/api/snapshot') {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(snapshot()));
    return;
  }
  if (p === '/api/stream') {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    res.write('retry: 1000\n\n');
    const send = () => res.write(`event: snapshot\ndata: ${JSON.stringify(snapshot())}\n\n`);
    send();
    const data = setInterval(send, 500);
    const hb = setInterval(() => res.write(': heartbeat\n\n'), 15000);
    const drop = DROP_AFTER > 0 ? setTimeout(() => res.end(), DROP_AFTER * 1000) : null;
    req.on('close', () => { clearInterval(data); clearInterval(hb); clearTimeout(drop); });
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('not found\n');
});

server.listen(port, '127.0.0.1', () => {
  console.log(`dev-server: http://127.0.0.1:${server.address().port}/${TOKEN ? `?token=${TOKEN}` : ''}`);
});
