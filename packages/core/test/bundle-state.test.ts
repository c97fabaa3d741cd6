import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import {
  BUNDLE_STATE_VERSION,
  BundleFollower,
  BundleWatcher,
  FormatError,
  ManualClock,
  MemoryReplayStore,
  Verifier,
  parseBundleState,
  readBundleState,
  type BundleLoadedEvent,
  type BundleRejectedEvent,
} from '../src/index.js';
import { T0, makeRequest } from './helpers.js';
import { ROTATED_KID, pairTexts, rotatedSigner, tempDir, trustedKeys, writePair } from './bundle-helpers.js';

function start(files: { trustFile: string; bundleFile: string }, stateFile: string | undefined, clock = new ManualClock(T0)) {
  const w = new BundleWatcher({
    trustMaterialFile: files.trustFile,
    policyBundleFile: files.bundleFile,
    trustMaterialKeys: trustedKeys(),
    policyBundleKeys: trustedKeys(),
    clock,
    pollIntervalMs: 0,
    watchDirectories: false,
    ...(stateFile !== undefined ? { stateFile } : {}),
  });
  const loaded: BundleLoadedEvent[] = [];
  const rejected: BundleRejectedEvent[] = [];
  w.on('loaded', (e) => loaded.push(e));
  w.on('rejected', (e) => rejected.push(e));
  const ok = w.start();
  w.close();
  return { w, ok, loaded, rejected, clock };
}

/** A pair of the lineage `id` (default the helpers' acme-orders). */
const lineage = (id: string, version: number) => pairTexts({ version, mutateBundle: (b) => (b.policy_id = id) });

test('bundle state: the first accepted pair writes the mark atomically; a restart refuses an older signed pair, naming both versions', (t) => {
  const dir = tempDir(t);
  const state = path.join(dir, 'state', 'bundle-state.json');
  mkdirSync(path.dirname(state));
  const files = writePair(dir, pairTexts({ version: 7 }));
  const first = start(files, state);
  assert.equal(first.ok, true);
  const mark = readBundleState(state);
  assert.equal(mark?.policyId, 'acme-orders');
  assert.equal(mark?.policyVersion, 7);
  assert.equal(mark?.contentSha256, first.w.currentPair()?.contentSha256);
  assert.deepEqual(readdirSync(path.dirname(state)), ['bundle-state.json'], 'no temp file left beside it');
  assert.equal((JSON.parse(readFileSync(state, 'utf8')) as { version: string }).version, BUNDLE_STATE_VERSION);

  // "Restart" with the older signed pair (it would still trust what v7 removed): refused.
  writePair(dir, pairTexts({ version: 6 }));
  const again = start(files, state);
  assert.equal(again.ok, false);
  assert.equal(again.w.current(), undefined);
  assert.equal(again.rejected[0]?.reason, 'bundle_rollback');
  assert.match(again.rejected[0].detail, /policy_version 6 is lower than the high-water mark 7 \(recorded in .*bundle-state\.json\)/);
  // Without the state file the same restart accepts it: the finding.
  assert.equal(start(files, undefined).ok, true);
  // The mark is untouched by refusals; the same pair as the mark starts; a newer one raises it.
  writePair(dir, pairTexts({ version: 7 }));
  assert.equal(start(files, state).ok, true);
  writePair(dir, pairTexts({ version: 9 }));
  assert.equal(start(files, state).ok, true);
  assert.equal(readBundleState(state)?.policyVersion, 9);
});

test('bundle state: another policy_id lineage is refused at start and on hot reload even with a higher version; deleting the state file is the reset', (t) => {
  const dir = tempDir(t);
  const state = path.join(dir, 'bundle-state.json');
  const files = writePair(dir, lineage('acme-orders', 3));
  assert.equal(start(files, state).ok, true);
  writePair(dir, lineage('other-lineage', 50));
  const r = start(files, state);
  assert.equal(r.ok, false);
  assert.equal(r.rejected[0]?.reason, 'bundle_lineage_mismatch');
  assert.match(r.rejected[0].detail, /policy_id "other-lineage" \(version 50\) is not the pinned lineage "acme-orders"/);
  assert.equal(readBundleState(state)?.policyId, 'acme-orders');

  // Hot reload: pinned in memory too (with or without a state file).
  for (const sf of [state, undefined]) {
    writePair(dir, lineage('acme-orders', 3));
    const clock = new ManualClock(T0);
    const w = new BundleWatcher({ trustMaterialFile: files.trustFile, policyBundleFile: files.bundleFile, trustMaterialKeys: trustedKeys(), policyBundleKeys: trustedKeys(), clock, pollIntervalMs: 0, watchDirectories: false, ...(sf !== undefined ? { stateFile: sf } : {}) });
    const rejected: BundleRejectedEvent[] = [];
    w.on('rejected', (e) => rejected.push(e));
    assert.equal(w.start(), true);
    writePair(dir, lineage('other-lineage', 50));
    clock.advance(1000);
    assert.equal(w.check(), 'rejected');
    assert.equal(rejected.at(-1)?.reason, 'bundle_lineage_mismatch');
    assert.equal(w.current()?.policy.policyVersion, 3);
    w.close();
  }

  // The operator's reset: delete the mark, and the new lineage starts (and is then pinned).
  writePair(dir, lineage('other-lineage', 1));
  assert.equal(start(files, state).ok, false);
  writeFileSync(state, ''); // an empty file is not a mark either
  assert.equal(start(files, state).rejected[0]?.reason, 'bundle_state_invalid');
  rmSync(state);
  assert.equal(start(files, state).ok, true);
  assert.equal(readBundleState(state)?.policyId, 'other-lineage');
});

test('bundle state: the mark version with other content is refused at start; the same content re-signed is accepted', (t) => {
  const dir = tempDir(t);
  const state = path.join(dir, 'bundle-state.json');
  const files = writePair(dir, pairTexts({ version: 4 }));
  assert.equal(start(files, state).ok, true);
  writePair(dir, pairTexts({ version: 4, mutateBundle: (b) => (b.revocations = [{ jti: 'x' }]) }));
  const r = start(files, state);
  assert.equal(r.ok, false);
  assert.equal(r.rejected[0]?.reason, 'bundle_version_conflict');
  assert.match(r.rejected[0].detail, /policy_version 4 is the high-water mark .* but the content differs/);
  // The mark records content, not bytes: re-signing (a signing-key rotation) cannot flip-flop meaning.
  writePair(dir, pairTexts({ version: 4, signer: rotatedSigner, kid: ROTATED_KID }));
  assert.equal(start(files, state).ok, true);
});

test('bundle state: a state file that is not a valid mark stops every load (fail closed), with the file and member named', (t) => {
  const dir = tempDir(t);
  const state = path.join(dir, 'bundle-state.json');
  const files = writePair(dir, pairTexts({ version: 2 }));
  const good = { version: BUNDLE_STATE_VERSION, policy_id: 'acme-orders', policy_version: 1, content_sha256: 'a'.repeat(64), updated_at: '2026-01-01T00:00:00.000Z' };
  const cases: [string, string, RegExp][] = [
    ['garbage', '{not json', /invalid JSON|invalid_json|Unexpected|JSON/],
    ['duplicate key', '{"version":"trustplane-bundle-state-v1","policy_version":1,"policy_version":99}', /duplicate/],
    ['unknown member', JSON.stringify({ ...good, extra: 1 }), /\/extra: unknown member/],
    ['wrong version', JSON.stringify({ ...good, version: 'v0' }), /\/version/],
    ['negative version', JSON.stringify({ ...good, policy_version: -1 }), /\/policy_version/],
    ['float version', JSON.stringify({ ...good, policy_version: 1.5 }), /\/policy_version/],
    ['string version', JSON.stringify({ ...good, policy_version: '9' }), /\/policy_version/],
    ['bad digest', JSON.stringify({ ...good, content_sha256: 'A'.repeat(64) }), /\/content_sha256/],
    ['empty lineage', JSON.stringify({ ...good, policy_id: '' }), /\/policy_id/],
    ['array', '[]', /must be a JSON object/],
    ['too large', JSON.stringify({ ...good, policy_id: 'x'.repeat(5000) }), /larger than 4096 bytes/],
  ];
  for (const [what, text, detail] of cases) {
    writeFileSync(state, text);
    assert.throws(() => readBundleState(state), (err: unknown) => err instanceof FormatError && err.code === 'bundle_state_invalid', what);
    const r = start(files, state);
    assert.equal(r.ok, false, what);
    assert.equal(r.rejected[0]?.reason, 'bundle_state_invalid', what);
    assert.match(r.rejected[0].detail, detail, what);
    assert.equal(readFileSync(state, 'utf8'), text, `${what}: a bad mark is never overwritten`);
  }
  assert.deepEqual(parseBundleState(Buffer.from(JSON.stringify(good)), state).policyVersion, 1);
  // A missing file is the first start, not an error.
  assert.equal(readBundleState(path.join(dir, 'none.json')), undefined);
});

test('bundle state: a newer pair whose mark cannot be written is refused (bundle_state_write_failed); the last good pair keeps serving', (t) => {
  const dir = tempDir(t);
  const stateDir = path.join(dir, 'state');
  mkdirSync(stateDir);
  const state = path.join(stateDir, 'bundle-state.json');
  const files = writePair(dir, pairTexts({ version: 1 }));
  const clock = new ManualClock(T0);
  const w = new BundleWatcher({ trustMaterialFile: files.trustFile, policyBundleFile: files.bundleFile, trustMaterialKeys: trustedKeys(), policyBundleKeys: trustedKeys(), clock, pollIntervalMs: 0, watchDirectories: false, stateFile: state });
  const rejected: BundleRejectedEvent[] = [];
  w.on('rejected', (e) => rejected.push(e));
  t.after(() => w.close());
  assert.equal(w.start(), true);
  // Make the state directory unusable: replace it by a regular file (root ignores modes, not this).
  renameSync(stateDir, `${stateDir}.moved`);
  writeFileSync(stateDir, 'not a directory');
  writePair(dir, pairTexts({ version: 2 }));
  clock.advance(1000);
  assert.equal(w.check(), 'rejected');
  assert.equal(rejected.at(-1)?.reason, 'bundle_state_write_failed');
  assert.equal(w.current()?.policy.policyVersion, 1);
  rmSync(stateDir);
  renameSync(`${stateDir}.moved`, stateDir);
  assert.equal(w.reload(), 'loaded');
  assert.equal(existsSync(state), true);
  assert.equal(readBundleState(state)?.policyVersion, 2);
});

test('BundleFollower: serves offered pairs under the same guard; freshness advances only with confirmations of its content', async () => {
  const clock = new ManualClock(T0);
  const f = new BundleFollower({ trustMaterialKeys: trustedKeys(), policyBundleKeys: trustedKeys() });
  const loaded: BundleLoadedEvent[] = [];
  const rejected: BundleRejectedEvent[] = [];
  f.on('loaded', (e) => loaded.push(e));
  f.on('rejected', (e) => rejected.push(e));
  const offer = (p: { trust: string; bundle: string }, at: number) => f.offer(Buffer.from(p.trust), Buffer.from(p.bundle), at);
  assert.equal(f.current(), undefined);
  const realtime = (v: number) => pairTexts({ version: v, mutateBundle: (b) => (b.route_groups[0]!.routes[0]!.freshness_class = 'realtime') });
  assert.equal(offer(realtime(5), T0), 'loaded');
  assert.equal(offer(realtime(4), T0), 'rejected');
  assert.equal(rejected.at(-1)?.reason, 'bundle_rollback');
  assert.equal(offer(lineage('other', 9), T0), 'rejected');
  assert.equal(rejected.at(-1)?.reason, 'bundle_lineage_mismatch');
  assert.equal(offer(pairTexts({ version: 5, unsigned: true }), T0), 'rejected');
  assert.equal(rejected.at(-1)?.reason, 'unsigned_bundle');
  assert.equal(f.current()?.policy.policyVersion, 5);
  const verifier = new Verifier({ policy: f, replayStore: new MemoryReplayStore(), clock, freshnessWindowSeconds: 5 });
  const ask = async () => (await verifier.verify(makeRequest({ nowMs: clock.now() }))).reason;
  clock.advance(10_000);
  assert.equal(await ask(), 'stale_bundle_fail_closed');
  assert.equal(f.confirm({ contentSha256: 'b'.repeat(64), atMs: clock.now() }), false, 'a confirmation of other content does not count');
  assert.equal(await ask(), 'stale_bundle_fail_closed');
  assert.equal(f.confirm({ contentSha256: f.currentPair()!.contentSha256, atMs: clock.now() }), true);
  assert.equal(await ask(), 'request_verified');
  assert.equal(offer(realtime(6), clock.now()), 'loaded');
  assert.deepEqual(loaded.map((e) => e.policyVersion), [5, 6]);
  f.relayRejected({ reason: 'bundle_rollback', detail: 'from the primary', atMs: clock.now() });
  assert.deepEqual([rejected.at(-1)?.detail, rejected.at(-1)?.servingPolicyVersion], ['from the primary', 6]);
});
