/**
 * End to end (issue 4): a Verifier reads its policy from a BundleWatcher on files on disk; a
 * steady stream of valid signed requests from an existing client runs throughout. A new client
 * is merged in and signed with the CLI while it runs, and is accepted within a second without a
 * restart; it is then removed with --revoke and denied; no request of the existing client
 * fails in between.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BundleWatcher,
  MemoryReplayStore,
  Verifier,
  encodeBase64url,
  getEd25519Backend,
  privateKeyFromSeed,
  type BundleLoadedEvent,
  type BundleRejectedEvent,
  type Decision,
} from '@trustplane/core';
import { makeRequest } from '@trustplane/testkit';
import { run, tempDir } from './helpers.js';
import { SIGNER_KID, signArgs, signingKey, workspace } from './bundle-helpers.js';

const billingKey = privateKeyFromSeed(Buffer.alloc(32, 60));
const BILLING = { issuer: 'https://issuer.example/billing', kid: 'billing-key-1', subject: 'service:billing' };

async function cli(...args: string[]): Promise<void> {
  const r = await run(...args);
  assert.equal(r.code, 0, `${args.slice(0, 2).join(' ')}: ${r.stderr}`);
}

test('e2e: a client merged and signed while the verifier runs is accepted within 1 s, then revoked and denied; nobody else fails', async (t) => {
  const w = workspace(tempDir(t), 'realtime');
  const live = w.f('live');
  mkdirSync(live);
  const liveTrust = path.join(live, 'trust-material.json');
  const liveBundle = path.join(live, 'policy-bundle.json');

  // The initial pair: built, signed, and put in place.
  await cli('bundle', 'build', '--config', w.config, '--out', w.f('p1.json'), '--out-trust-material', w.f('t1.json'));
  await cli(...signArgs(w, '--trust-material', w.f('t1.json'), liveTrust));
  await cli(...signArgs(w, '--policy-bundle', w.f('p1.json'), liveBundle));

  // The verifier and its file-backed policy: defaults (1 s poll, directory watch), real clock.
  const keys = new Map([[SIGNER_KID, getEd25519Backend().importPublicKey(signingKey.publicKey)]]);
  const watcher = new BundleWatcher({ trustMaterialFile: liveTrust, policyBundleFile: liveBundle, trustMaterialKeys: keys, policyBundleKeys: keys });
  const loaded: BundleLoadedEvent[] = [];
  const rejected: BundleRejectedEvent[] = [];
  watcher.on('loaded', (e) => loaded.push(e));
  watcher.on('rejected', (e) => rejected.push(e));
  assert.equal(watcher.start(), true);
  t.after(() => watcher.close());
  const verifier = new Verifier({ policy: watcher, replayStore: new MemoryReplayStore() });

  // The existing client's steady stream: every request must be allowed.
  const failures: Decision[] = [];
  let sent = 0;
  let streaming = true;
  const stream = (async () => {
    while (streaming) {
      const d = await verifier.verify(makeRequest({ nowMs: Date.now() }));
      sent++;
      if (!d.allowed) failures.push(d);
      await sleep(5);
    }
  })();
  const billing = async (): Promise<Decision> =>
    verifier.verify(makeRequest({ nowMs: Date.now(), issuer: BILLING.issuer, kid: BILLING.kid, subject: BILLING.subject, signingKey: billingKey }));
  /** Ask until `done` holds; returns the decision and how long after `since` it came. */
  const until = async (done: (d: Decision) => boolean, since: number): Promise<{ d: Decision; ms: number }> => {
    for (;;) {
      const d = await billing();
      if (done(d) || Date.now() - since > 3000) return { d, ms: Date.now() - since };
      await sleep(10);
    }
  };

  await sleep(200);
  const before = await billing();
  assert.equal(before.reason, 'unknown_issuer_key', 'the new client is not trusted yet');

  // Add the client: merge-source, then sign both files into place.
  await cli(
    'bundle', 'merge-source',
    '--trust-material', liveTrust, '--policy-bundle', liveBundle,
    '--out-trust-material', w.f('t2.json'), '--out-policy-bundle', w.f('p2.json'),
    '--issuer', BILLING.issuer, '--trust-domain', 'example.local', '--kid', BILLING.kid,
    '--public-key', encodeBase64url(billingKey.publicKey), '--route-id', 'orders.search',
    '--subject-exact', BILLING.subject, '--required-key-binding', 'software',
  );
  await cli(...signArgs(w, '--trust-material', w.f('t2.json'), liveTrust));
  await cli(...signArgs(w, '--policy-bundle', w.f('p2.json'), liveBundle));
  const added = await until((d) => d.allowed, Date.now());
  assert.equal(added.d.allowed, true, JSON.stringify(added.d));
  assert.ok(added.ms < 1000, `accepted after ${added.ms} ms`);
  assert.equal(added.d.allowed && added.d.policyVersion, 2);

  await sleep(300);

  // Remove it, revoking: remove-source --confirm-remove --revoke, then sign both into place.
  await cli(
    'bundle', 'remove-source',
    '--trust-material', liveTrust, '--policy-bundle', liveBundle,
    '--out-trust-material', w.f('t3.json'), '--out-policy-bundle', w.f('p3.json'),
    '--kid', BILLING.kid, '--confirm-remove', '--revoke', '--reason', 'e2e',
  );
  await cli(...signArgs(w, '--trust-material', w.f('t3.json'), liveTrust));
  await cli(...signArgs(w, '--policy-bundle', w.f('p3.json'), liveBundle));
  const removed = await until((d) => !d.allowed, Date.now());
  assert.ok(removed.d.reason === 'revoked' || removed.d.reason === 'unknown_issuer_key', removed.d.reason);
  assert.ok(removed.ms < 1000, `denied after ${removed.ms} ms`);

  await sleep(200);
  streaming = false;
  await stream;
  assert.deepEqual(failures, [], 'no request of the existing client failed');
  assert.ok(sent > 50, `the stream ran (${sent} requests)`);
  assert.deepEqual(
    loaded.map((e) => e.policyVersion),
    [1, 2, 3],
  );
  // Between the two renames the watcher may see a half-updated pair: refused, never served.
  for (const r of rejected) assert.equal(r.reason, 'bundle_pair_mismatch', r.detail);
});
