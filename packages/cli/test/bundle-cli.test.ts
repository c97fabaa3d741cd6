import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { encodeBase64url, privateKeyFromSeed } from '@trustplane/core';
import { isOneErrorLine, run, runBin, tempDir } from './helpers.js';
import { SIGNER_KID, signArgs, signingPublicKey, workspace, wrongKey, type Workspace } from './bundle-helpers.js';

const clientPub = encodeBase64url(privateKeyFromSeed(Buffer.alloc(32, 50)).publicKey);

async function ok(...args: string[]) {
  const r = await run(...args);
  assert.equal(r.code, 0, `${args.join(' ')}\n${r.stderr}`);
  return r;
}

async function refused(code: number, pattern: RegExp, ...args: string[]) {
  const r = await run(...args);
  assert.equal(r.code, code, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
  assert.ok(isOneErrorLine(r.stderr), r.stderr);
  assert.match(r.stderr, pattern);
  return r;
}

/** build + sign: a signed pair in `w` (trust.json, policy.json). */
async function signedPair(w: Workspace): Promise<void> {
  await ok('bundle', 'build', '--config', w.config, '--out', w.f('policy.unsigned.json'), '--out-trust-material', w.f('trust.unsigned.json'));
  await ok(...signArgs(w, '--trust-material', w.f('trust.unsigned.json'), w.f('trust.json')));
  await ok(...signArgs(w, '--policy-bundle', w.f('policy.unsigned.json'), w.f('policy.json')));
}

function mergeArgs(w: Workspace, extra: string[] = [], from = ['trust.json', 'policy.json'], to = ['trust.2.json', 'policy.2.json']): string[] {
  return [
    'bundle', 'merge-source',
    '--trust-material', w.f(from[0]!), '--policy-bundle', w.f(from[1]!),
    '--out-trust-material', w.f(to[0]!), '--out-policy-bundle', w.f(to[1]!),
    '--issuer', 'https://issuer.example/billing', '--trust-domain', 'example.local',
    '--kid', 'billing-key-1', '--public-key', clientPub, '--route-id', 'orders.search',
    '--required-key-binding', 'software', ...extra,
  ];
}

test('bundle --help: every verb documents its flags', async () => {
  const expected: Record<string, string[]> = {
    build: ['--config <file>', '--out <file>', '--out-trust-material <file>', '--json'],
    sign: ['--trust-material <file>', '--policy-bundle <file>', '--out <file>', '--private-key <file>', '--kid <kid>', '--signer-issuer <issuer>'],
    verify: ['--trust-material <file>', '--policy-bundle <file>', '--public-key <b64url>', '--kid <kid>', '--dev-allow-unsigned-bundles', '--json'],
    'merge-source': ['--trust-material', '--policy-bundle', '--out-trust-material', '--out-policy-bundle', '--issuer', '--trust-domain', '--kid', '--public-key', '--route-id', '--subject-exact', '--subject-prefix', '--required-key-binding', '--source-type', '--replace-existing'],
    'remove-source': ['--kid <kid>', '--confirm-remove', '--revoke', '--reason', '--out-trust-material', '--out-policy-bundle'],
    inspect: ['<file>', '--public-key', '--json'],
  };
  for (const [verb, flags] of Object.entries(expected)) {
    const r = await run('bundle', verb, '--help');
    assert.equal(r.code, 0, verb);
    assert.match(r.stdout, new RegExp(`^Usage: trustplane bundle ${verb} `), verb);
    for (const flag of flags) assert.ok(r.stdout.includes(flag), `bundle ${verb} --help lacks ${flag}`);
  }
  const top = await runBin(['bundle', '--help']);
  assert.equal(top.code, 0);
  for (const verb of Object.keys(expected)) assert.match(top.stdout, new RegExp(`^  ${verb} `, 'm'));
});

test('bundle build: deterministic unsigned skeletons, mode 0644, nothing left behind; refusals', async (t) => {
  const w = workspace(tempDir(t));
  await ok('bundle', 'build', '--config', w.config, '--out', w.f('p1.json'), '--out-trust-material', w.f('t1.json'));
  await ok('bundle', 'build', '--config', w.config, '--out', w.f('p2.json'), '--out-trust-material', w.f('t2.json'));
  assert.equal(readFileSync(w.f('p1.json'), 'utf8'), readFileSync(w.f('p2.json'), 'utf8'));
  assert.equal(readFileSync(w.f('t1.json'), 'utf8'), readFileSync(w.f('t2.json'), 'utf8'));
  assert.equal(statSync(w.f('p1.json')).mode & 0o777, 0o644);
  const p = JSON.parse(readFileSync(w.f('p1.json'), 'utf8')) as Record<string, unknown>;
  assert.deepEqual(p['signed_by'], { issuer: 'local://trustplane.bundle.build', kid: 'unsigned-skeleton', alg: 'none' });
  assert.deepEqual(p['signature'], { format: 'unsigned-skeleton', value: 'local-build-placeholder-not-a-production-signature' });
  assert.ok(!readdirSync(w.dir).some((n) => n.endsWith('.tmp')));
  // Building over an existing output replaces it atomically.
  await ok('bundle', 'build', '--config', w.config, '--out', w.f('p1.json'), '--out-trust-material', w.f('t1.json'));
  assert.equal(readFileSync(w.f('p1.json'), 'utf8'), readFileSync(w.f('p2.json'), 'utf8'));

  await refused(2, /declares issuers: pass --out-trust-material/, 'bundle', 'build', '--config', w.config, '--out', w.f('p3.json'));
  await refused(2, /--out ".*bundle\.config\.json" is the same file as --config/, 'bundle', 'build', '--config', w.config, '--out', w.config);
  const bad = JSON.parse(readFileSync(w.config, 'utf8')) as { route_groups: { routes: Record<string, unknown>[] }[] };
  bad.route_groups[0]!.routes[0]!['method'] = 'get';
  writeFileSync(w.f('bad.json'), JSON.stringify(bad));
  await refused(1, /^trustplane: invalid_bundle: .*bad\.json: \/route_groups\/0\/routes\/0\/method: must be an upper-case HTTP method/, 'bundle', 'build', '--config', w.f('bad.json'), '--out', w.f('p4.json'), '--out-trust-material', w.f('t4.json'));
  writeFileSync(w.f('dup.json'), '{"version":"a","version":"b"}');
  await refused(1, /invalid_json: .*dup\.json: \(root\): invalid JSON: duplicate key "version"/, 'bundle', 'build', '--config', w.f('dup.json'), '--out', w.f('p5.json'));
  assert.ok(!readdirSync(w.dir).some((n) => n.startsWith('p4') || n.startsWith('t4') || n.startsWith('p5')), 'a refused build writes nothing');
});

test('bundle build: a jwks_file is read relative to the configuration', async (t) => {
  const w = workspace(tempDir(t));
  const cfg = JSON.parse(readFileSync(w.config, 'utf8')) as { issuers: Record<string, unknown>[] };
  cfg.issuers.push({ issuer: 'https://idp.example', source_type: 'oidc_jwks', jwks_file: 'idp.jwks.json' });
  writeFileSync(w.config, JSON.stringify(cfg));
  writeFileSync(w.f('idp.jwks.json'), JSON.stringify({ keys: [{ kty: 'OKP', crv: 'Ed25519', kid: 'idp-1', x: clientPub }] }));
  const r = await ok('bundle', 'build', '--config', w.config, '--out', w.f('p.json'), '--out-trust-material', w.f('t.json'), '--json');
  assert.equal((JSON.parse(r.stdout) as { keys: number }).keys, 2);
  const tm = JSON.parse(readFileSync(w.f('t.json'), 'utf8')) as { issuers: { issuer: string; keys: { kid: string }[] }[] };
  assert.deepEqual(tm.issuers[1], { issuer: 'https://idp.example', trust_domain: 'example.local', source_type: 'oidc_jwks', keys: [{ kid: 'idp-1', alg: 'EdDSA', public_key_b64url: clientPub }] });
});

test('bundle sign + verify: signatures verify; unsigned, tampered, wrong-key and unknown-kid documents are refused', async (t) => {
  const w = workspace(tempDir(t));
  await signedPair(w);
  const before = readFileSync(w.f('policy.unsigned.json'), 'utf8');
  const good = await ok('bundle', 'verify', '--trust-material', w.f('trust.json'), '--policy-bundle', w.f('policy.json'), '--public-key', signingPublicKey, '--json');
  const report = JSON.parse(good.stdout) as { valid: boolean; documents: { signature: string; signer: { kid: string } }[]; pair: { policy_version: number; routes: number } };
  assert.equal(report.valid, true);
  assert.deepEqual(report.documents.map((d) => [d.signature, d.signer.kid]), [['valid', SIGNER_KID], ['valid', SIGNER_KID]]);
  assert.deepEqual(report.pair, { policy_id: 'acme-orders', policy_version: 1, routes: 2, keys: 1 });
  assert.equal(readFileSync(w.f('policy.unsigned.json'), 'utf8'), before, 'sign never modifies its input');
  assert.equal(statSync(w.f('policy.json')).mode & 0o777, 0o644);

  // Unsigned without the development flag: refused; with it: accepted, loudly.
  await refused(1, /^trustplane: unsigned_bundle: .*policy\.unsigned\.json: \/signature: the document is an unsigned skeleton/, 'bundle', 'verify', '--policy-bundle', w.f('policy.unsigned.json'), '--public-key', signingPublicKey);
  const dev = await run('bundle', 'verify', '--trust-material', w.f('trust.unsigned.json'), '--policy-bundle', w.f('policy.unsigned.json'), '--dev-allow-unsigned-bundles');
  assert.equal(dev.code, 0, dev.stderr);
  assert.match(dev.stdout, /NOT VERIFIED \(unsigned_bundle/);
  assert.match(dev.stderr, /WARNING: --dev-allow-unsigned-bundles: .* never use this in production/);
  // One tampered byte.
  writeFileSync(w.f('tampered.json'), readFileSync(w.f('policy.json'), 'utf8').replace('"/v1/orders/search"', '"/v1/orders/searcH"'));
  await refused(1, /^trustplane: invalid_bundle_signature: .*tampered\.json: \/signature: the signature does not verify/, 'bundle', 'verify', '--policy-bundle', w.f('tampered.json'), '--public-key', signingPublicKey);
  // The wrong key.
  await refused(1, /invalid_bundle_signature/, 'bundle', 'verify', '--policy-bundle', w.f('policy.json'), '--public-key', encodeBase64url(wrongKey.publicKey));
  // Rotation: several keys may be given; one verifies.
  await ok('bundle', 'verify', '--policy-bundle', w.f('policy.json'), '--public-key', encodeBase64url(wrongKey.publicKey), '--public-key', signingPublicKey);
  // An unknown signing kid.
  await refused(1, /^trustplane: unknown_signing_key: /, 'bundle', 'verify', '--policy-bundle', w.f('policy.json'), '--public-key', signingPublicKey, '--kid', 'bundle-signer-9');
  // An unknown format.
  writeFileSync(w.f('format.json'), readFileSync(w.f('policy.json'), 'utf8').replace('"ed25519-jcs-v1"', '"ed448-jcs-v1"'));
  await refused(1, /^trustplane: unsupported_signature_format: /, 'bundle', 'verify', '--policy-bundle', w.f('format.json'), '--public-key', signingPublicKey);
  // A pair that does not belong together.
  const cfg = JSON.parse(readFileSync(w.config, 'utf8')) as { issuers: { keys: { kid: string }[] }[] };
  cfg.issuers[0]!.keys[0]!.kid = 'client-key-9';
  writeFileSync(w.f('cfg2.json'), JSON.stringify(cfg));
  await ok('bundle', 'build', '--config', w.f('cfg2.json'), '--out', w.f('p9.json'), '--out-trust-material', w.f('t9.json'));
  await ok(...signArgs(w, '--trust-material', w.f('t9.json'), w.f('t9.signed.json')));
  await refused(1, /^trustplane: bundle_pair_mismatch: .*policy\.json: \/trust_material_sha256: /, 'bundle', 'verify', '--trust-material', w.f('t9.signed.json'), '--policy-bundle', w.f('policy.json'), '--public-key', signingPublicKey);

  // Usage: exactly one document for sign; a key (or the dev flag) for verify; never over an input.
  await refused(2, /one of --trust-material and --policy-bundle, not both/, ...signArgs(w, '--trust-material', w.f('trust.unsigned.json'), w.f('x.json')), '--policy-bundle', w.f('policy.unsigned.json'));
  await refused(2, /--public-key <b64url> is required/, 'bundle', 'verify', '--policy-bundle', w.f('policy.json'));
  await refused(2, /is the same file as --policy-bundle/, ...signArgs(w, '--policy-bundle', w.f('policy.json'), w.f('policy.json')));
  await refused(1, /^trustplane: invalid_bundle: .*x\.json: \(root\): must be a JSON object/, ...signArgs(w, '--policy-bundle', (writeFileSync(w.f('x.json'), '[]'), w.f('x.json')), w.f('y.json')));
});

test('bundle merge-source: non-destructive append, refusals, --replace-existing', async (t) => {
  const w = workspace(tempDir(t));
  await signedPair(w);
  const inputs = [readFileSync(w.f('trust.json'), 'utf8'), readFileSync(w.f('policy.json'), 'utf8')];
  const r = await ok(...mergeArgs(w, ['--subject-exact', 'service:billing', '--json']));
  const out = JSON.parse(r.stdout) as { policy_version: number; changes: string[]; signed: boolean };
  assert.equal(out.policy_version, 2);
  assert.equal(out.signed, false);
  assert.deepEqual([readFileSync(w.f('trust.json'), 'utf8'), readFileSync(w.f('policy.json'), 'utf8')], inputs, 'inputs are not modified');
  const p = JSON.parse(readFileSync(w.f('policy.2.json'), 'utf8')) as { route_groups: { routes: { allowed_sources: unknown[] }[] }[]; signature: { format: string } };
  assert.equal(p.route_groups[0]!.routes[0]!.allowed_sources.length, 2);
  assert.equal(p.signature.format, 'unsigned-skeleton');
  // The result signs and verifies as a pair.
  await ok(...signArgs(w, '--trust-material', w.f('trust.2.json'), w.f('trust.2.signed.json')));
  await ok(...signArgs(w, '--policy-bundle', w.f('policy.2.json'), w.f('policy.2.signed.json')));
  await ok('bundle', 'verify', '--trust-material', w.f('trust.2.signed.json'), '--policy-bundle', w.f('policy.2.signed.json'), '--public-key', signingPublicKey);

  // Duplicates.
  const again = ['trust.2.json', 'policy.2.json'];
  await refused(1, /^trustplane: duplicate_kid: kid "billing-key-1" already exists .*--replace-existing/, ...mergeArgs(w, ['--subject-exact', 'service:billing'], again, ['t3.json', 'p3.json']));
  await refused(1, /^trustplane: duplicate_source: route orders\.search already has a source rule/, ...mergeArgs(w, ['--subject-exact', 'service:billing', '--kid', 'billing-key-2'], again, ['t3.json', 'p3.json']));
  const replaced = await ok(...mergeArgs(w, ['--subject-exact', 'service:billing', '--replace-existing'], again, ['t3.json', 'p3.json']));
  assert.match(replaced.stdout, /replaced key billing-key-1/);
  // Usage errors: both selectors, neither, a bad class, an input as output.
  await refused(2, /cannot be used with option '--subject-prefix/, ...mergeArgs(w, ['--subject-exact', 'a', '--subject-prefix', 'b']));
  await refused(2, /give --subject-exact SUBJECT or --subject-prefix PREFIX/, ...mergeArgs(w));
  await refused(2, /--required-key-binding/, ...mergeArgs(w, ['--subject-exact', 'a', '--required-key-binding', 'root']));
  await refused(2, /is the same file as --trust-material/, ...mergeArgs(w, ['--subject-exact', 'a'], ['trust.json', 'policy.json'], ['trust.json', 'p4.json']));
  await refused(1, /^trustplane: route_not_found: /, ...mergeArgs(w, ['--subject-exact', 'a', '--route-id', 'orders.delete']));
  await refused(1, /^trustplane: invalid_public_key: /, ...mergeArgs(w, ['--subject-exact', 'a', '--public-key', 'AAAA']));
  // A pair is written whole or not at all: the policy bundle's directory is missing, so the
  // trust material beside the old policy bundle is left as it was, with no temporary file.
  const before = readFileSync(w.f('t3.json'), 'utf8');
  await refused(1, /^trustplane: cannot write .*t3\.json.* and .*nowhere.*ENOENT/, ...mergeArgs(w, ['--subject-exact', 'service:other', '--kid', 'other-key-1'], again, ['t3.json', 'nowhere/p3.json']));
  assert.equal(readFileSync(w.f('t3.json'), 'utf8'), before);
  assert.deepEqual(readdirSync(w.f('.')).filter((n) => n.endsWith('.tmp')), []);
});

test('bundle remove-source: refuses without --confirm-remove; removes and revokes with it', async (t) => {
  const w = workspace(tempDir(t));
  await signedPair(w);
  await ok(...mergeArgs(w, ['--subject-exact', 'service:billing']));
  const removeArgs = ['bundle', 'remove-source', '--trust-material', w.f('trust.2.json'), '--policy-bundle', w.f('policy.2.json'), '--out-trust-material', w.f('trust.3.json'), '--out-policy-bundle', w.f('policy.3.json'), '--kid', 'billing-key-1'];
  const r = await refused(2, /^trustplane: refusing to remove kid "billing-key-1" and its source rules without --confirm-remove\n$/, ...removeArgs, '--revoke');
  assert.equal(r.stdout, '');
  assert.ok(!readdirSync(w.dir).includes('trust.3.json'), 'nothing written');
  await refused(1, /^trustplane: source_not_found: kid "nope"/, ...removeArgs.slice(0, -1), 'nope', '--confirm-remove');
  const done = await ok(...removeArgs, '--confirm-remove', '--revoke', '--reason', 'contract ended');
  assert.match(done.stdout, /revoked kid billing-key-1 and subject service:billing/);
  const p = JSON.parse(readFileSync(w.f('policy.3.json'), 'utf8')) as { policy_version: number; revocations: Record<string, string>[]; route_groups: { routes: { allowed_sources: unknown[] }[] }[] };
  assert.equal(p.policy_version, 3);
  assert.equal(p.route_groups[0]!.routes[0]!.allowed_sources.length, 1);
  assert.equal(p.revocations.length, 1);
  assert.deepEqual(Object.keys(p.revocations[0]!), ['kid', 'issuer', 'subject', 'reason', 'revoked_at']);
  assert.equal(p.revocations[0]!['reason'], 'contract ended');
  const tm = JSON.parse(readFileSync(w.f('trust.3.json'), 'utf8')) as { issuers: unknown[] };
  assert.equal(tm.issuers.length, 1);
});

test('bundle inspect: version, signer, routes, sources, freshness and age; --json', async (t) => {
  const w = workspace(tempDir(t));
  await signedPair(w);
  const r = await ok('bundle', 'inspect', w.f('policy.json'), '--public-key', signingPublicKey);
  for (const re of [
    /^type: +policy bundle \(trustplane-bundle-v1\)$/m,
    /^policy: +acme-orders version 1$/m,
    new RegExp(`^signer: +kid ${SIGNER_KID}, issuer https://ops\\.example/bundles, EdDSA \\(ed25519-jcs-v1\\)$`, 'm'),
    /^signed at: +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(-?\d+ s ago\)$/m,
    /^signature: +valid with the given --public-key$/m,
    /^routes: +2$/m,
    /^ {2}orders\.search {2}GET \/v1\/orders\/search {2}min software {2}bounded, bundle at most 300 s since last confirmed {2}1 source\(s\)$/m,
    /^ {2}orders\.get .* realtime, /m,
    /^ {4}software_jwks {2}https:\/\/issuer\.example\/software-jwks {2}example\.local {2}subject = service:orders-client$/m,
    /^file: +.*policy\.json \(\d+ bytes, modified .*, -?\d+ s ago\)$/m,
  ]) {
    assert.match(r.stdout, re);
  }
  const unsigned = await ok('bundle', 'inspect', w.f('policy.unsigned.json'));
  assert.match(unsigned.stdout, /^signature: +UNSIGNED skeleton/m);
  const j = JSON.parse((await ok('bundle', 'inspect', w.f('trust.json'), '--json')).stdout) as { type: string; issuers: { keys: { kid: string; fingerprint: string }[] }[]; signer: { kid: string }; signature: { status: string } };
  assert.equal(j.type, 'trust_material');
  assert.equal(j.signer.kid, SIGNER_KID);
  assert.equal(j.signature.status, 'not_checked');
  assert.match(j.issuers[0]!.keys[0]!.fingerprint, /^sha256:[0-9a-f]{64}$/);
  writeFileSync(w.f('other.json'), '{"version":"something-else"}');
  await refused(1, /other\.json: \/version: must be/, 'bundle', 'inspect', w.f('other.json'));
});
