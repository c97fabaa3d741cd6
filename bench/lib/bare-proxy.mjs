// The baseline: a bare reverse proxy with the adapter's transport and none of its checks —
// node:http in, the same undici Pool settings out (keep-alive, 128 connections, pipelining 1),
// body read before forwarding as the adapter does, hop-by-hop headers dropped, response streamed.
// With a third argument `floor`, it also does one request's cryptographic floor (two Ed25519
// verifies and the SHA-256s, floor-work.mjs) per request before forwarding: the measured
// one-core ceiling of ANY proxy that verifies this protocol — nothing but transport and crypto.
// The floor work is batched per event-loop turn as the adapter batches verification (the requests
// read in one poll phase are checked together in its check phase): interleaved one by one with
// the HTTP parser and undici, the same work costs this VM ~25 % more CPU per request.
// With `floor-redis <redis URL>` instead, each request also does one `SET key 1 PXAT NX` on Redis
// (a fresh key) after its floor work and before forwarding: the least a proxy with a shared
// replay store can add at c=1 (one write, one reply; the adapter's own Redis client settings).
// With `floor-ipc` (started by ipc-parent.mjs), each request also asks the parent process over
// the IPC channel for its consume after the floor work, as the adapter's workers ask the primary
// for the in-memory store: the least the unpinned, multi-process adapter adds at c=1.
import { createServer } from 'node:http';
import { Pool } from 'undici';
import { setImmediate } from 'node:timers';

const [port, upstream, mode, redisUrl] = [Number(process.argv[2]), process.argv[3], process.argv[4], process.argv[5]];
if (mode === 'floor-ipc' && process.send === undefined) throw new Error('floor-ipc: start it through ipc-parent.mjs');
const floorOne = mode?.startsWith('floor') ? (await import('./floor-work.mjs')).floorWork().one : undefined;
let consume;
if (mode === 'floor-redis') {
  // The adapter's own client factory: the same ioredis settings (no auto-pipelining, no offline
  // queue, 250 ms command timeout).
  const { createRedisClient } = await import('../../packages/adapter/dist/src/index.js');
  const redis = createRedisClient(redisUrl);
  await new Promise((resolve, reject) => {
    redis.once('ready', resolve);
    redis.once('error', reject);
  });
  const prefix = `bench:ceiling:${process.pid}:`;
  let n = 0;
  consume = async () => {
    if ((await redis.set(prefix + n++, '1', 'PXAT', Date.now() + 60_000, 'NX')) !== 'OK') throw new Error('SET NX did not set');
  };
} else if (mode === 'floor-ipc') {
  const waiting = new Map();
  let n = 0;
  process.on('message', (m) => {
    const w = waiting.get(m.id);
    waiting.delete(m.id);
    if (m.fresh) w.resolve();
    else w.reject(new Error('not fresh'));
  });
  consume = () => new Promise((resolve, reject) => {
    const id = n++;
    waiting.set(id, { resolve, reject });
    process.send({ id, key: `k${id}` });
  });
}
const turn = [];
function flushTurn() {
  const batch = turn.splice(0);
  for (let i = 0; i < batch.length; i++) floorOne();
  for (const resolve of batch) resolve();
}
/** Resolves once this request's floor work is done, with the rest of this turn's requests. */
function floor() {
  return new Promise((resolve) => {
    if (turn.length === 0) setImmediate(flushTurn);
    turn.push(resolve);
  });
}
const pool = new Pool(upstream, { connections: 128, pipelining: 1, keepAliveTimeout: 30_000 });
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host']);

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.once('end', () => resolve(chunks));
    req.once('error', reject);
  });
}

const server = createServer(async (req, res) => {
  try {
    const chunks = await readBody(req);
    if (floorOne !== undefined) await floor();
    if (consume !== undefined) await consume();
    const headers = {};
    for (const [k, v] of Object.entries(req.headers)) if (!HOP.has(k) && v !== undefined) headers[k] = v;
    const up = await pool.request({ method: req.method, path: req.url, headers, body: chunks.length === 0 ? null : Buffer.concat(chunks) });
    const out = {};
    for (const [k, v] of Object.entries(up.headers)) if (!HOP.has(k) && v !== undefined) out[k] = v;
    res.writeHead(up.statusCode, out);
    for await (const chunk of up.body) if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
    res.end();
  } catch {
    if (!res.headersSent) res.writeHead(502).end();
    else res.destroy();
  }
});
server.keepAliveTimeout = 5_000;
server.listen(port, '127.0.0.1', () => console.log(`READY http://127.0.0.1:${server.address().port}`));
process.on('SIGTERM', () => server.close(() => pool.close().then(() => process.exit(0))));
