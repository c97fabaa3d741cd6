import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { buildTranscript, normalizeQuery, sha256Hex, SIGNER_CLASSES, SIGNER_CLASS_ORDER, isReasonCode, compilePolicy, type PolicyBundle } from '../src/index.js';
import { readVector, repoRoot } from './helpers.js';

/** SHA-256 of each vendored file as copied (sha256sum): an accidental edit fails here. */
const PINS: [string, string][] = [
  ['v1/body-sha256-v1.json', '864b683f13ef7930ac96318a2292259bbb43d032b72595ddf5a2d16cd92adb3d'],
  ['v1/broker-ipc-v1.denied.json', '021b57107baab2d7c50b686f94971b60f9b6096317c0ee67d6061de276c3b9cd'],
  ['v1/broker-ipc-v1.success.json', 'f74d365d6290b9207c7441b4dd97a8e20098eeb0d84261a444b34a59cf221ec5'],
  ['v1/bundle-v1.source-rules.json', 'e44af97c4b3e9e30b3613919130e522439ca3374631c3bed0555113fd856a1dd'],
  ['v1/manifest.json', '5ce27d2ddc86cd7a010341b20ed4f725de47f66bea82a7c73e61fecdbdcd5120'],
  ['v1/passport-v1.minimal-valid-claims.json', '32d56f92afa8733d4f56b13a51bf3e4ca63a95e3fe4668409a9f000d30cecda9'],
  ['v1/signer-taxonomy-v1.json', '9b5651a4b9c4c5a9568ebea806eef5b76943b1f7721503b2983547b5e8c7323a'],
  ['v1/transcript-v1.ambiguous-query-headers.json', '478461a34b11610b018b62d2587217866dbe8bd5788561fa3cae7a39a929327b'],
  ['v1/transcript-v1.json', 'e739f1e6856dc2b09abcccf606f1aa8ec2eca69bac644c3768f083f5d3a9bc49'],
  ['wycheproof/LICENSE', '58d1e17ffe5109a7ae296caafcadfdbe6a7d176f0bc4ab01e12a689b0499d8bd'],
  ['wycheproof/ed25519_test.json', '752d2ea7d7c6cf4736381b6cbacb61f8182b126ab7cd9b058f00c50084975536'],
  ['wycheproof/eddsa_verify_schema_v1.json', 'f3e5678134d7b7331621206bf890912581971616df49c6f57d270e1625a62b24'],
];

test('vendored vectors are byte-identical to the pinned copies, and nothing else is in the folders', () => {
  for (const [rel, sha] of PINS) {
    assert.equal(createHash('sha256').update(readFileSync(join(repoRoot, 'conformance/vectors', rel))).digest('hex'), sha, rel);
  }
  const present = ['v1', 'wycheproof'].flatMap((d) => readdirSync(join(repoRoot, 'conformance/vectors', d)).map((f) => `${d}/${f}`));
  assert.deepEqual(present.sort(), PINS.map(([rel]) => rel).sort());
});

test('manifest.json: every listed vector is vendored (and so exercised by a test in this suite)', () => {
  const m = readVector('v1/manifest.json') as { suite_version: string; vectors: { id: string; path: string }[] };
  assert.equal(m.suite_version, 'v1');
  for (const v of m.vectors) {
    const name = v.path.split('/').at(-1)!;
    assert.ok(PINS.some(([rel]) => rel === `v1/${name}`), `${v.id}: ${name}`);
  }
  assert.equal(m.vectors.length, 8);
});

test('signer-taxonomy-v1.json: the same classes, order and ranks as the code', () => {
  const t = readVector('v1/signer-taxonomy-v1.json') as { ordering: string[]; classes: { class: string; rank: number }[] };
  assert.deepEqual(t.ordering, SIGNER_CLASS_ORDER);
  assert.deepEqual(Object.fromEntries(t.classes.map((c) => [c.class, c.rank])), SIGNER_CLASSES);
});

interface BrokerFixture {
  request: { http: { method: string; scheme: string; authority: string; path: string; content_encoding: string; query: { raw: string; normalized: string; sha256: string }; headers: { allow_list: string[]; selected: { name: string; value_sha256: string }[] }; audience: string; route_id: string; body_sha256: string; nonce: string }; key_binding: { requested_key_binding: string } };
  response: { accepted: boolean; reason_code: string; issued_at: number; artifacts: { passport: { jti: string }; stamp: { transcript_sha256: string } } | null; error: { code: string } | null };
}

test('broker-ipc-v1.success.json: the stamp digest is transcript-v1 of the request with the passport jti/iat and the granted binding', () => {
  const f = readVector('v1/broker-ipc-v1.success.json') as unknown as BrokerFixture;
  const h = f.request.http;
  assert.equal(normalizeQuery(h.query.raw), h.query.normalized);
  assert.equal(sha256Hex(h.query.normalized), h.query.sha256);
  assert.equal(Object.fromEntries(h.headers.selected.map((s) => [s.name, s.value_sha256]))['x-trustplane-nonce'], sha256Hex(h.nonce));
  const t = buildTranscript({
    method: h.method,
    scheme: h.scheme,
    authority: h.authority,
    path: h.path,
    rawQuery: h.query.raw,
    audience: h.audience,
    routeId: h.route_id,
    contentEncoding: h.content_encoding,
    bodySha256: h.body_sha256,
    headerHashes: Object.fromEntries(h.headers.selected.map((s) => [s.name, s.value_sha256])),
    headerAllowList: h.headers.allow_list,
    passportJti: f.response.artifacts!.passport.jti,
    nonce: h.nonce,
    issuedAt: f.response.issued_at,
    keyBinding: f.request.key_binding.requested_key_binding,
  });
  assert.equal(t.sha256, f.response.artifacts!.stamp.transcript_sha256);
  assert.equal(f.response.reason_code, 'broker_passport_issued');
});

test('broker-ipc-v1.denied.json: a SPEC reason code, no artifacts', () => {
  const f = readVector('v1/broker-ipc-v1.denied.json') as unknown as BrokerFixture;
  assert.equal(f.response.accepted, false);
  assert.equal(f.response.artifacts, null);
  assert.ok(isReasonCode(f.response.reason_code));
  assert.equal(f.response.error?.code, f.response.reason_code);
  assert.equal(normalizeQuery(f.request.http.query.raw), f.request.http.query.normalized);
});

test('bundle-v1.source-rules.json: the policy compiles; its three source types are the ones we know', () => {
  const f = readVector('v1/bundle-v1.source-rules.json') as { policy_bundle: PolicyBundle; expected_source_types: string[] };
  const trust = { version: 'trustplane-trust-material-v1' as const, issuers: [] };
  const p = compilePolicy(trust, f.policy_bundle);
  const route = p.routesById.get('orders.search')!;
  assert.deepEqual(route.sources.map((s) => s.source_type), f.expected_source_types);
  assert.equal(route.freshnessClass, 'bounded');
  assert.equal(route.maxStalenessSeconds, 300);
});

test('buildTranscript with header hashes: a malformed or missing hash is a specific error', () => {
  const base = { method: 'GET', scheme: 'https', authority: 'a', path: '/', audience: 'x', routeId: 'r', passportJti: 'j', nonce: 'n', issuedAt: 1, keyBinding: 'software', headerAllowList: ['x-trustplane-nonce'] };
  assert.throws(() => buildTranscript({ ...base, headerHashes: {} }), /missing_signed_header/);
  assert.throws(() => buildTranscript({ ...base, headerHashes: { 'x-trustplane-nonce': 'ABC' } }), /invalid_field/);
});
