import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import {
  FormatError,
  ManualClock,
  MemoryReplayStore,
  StaticPolicyProvider,
  Verifier,
  compilePair,
  documentContentSha256,
  encodeBase64url,
  mergeSource,
  removeSource,
  type MergeSourceOptions,
  type PolicyBundle,
  type TrustMaterial,
} from '../src/index.js';
import { T0, makeRequest, seedKey, trustMaterial, policyBundle, ISSUER } from './helpers.js';

const clientKey = seedKey(40);
const CLIENT_ISSUER = 'https://issuer.example/billing';

function merge(over: Partial<MergeSourceOptions> = {}, trust: TrustMaterial = trustMaterial(), bundle: PolicyBundle = policyBundle()) {
  const o: MergeSourceOptions = {
    issuer: CLIENT_ISSUER,
    trustDomain: 'example.local',
    kid: 'billing-key-1',
    publicKey: encodeBase64url(clientKey.publicKey),
    routeId: 'orders.search',
    requiredKeyBinding: 'software',
    ...over,
  };
  // The exact subject is the default selector, unless a prefix is given.
  if (over.subjectPrefix === undefined && over.subjectExact === undefined) o.subjectExact = 'service:billing';
  return mergeSource(trust, bundle, o);
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof FormatError) return err.code;
    throw err;
  }
  return 'ok';
}

async function decide(trust: TrustMaterial, bundle: PolicyBundle, subject: string, kid: string, issuer: string, key = clientKey): Promise<string> {
  const clock = new ManualClock(T0 + 1000);
  const v = new Verifier({ policy: new StaticPolicyProvider(compilePair(trust, bundle), T0), replayStore: new MemoryReplayStore(), clock });
  return (await v.verify(makeRequest({ nowMs: T0, subject, kid, issuer, signingKey: key }))).reason;
}

test('mergeSource: appends the key and the rule, preserves everything else, bumps the version, unsigned again', async () => {
  const trust = trustMaterial();
  const bundle = policyBundle();
  const before = [JSON.stringify(trust), JSON.stringify(bundle)];
  const r = merge({}, trust, bundle);
  assert.deepEqual([JSON.stringify(trust), JSON.stringify(bundle)], before, 'inputs untouched');
  assert.equal(r.policyVersion, 8);
  assert.equal(r.policyBundle.policy_version, 8);
  assert.equal(r.policyBundle['trust_material_sha256'], documentContentSha256(r.trustMaterial));
  assert.equal(r.policyBundle.signature?.format, 'unsigned-skeleton');
  assert.equal(r.trustMaterial.signed_by?.alg, 'none');
  // Everything that was there is still there, in place.
  assert.deepEqual(r.trustMaterial.issuers.slice(0, 2), trust.issuers);
  assert.deepEqual(r.trustMaterial.issuers[2], {
    issuer: CLIENT_ISSUER,
    trust_domain: 'example.local',
    source_type: 'software_jwks',
    keys: [{ kid: 'billing-key-1', alg: 'EdDSA', public_key_b64url: encodeBase64url(clientKey.publicKey), subject_exact: 'service:billing' }],
  });
  const search = r.policyBundle.route_groups[0]!.routes[0]!;
  assert.deepEqual(search.allowed_sources.slice(0, 1), bundle.route_groups[0]!.routes[0]!.allowed_sources);
  assert.deepEqual(search.allowed_sources[1], { source_type: 'software_jwks', issuer: CLIENT_ISSUER, trust_domain: 'example.local', required_key_binding: 'software', subject_exact: 'service:billing' });
  assert.deepEqual(r.policyBundle.route_groups[0]!.routes.slice(1), bundle.route_groups[0]!.routes.slice(1));
  // And it means it: the new client is accepted, the old one still is.
  assert.equal(await decide(r.trustMaterial, r.policyBundle, 'service:billing', 'billing-key-1', CLIENT_ISSUER), 'request_verified');
  assert.equal(await decide(r.trustMaterial, r.policyBundle, 'service:orders-client', 'client-key-1', ISSUER, seedKey(1)), 'request_verified');
  // A second key of the same client (a rotation) goes under the same issuer entry, on another route.
  const second = merge({ kid: 'billing-key-2', routeId: 'orders.get' }, r.trustMaterial, r.policyBundle);
  assert.deepEqual(second.trustMaterial.issuers[2]?.keys.map((k) => k.kid), ['billing-key-1', 'billing-key-2']);
  assert.equal(second.policyVersion, 9);
});

test('mergeSource: two clients under one issuer cannot mint each other; a key that could is refused unless sharedIssuer', async () => {
  const shippingKey = seedKey(9);
  const a = merge();
  const both = merge({ kid: 'shipping-key-1', publicKey: encodeBase64url(shippingKey.publicKey), subjectExact: 'service:shipping' }, a.trustMaterial, a.policyBundle);
  assert.deepEqual(both.trustMaterial.issuers[2]?.keys.map((k) => k.subject_exact), ['service:billing', 'service:shipping']);
  assert.equal(await decide(both.trustMaterial, both.policyBundle, 'service:shipping', 'shipping-key-1', CLIENT_ISSUER, shippingKey), 'request_verified');
  // Client B's key minting client A's subject: refused before any route rule is consulted.
  assert.equal(await decide(both.trustMaterial, both.policyBundle, 'service:billing', 'shipping-key-1', CLIENT_ISSUER, shippingKey), 'key_subject_mismatch');
  // An overlapping binding (a prefix covering the other client) is the ambiguous shape.
  assert.equal(code(() => merge({ kid: 'any-key', subjectPrefix: 'service:' }, a.trustMaterial, a.policyBundle)), 'shared_issuer');
  // So is an issuer whose key is bound to no subject (an issuer service, or a pre-binding client).
  const legacy = trustMaterial();
  legacy.issuers.push({ issuer: CLIENT_ISSUER, trust_domain: 'example.local', source_type: 'software_jwks', keys: [{ kid: 'old-key', alg: 'EdDSA', public_key_b64url: encodeBase64url(seedKey(8).publicKey) }] });
  const bundle = policyBundle();
  assert.equal(code(() => merge({}, legacy, bundle)), 'shared_issuer');
  const forced = merge({ sharedIssuer: true }, legacy, bundle);
  assert.ok(forced.changes.some((c) => c.startsWith('warning: --shared-issuer')), forced.changes.join('\n'));
  assert.equal(await decide(forced.trustMaterial, forced.policyBundle, 'service:billing', 'old-key', CLIENT_ISSUER, seedKey(8)), 'request_verified', 'as the operator was warned');
});

test('mergeSource: refuses duplicates unless replaceExisting, and conflicting or unknown targets', () => {
  const r = merge();
  assert.equal(code(() => merge({}, r.trustMaterial, r.policyBundle)), 'duplicate_kid');
  assert.equal(code(() => merge({ kid: 'billing-key-2' }, r.trustMaterial, r.policyBundle)), 'duplicate_source');
  assert.equal(code(() => merge({ kid: 'client-key-1', issuer: 'https://x.example' })), 'duplicate_kid');
  const replaced = merge({ requiredKeyBinding: 'hardware_local', replaceExisting: true }, r.trustMaterial, r.policyBundle);
  assert.equal(replaced.trustMaterial.issuers[2]?.keys.length, 1);
  assert.equal(replaced.policyBundle.route_groups[0]!.routes[0]!.allowed_sources.length, 2);
  assert.equal(replaced.policyBundle.route_groups[0]!.routes[0]!.allowed_sources[1]?.required_key_binding, 'hardware_local');
  assert.equal(code(() => merge({ issuer: ISSUER, trustDomain: 'other.local', kid: 'k9' })), 'issuer_conflict');
  assert.equal(code(() => merge({ issuer: ISSUER, sourceType: 'oidc_jwks', kid: 'k9' })), 'issuer_conflict');
  assert.equal(code(() => merge({ routeId: 'orders.delete' })), 'route_not_found');
  assert.equal(code(() => merge({ publicKey: encodeBase64url(Buffer.alloc(32)) })), 'invalid_public_key');
  assert.equal(code(() => merge({ publicKey: 'short' })), 'invalid_public_key');
  const revoked = policyBundle((b) => (b.revocations = [{ kid: 'billing-key-1', reason: 'old' }]));
  assert.equal(code(() => merge({}, trustMaterial(), revoked)), 'kid_revoked');
  assert.throws(() => merge({ subjectExact: 'a', subjectPrefix: 'x' }), TypeError);
  // Invalid inputs are refused by their schema before anything else.
  const broken = policyBundle((b) => ((b as unknown as Record<string, unknown>)['typo'] = 1));
  assert.equal(code(() => merge({}, trustMaterial(), broken)), 'invalid_bundle');
});

test('removeSource: removes the key and its rules, keeps everything else, --revoke appends revocations', async () => {
  const added = merge();
  const r = removeSource(added.trustMaterial, added.policyBundle, { kid: 'billing-key-1', revoke: true, reason: 'decommissioned', now: T0 });
  assert.equal(r.policyVersion, 9);
  assert.deepEqual(r.trustMaterial.issuers, trustMaterial().issuers);
  assert.deepEqual(r.policyBundle.route_groups, policyBundle().route_groups);
  assert.deepEqual(r.policyBundle.revocations, [{ kid: 'billing-key-1', issuer: CLIENT_ISSUER, subject: 'service:billing', reason: 'decommissioned', revoked_at: '2025-02-19T21:20:00Z' }]);
  assert.equal(r.policyBundle['trust_material_sha256'], documentContentSha256(r.trustMaterial));
  assert.equal(await decide(r.trustMaterial, r.policyBundle, 'service:billing', 'billing-key-1', CLIENT_ISSUER), 'unknown_issuer_key');
  // Without revoke: no revocation entries.
  const plain = removeSource(added.trustMaterial, added.policyBundle, { kid: 'billing-key-1', now: T0 });
  assert.deepEqual(plain.policyBundle.revocations, []);
  assert.equal(code(() => removeSource(added.trustMaterial, added.policyBundle, { kid: 'nope', now: T0 })), 'source_not_found');
});

test('removeSource: an issuer that keeps other keys keeps its rules, unless narrowed to a route or subject', async () => {
  const two = merge({ kid: 'billing-key-2', routeId: 'orders.get' }, merge().trustMaterial, merge().policyBundle);
  const kept = removeSource(two.trustMaterial, two.policyBundle, { kid: 'billing-key-1', revoke: true, now: T0 });
  assert.deepEqual(kept.trustMaterial.issuers[2]?.keys.map((k) => k.kid), ['billing-key-2']);
  assert.equal(kept.policyBundle.route_groups[0]!.routes[0]!.allowed_sources.length, 2);
  assert.deepEqual(kept.policyBundle.revocations?.[0], { kid: 'billing-key-1', issuer: CLIENT_ISSUER, reason: 'removed with trustplane bundle remove-source --revoke', revoked_at: '2025-02-19T21:20:00Z' });
  // The removed key is denied (revoked by kid would apply too; it is gone from the trust material first).
  assert.equal(await decide(kept.trustMaterial, kept.policyBundle, 'service:billing', 'billing-key-1', CLIENT_ISSUER), 'unknown_issuer_key');
  const narrowed = removeSource(two.trustMaterial, two.policyBundle, { kid: 'billing-key-1', routeId: 'orders.search', subjectExact: 'service:billing', now: T0 });
  assert.equal(narrowed.policyBundle.route_groups[0]!.routes[0]!.allowed_sources.length, 1);
  assert.equal(narrowed.policyBundle.route_groups[0]!.routes[2]!.allowed_sources.length, 3);
  assert.equal(code(() => removeSource(two.trustMaterial, two.policyBundle, { kid: 'billing-key-1', routeId: 'orders.nope', now: T0 })), 'route_not_found');
});
