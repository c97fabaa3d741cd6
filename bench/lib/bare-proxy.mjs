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
// With `verify <trust material> <policy bundle> <kid=public key>` instead, each request goes
// through the real core Verifier (memory replay store) before forwarding, batched per turn like
// the adapter: the adapter's verification without its HTTP handling (an investigation cell,
// bench:http's `verifier-proxy`, that splits the adapter's cost above the ceiling in two). With
// `verify-redis <trust material> <policy bundle> <kid=public key> <redis URL>`, the same with the
// adapter's Redis replay store (`verifier-proxy-redis`): the adapter's verification and consume
// round trip without its HTTP handling, audit and metrics.
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
let verifier;
let bodyDigest;
if (mode === 'verify' || mode === 'verify-redis') {
  const core = await import('../../packages/core/dist/src/index.js');
  const [trustMaterialFile, policyBundleFile, signing, verifyRedisUrl] = process.argv.slice(5);
  const eq = signing.indexOf('=');
  const keys = new Map([[signing.slice(0, eq), core.getEd25519Backend().importPublicKey(core.decodeBase64url(signing.slice(eq + 1), 43))]]);
  const pair = core.loadBundlePair({ trustMaterialFile, policyBundleFile, trustMaterialKeys: keys, policyBundleKeys: keys });
  let replayStore = new core.MemoryReplayStore();
  if (mode === 'verify-redis') {
    const { RedisReplayStore } = await import('../../packages/adapter/dist/src/index.js');
    replayStore = new RedisReplayStore(verifyRedisUrl);
    await replayStore.ready();
  }
  verifier = new core.Verifier({ policy: new core.StaticPolicyProvider(pair.policy), replayStore });
  bodyDigest = (chunks) => (chunks.length === 0 ? core.EMPTY_SHA256 : core.sha256Hex(Buffer.concat(chunks)));
}
const turn = [];
function flushTurn() {
  const batch = turn.splice(0);
  if (verifier !== undefined) {
    const decisions = verifier.verifyBatch(batch.map((b) => b.request));
    batch.forEach((b, i) => b.resolve(decisions[i]));
    return;
  }
  for (let i = 0; i < batch.length; i++) floorOne();
  for (const b of batch) b.resolve(undefined);
}
/** Resolves once this request's checks are done (the floor work, or the verifier's decision), with the rest of this turn's requests. */
function check(request) {
  return new Promise((resolve) => {
    if (turn.length === 0) setImmediate(flushTurn);
    turn.push({ request, resolve });
  });
}
function verifyRequest(req, chunks) {
  const q = req.url.indexOf('?');
  return { method: req.method, path: q < 0 ? req.url : req.url.slice(0, q), query: q < 0 ? '' : req.url.slice(q + 1), headers: req.headers, bodySha256: bodyDigest(chunks) };
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
    if (floorOne !== undefined) await check(undefined);
    if (verifier !== undefined) {
      const decision = await check(verifyRequest(req, chunks));
      if (!decision.allowed) throw new Error(decision.reason); // a 502: the cell counts it as an error
    }
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
