import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
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
