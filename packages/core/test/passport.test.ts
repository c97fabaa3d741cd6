import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { createPublicKey, verify as nodeVerify } from 'node:crypto';
import {
  issuePassport,
  parsePassport,
  validatePassportClaims,
  verifyPassportSignature,
  getEd25519Backend,
  TrustPlaneError,
  type Ed25519PrivateKey,
  type JsonObject,
} from '../src/index.js';
import { seedKey, T0, readVector } from './helpers.js';

const key = seedKey(1);
const backend = getEd25519Backend();

function b64(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64url');
}

/** Build a token from raw JSON texts, signed by `signer` over header.payload. */
export function forge(headerJson: string, payloadJson: string, signer: Ed25519PrivateKey = key): string {
  const input = `${b64(headerJson)}.${b64(payloadJson)}`;
  return `${input}.${backend.sign(signer, Buffer.from(input)).toString('base64url')}`;
}

const claims = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  iss: 'https://issuer.example',
  sub: 'service:a',
  aud: 'orders-api',
  iat: T0 / 1000,
  exp: T0 / 1000 + 300,
  jti: 'jti-1',
  trust_domain: 'example.local',
  cnf: { kid: key.publicKey.toString('base64url'), public_key_b64url: key.publicKey.toString('base64url'), key_binding: 'software' },
  ...over,
});

const reason = (r: string) => (e: unknown) => e instanceof TrustPlaneError && e.reason === r;

test('issuePassport produces the Python SDK shape: header and claim key order, jti-<b64url>, self-bound cnf', () => {
  const p = issuePassport({ signingKey: key, kid: 'client-key-1', issuer: 'https://issuer.example', subject: 'service:a', audience: 'orders-api', trustDomain: 'example.local', now: T0 + 999, ttlSeconds: 300, randomBytes: (n) => Buffer.alloc(n, 0xaa) });
  const [h, c, s] = p.token.split('.') as [string, string, string];
  const pub = key.publicKey.toString('base64url');
  assert.equal(Buffer.from(h, 'base64url').toString(), '{"alg":"EdDSA","kid":"client-key-1","typ":"JWT"}');
  assert.equal(
    Buffer.from(c, 'base64url').toString(),
    `{"iss":"https://issuer.example","sub":"service:a","aud":"orders-api","iat":1740000000,"exp":1740000300,"jti":"jti-qqqqqqqqqqqqqqqqqqqqqg","trust_domain":"example.local","cnf":{"kid":"${pub}","public_key_b64url":"${pub}","key_binding":"software"}}`,
  );
  // The signature verifies with an independent verifier (node:crypto on the raw key).
  const spki = createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), key.publicKey]), format: 'der', type: 'spki' });
  assert.ok(nodeVerify(null, Buffer.from(`${h}.${c}`), spki, Buffer.from(s, 'base64url')));
});

test('issuePassport refuses empty or padded identity fields and bad lifetimes', () => {
  const base = { signingKey: key, kid: 'k', issuer: 'i', subject: 's', audience: 'a', trustDomain: 't' };
  assert.throws(() => issuePassport({ ...base, issuer: ' ' }), /missing_issuer/);
  assert.throws(() => issuePassport({ ...base, subject: ' s' }), /non_canonical_subject/);
  assert.throws(() => issuePassport({ ...base, ttlSeconds: 0 }), /invalid_passport_ttl/);
  assert.throws(() => issuePassport({ ...base, ttlSeconds: 1.5 }), /invalid_passport_ttl/);
});

test('parse + verify + validate: the happy path, and the passport-v1 minimal claims vector', () => {
  const p = issuePassport({ signingKey: key, kid: 'k1', issuer: 'i', subject: 's', audience: ['a'][0]!, trustDomain: 't', now: T0 });
  const parsed = parsePassport(p.token);
  assert.equal(parsed.header.kid, 'k1');
  assert.ok(verifyPassportSignature(parsed, backend.importPublicKey(key.publicKey)));
  const c = validatePassportClaims(parsed.payload, { nowMs: T0 });
  assert.equal(c.aud, 'a');
  assert.equal(c.cnf.key_binding, 'software');
  const vector = readVector('v1/passport-v1.minimal-valid-claims.json') as { claims: JsonObject; required_claims: string[] };
  const vc = validatePassportClaims(vector.claims, { nowMs: 1_740_000_100_000 });
  assert.equal(vc.cnf.key_binding, 'hardware_local');
  assert.equal(vc.sub, 'spiffe://example.local/workload/orders');
  // Every required claim of the vector is really required.
  for (const path of vector.required_claims) {
    const copy = structuredClone(vector.claims) as Record<string, Record<string, unknown>>;
    const [a, b] = path.split('.') as [string, string | undefined];
    if (b === undefined) delete copy[a];
    else delete copy[a]![b];
    assert.throws(() => validatePassportClaims(copy as unknown as JsonObject, { nowMs: 1_740_000_100_000 }), reason('invalid_passport_claims'), path);
  }
});

test('a ctx member named __proto__ is kept as data: not dropped, no prototype change', () => {
  const parsed = parsePassport(forge('{"alg":"EdDSA","kid":"k"}', JSON.stringify(claims()).replace(/}$/, ',"ctx":{"__proto__":"x","tool_name":"orders-worker"}}')));
  const c = validatePassportClaims(parsed.payload, { nowMs: T0 });
  assert.deepEqual(Object.keys(c.ctx!), ['__proto__', 'tool_name']);
  assert.equal(Object.getOwnPropertyDescriptor(c.ctx, '__proto__')?.value, 'x');
  assert.equal(Object.getPrototypeOf(c.ctx), Object.prototype);
});

test('aud may be an array: its first element is the audience', () => {
  const parsed = parsePassport(forge('{"alg":"EdDSA","kid":"k"}', JSON.stringify(claims({ aud: ['orders-api', 'other'] }))));
  assert.equal(validatePassportClaims(parsed.payload, { nowMs: T0 }).aud, 'orders-api');
});

test('algorithm allow-list and forbidden header parameters are enforced before any key lookup', () => {
  const c = JSON.stringify(claims());
  for (const header of [
    '{"alg":"none","kid":"k"}',
    '{"alg":"HS256","kid":"k"}',
    '{"alg":"RS256","kid":"k"}',
    '{"alg":"ES256","kid":"k"}',
    '{"alg":"eddsa","kid":"k"}',
    '{"kid":"k"}',
    '{"alg":"EdDSA","kid":"k","jwk":{"kty":"OKP","crv":"Ed25519","x":"AAAA"}}',
    '{"alg":"EdDSA","kid":"k","jku":"https://evil.example/jwks"}',
    '{"alg":"EdDSA","kid":"k","x5u":"https://evil.example/cert"}',
    '{"alg":"EdDSA","kid":"k","x5c":["MII"]}',
    '{"alg":"EdDSA","kid":"k","crit":["exp"],"exp":1}',
    '{"alg":"EdDSA","kid":"k","crit":["b64"],"b64":false}',
  ]) {
    assert.throws(() => parsePassport(forge(header, c)), reason('unsupported_passport_algorithm'), header);
  }
});

test('malformed passports are refused with malformed_passport', () => {
  const good = forge('{"alg":"EdDSA","kid":"k"}', JSON.stringify(claims()));
  const [h, c, s] = good.split('.') as [string, string, string];
  const cases = [
    'not-a-jws',
    `${h}.${c}`,
    `${h}.${c}.${s}.x`,
    `.${c}.${s}`,
    `${h}..${s}`,
    `${h}.${c}.`,
    `${h}.${c}.${s}=`,
    `${h}=.${c}.${s}`,
    `${h}.${c}.${s.slice(0, 85)}+`,
    `${h}.${c}.${s.slice(0, 84)}`,
    'x'.repeat(9000),
    forge('{"alg":"EdDSA","kid":"k","kid":"k2"}', JSON.stringify(claims())),
    forge('{"alg":"EdDSA","kid":""}', JSON.stringify(claims())),
    forge('{"alg":"EdDSA","kid":1}', JSON.stringify(claims())),
    forge('{"alg":"EdDSA","kid":"k","typ":"at+jwt"}', JSON.stringify(claims())),
    forge('["EdDSA"]', JSON.stringify(claims())),
    forge('{"alg":"EdDSA","kid":"k"}', '[1,2]'),
    forge('{"alg":"EdDSA","kid":"k"}', '{"iss":"a","iss":"b"}'),
    forge('{"alg":"EdDSA","kid":"k"}', '{"iat":12345678901234567890}'),
  ];
  for (const t of cases) assert.throws(() => parsePassport(t), reason('malformed_passport'), t.slice(0, 80));
});

test('a tampered passport fails signature verification', () => {
  const p = issuePassport({ signingKey: key, kid: 'k', issuer: 'i', subject: 's', audience: 'a', trustDomain: 't', now: T0 });
  const [h, c, s] = p.token.split('.') as [string, string, string];
  const evil = Buffer.from(c, 'base64url').toString().replace('"sub":"s"', '"sub":"admin"');
  const tampered = parsePassport(`${h}.${b64(evil)}.${s}`);
  assert.equal(verifyPassportSignature(tampered, backend.importPublicKey(key.publicKey)), false);
  assert.equal(verifyPassportSignature(parsePassport(p.token), backend.importPublicKey(seedKey(2).publicKey)), false);
});

test('time window: skew (default 30 s), expiry, not-yet-valid, maximum lifetime (default 900 s)', () => {
  const iat = T0 / 1000;
  const v = (over: Record<string, unknown>, nowMs: number, opts = {}) => validatePassportClaims(claims(over) as JsonObject, { nowMs, ...opts });
  assert.doesNotThrow(() => v({}, T0));
  assert.doesNotThrow(() => v({}, T0 - 30_000)); // iat 30 s ahead: within skew
  assert.throws(() => v({}, T0 - 31_000), reason('passport_not_yet_valid'));
  assert.doesNotThrow(() => v({}, T0 + 329_000)); // exp + 29 s
  assert.throws(() => v({}, T0 + 330_000), reason('passport_expired'));
  assert.throws(() => v({}, T0 + 305_000, { skewSeconds: 0 }), reason('passport_expired'));
  assert.throws(() => v({ exp: iat + 901 }, T0), reason('passport_lifetime_exceeded'));
  assert.doesNotThrow(() => v({ exp: iat + 900 }, T0));
  assert.throws(() => v({ exp: iat + 301 }, T0, { maxLifetimeSeconds: 300 }), reason('passport_lifetime_exceeded'));
  assert.throws(() => v({ exp: iat }, T0), reason('invalid_passport_claims'));
  assert.throws(() => v({ nbf: iat + 100 }, T0), reason('passport_not_yet_valid'));
});

test('claim types are strict', () => {
  const bad: Record<string, unknown>[] = [
    { iss: '' },
    { sub: 1 },
    { aud: [] },
    { aud: [1] },
    { aud: '' },
    { iat: '1740000000' },
    { iat: 1740000000.5 },
    { exp: true },
    { jti: '' },
    { trust_domain: null },
    { cnf: 'x' },
    { cnf: { kid: 'k', public_key_b64url: 'AAAA', key_binding: 'software' } },
    { cnf: { kid: 'k', public_key_b64url: key.publicKey.toString('base64url'), key_binding: 'Software' } },
    { cnf: { kid: 'k', public_key_b64url: key.publicKey.toString('base64url'), key_binding: 'root' } },
    { ctx: { a: 1 } },
    { provenance: { posture: 'x' } },
  ];
  for (const over of bad) {
    assert.throws(() => validatePassportClaims(claims(over) as JsonObject, { nowMs: T0 }), reason('invalid_passport_claims'), JSON.stringify(over));
  }
});
