/**
 * X509-SVID validation against real certificates (testkit/spiffe.ts): one case per failure code,
 * the algorithms a trust domain CA may use, the strict DER splitter and SPIFFE ID syntax.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { FormatError } from '@trustplane/core';
import { concatDer, createTestCa, createTestSvid, KeyUsage, type TestCert } from '../src/spiffe/dev-agent.js';
import { parseSpiffeId, splitConcatenatedDer, validateX509Svid, type SvidStatus } from '../src/spiffe/index.js';

const TD = 'acme.example';
const ID = 'spiffe://acme.example/ns/prod/sa/orders';
const SEC = 1000;
// X.509 times have one-second precision: keep every fixture time on a whole second.
const T0 = Math.floor(Date.now() / SEC) * SEC;
const at = (ms: number): Date => new Date(T0 + ms);
const HOUR = 3600 * SEC;

const root = await createTestCa({ trustDomain: TD, notBefore: at(-24 * HOUR), notAfter: at(24 * HOUR) });
const leaf = await createTestSvid({ issuer: root, spiffeId: ID, notBefore: at(-60 * SEC), notAfter: at(HOUR) });

function der(c: TestCert): Uint8Array {
  return c.der;
}

async function check(chain: readonly TestCert[], bundle: readonly TestCert[] = [root], extra: { nowMs?: number; trustDomain?: string; selector?: { exact?: string; prefix?: string } } = {}): Promise<SvidStatus> {
  const { nowMs = T0, trustDomain = TD, selector } = extra;
  return validateX509Svid({ chain: chain.map(der), bundle: bundle.map(der), nowMs, trustDomain, ...(selector === undefined ? {} : { selector }) });
}

function assertFails(s: SvidStatus, code: string): void {
  assert.equal(s.ok, false, `expected ${code}, got ok`);
  if (!s.ok) assert.equal(s.code, code, s.detail);
}

async function leafWith(opts: Partial<Parameters<typeof createTestSvid>[0]>): Promise<TestCert> {
  return createTestSvid({ issuer: root, spiffeId: ID, notBefore: at(-60 * SEC), notAfter: at(HOUR), ...opts });
}

test('a valid X509-SVID: identity fields come from the leaf', async () => {
  const s = await check([leaf]);
  assert.ok(s.ok, s.ok ? '' : s.detail);
  assert.deepEqual(s.identity, {
    spiffeId: ID,
    trustDomain: TD,
    notBeforeMs: T0 - 60 * SEC,
    notAfterMs: T0 + HOUR,
    serialNumber: leaf.serialHex,
    fingerprintSha256: `sha256:${createHash('sha256').update(leaf.der).digest('hex')}`,
  });
});

test('a valid chain through an intermediate, and a chain that includes the bundle root', async () => {
  const inter = await createTestCa({ trustDomain: TD, issuer: root, notBefore: at(-HOUR), notAfter: at(2 * HOUR) });
  const l = await createTestSvid({ issuer: inter, spiffeId: ID, notBefore: at(-60 * SEC), notAfter: at(HOUR) });
  const s = await check([l, inter]);
  assert.ok(s.ok, s.ok ? '' : s.detail);
  assert.equal(s.identity.serialNumber, l.serialHex);
  const s2 = await check([l, inter, root]);
  assert.ok(s2.ok, s2.ok ? '' : s2.detail);
  // Without the intermediate in the chain the leaf does not chain to the bundle.
  assertFails(await check([l]), 'svid_chain_invalid');
});

test('CA keys: ECDSA P-384, Ed25519 and RSA roots verify; the right root among several is found', async () => {
  for (const alg of ['P-384', 'Ed25519', 'RSA'] as const) {
    const ca = await createTestCa({ trustDomain: TD, alg, notBefore: at(-HOUR), notAfter: at(HOUR) });
    const l = await createTestSvid({ issuer: ca, spiffeId: ID, notBefore: at(-60 * SEC), notAfter: at(HOUR) });
    const s = await check([l], [root, ca]);
    assert.ok(s.ok, `${alg}: ${s.ok ? '' : s.detail}`);
  }
});

test('wrong trust domain', async () => {
  const l = await leafWith({ spiffeId: 'spiffe://other.example/ns/prod/sa/orders' });
  assertFails(await check([l]), 'svid_trust_domain_mismatch');
  // The same SVID is fine for a source configured for its own trust domain (root is shared here).
  assert.ok((await check([l], [root], { trustDomain: 'other.example' })).ok);
});

test('selector: exact and prefix (whole path segments only)', async () => {
  assert.ok((await check([leaf], [root], { selector: { exact: ID } })).ok);
  assertFails(await check([leaf], [root], { selector: { exact: 'spiffe://acme.example/ns/prod/sa/billing' } }), 'svid_id_not_allowed');
  assert.ok((await check([leaf], [root], { selector: { prefix: 'spiffe://acme.example/ns/prod' } })).ok);
  assert.ok((await check([leaf], [root], { selector: { prefix: 'spiffe://acme.example/ns/prod/' } })).ok);
  assertFails(await check([leaf], [root], { selector: { prefix: 'spiffe://acme.example/ns/staging' } }), 'svid_id_not_allowed');
  assertFails(await check([leaf], [root], { selector: { prefix: 'spiffe://acme.example/ns/pro' } }), 'svid_id_not_allowed');
  await assert.rejects(check([leaf], [root], { selector: { exact: ID, prefix: 'spiffe://acme.example/ns' } }), TypeError);
  await assert.rejects(check([leaf], [root], { selector: { prefix: 'spiffe://other.example/ns' } }), TypeError);
  await assert.rejects(check([leaf], [root], { trustDomain: 'spiffe://acme.example' }), TypeError);
});

test('validity: expired and not-yet-valid leaf, boundaries inclusive', async () => {
  assertFails(await check([leaf], [root], { nowMs: T0 + HOUR + 1 }), 'svid_expired');
  assert.ok((await check([leaf], [root], { nowMs: T0 + HOUR })).ok);
  assertFails(await check([leaf], [root], { nowMs: T0 - 60 * SEC - 1 }), 'svid_not_yet_valid');
  assert.ok((await check([leaf], [root], { nowMs: T0 - 60 * SEC })).ok);
  const expired = await leafWith({ notBefore: at(-2 * HOUR), notAfter: at(-HOUR) });
  assertFails(await check([expired]), 'svid_expired');
  const future = await leafWith({ notBefore: at(HOUR), notAfter: at(2 * HOUR) });
  assertFails(await check([future]), 'svid_not_yet_valid');
});

test('validity: an expired intermediate or bundle root fails the SVID', async () => {
  const inter = await createTestCa({ trustDomain: TD, issuer: root, notBefore: at(-2 * HOUR), notAfter: at(-HOUR) });
  const l = await createTestSvid({ issuer: inter, spiffeId: ID, notBefore: at(-60 * SEC), notAfter: at(HOUR) });
  assertFails(await check([l, inter]), 'svid_expired');
  const oldRoot = await createTestCa({ trustDomain: TD, notBefore: at(-2 * HOUR), notAfter: at(-HOUR) });
  const l2 = await createTestSvid({ issuer: oldRoot, spiffeId: ID, notBefore: at(-60 * SEC), notAfter: at(HOUR) });
  assertFails(await check([l2], [oldRoot]), 'svid_expired');
});

test('a CA certificate is not a leaf: cA=true, keyCertSign, cRLSign', async () => {
  assertFails(await check([await leafWith({ ca: true })]), 'svid_not_leaf');
  assert.ok((await check([await leafWith({ ca: false })])).ok);
  assertFails(await check([await leafWith({ keyUsage: KeyUsage.digitalSignature | KeyUsage.keyCertSign })]), 'svid_not_leaf');
  assertFails(await check([await leafWith({ keyUsage: KeyUsage.digitalSignature | KeyUsage.cRLSign })]), 'svid_not_leaf');
});

test('key usage: digitalSignature required, and the extension must be present', async () => {
  assertFails(await check([await leafWith({ keyUsage: KeyUsage.keyEncipherment | KeyUsage.keyAgreement })]), 'svid_key_usage_invalid');
  assertFails(await check([await leafWith({ keyUsage: null })]), 'svid_key_usage_invalid');
  assert.ok((await check([await leafWith({ keyUsage: KeyUsage.digitalSignature })])).ok);
});

test('URI SANs: exactly one, and a valid SPIFFE ID with a path', async () => {
  assertFails(await check([await leafWith({ uris: [ID, 'spiffe://acme.example/ns/prod/sa/other'] })]), 'svid_spiffe_id_invalid');
  assertFails(await check([await leafWith({ uris: [], dnsNames: ['orders.prod.svc'] })]), 'svid_spiffe_id_invalid');
  assertFails(await check([await leafWith({ uris: [] })]), 'svid_spiffe_id_invalid');
  const bad = [
    'https://acme.example/ns/prod/sa/orders',
    'SPIFFE://acme.example/ns/prod',
    'spiffe://Acme.example/ns/prod',
    'spiffe://acme.example:8443/ns/prod',
    'spiffe://user@acme.example/ns/prod',
    'spiffe://acme.example/ns/prod?x=1',
    'spiffe://acme.example/ns/prod#frag',
    'spiffe://acme.example/ns//prod',
    'spiffe://acme.example/ns/prod/',
    'spiffe://acme.example/ns/../prod',
    'spiffe://acme.example/ns/./prod',
    'spiffe://acme.example/ns/pr%6Fd',
    'spiffe:///ns/prod',
    'spiffe://acme.example',
  ];
  for (const uri of bad) {
    assertFails(await check([await leafWith({ uris: [uri] })]), 'svid_spiffe_id_invalid');
  }
});

test('chain: a leaf signed by another CA than the bundle one fails, even under the same name', async () => {
  const impostor = await createTestCa({ trustDomain: TD, commonName: `${TD} root CA`, notBefore: at(-HOUR), notAfter: at(HOUR) });
  assert.equal(impostor.certificate.subject, root.certificate.subject);
  const forged = await createTestSvid({ issuer: impostor, spiffeId: ID, notBefore: at(-60 * SEC), notAfter: at(HOUR) });
  const s = await check([forged]);
  assertFails(s, 'svid_chain_invalid');
  assert.match(s.ok ? '' : s.detail, /signature does not verify/);
  const other = await createTestCa({ trustDomain: TD, commonName: 'someone else', notBefore: at(-HOUR), notAfter: at(HOUR) });
  assertFails(await check([await createTestSvid({ issuer: other, spiffeId: ID, notBefore: at(-60 * SEC), notAfter: at(HOUR) })]), 'svid_chain_invalid');
  // The impostor's own certificate in the chain does not help: it does not chain to the bundle.
  assertFails(await check([forged, impostor]), 'svid_chain_invalid');
});

test('chain: intermediates must be CAs with keyCertSign, within the root pathLenConstraint', async () => {
  const notCa = await createTestCa({ trustDomain: TD, issuer: root, ca: false, notBefore: at(-HOUR), notAfter: at(HOUR) });
  const n = await check([await createTestSvid({ issuer: notCa, spiffeId: ID, notBefore: at(-60 * SEC), notAfter: at(HOUR) }), notCa]);
  assertFails(n, 'svid_chain_invalid');
  assert.match(n.ok ? '' : n.detail, /intermediate 1 is not a CA/);
  const noCertSign = await createTestCa({ trustDomain: TD, issuer: root, keyUsage: KeyUsage.cRLSign, notBefore: at(-HOUR), notAfter: at(HOUR) });
  const k = await check([await createTestSvid({ issuer: noCertSign, spiffeId: ID, notBefore: at(-60 * SEC), notAfter: at(HOUR) }), noCertSign]);
  assertFails(k, 'svid_chain_invalid');
  assert.match(k.ok ? '' : k.detail, /lacks keyCertSign/);
  const root0 = await createTestCa({ trustDomain: TD, pathLength: 0, notBefore: at(-HOUR), notAfter: at(HOUR) });
  const inter = await createTestCa({ trustDomain: TD, issuer: root0, notBefore: at(-HOUR), notAfter: at(HOUR) });
  const s = await check([await createTestSvid({ issuer: inter, spiffeId: ID, notBefore: at(-60 * SEC), notAfter: at(HOUR) }), inter], [root0]);
  assertFails(s, 'svid_chain_invalid');
  assert.match(s.ok ? '' : s.detail, /pathLenConstraint 0/);
  assert.ok((await check([await createTestSvid({ issuer: root0, spiffeId: ID, notBefore: at(-60 * SEC), notAfter: at(HOUR) })], [root0])).ok);
  // A bundle entry that is not a CA is no trust anchor.
  const notCaRoot = await createTestCa({ trustDomain: TD, ca: false, notBefore: at(-HOUR), notAfter: at(HOUR) });
  assertFails(await check([await createTestSvid({ issuer: notCaRoot, spiffeId: ID, notBefore: at(-60 * SEC), notAfter: at(HOUR) })], [notCaRoot]), 'svid_chain_invalid');
});

test('malformed input: garbage, truncation, empty chain or bundle, too many certificates', async () => {
  const v = (chain: Uint8Array[], bundle: Uint8Array[] = [root.der]): Promise<SvidStatus> => validateX509Svid({ chain, bundle, nowMs: T0, trustDomain: TD });
  assertFails(await v([]), 'svid_malformed');
  assertFails(await v([leaf.der], []), 'svid_malformed');
  assertFails(await v([new Uint8Array([1, 2, 3])]), 'svid_malformed');
  assertFails(await v([leaf.der.subarray(0, leaf.der.length - 1)]), 'svid_malformed');
  assertFails(await v([Buffer.concat([leaf.der, Buffer.from([0])])]), 'svid_malformed');
  assertFails(await v([leaf.der], [new Uint8Array([0x30, 0x00])]), 'svid_malformed');
  assertFails(await v(Array.from({ length: 11 }, () => leaf.der)), 'svid_malformed');
  // A certificate whose inner signature algorithm differs from the outer one (RFC 5280 §4.1.1.2):
  // rewrite the outer ecdsa-with-SHA256 OID's last byte to ecdsa-with-SHA384.
  const tampered = Buffer.from(leaf.der);
  const oid = Buffer.from('06082a8648ce3d040302', 'hex');
  const last = tampered.lastIndexOf(oid);
  assert.ok(last > 0 && tampered.indexOf(oid) !== last);
  tampered[last + oid.length - 1] = 0x03;
  assertFails(await v([tampered]), 'svid_malformed');
});

test('tampering with any signed byte of the leaf is detected', async () => {
  // Flip a byte inside the leaf's SPIFFE ID: still parseable, but the signature no longer verifies.
  const i = Buffer.from(leaf.der).indexOf(Buffer.from('/sa/orders'));
  assert.ok(i > 0);
  const t = Buffer.from(leaf.der);
  t[i + 4] = 'O'.charCodeAt(0);
  const s = await validateX509Svid({ chain: [t], bundle: [root.der], nowMs: T0, trustDomain: TD });
  assertFails(s, 'svid_chain_invalid');
});

test('property: any bytes give a status, never an exception', async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 600 }), fc.nat({ max: leaf.der.length - 1 }), fc.integer({ min: 1, max: 255 }), async (junk, pos, x) => {
      const flipped = Buffer.from(leaf.der);
      flipped[pos] = (flipped[pos] as number) ^ x;
      for (const chain of [[junk], [flipped], [leaf.der, junk]]) {
        const s = await validateX509Svid({ chain, bundle: [root.der], nowMs: T0, trustDomain: TD });
        assert.equal(typeof s.ok, 'boolean');
      }
      const b = await validateX509Svid({ chain: [leaf.der], bundle: [junk], nowMs: T0, trustDomain: TD });
      assert.equal(b.ok, false);
    }),
    { numRuns: 50 },
  );
});

test('splitConcatenatedDer: strict SEQUENCE framing', () => {
  const parts = splitConcatenatedDer(concatDer([leaf, root]));
  assert.equal(parts.length, 2);
  assert.deepEqual(Buffer.from(parts[0] as Uint8Array), Buffer.from(leaf.der));
  assert.deepEqual(Buffer.from(parts[1] as Uint8Array), Buffer.from(root.der));
  assert.deepEqual(splitConcatenatedDer(new Uint8Array(0)), []);
  const bad = [
    [0x30, 0x80, 0x00, 0x00], // indefinite length
    [0x30, 0x81, 0x01, 0x00], // long form for a short length
    [0x30, 0x82, 0x00, 0x01, 0x00], // leading zero length octet
    [0x31, 0x00], // SET, not SEQUENCE
    [0x30, 0x02, 0x05], // length past the end
    [0x30, 0x00, 0x05], // trailing byte
    [0x30], // truncated header
    [0x30, 0x85, 1, 0, 0, 0, 0], // length of length too large
  ];
  for (const b of bad) {
    assert.throws(() => splitConcatenatedDer(new Uint8Array(b)), (e: unknown) => e instanceof FormatError && e.code === 'svid_malformed', `bytes ${b.join(',')}`);
  }
  assert.throws(() => splitConcatenatedDer(new Uint8Array(1024 * 1024 + 1)), FormatError);
});

test('parseSpiffeId follows the SPIFFE ID grammar', () => {
  assert.deepEqual(parseSpiffeId('spiffe://acme.example/ns/prod'), { id: 'spiffe://acme.example/ns/prod', trustDomain: 'acme.example', path: '/ns/prod' });
  assert.deepEqual(parseSpiffeId('spiffe://a_b-c.9'), { id: 'spiffe://a_b-c.9', trustDomain: 'a_b-c.9', path: '' });
  assert.equal(typeof parseSpiffeId('spiffe://acme.example/Upper_Case-1.2'), 'object');
  for (const s of ['', 'spiffe://', 'spiffe:acme.example/x', 'spiffe://acme example/x', 'spiffe://acme.example/x y', `spiffe://acme.example/${'a'.repeat(2048)}`]) {
    assert.equal(typeof parseSpiffeId(s), 'string', s);
  }
});
