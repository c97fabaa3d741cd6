import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { concernsBundle } from '../src/bundle/watch.js';
import { BundleWatcher, ManualClock, MemoryReplayStore, Verifier, type BundleLoadedEvent, type BundleRejectedEvent, type BundleWatcherOptions } from '../src/index.js';
import { T0, makeRequest } from './helpers.js';
import { ROTATED_KID, pairTexts, rotatedSigner, tempDir, trustedKeys, writePair } from './bundle-helpers.js';

function watcher(files: { trustFile: string; bundleFile: string }, clock: ManualClock, extra: Partial<BundleWatcherOptions> = {}) {
  const w = new BundleWatcher({
    trustMaterialFile: files.trustFile,
    policyBundleFile: files.bundleFile,
    trustMaterialKeys: trustedKeys(),
    policyBundleKeys: trustedKeys(),
    clock,
    pollIntervalMs: 0,
    watchDirectories: false,
    ...extra,
  });
  const loaded: BundleLoadedEvent[] = [];
  const rejected: BundleRejectedEvent[] = [];
  w.on('loaded', (e) => loaded.push(e));
  w.on('rejected', (e) => rejected.push(e));
  return { w, loaded, rejected };
}

test('BundleWatcher: loads at start, confirms freshness on each unchanged check, swaps a newer pair', (t) => {
  const dir = tempDir(t);
  const clock = new ManualClock(T0);
  const files = writePair(dir, pairTexts({ version: 1 }));
  const { w, loaded, rejected } = watcher(files, clock);
  t.after(() => w.close());
  assert.equal(w.start(), true);
  assert.deepEqual(loaded.map((e) => [e.policyId, e.policyVersion, e.previousPolicyVersion, e.policyBundleSigner]), [['acme-orders', 1, undefined, 'bundle-signer-1']]);
  assert.equal(w.current()?.confirmedAtMs, T0);
  clock.advance(1000);
  assert.equal(w.check(), 'unchanged');
  assert.equal(w.current()?.confirmedAtMs, T0 + 1000);
  const first = w.current()!.policy;

  writePair(dir, pairTexts({ version: 2, mutateBundle: (b) => b.route_groups[0]!.routes.pop() }));
  clock.advance(1000);
  assert.equal(w.check(), 'loaded');
  assert.equal(w.current()?.policy.policyVersion, 2);
  assert.equal(w.current()?.policy.routesById.size, 2);
  assert.notEqual(w.current()?.policy, first);
  assert.equal(loaded.at(-1)?.previousPolicyVersion, 1);
  assert.deepEqual(rejected, []);
  // Re-signed with the rotated key, same content: nothing to swap, still confirmed.
  writePair(dir, pairTexts({ version: 2, mutateBundle: (b) => b.route_groups[0]!.routes.pop(), signer: rotatedSigner, kid: ROTATED_KID }));
  clock.advance(1000);
  assert.equal(w.check(), 'unchanged');
  assert.equal(w.current()?.confirmedAtMs, T0 + 3000);
  const sig = w.currentPair()?.bundleSignature;
  assert.equal(sig?.status === 'valid' ? sig.kid : undefined, ROTATED_KID);
  assert.equal(loaded.length, 2);
});

test('BundleWatcher: bad, truncated, unsigned, mismatched and rolled-back pairs are refused; the last good one serves', (t) => {
  const dir = tempDir(t);
  const clock = new ManualClock(T0);
  const files = writePair(dir, pairTexts({ version: 5 }));
  const { w, rejected } = watcher(files, clock);
  t.after(() => w.close());
  w.start();
  const good = w.current()!.policy;
  const v6 = pairTexts({ version: 6 });
  const cases: [string, () => void][] = [
    ['invalid_json', () => writePair(dir, { trust: v6.trust, bundle: v6.bundle.slice(0, 300) })],
    ['unsigned_bundle', () => writePair(dir, pairTexts({ version: 6, unsigned: true }))],
    ['invalid_bundle_signature', () => writePair(dir, { trust: v6.trust, bundle: v6.bundle.replace('acme-orders', 'acme-orderz') })],
    ['bundle_pair_mismatch', () => writePair(dir, { trust: v6.trust, bundle: pairTexts({ version: 6, mutateTrust: (tm) => tm.issuers.pop() }).bundle })],
    ['bundle_rollback', () => writePair(dir, pairTexts({ version: 4 }))],
    ['bundle_version_conflict', () => writePair(dir, pairTexts({ version: 5, mutateBundle: (b) => (b.revocations = [{ jti: 'x' }]) }))],
    ['invalid_bundle', () => writePair(dir, pairTexts({ version: 6, mutateBundle: (b) => (b.route_groups[0]!.api_id = 'nope') }))],
  ];
  for (const [reason, write] of cases) {
    write();
    clock.advance(1000);
    assert.equal(w.check(), 'rejected', reason);
    assert.equal(rejected.at(-1)?.reason, reason);
    assert.equal(rejected.at(-1)?.servingPolicyVersion, 5);
    assert.equal(w.current()?.policy, good, `${reason}: the last good pair keeps serving`);
    // Checking the same refused files again neither re-reports nor confirms freshness.
    const n = rejected.length;
    clock.advance(1000);
    assert.equal(w.check(), 'rejected');
    assert.equal(rejected.length, n);
  }
  assert.equal(w.current()?.confirmedAtMs, T0, 'never confirmed while the files held something refused');
  // The good pair back (same version, same content): confirmed again.
  writePair(dir, pairTexts({ version: 5 }));
  clock.advance(1000);
  assert.equal(w.check(), 'unchanged');
  assert.equal(w.current()?.confirmedAtMs, clock.now());
  // reload() re-reads even when the stat did not change.
  assert.equal(w.reload(), 'unchanged');
});

test('BundleWatcher: a pair refused at start serves nothing (bundle_policy_missing) until a good pair appears', async (t) => {
  const dir = tempDir(t);
  const clock = new ManualClock(T0);
  const files = writePair(dir, pairTexts({ unsigned: true }));
  const { w, rejected } = watcher(files, clock);
  t.after(() => w.close());
  assert.equal(w.start(), false);
  assert.equal(w.current(), undefined);
  assert.equal(rejected[0]?.reason, 'unsigned_bundle');
  const verifier = new Verifier({ policy: w, replayStore: new MemoryReplayStore(), clock });
  assert.equal((await verifier.verify(makeRequest({ nowMs: T0 }))).reason, 'bundle_policy_missing');
  writePair(dir, pairTexts({ version: 1 }));
  assert.equal(w.check(), 'loaded');
  assert.equal((await verifier.verify(makeRequest({ nowMs: T0 }))).allowed, true);
});

test('BundleWatcher: freshness — a realtime route fails closed once the files stop confirming the serving pair', async (t) => {
  const dir = tempDir(t);
  const clock = new ManualClock(T0);
  const realtime = (v: number) => pairTexts({ version: v, mutateBundle: (b) => (b.route_groups[0]!.routes[0]!.freshness_class = 'realtime') });
  const files = writePair(dir, realtime(1));
  const { w } = watcher(files, clock);
  t.after(() => w.close());
  w.start();
  const verifier = new Verifier({ policy: w, replayStore: new MemoryReplayStore(), clock, freshnessWindowSeconds: 5 });
  const ask = async () => (await verifier.verify(makeRequest({ nowMs: clock.now() }))).reason;
  // Polls keep confirming: fresh however long it runs.
  for (let i = 0; i < 10; i++) {
    clock.advance(1000);
    w.check();
  }
  assert.equal(await ask(), 'request_verified');
  // The files now hold something refused: no more confirmations; after 5 s, stale.
  writeFileSync(files.bundleFile, 'garbage');
  for (let i = 0; i < 6; i++) {
    clock.advance(1000);
    w.check();
  }
  assert.equal(await ask(), 'stale_bundle_fail_closed');
  writePair(dir, realtime(2));
  clock.advance(1000);
  assert.equal(w.check(), 'loaded');
  assert.equal(await ask(), 'request_verified');
});

test('BundleWatcher: fs.watch on the directory picks up an atomic replacement without waiting for the poll', async (t) => {
  const dir = tempDir(t);
  const files = writePair(dir, pairTexts({ version: 1 }));
  const w = new BundleWatcher({ trustMaterialFile: files.trustFile, policyBundleFile: files.bundleFile, trustMaterialKeys: trustedKeys(), policyBundleKeys: trustedKeys(), pollIntervalMs: 60_000 });
  t.after(() => w.close());
  w.start();
  const started = Date.now();
  const seen = new Promise<BundleLoadedEvent>((resolve) => w.on('loaded', resolve));
  writePair(dir, pairTexts({ version: 2 }));
  // A referenced timer keeps the loop alive (the watcher's own timers are unref'd, like a library's should be).
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), 2000);
  });
  const event = await Promise.race([seen, timeout]);
  clearTimeout(timer);
  assert.equal(event?.policyVersion, 2, 'the directory watch saw the new pair');
  assert.ok(Date.now() - started < 1000);
});

/** Resolves with the watcher's next 'loaded' event, or undefined after `ms` (a referenced timer keeps the loop alive). */
function nextLoaded(w: BundleWatcher, ms: number): Promise<BundleLoadedEvent | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), ms);
    w.once('loaded', (e: BundleLoadedEvent) => {
      clearTimeout(timer);
      resolve(e);
    });
  });
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('BundleWatcher: other files in the bundle directory (an audit log appended per request) do not trigger checks; the bundle files do', async (t) => {
  const dir = tempDir(t);
  const files = writePair(dir, pairTexts({ version: 1 }));
  const clock = new ManualClock(T0);
  const w = new BundleWatcher({ trustMaterialFile: files.trustFile, policyBundleFile: files.bundleFile, trustMaterialKeys: trustedKeys(), policyBundleKeys: trustedKeys(), clock, pollIntervalMs: 0, debounceMs: 5 });
  t.after(() => w.close());
  w.start();
  assert.equal(w.current()?.confirmedAtMs, T0);
  // A check that finds the pair unchanged confirms it at the clock's time: confirmedAtMs moving
  // is how a check is seen here.
  clock.advance(1000);
  const audit = path.join(dir, 'audit.jsonl');
  for (let i = 0; i < 20; i++) {
    appendFileSync(audit, `{"n":${i}}\n`);
    await sleep(2);
  }
  writeFileSync(path.join(dir, 'notes.txt'), 'unrelated');
  await sleep(150);
  assert.equal(w.current()?.confirmedAtMs, T0, 'no check ran for files that are not the pair');
  // Touching a bundle file (same content) does run a check, which confirms the pair.
  writeFileSync(files.bundleFile, readFileSync(files.bundleFile));
  const deadline = Date.now() + 2000;
  while (w.current()?.confirmedAtMs === T0 && Date.now() < deadline) await sleep(10);
  assert.equal(w.current()?.confirmedAtMs, T0 + 1000, 'a write to a bundle file ran a check');
});

test('BundleWatcher: a Kubernetes ConfigMap update (the ..data symlink swapped to a new timestamped directory) is picked up by the directory watch', async (t) => {
  const dir = tempDir(t);
  const v1 = pairTexts({ version: 1 });
  mkdirSync(path.join(dir, '..2026_11_23_09_00_00.1'));
  writeFileSync(path.join(dir, '..2026_11_23_09_00_00.1', 'tm.json'), v1.trust);
  writeFileSync(path.join(dir, '..2026_11_23_09_00_00.1', 'pb.json'), v1.bundle);
  symlinkSync('..2026_11_23_09_00_00.1', path.join(dir, '..data'));
  symlinkSync('..data/tm.json', path.join(dir, 'tm.json'));
  symlinkSync('..data/pb.json', path.join(dir, 'pb.json'));
  const w = new BundleWatcher({ trustMaterialFile: path.join(dir, 'tm.json'), policyBundleFile: path.join(dir, 'pb.json'), trustMaterialKeys: trustedKeys(), policyBundleKeys: trustedKeys(), pollIntervalMs: 60_000 });
  t.after(() => w.close());
  assert.equal(w.start(), true);
  assert.equal(w.current()?.policy.policyVersion, 1);
  // What the kubelet's atomic writer does: a new directory, a ..data_tmp link to it, renamed over ..data.
  const seen = nextLoaded(w, 2000);
  const v2 = pairTexts({ version: 2 });
  mkdirSync(path.join(dir, '..2026_11_23_09_05_00.2'));
  writeFileSync(path.join(dir, '..2026_11_23_09_05_00.2', 'tm.json'), v2.trust);
  writeFileSync(path.join(dir, '..2026_11_23_09_05_00.2', 'pb.json'), v2.bundle);
  symlinkSync('..2026_11_23_09_05_00.2', path.join(dir, '..data_tmp'));
  renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
  const event = await seen;
  assert.equal(event?.policyVersion, 2, 'the swap was seen without waiting for the 60 s poll');
});

test('concernsBundle: the names that make the directory watch check the pair', () => {
  const names = new Set(['tm.json', 'pb.json']);
  assert.equal(concernsBundle('tm.json', names), true);
  assert.equal(concernsBundle(Buffer.from('pb.json'), names), true);
  assert.equal(concernsBundle('..data', names), true);
  assert.equal(concernsBundle('..2026_11_23_09_05_00.2', names), true);
  assert.equal(concernsBundle(null, names), true, 'no name given: check');
  assert.equal(concernsBundle('audit.jsonl', names), false);
  assert.equal(concernsBundle('tm.json.swp', names), false);
  assert.equal(concernsBundle('.tm.json.tmp', names), false);
});
