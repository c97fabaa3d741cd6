import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type AddressInfo } from 'node:net';
import { request } from 'undici';
import { makeRequest, startEchoUpstream, startRedis, redisAvailable } from '@trustplane/testkit';
import { run, runBin, BUNDLE_SIGNING, writeSignedBundles, spawnAdapter, stopWithSigterm } from './helpers.js';

const SIGNING = BUNDLE_SIGNING;
const writeBundles = writeSignedBundles;

/** PIDs of the direct children of `pid` (the workers of a primary). */
function childPids(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((x) => x !== '').map(Number);
}

async function get(url: string): Promise<{ status: number; body: string }> {
  const res = await request(url);
  return { status: res.statusCode, body: await res.body.text() };
}

describe('adapter --workers (real processes, run side by side)', { concurrency: true }, () => {
test('--workers 2 with the memory replay store: 20 concurrent copies of one request → exactly 1 reaches the upstream; readiness and metrics cover every worker; SIGTERM exits 0', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tp-adapter-workers-'));
  const upstream = await startEchoUpstream();
  try {
    const { tm, pb } = writeBundles(dir);
    // The worker count from the environment, the rest from flags.
    const a = await spawnAdapter(['--upstream', upstream.url, '--bundle', tm, '--policy-bundle', pb, '--bundle-signature-public-key', SIGNING], { TRUSTPLANE_WORKERS: '2' });
    let exitCode: number | null | undefined;
    try {
      assert.equal(childPids(a.child.pid!).length, 2);
      const req = makeRequest({ nowMs: Date.now() });
      // Separate connections, so the round-robin spreads the copies over both workers.
      const results = await Promise.all(
        Array.from({ length: 20 }, async () => {
          const res = await request(`${a.url}/v1/orders/search`, { headers: { ...req.headers, connection: 'close' } });
          return { status: res.statusCode, body: await res.body.text() };
        }),
      );
      assert.equal(results.filter((r) => r.status === 200).length, 1, JSON.stringify(results));
      assert.equal(results.filter((r) => r.body === '{"allowed":false,"reason":"jti_replay"}').length, 19);
      assert.equal(upstream.requests.length, 1);

      // Fresh requests are all served.
      for (let i = 0; i < 6; i++) {
        const fresh = makeRequest({ nowMs: Date.now() });
        const res = await request(`${a.url}/v1/orders/search`, { headers: { ...fresh.headers, connection: 'close' } });
        assert.equal(res.statusCode, 200);
        await res.body.dump();
      }

      // The primary's admin port: readiness covers every worker; metrics add up over workers.
      const ready = await get(`${a.admin}/readyz`);
      assert.equal(ready.status, 200, ready.body);
      assert.deepEqual(JSON.parse(ready.body), { status: 'ready', workers: 2 });
      const metrics = (await get(`${a.admin}/metrics`)).body;
      assert.match(metrics, /trustplane_decisions_total\{outcome="deny",reason="jti_replay",route="orders.search"\} 19\n/);
      assert.match(metrics, /trustplane_decisions_total\{outcome="allow",reason="request_verified",route="orders.search"\} 7\n/);
      assert.match(metrics, /trustplane_bundle_policy_version 7\n/);
      assert.match(metrics, /trustplane_workers\{state="ready"\} 2\n/);

    } finally {
      exitCode = await stopWithSigterm(a);
    }
    assert.equal(exitCode, 0, a.stderr());
  } finally {
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--workers 2 --replay redis: exactly once across workers through the shared store', { skip: !redisAvailable() }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tp-adapter-workers-'));
  const redis = await startRedis();
  const upstream = await startEchoUpstream();
  try {
    const { tm, pb } = writeBundles(dir);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ workers: '2', replay: redis.url }));
    const a = await spawnAdapter(['--config', join(dir, 'config.json'), '--upstream', upstream.url, '--bundle', tm, '--policy-bundle', pb, '--bundle-signature-public-key', SIGNING]);
    let exitCode: number | null | undefined;
    try {
      assert.equal(childPids(a.child.pid!).length, 2);
      const req = makeRequest({ nowMs: Date.now() });
      const results = await Promise.all(
        Array.from({ length: 20 }, async () => {
          const res = await request(`${a.url}/v1/orders/search`, { headers: { ...req.headers, connection: 'close' } });
          return res.statusCode + (await res.body.text());
        }),
      );
      assert.equal(results.filter((r) => r.startsWith('200')).length, 1);
      assert.equal(upstream.requests.length, 1);
      assert.equal((await get(`${a.admin}/readyz`)).status, 200);
    } finally {
      exitCode = await stopWithSigterm(a);
    }
    assert.equal(exitCode, 0, a.stderr());
  } finally {
    await upstream.close();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

});

test('--workers 2 on a port in use: exit 1 at once with the workers\' reason in one line', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tp-adapter-workers-'));
  const busy = createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  try {
    const { tm, pb } = writeBundles(dir);
    const port = (busy.address() as AddressInfo).port;
    const started = Date.now();
    const r = await runBin(['adapter', '--listen', `127.0.0.1:${port}`, '--admin-listen', '127.0.0.1:0', '--log-level', 'warn', '--upstream', 'http://127.0.0.1:1', '--bundle', tm, '--policy-bundle', pb, '--bundle-signature-public-key', SIGNING, '--workers', '2']);
    assert.equal(r.code, 1, r.stderr);
    // It used to wait for the 30 s startup timeout, with a line from every worker.
    assert.ok(Date.now() - started < 15_000, `took ${Date.now() - started} ms`);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('trustplane:'));
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /^trustplane: cannot start: .*EADDRINUSE/);
  } finally {
    busy.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--workers must be a positive integer or auto (exit 2, one line)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tp-adapter-workers-'));
  try {
    const { tm, pb } = writeBundles(dir);
    const r = await run('adapter', '--upstream', 'http://127.0.0.1:1', '--bundle', tm, '--policy-bundle', pb, '--bundle-signature-public-key', SIGNING, '--workers', 'many');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^trustplane: --workers must be a positive integer, got "many"\n$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
