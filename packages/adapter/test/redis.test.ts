import { test, before, after } from 'node:test';
// Every test here talks to a real redis-server started on a free loopback port.
import * as assert from 'node:assert/strict';
import { request } from 'undici';
import { StaticPolicyProvider, compilePolicy, ReplayStoreError, replayKey } from '@trustplane/core';
import { makeRequest, policyBundle, trustMaterial, startEchoUpstream, startRedis, redisAvailable, type EchoUpstream, type RedisServer } from '@trustplane/testkit';
import { startAdapter, MemoryAuditSink, RedisReplayStore, type RunningAdapter } from '../src/index.js';

const HAVE_REDIS = redisAvailable();
let redis: RedisServer;
let upstream: EchoUpstream;

before(async () => {
  upstream = await startEchoUpstream();
  if (HAVE_REDIS) redis = await startRedis();
});
after(async () => {
  await upstream.close();
  if (HAVE_REDIS) await redis.stop();
});

async function adapterOn(store: RedisReplayStore): Promise<RunningAdapter> {
  await store.ready();
  return startAdapter({ listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, upstream: upstream.url, policy: new StaticPolicyProvider(compilePolicy(trustMaterial(), policyBundle())), replayStore: store, audit: new MemoryAuditSink() });
}

async function send(url: string, headers: Record<string, string>, path = '/v1/orders/search') {
  const res = await request(`${url}${path}`, { headers });
  return { status: res.statusCode, body: await res.body.text() };
}

test('redis store: SET NX PXAT consumes once, and the key expires at exp + skew', { skip: !HAVE_REDIS }, async () => {
  const store = new RedisReplayStore(redis.url);
  await store.ready();
  try {
    const key = replayKey('iss', `jti-${Date.now()}`);
    const exp = Date.now() + 400;
    assert.equal(await store.consume(key, exp), 'fresh');
    assert.equal(await store.consume(key, exp), 'replay');
    // The Redis key is the record part alone (no issuer tag): the same keys as before the tag.
    const ttl = await store.client.pttl(`trustplane:jti:${Buffer.from(key, 'latin1').subarray(0, 16).toString('hex')}`);
    assert.ok(ttl > 0 && ttl <= 400, String(ttl));
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await store.consume(key, Date.now() + 1000), 'fresh');
  } finally {
    await store.close();
  }
});

test('redis store: consumes of one turn go out as one script call; each key is set once, with its own expiry', { skip: !HAVE_REDIS }, async () => {
  const store = new RedisReplayStore(redis.url);
  await store.ready();
  try {
    const [a, b, c] = ['a', 'b', 'c'].map((x) => replayKey('iss', `batch-${x}-${Date.now()}`));
    const now = Date.now();
    const exps = [now + 400, now + 5000, now + 400, now + 800, now + 5000];
    const results = await Promise.all([a!, b!, a!, c!, b!].map((k, i) => store.consume(k, exps[i]!)));
    assert.deepEqual(results, ['fresh', 'fresh', 'replay', 'fresh', 'replay']);
    const ttl = (k: string) => store.client.pttl(`trustplane:jti:${Buffer.from(k, 'latin1').subarray(0, 16).toString('hex')}`);
    const [ta, tb, tc] = await Promise.all([ttl(a!), ttl(b!), ttl(c!)]);
    assert.ok(ta > 0 && ta <= 400, `a: ${ta}`);
    assert.ok(tb > 4000 && tb <= 5000, `b: ${tb}`);
    assert.ok(tc > 400 && tc <= 800, `c: ${tc}`);
    // The script cache flushed under us (a Redis restart, SCRIPT FLUSH): the next batch still works.
    await store.client.script('FLUSH');
    const d = replayKey('iss', `batch-d-${Date.now()}`);
    assert.deepEqual(await Promise.all([store.consume(d, now + 1000), store.consume(d, now + 1000), store.consume(a!, now + 1000)]), ['fresh', 'replay', 'replay']);
  } finally {
    await store.close();
  }
});

test('two adapters sharing one Redis: 40 concurrent copies of one signed request → exactly one reaches the upstream', { skip: !HAVE_REDIS }, async () => {
  const s1 = new RedisReplayStore(redis.url);
  const s2 = new RedisReplayStore(redis.url);
  const a1 = await adapterOn(s1);
  const a2 = await adapterOn(s2);
  try {
    const req = makeRequest({ nowMs: Date.now() });
    const headers = req.headers;
    const before = upstream.requests.length;
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => send(i % 2 === 0 ? a1.url : a2.url, headers)));
    const ok = results.filter((r) => r.status === 200);
    const replays = results.filter((r) => r.status === 403 && r.body === '{"allowed":false,"reason":"jti_replay"}');
    assert.equal(ok.length, 1);
    assert.equal(replays.length, 39);
    assert.equal(upstream.requests.length, before + 1);
  } finally {
    await a1.close();
    await a2.close();
  }
});

test('a full Redis with maxmemory-policy noeviction refuses the consume: 503 replay_store_unavailable, nothing forwarded, the jti still usable once Redis has room', { skip: !HAVE_REDIS }, async () => {
  const own = await startRedis();
  const store = new RedisReplayStore(own.url);
  const a = await adapterOn(store);
  try {
    await store.client.config('SET', 'maxmemory-policy', 'noeviction');
    await store.client.config('SET', 'maxmemory', '1'); // below what Redis already uses: every write is refused
    const before = upstream.requests.length;
    const one = makeRequest({ nowMs: Date.now() });
    const batch = [makeRequest({ nowMs: Date.now() }), makeRequest({ nowMs: Date.now() })];
    assert.deepEqual(await send(a.url, one.headers), { status: 503, body: '{"allowed":false,"reason":"replay_store_unavailable"}' });
    const both = await Promise.all(batch.map((r) => send(a.url, r.headers)));
    for (const r of both) assert.deepEqual(r, { status: 503, body: '{"allowed":false,"reason":"replay_store_unavailable"}' });
    // At the store: one consume alone (a SET) and two asked for in one turn (one script call).
    const refused = (err: unknown) => err instanceof ReplayStoreError && err.reason === 'replay_store_unavailable' && /OOM/.test(err.message);
    await assert.rejects(store.consume(replayKey('iss', 'full-1'), Date.now() + 5000), refused);
    const pair = [store.consume(replayKey('iss', 'full-2'), Date.now() + 5000), store.consume(replayKey('iss', 'full-3'), Date.now() + 5000)];
    await Promise.all(pair.map((p) => assert.rejects(p, refused)));
    assert.equal(upstream.requests.length, before);
    assert.equal(await store.client.dbsize(), 0, 'nothing was written');
    await store.client.config('SET', 'maxmemory', '0');
    assert.equal((await send(a.url, one.headers)).status, 200);
    assert.equal((await send(a.url, one.headers)).status, 403);
    assert.equal(upstream.requests.length, before + 1);
  } finally {
    await a.close();
    await own.stop();
  }
});

test('Redis down → 503 replay_store_unavailable, nothing forwarded, readyz 503; back up → served again', { skip: !HAVE_REDIS }, async () => {
  const own = await startRedis();
  const store = new RedisReplayStore(own.url, { commandTimeoutMs: 200 });
  const a = await adapterOn(store);
  try {
    assert.equal((await send(a.url, makeRequest({ nowMs: Date.now() }).headers)).status, 200);
    await own.stop();
    const before = upstream.requests.length;
    const r = await send(a.url, makeRequest({ nowMs: Date.now() }).headers);
    assert.equal(r.status, 503);
    assert.equal(r.body, '{"allowed":false,"reason":"replay_store_unavailable"}');
    assert.equal(upstream.requests.length, before);
    const rz = await request(`${a.adminUrl}/readyz`);
    assert.equal(rz.statusCode, 503);
    assert.match(await rz.body.text(), /replay store unreachable/);
    const m = await (await request(`${a.adminUrl}/metrics`)).body.text();
    assert.match(m, /trustplane_replay_store_errors_total 1/);
  } finally {
    await a.close();
  }
});

test('a store that cannot connect at all fails closed with ReplayStoreError', { skip: !HAVE_REDIS }, async () => {
  const store = new RedisReplayStore('redis://127.0.0.1:9', { commandTimeoutMs: 100, connectTimeoutMs: 200 });
  try {
    await assert.rejects(Promise.resolve(store.consume(replayKey('i', 'j'), Date.now() + 1000)), (e: unknown) => e instanceof ReplayStoreError && e.reason === 'replay_store_unavailable');
    // A batch (several consumes in one turn) fails closed for every one of them.
    const batch = await Promise.allSettled(['x', 'y', 'z'].map((j) => store.consume(replayKey('i', j), Date.now() + 1000)));
    for (const r of batch) assert.ok(r.status === 'rejected' && r.reason instanceof ReplayStoreError && r.reason.reason === 'replay_store_unavailable', String(r.status));
  } finally {
    await store.close();
  }
});

test('replay store URLs: redis, rediss, sentinel and cluster forms parse; other schemes are refused', () => {
  for (const url of ['redis://127.0.0.1:1', 'redis://:secret@127.0.0.1:1/2', 'redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster', 'redis+cluster://127.0.0.1:1,127.0.0.1:2']) {
    const s = new RedisReplayStore(url, { connectTimeoutMs: 50 });
    s.client.disconnect();
  }
  assert.throws(() => new RedisReplayStore('memcached://x:1'), TypeError);
  assert.throws(() => new RedisReplayStore('redis+sentinel://127.0.0.1:1'), TypeError);
});

test('redis store: checkPersistence is off without AOF or RDB, on with either, unknown when CONFIG is refused', { skip: !HAVE_REDIS }, async () => {
  const servers = await Promise.all([startRedis(['--appendonly', 'yes']), startRedis(['--save', '60 1']), startRedis(['--rename-command', 'CONFIG', '""'])]);
  const [aof, rdb, noConfig] = servers;
  const stores = [redis, aof, rdb, noConfig].map((r) => new RedisReplayStore(r.url));
  try {
    await Promise.all(stores.map((s) => s.ready()));
    const [none, withAof, withRdb, refused] = await Promise.all(stores.map((s) => s.checkPersistence()));
    assert.equal(none!.state, 'off');
    assert.deepEqual(withAof, { state: 'on', aof: true, rdb: false });
    assert.deepEqual(withRdb, { state: 'on', aof: false, rdb: true });
    assert.equal(refused!.state, 'unknown');
    assert.match((refused as { error: string }).error, /unknown command/i);
    // The store still works where CONFIG is refused.
    assert.equal(await stores[3]!.consume(replayKey('iss', `jti-noconfig-${Date.now()}`), Date.now() + 1000), 'fresh');
  } finally {
    await Promise.all(stores.map((s) => s.close()));
    await Promise.all(servers.map((s) => s.stop()));
  }
});
