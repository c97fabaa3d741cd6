import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { writeFileSync, mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { BUNDLE_ERROR_CODES, BundleFormatError, FormatError, formatProblem, loadBundlePair, documentContentSha256, type LoadBundlePairOptions } from '../src/index.js';
import { ROTATED_KID, pairTexts, rotatedSigner, strangerSigner, tempDir, trustedKeys, writePair } from './bundle-helpers.js';

function opts(files: { trustFile: string; bundleFile: string }, extra: Partial<LoadBundlePairOptions> = {}): LoadBundlePairOptions {
  return { trustMaterialFile: files.trustFile, policyBundleFile: files.bundleFile, trustMaterialKeys: trustedKeys(), policyBundleKeys: trustedKeys(), ...extra };
}

function refusal(fn: () => unknown): { code: string; lines: string[] } {
  try {
    fn();
  } catch (err) {
    if (err instanceof BundleFormatError) return { code: err.code, lines: err.problems.map(formatProblem) };
    if (err instanceof FormatError) return { code: err.code, lines: [err.message] };
    throw err;
  }
  return { code: 'ok', lines: [] };
}

test('loadBundlePair: a signed, pinned pair loads and compiles', (t) => {
  const files = writePair(tempDir(t), pairTexts({ version: 4 }));
  const pair = loadBundlePair(opts(files));
  assert.equal(pair.policyId, 'acme-orders');
  assert.equal(pair.policyVersion, 4);
  assert.equal(pair.policy.routesById.size, 3);
  assert.deepEqual(pair.trustSignature, { status: 'valid', kid: 'bundle-signer-1', issuer: 'https://ops.example/bundles', signedAt: '2025-02-19T21:00:00Z' });
  assert.equal(pair.bundle['trust_material_sha256'], documentContentSha256(pair.trust));
  assert.match(pair.contentSha256, /^[0-9a-f]{64}$/);
  // Signed with the rotated key: also trusted.
  const rotated = writePair(tempDir(t), pairTexts({ signer: rotatedSigner, kid: ROTATED_KID }));
  assert.equal(loadBundlePair(opts(rotated)).bundleSignature.status, 'valid');
});

test('loadBundlePair: unsigned pairs are refused unless allowUnsigned (the dev flag)', (t) => {
  const files = writePair(tempDir(t), pairTexts({ unsigned: true }));
  const r = refusal(() => loadBundlePair(opts(files)));
  assert.equal(r.code, 'unsigned_bundle');
  assert.deepEqual(r.lines, [`${files.trustFile}: /signature: the document has no signature`]);
  const dev = loadBundlePair(opts(files, { allowUnsigned: true }));
  assert.equal(dev.trustSignature.status, 'not_verified');
  assert.equal(dev.policyVersion, 1);
  // Without keys and without the flag, the configuration itself is wrong.
  assert.throws(() => loadBundlePair(opts(files, { trustMaterialKeys: new Map() })), TypeError);
});

test('loadBundlePair: a tampered byte, a wrong key, an unknown kid, an unknown format are refused', (t) => {
  const dir = tempDir(t);
  const good = pairTexts();
  const cases: [string, { trust: string; bundle: string }, string][] = [
    ['tampered', { trust: good.trust, bundle: good.bundle.replace('"/v1/orders/search"', '"/v1/orders/searcH"') }, 'invalid_bundle_signature'],
    ['tampered-trust', { trust: good.trust.replace('example.local', 'example.locaL'), bundle: good.bundle }, 'invalid_bundle_signature'],
    ['wrong-key', pairTexts({ signer: strangerSigner }), 'invalid_bundle_signature'],
    ['unknown-kid', pairTexts({ signer: strangerSigner, kid: 'stranger-1' }), 'unknown_signing_key'],
    ['format', { trust: good.trust, bundle: good.bundle.replace('"ed25519-jcs-v1"', '"ed448-jcs-v1"') }, 'unsupported_signature_format'],
  ];
  for (const [name, texts, code] of cases) {
    const sub = path.join(dir, name);
    mkdirSync(sub);
    assert.equal(refusal(() => loadBundlePair(opts(writePair(sub, texts)))).code, code, name);
    // The dev flag accepts them all (the pin still holds for untampered content).
    if (name !== 'tampered-trust') assert.doesNotThrow(() => loadBundlePair(opts(writePair(sub, texts), { allowUnsigned: true })), name);
  }
});

test('loadBundlePair: truncated, oversized, duplicate-key, missing and mismatched files are refused precisely', (t) => {
  const dir = tempDir(t);
  const good = pairTexts();
  const files = writePair(dir, good);
  writeFileSync(files.bundleFile, good.bundle.slice(0, 200));
  const truncated = refusal(() => loadBundlePair(opts(files)));
  assert.equal(truncated.code, 'invalid_json');
  assert.match(truncated.lines[0]!, new RegExp(`^${files.bundleFile}: \\(root\\): invalid JSON: .* at offset \\d+$`));
  // Bad UTF-8 is invalid_json too: every code the loader throws is one BUNDLE_ERROR_CODES lists.
  writeFileSync(files.bundleFile, Buffer.concat([Buffer.from(good.bundle.slice(0, 40)), Buffer.from([0xc3, 0x28]), Buffer.from(good.bundle.slice(40))]));
  const badUtf8 = refusal(() => loadBundlePair(opts(files)));
  assert.equal(badUtf8.code, 'invalid_json');
  assert.ok(Object.prototype.hasOwnProperty.call(BUNDLE_ERROR_CODES, badUtf8.code));
  assert.match(badUtf8.lines[0]!, new RegExp(`^${files.bundleFile}: \\(root\\): invalid JSON: .*not valid UTF-8$`));
  writeFileSync(files.bundleFile, good.bundle);
  assert.equal(refusal(() => loadBundlePair(opts(files, { maxBytes: 1000 }))).code, 'too_large');
  writeFileSync(files.trustFile, good.trust.replace('{', '{"version":"x",'));
  assert.match(refusal(() => loadBundlePair(opts(files))).lines[0]!, /invalid JSON: duplicate key "version"/);
  writeFileSync(files.trustFile, '[1]');
  // Not an object: refused at the signature step (nothing to verify).
  assert.equal(refusal(() => loadBundlePair(opts(files))).code, 'invalid_bundle');
  const missing = refusal(() => loadBundlePair(opts({ trustFile: path.join(dir, 'nope.json'), bundleFile: files.bundleFile })));
  assert.equal(missing.code, 'read_failed');
  assert.match(missing.lines[0]!, /nope\.json: \(root\): cannot read: ENOENT/);
  // A bundle pinned to other trust material (a half-updated pair) is refused.
  const other = pairTexts({ mutateTrust: (tm) => tm.issuers.pop() });
  writeFileSync(files.trustFile, other.trust);
  const mismatch = refusal(() => loadBundlePair(opts(files)));
  assert.equal(mismatch.code, 'bundle_pair_mismatch');
  assert.match(mismatch.lines[0]!, /policy-bundle\.json: \/trust_material_sha256: the bundle was built for trust material/);
  // A schema error in a correctly signed document is still refused, with its pointer.
  const invalid = pairTexts({ mutateBundle: (b) => ((b.route_groups[0]!.routes[0]! as unknown as Record<string, unknown>)['freshnes_class'] = 'realtime') });
  const r = refusal(() => loadBundlePair(opts(writePair(dir, invalid))));
  assert.equal(r.code, 'invalid_bundle');
  assert.deepEqual(r.lines, [`${files.bundleFile}: /route_groups/0/routes/0/freshnes_class: is not allowed here (unknown property)`]);
});
