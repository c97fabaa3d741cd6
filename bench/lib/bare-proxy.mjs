// The baseline: a bare reverse proxy with the adapter's transport and none of its checks —
// node:http in, the same undici Pool settings out (keep-alive, 128 connections, pipelining 1),
// body read before forwarding as the adapter does, hop-by-hop headers dropped, response streamed.
// With a third argument `floor`, it also does one request's cryptographic floor (two Ed25519
// verifies and the SHA-256s, floor-work.mjs) per request before forwarding: the measured
// one-core ceiling of ANY proxy that verifies this protocol — nothing but transport and crypto.
// The floor work is batched per event-loop turn as the adapter batches verification (the requests
// read in one poll phase are checked together in its check phase): interleaved one by one with
// the HTTP parser and undici, the same work costs this VM ~25 % more CPU per request.
import { createServer } from 'node:http';
import { Pool } from 'undici';
import { setImmediate } from 'node:timers';

const [port, upstream, mode] = [Number(process.argv[2]), process.argv[3], process.argv[4]];
const floorOne = mode === 'floor' ? (await import('./floor-work.mjs')).floorWork().one : undefined;
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
