// Sentinel and Cluster replay stores against real redis-server processes: a real Sentinel
// monitoring a real master, and a real three-master cluster built with redis-cli.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { request } from 'undici';
import { StaticPolicyProvider, compilePolicy, replayKey } from '@trustplane/core';
import { makeRequest, policyBundle, trustMaterial, startEchoUpstream, startRedisSentinel, startRedisCluster, redisAvailable } from '@trustplane/testkit';
import { startAdapter, MemoryAuditSink, RedisReplayStore, type RunningAdapter } from '../src/index.js';

const HAVE_REDIS = redisAvailable();

test('redis+sentinel:// — the store finds the master through a real Sentinel and consumes once', { skip: !HAVE_REDIS }, async () => {
  const s = await startRedisSentinel();
  const a = new RedisReplayStore(s.url);
  const b = new RedisReplayStore(s.url);
  try {
    await Promise.all([a.ready(5000), b.ready(5000)]);
    const key = replayKey('iss', `jti-sentinel-${Date.now()}`);
    const results = await Promise.all([a, b, a, b].map((st) => st.consume(key, Date.now() + 60_000)));
    assert.deepEqual(results.filter((r) => r === 'fresh').length, 1, JSON.stringify(results));
    // The key lives on the master the Sentinel named.
    const direct = new RedisReplayStore(`redis://127.0.0.1:${s.masterPort}`);
    await direct.ready();
    assert.equal(await direct.consume(key, Date.now() + 60_000), 'replay');
    await direct.close();
  } finally {
    await a.close();
    await b.close();
    await s.stop();
  }
});

test('redis+cluster:// — two adapters on a real 3-master cluster: N concurrent copies, exactly one reaches the upstream', { skip: !HAVE_REDIS }, async () => {
  const cluster = await startRedisCluster();
  const upstream = await startEchoUpstream();
  const stores = [new RedisReplayStore(cluster.url), new RedisReplayStore(cluster.url)];
  const adapters: RunningAdapter[] = [];
  try {
    await Promise.all(stores.map((st) => st.ready(5000)));
    for (const store of stores) {
      adapters.push(await startAdapter({ listen: { host: '127.0.0.1', port: 0 }, upstream: upstream.url, policy: new StaticPolicyProvider(compilePolicy(trustMaterial(), policyBundle())), replayStore: store, audit: new MemoryAuditSink() }));
    }
    // Several different requests spread their jtis over the cluster's slots.
    for (let round = 0; round < 3; round++) {
      const req = makeRequest({ nowMs: Date.now(), path: '/v1/orders/search' });
      const before = upstream.requests.length;
      const statuses = await Promise.all(
        Array.from({ length: 10 }, async (_, i) => {
          const res = await request(`${adapters[i % 2]!.url}/v1/orders/search`, { headers: req.headers });
          await res.body.text();
          return res.statusCode;
        }),
      );
      assert.equal(statuses.filter((s) => s === 200).length, 1, JSON.stringify(statuses));
      assert.equal(statuses.filter((s) => s === 403).length, 9);
      assert.equal(upstream.requests.length - before, 1);
    }
  } finally {
    for (const a of adapters) await a.close();
    for (const st of stores) await st.close();
    await upstream.close();
    await cluster.stop();
  }
});
