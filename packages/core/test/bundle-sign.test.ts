import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { verify as nodeVerify, createPublicKey } from 'node:crypto';
import {
  FormatError,
  canonicalizeJson,
  documentSigningInput,
  parseJsonStrict,
  signDocument,
  verifyDocumentSignature,
  UNSIGNED_SIGNATURE,
  UNSIGNED_SIGNED_BY,
  type JsonObject,
} from '../src/index.js';
import { readVector, policyBundle } from './helpers.js';
import { BUNDLE_KID, ROTATED_KID, bundleSigner, publicOf, rotatedSigner, strangerSigner, trustedKeys } from './bundle-helpers.js';

const OPTS = { kid: BUNDLE_KID, signerIssuer: 'https://ops.example/bundles' };

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof FormatError) return err.code;
    throw err;
  }
  return 'ok';
}

function asJson(doc: unknown): JsonObject {
  return parseJsonStrict(JSON.stringify(doc)) as JsonObject;
}

test('sign: Ed25519 over the JCS of the document without signature, signed_by included (SPEC §9.4)', () => {
  const bundle = policyBundle();
  const before = JSON.stringify(bundle);
  const signed = signDocument(bundle, bundleSigner, { ...OPTS, signedAt: '2025-02-19T21:00:00Z' });
  assert.equal(JSON.stringify(bundle), before, 'the input is not modified');
  assert.deepEqual(signed.signed_by, { issuer: 'https://ops.example/bundles', kid: BUNDLE_KID, alg: 'EdDSA', signed_at: '2025-02-19T21:00:00Z' });
  assert.equal(signed.signature.format, 'ed25519-jcs-v1');
  assert.match(signed.signature.value, /^[A-Za-z0-9_-]{86}$/);
  // Independently: node:crypto over the canonical text of everything but `signature`.
  const { signature, ...rest } = signed;
  const input = Buffer.from(canonicalizeJson(rest), 'utf8');
  assert.deepEqual(documentSigningInput(signed), input);
  const spki = createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), bundleSigner.publicKey]), format: 'der', type: 'spki' });
  assert.ok(nodeVerify(null, input, spki, Buffer.from(signature.value, 'base64url')));
  assert.deepEqual(verifyDocumentSignature(asJson(signed), trustedKeys()), { kid: BUNDLE_KID, issuer: 'https://ops.example/bundles', signedAt: '2025-02-19T21:00:00Z' });
  // Member order and whitespace of the file do not matter; the canonical form does.
  const reordered = Object.fromEntries(Object.entries(asJson(signed)).reverse());
  assert.equal(code(() => verifyDocumentSignature(reordered, trustedKeys())), 'ok');
  // Re-signing replaces the old signature.
  const again = signDocument(signed, rotatedSigner, { kid: ROTATED_KID, signerIssuer: 'x' });
  assert.equal(code(() => verifyDocumentSignature(asJson(again), trustedKeys())), 'ok');
});

test('verify: unsigned skeletons, missing signatures and alg none are unsigned_bundle', () => {
  const fixture = (readVector('v1/bundle-v1.source-rules.json')['policy_bundle'] as JsonObject);
  assert.equal(code(() => verifyDocumentSignature(fixture, trustedKeys())), 'unsigned_bundle');
  const b = asJson(policyBundle());
  assert.equal(code(() => verifyDocumentSignature(b, trustedKeys())), 'unsigned_bundle');
  assert.equal(code(() => verifyDocumentSignature({ ...b, signed_by: { ...UNSIGNED_SIGNED_BY }, signature: { ...UNSIGNED_SIGNATURE } }, trustedKeys())), 'unsigned_bundle');
  const signed = asJson(signDocument(policyBundle(), bundleSigner, OPTS));
  assert.equal(code(() => verifyDocumentSignature({ ...signed, signed_by: { issuer: 'x', kid: BUNDLE_KID, alg: 'none' } }, trustedKeys())), 'unsigned_bundle');
  const { signed_by: _drop, ...noSigner } = signed;
  assert.equal(code(() => verifyDocumentSignature(noSigner, trustedKeys())), 'unsigned_bundle');
});

test('verify: unknown formats and algorithms are unsupported_signature_format', () => {
  const signed = asJson(signDocument(policyBundle(), bundleSigner, OPTS));
  const sig = signed['signature'] as JsonObject;
  assert.equal(code(() => verifyDocumentSignature({ ...signed, signature: { ...sig, format: 'rsa-jcs-v1' } }, trustedKeys())), 'unsupported_signature_format');
  assert.equal(code(() => verifyDocumentSignature({ ...signed, signed_by: { issuer: 'x', kid: BUNDLE_KID, alg: 'ES256' } }, trustedKeys())), 'unsupported_signature_format');
  assert.equal(code(() => verifyDocumentSignature({ ...signed, signature: 'abc' }, trustedKeys())), 'unsupported_signature_format');
});

test('verify: a kid outside the configured signing keys is unknown_signing_key; rotation trusts several', () => {
  const byStranger = asJson(signDocument(policyBundle(), strangerSigner, { kid: 'stranger', signerIssuer: 'x' }));
  assert.equal(code(() => verifyDocumentSignature(byStranger, trustedKeys())), 'unknown_signing_key');
  const byOld = asJson(signDocument(policyBundle(), bundleSigner, OPTS));
  const byNew = asJson(signDocument(policyBundle(), rotatedSigner, { kid: ROTATED_KID, signerIssuer: 'x' }));
  assert.equal(code(() => verifyDocumentSignature(byOld, trustedKeys())), 'ok');
  assert.equal(code(() => verifyDocumentSignature(byNew, trustedKeys())), 'ok');
  // After the old key is retired from the configuration, its documents stop loading.
  assert.equal(code(() => verifyDocumentSignature(byOld, new Map([[ROTATED_KID, publicOf(rotatedSigner)]]))), 'unknown_signing_key');
});

test('verify: a tampered byte, a wrong key or a mangled value is invalid_bundle_signature', () => {
  const signed = signDocument(policyBundle(), bundleSigner, OPTS);
  const text = JSON.stringify(signed, null, 2);
  // Flip one byte of content (a route id) in the file text.
  const tampered = parseJsonStrict(text.replace('orders.search', 'orders.searcH')) as JsonObject;
  assert.equal(code(() => verifyDocumentSignature(tampered, trustedKeys())), 'invalid_bundle_signature');
  // signed_by is covered too.
  const relabelled = parseJsonStrict(text.replace('https://ops.example/bundles', 'https://evil.example')) as JsonObject;
  assert.equal(code(() => verifyDocumentSignature(relabelled, trustedKeys())), 'invalid_bundle_signature');
  // The right kid, the wrong key.
  assert.equal(code(() => verifyDocumentSignature(asJson(signed), new Map([[BUNDLE_KID, publicOf(strangerSigner)]]))), 'invalid_bundle_signature');
  // A member added as the first of the document, named `__proto__` (an own member of the
  // parsed JSON): a plain-object copy would drop it from the signed bytes.
  for (const added of ['"__proto__":1,', '"__proto__":{"x":1},', '"__proto__":null,']) {
    const withProto = parseJsonStrict(text.replace('{', `{${added}`)) as JsonObject;
    assert.ok(Object.keys(withProto).includes('__proto__'), added);
    assert.equal(code(() => verifyDocumentSignature(withProto, trustedKeys())), 'invalid_bundle_signature', added);
  }
  for (const value of ['', 'AAAA', `${signed.signature.value}A`, signed.signature.value.replace(/.$/, '=')]) {
    assert.equal(code(() => verifyDocumentSignature({ ...asJson(signed), signature: { format: 'ed25519-jcs-v1', value } }, trustedKeys())), 'invalid_bundle_signature', value);
  }
});

test('sign: the reserved unsigned kid and empty names are programmer errors', () => {
  assert.throws(() => signDocument(policyBundle(), bundleSigner, { kid: 'unsigned-skeleton', signerIssuer: 'x' }), TypeError);
  assert.throws(() => signDocument(policyBundle(), bundleSigner, { kid: '', signerIssuer: 'x' }), TypeError);
});
