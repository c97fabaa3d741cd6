import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { encodeBase64url, privateKeyFromSeed } from '@trustplane/core';
import { makeRequest, startEchoUpstream, startRedis, redisAvailable } from '@trustplane/testkit';
import { run, runBin, BUNDLE_SIGNING, writeSignedBundles, spawnAdapter, stopWithSigterm } from './helpers.js';

const SIGNING = BUNDLE_SIGNING;
const writeBundles = writeSignedBundles;

test('adapter configuration errors stop startup with one clear line (exit 2)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tp-adapter-cli-'));
  try {
    const { tm, pb } = writeBundles(dir);
    const base = ['adapter', '--bundle', tm, '--policy-bundle', pb, '--bundle-signature-public-key', SIGNING];
    const cases: [string[], RegExp][] = [
      [[...base, '--upstream', 'http://127.0.0.1:1', '--replicas', '3'], /--replay memory cannot protect 3 replicas/],
      [base, /--upstream <url> is required/],
      [[...base, '--upstream', 'ftp://x'], /--upstream must be an http/],
      [['adapter', '--upstream', 'http://127.0.0.1:1', '--bundle', tm, '--policy-bundle', pb], /--bundle-signature-public-key is required/],
      [[...base, '--upstream', 'http://127.0.0.1:1', '--listen', 'nope'], /--listen must be HOST:PORT/],
      [[...base, '--upstream', 'http://127.0.0.1:1', '--replay', 'memcached://x'], /--replay: unsupported replay store URL scheme/],
      [[...base, '--upstream', 'http://127.0.0.1:1', '--replay-max-entries', '0'], /--replay-max-entries must be a positive integer, got "0"/],
      [[...base, '--upstream', 'http://127.0.0.1:1', '--replay-max-entries', '1e6'], /--replay-max-entries must be a positive integer/],
      [[...base, '--upstream', 'http://127.0.0.1:1', '--replay', 'redis://127.0.0.1:1', '--replay-max-entries', '10'], /--replay-max-entries applies to --replay memory only/],
      [[...base, '--upstream', 'http://127.0.0.1:1', '--replay-issuer-share', '0'], /--replay-issuer-share must be a positive integer, got "0"/],
      [[...base, '--upstream', 'http://127.0.0.1:1', '--replay-issuer-share', '101'], /--replay-issuer-share must be a percentage 1..100, got 101/],
      [[...base, '--upstream', 'http://127.0.0.1:1', '--replay', 'redis://127.0.0.1:1', '--replay-issuer-share', '50'], /--replay-issuer-share applies to --replay memory only/],
      [[...base, '--upstream', 'http://127.0.0.1:1', '--max-connections', '0'], /--max-connections must be a positive integer, got "0"/],
      [[...base, '--upstream', 'http://127.0.0.1:1', '--max-connections', 'many'], /--max-connections must be a positive integer, got "many"/],
    ];
    for (const [args, want] of cases) {
      const r = await runBin(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, want);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
    const bad = await runBin(['adapter', '--upstream', 'http://127.0.0.1:1', '--bundle', tm, '--policy-bundle', pb, '--bundle-signature-public-key', `bundles-1=${encodeBase64url(privateKeyFromSeed(Buffer.alloc(32, 1)).publicKey)}`]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /cannot load the bundle pair: invalid_bundle_signature/);
    const audit = await runBin([...base, '--upstream', 'http://127.0.0.1:1', '--audit-log', join(dir, 'no-such-dir', 'audit.jsonl')]);
    assert.equal(audit.code, 1, audit.stderr);
    assert.match(audit.stderr, /cannot open the audit log .*no-such-dir.*ENOENT/);
    assert.equal(audit.stderr.trim().split('\n').length, 1, audit.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--replay-max-entries bounds the memory store, one issuer to half of it by default: past that a new jti gets 503 replay_store_full and is not forwarded; a replay is still a replay', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tp-adapter-cli-'));
  const upstream = await startEchoUpstream();
  try {
    const { tm, pb } = writeBundles(dir);
    const a = await spawnAdapter(['--upstream', upstream.url, '--bundle', tm, '--policy-bundle', pb, '--bundle-signature-public-key', SIGNING], { TRUSTPLANE_REPLAY_MAX_ENTRIES: '4' });
    try {
      const send = async (req: ReturnType<typeof makeRequest>) => {
        const res = await request(`${a.url}/v1/orders/search`, { headers: req.headers });
        return { status: res.statusCode, body: await res.body.text() };
      };
      const [r1, r2, r3] = [1, 2, 3].map(() => makeRequest({ nowMs: Date.now() }));
      assert.equal((await send(r1!)).status, 200);
      assert.equal((await send(r2!)).status, 200);
      assert.deepEqual(await send(r3!), { status: 503, body: '{"allowed":false,"reason":"replay_store_full"}' });
      assert.deepEqual(await send(r1!), { status: 403, body: '{"allowed":false,"reason":"jti_replay"}' });
      assert.equal(upstream.requests.length, 2);
    } finally {
      assert.equal(await stopWithSigterm(a), 0);
    }
  } finally {
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--replay redis://: one warning line at startup exactly when Redis persists nothing (no AOF, no RDB); one note when CONFIG is refused', { skip: !redisAvailable() }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tp-adapter-cli-'));
  const servers = await Promise.all([startRedis(), startRedis(['--appendonly', 'yes']), startRedis(['--save', '60 1']), startRedis(['--rename-command', 'CONFIG', '""'])]);
  try {
    const { tm, pb } = writeBundles(dir);
    const lines = await Promise.all(
      servers.map(async (r) => {
        const a = await spawnAdapter(['--upstream', 'http://127.0.0.1:1', '--bundle', tm, '--policy-bundle', pb, '--bundle-signature-public-key', SIGNING, '--replay', r.url]);
        try {
          return a.stderr().split('\n');
        } finally {
          assert.equal(await stopWithSigterm(a), 0);
        }
      }),
    );
    const count = (ls: string[], re: RegExp) => ls.filter((l) => re.test(l)).length;
    const [none, aof, rdb, refused] = lines;
    const warning = /"level":"warn".*Redis has neither AOF \(appendonly\) nor RDB snapshots \(save\) enabled/;
    const note = /cannot check whether Redis persists consumed jtis/;
    assert.equal(count(none!, warning), 1, none!.join('\n'));
    for (const ls of [aof!, rdb!, refused!]) assert.equal(count(ls, warning), 0, ls.join('\n'));
    assert.equal(count(refused!, note), 1, refused!.join('\n'));
    for (const ls of [none!, aof!, rdb!]) assert.equal(count(ls, note), 0);
  } finally {
    await Promise.all(servers.map((r) => r.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('two adapter processes sharing one real Redis: concurrent copies of one request → exactly one reaches the upstream; SIGTERM exits 0', { skip: !redisAvailable() }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tp-adapter-cli-'));
  const redis = await startRedis();
  const upstream = await startEchoUpstream();
  try {
    const { tm, pb } = writeBundles(dir);
    // Flags for one, environment variables for the other: both configuration paths are real.
    const a = await spawnAdapter(['--upstream', upstream.url, '--bundle', tm, '--policy-bundle', pb, '--bundle-signature-public-key', SIGNING, '--replay', redis.url, '--replicas', '2']);
    const b = await spawnAdapter([], { TRUSTPLANE_UPSTREAM: upstream.url, TRUSTPLANE_BUNDLE: tm, TRUSTPLANE_POLICY_BUNDLE: pb, TRUSTPLANE_BUNDLE_SIGNATURE_PUBLIC_KEY: SIGNING, TRUSTPLANE_REPLAY: redis.url, TRUSTPLANE_REPLICAS: '2' });
    try {
      const req = makeRequest({ nowMs: Date.now() });
      const results = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
        const res = await request(`${i % 2 === 0 ? a.url : b.url}/v1/orders/search`, { headers: req.headers });
        return { status: res.statusCode, body: await res.body.text() };
      }));
      assert.equal(results.filter((r) => r.status === 200).length, 1);
      assert.equal(results.filter((r) => r.body === '{"allowed":false,"reason":"jti_replay"}').length, 19);
      assert.equal(upstream.requests.length, 1);
      const ready = await request(`${a.admin}/readyz`);
      assert.equal(ready.statusCode, 200);
      await ready.body.dump();
    } finally {
      for (const p of [a, b]) assert.equal(await stopWithSigterm(p), 0);
    }
  } finally {
    await upstream.close();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a boolean setting from the environment is read by its value: false/0/no/off is off, a typo is a usage error', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tp-adapter-cli-'));
  const saved = process.env['TRUSTPLANE_DEV_ALLOW_UNSIGNED_BUNDLES'];
  try {
    const { tm, pb } = writeBundles(dir);
    // Without a signing key the adapter starts only with --dev-allow-unsigned-bundles on.
    const args = ['adapter', '--upstream', 'http://127.0.0.1:1', '--bundle', tm, '--policy-bundle', pb];
    for (const off of ['false', '0', 'no', 'OFF', '']) {
      process.env['TRUSTPLANE_DEV_ALLOW_UNSIGNED_BUNDLES'] = off;
      const r = await run(...args);
      assert.equal(r.code, 2, `${JSON.stringify(off)}: ${r.stderr}`);
      assert.match(r.stderr, /--bundle-signature-public-key is required/);
    }
    process.env['TRUSTPLANE_DEV_ALLOW_UNSIGNED_BUNDLES'] = 'flase';
    const typo = await run(...args);
    assert.equal(typo.code, 2);
    assert.match(typo.stderr, /TRUSTPLANE_DEV_ALLOW_UNSIGNED_BUNDLES must be 1, true, yes or on \(or 0, false, no, off\), got "flase"/);
  } finally {
    if (saved === undefined) delete process.env['TRUSTPLANE_DEV_ALLOW_UNSIGNED_BUNDLES'];
    else process.env['TRUSTPLANE_DEV_ALLOW_UNSIGNED_BUNDLES'] = saved;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('config file values of the wrong type are refused, also when a flag overrides them', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tp-adapter-cli-'));
  try {
    const { tm, pb } = writeBundles(dir);
    const base = ['adapter', '--upstream', 'http://127.0.0.1:1', '--bundle', tm, '--policy-bundle', pb, '--bundle-signature-public-key', SIGNING];
    const cases: [Record<string, unknown>, string[], RegExp][] = [
      [{ allow_jwks_fetch: 'yes' }, [], /allow_jwks_fetch must be true or false, got "yes"/],
      [{ skew: ['1'] }, [], /skew must be a string or a number, got an array/],
      [{ skew: true }, [], /skew must be a string or a number, got true/],
      [{ bundle_signature_public_keys: 5 }, [], /bundle_signature_public_keys must be a string or an array of strings/],
      [{ listen: ['127.0.0.1:1'] }, ['--listen', '127.0.0.1:0'], /listen must be a string or a number, got an array/],
      [{ bundle_signature_public_key: SIGNING, bundle_signature_public_keys: [SIGNING] }, [], /bundle_signature_public_key and bundle_signature_public_keys are the same setting: give one/],
    ];
    for (const [doc, extra, want] of cases) {
      const file = join(dir, 'config.json');
      writeFileSync(file, JSON.stringify(doc));
      const r = await run(...base, '--config', file, ...extra);
      assert.equal(r.code, 2, `${JSON.stringify(doc)}: ${r.stderr}`);
      assert.match(r.stderr, want);
    }
    // The flag's own name is a key too (singular or plural): a bad value in it is that flag's error.
    for (const key of ['bundle_signature_public_key', 'bundle_signature_public_keys']) {
      const file = join(dir, 'config.json');
      writeFileSync(file, JSON.stringify({ [key]: 'no-equals-sign' }));
      const r = await run('adapter', '--upstream', 'http://127.0.0.1:1', '--bundle', tm, '--policy-bundle', pb, '--config', file);
      assert.equal(r.code, 2, r.stderr);
      assert.doesNotMatch(r.stderr, /unknown setting/);
      assert.match(r.stderr, /--bundle-signature-public-key/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--shutdown-delay: on SIGTERM /readyz turns 503 at once while requests are still served; the drain starts after the delay, or at a second signal', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tp-adapter-cli-'));
  const upstream = await startEchoUpstream();
  try {
    const { tm, pb } = writeBundles(dir);
    const base = ['--upstream', upstream.url, '--bundle', tm, '--policy-bundle', pb, '--bundle-signature-public-key', SIGNING];
    const a = await spawnAdapter([...base, '--shutdown-delay', '2']);
    const exited = new Promise<number | null>((r) => a.child.once('exit', r));
    const signalledAt = Date.now();
    a.child.kill('SIGTERM');
    // Readiness goes off first...
    let ready = 200;
    for (let i = 0; i < 40 && ready === 200; i++) {
      const res = await request(`${a.admin}/readyz`);
      ready = res.statusCode;
      const body = await res.body.text();
      if (ready !== 200) assert.match(body, /shutting down/);
      else await new Promise((r) => setTimeout(r, 25));
    }
    assert.equal(ready, 503);
    // ...while the proxy still verifies and forwards.
    const req = makeRequest({ nowMs: Date.now() });
    const res = await request(`${a.url}/v1/orders/search`, { headers: req.headers });
    await res.body.dump();
    assert.equal(res.statusCode, 200);
    assert.equal(await exited, 0);
    assert.ok(Date.now() - signalledAt >= 1900, `exited after ${Date.now() - signalledAt} ms`);

    // A second signal during the delay starts the drain at once.
    const b = await spawnAdapter([...base, '--shutdown-delay', '30']);
    const bExited = new Promise<number | null>((r) => b.child.once('exit', r));
    const t0 = Date.now();
    b.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    b.child.kill('SIGTERM');
    assert.equal(await bExited, 0);
    assert.ok(Date.now() - t0 < 10_000, `took ${Date.now() - t0} ms`);

    const bad = await run('adapter', ...base, '--shutdown-delay', '301');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--shutdown-delay must be at most 300, got 301/);
  } finally {
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
