import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { MemoryReplayStore, ReplayStoreError, replayKey } from '@trustplane/core';
import { freePort } from '@trustplane/testkit';
import { ClusterReplayStore, serveClusterReplay, startClusterPrimary, type ReplayChannel } from '../src/index.js';

/** A worker's channel wired to an in-process primary handler (messages cloned, as IPC would). */
function fakeChannel(answer: ((msg: unknown, reply: (m: unknown) => void) => void) | undefined): ReplayChannel & { disconnect(): void } {
  const ee = new EventEmitter();
  const ch = {
    connected: true,
    send(message: unknown, callback: (err: Error | null) => void) {
      const copy = structuredClone(message);
      setImmediate(() => {
        callback(null);
        answer?.(copy, (m) => setImmediate(() => ee.emit('message', structuredClone(m))));
      });
    },
    on: (event: string, l: (...a: unknown[]) => void) => ee.on(event, l),
    removeListener: (event: string, l: (...a: unknown[]) => void) => ee.removeListener(event, l),
    disconnect() {
      ch.connected = false;
      ee.emit('disconnect');
    },
  };
  return ch;
}

function wired(store: MemoryReplayStore): ReplayChannel & { disconnect(): void } {
  const server = serveClusterReplay(store, { attach: false });
  return fakeChannel((msg, reply) => server.handle({ send: (m, cb) => (reply(m), cb(null)) }, msg));
}

test('ClusterReplayStore: the primary store keeps per-issuer shares across workers (the issuer tag reaches it)', async () => {
  const store = new MemoryReplayStore({ maxEntries: 4 });
  const workers = [new ClusterReplayStore({ channel: wired(store) }), new ClusterReplayStore({ channel: wired(store) })];
  const exp = Date.now() + 60_000;
  assert.equal(await workers[0]!.consume(replayKey('https://a.example', 'j1'), exp), 'fresh');
  assert.equal(await workers[1]!.consume(replayKey('https://a.example', 'j2'), exp), 'fresh');
  await assert.rejects(workers[0]!.consume(replayKey('https://a.example', 'j3'), exp), (e: unknown) => e instanceof ReplayStoreError && e.reason === 'replay_store_full');
  assert.equal(await workers[1]!.consume(replayKey('https://b.example', 'j1'), exp), 'fresh');
  assert.equal(await workers[0]!.consume(replayKey('https://a.example', 'j1'), exp), 'replay');
  for (const w of workers) await w.close();
});

test('ClusterReplayStore: workers sharing the primary store consume a key exactly once; replay_store_full is passed on', async () => {
  const store = new MemoryReplayStore({ maxEntries: 2, issuerShare: 1 });
  const workers = [new ClusterReplayStore({ channel: wired(store) }), new ClusterReplayStore({ channel: wired(store) })];
  const key = replayKey('https://issuer.example', 'jti-1');
  const exp = Date.now() + 60_000;
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => workers[i % 2]!.consume(key, exp)));
  assert.equal(results.filter((r) => r === 'fresh').length, 1);
  assert.equal(results.filter((r) => r === 'replay').length, 19);
  assert.equal(await workers[1]!.consume(replayKey('https://issuer.example', 'jti-2'), exp), 'fresh');
  await assert.rejects(workers[0]!.consume(replayKey('https://issuer.example', 'jti-3'), exp), (e: unknown) => e instanceof ReplayStoreError && e.reason === 'replay_store_full');
  await workers[0]!.ping();
  for (const w of workers) await w.close();
});

test('ClusterReplayStore fails closed: no answer, a lost channel, a malformed request, a closed store', async () => {
  const key = replayKey('i', 'j');
  const silent = new ClusterReplayStore({ channel: fakeChannel(undefined), timeoutMs: 20 });
  await assert.rejects(silent.consume(key, Date.now() + 1000), (e: unknown) => e instanceof ReplayStoreError && e.reason === 'replay_store_unavailable' && /did not answer/.test(e.message));
  await silent.close();

  const channel = fakeChannel(undefined);
  const lost = new ClusterReplayStore({ channel, timeoutMs: 60_000 });
  const pending = lost.consume(key, Date.now() + 1000);
  channel.disconnect();
  await assert.rejects(pending, (e: unknown) => e instanceof ReplayStoreError && e.reason === 'replay_store_unavailable');
  await assert.rejects(lost.consume(key, Date.now() + 1000), (e: unknown) => e instanceof ReplayStoreError && e.reason === 'replay_store_unavailable');
  await lost.close();

  const store = new MemoryReplayStore();
  const w = new ClusterReplayStore({ channel: wired(store) });
  await assert.rejects(w.consume('short', Date.now() + 1000), (e: unknown) => e instanceof ReplayStoreError && e.reason === 'replay_store_unavailable' && /malformed/.test(e.message));
  assert.equal(store.size, 0);
  await w.close();
  await assert.rejects(w.consume(key, Date.now() + 1000), (e: unknown) => e instanceof ReplayStoreError && e.reason === 'replay_store_unavailable');
});

/** A tiny real worker: GET /consume/<hex key> answers the primary store's verdict. */
function writeWorker(dir: string): string {
  const src = new URL('../src/', import.meta.url).href;
  const file = join(dir, 'worker.mjs');
  writeFileSync(
    file,
    `import { createServer } from 'node:http';
import { existsSync } from 'node:fs';
import { attachClusterWorker } from '${src}cluster.js';
import { ClusterReplayStore } from '${src}replay-cluster.js';
import { createMetrics } from '${src}metrics.js';
if (existsSync(process.env.CRASH_FLAG)) process.exit(3);
const store = new ClusterReplayStore();
const metrics = createMetrics({ defaultMetrics: false });
metrics.decisions.inc({ outcome: 'allow', reason: 'request_verified', route: 'r' });
const server = createServer((req, res) => {
  const key = Buffer.from(req.url.slice('/consume/'.length), 'hex').toString('latin1');
  store.consume(key, Date.now() + 60000).then((r) => res.end(r), (e) => res.end(e.reason));
});
server.listen(Number(process.env.PORT), '127.0.0.1', () => {
  const attached = attachClusterWorker({ url: 'http://127.0.0.1:' + process.env.PORT, metrics, policy: { current: () => ({}) }, replayStore: store });
  process.once('SIGTERM', () => server.close(() => void store.close().then(() => attached.close())));
});
`,
  );
  return file;
}

async function get(url: string): Promise<{ status: number; body: string }> {
  const res = await request(url, { headers: { connection: 'close' } });
  return { status: res.statusCode, body: await res.body.text() };
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 8000;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

test('startClusterPrimary (real worker processes): one primary-owned store, readiness and metrics over all workers, restart after a crash, give up on a crash loop', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tp-cluster-'));
  const crashFlag = join(dir, 'crash');
  try {
    const port = await freePort();
    const primary = await startClusterPrimary({
      workers: 2,
      exec: writeWorker(dir),
      env: { PORT: String(port), CRASH_FLAG: crashFlag },
      admin: { host: '127.0.0.1', port: 0 },
      replayStore: new MemoryReplayStore(),
      restartDelayMs: 10,
      crashLoop: { crashes: 3, windowMs: 60_000 },
    });
    t.after(() => primary.stop());
    const base = `http://127.0.0.1:${port}`;
    assert.equal(primary.url, base);
    const first = primary.workerPids();
    assert.equal(first.length, 2);

    // Separate connections, spread over both workers by the cluster's round-robin.
    const key = Buffer.from(replayKey('https://issuer.example', 'same'), 'latin1').toString('hex');
    const verdicts = await Promise.all(Array.from({ length: 20 }, async () => (await get(`${base}/consume/${key}`)).body));
    assert.equal(verdicts.filter((v) => v === 'fresh').length, 1, verdicts.join());
    assert.equal(verdicts.filter((v) => v === 'replay').length, 19);

    assert.deepEqual(JSON.parse((await get(`${primary.adminUrl!}/readyz`)).body), { status: 'ready', workers: 2 });
    assert.equal((await get(`${primary.adminUrl!}/healthz`)).status, 200);
    assert.match((await get(`${primary.adminUrl!}/metrics`)).body, /trustplane_decisions_total\{outcome="allow",reason="request_verified",route="r"\} 2\n/);

    // A crash: the worker is replaced and the adapter is ready again.
    process.kill(first[0]!, 'SIGKILL');
    await waitFor('a replacement worker', async () => {
      const pids = primary.workerPids();
      return pids.length === 2 && !pids.includes(first[0]!) && (await get(`${primary.adminUrl!}/readyz`)).status === 200 ? true : undefined;
    });
    assert.match((await get(`${primary.adminUrl!}/metrics`)).body, /trustplane_worker_restarts_total 1\n/);
    // The store survived the crash: the key is still consumed.
    assert.equal((await get(`${base}/consume/${key}`)).body, 'replay');

    // A worker that cannot start any more: after 3 crashes in the window the primary gives up.
    writeFileSync(crashFlag, '');
    process.kill(primary.workerPids()[0]!, 'SIGKILL');
    assert.equal(await primary.done, 1);
    assert.deepEqual(primary.workerPids(), []);
    assert.equal(await primary.stop(), 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('startClusterPrimary: stop() ends every worker and resolves 0; a worker that fails at startup fails the start', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tp-cluster-'));
  try {
    const exec = writeWorker(dir);
    const port = await freePort();
    const primary = await startClusterPrimary({ workers: 2, exec, env: { PORT: String(port), CRASH_FLAG: join(dir, 'none') } });
    t.after(() => primary.stop());
    const pids = primary.workerPids();
    assert.equal(primary.adminUrl, undefined);
    assert.equal(await primary.stop('test'), 0);
    assert.deepEqual(primary.workerPids(), []);
    for (const pid of pids) assert.throws(() => process.kill(pid, 0), /ESRCH/);

    writeFileSync(join(dir, 'crash'), '');
    assert.ok(existsSync(join(dir, 'crash')));
    await assert.rejects(startClusterPrimary({ workers: 2, exec, env: { PORT: String(port), CRASH_FLAG: join(dir, 'crash') } }), /exited \(code 3\) before it was listening/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
