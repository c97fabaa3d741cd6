import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { decodePassportUnverified, issuePassport } from '@trustplane/core';
import { IDENTITY, identityArgs, isOneErrorLine, otherPublicKey, run, tempDir, testKey, testPublicKey, writeKeyFile } from './helpers.js';

async function issueToken(keyFile: string, extra: string[] = []): Promise<string> {
  const r = await run('issue', ...identityArgs(keyFile, extra));
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

test('issue: prints the token alone (one line); --json gives token, jti, iat, exp, kid', async (t) => {
  const keyFile = writeKeyFile(tempDir(t));
  const human = await run('issue', ...identityArgs(keyFile));
  assert.equal(human.code, 0, human.stderr);
  assert.match(human.stdout, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{86}\n$/);
  const { header, payload } = decodePassportUnverified(human.stdout.trim());
  assert.match(header.kid, /^key-[0-9a-f]{16}$/);
  assert.equal(payload['iss'], IDENTITY.issuer);
  assert.equal(payload['exp'], (payload['iat'] as number) + 600);
  assert.deepEqual(payload['cnf'], { kid: testPublicKey, public_key_b64url: testPublicKey, key_binding: 'software' });

  const before = Math.floor(Date.now() / 1000);
  const json = await run('issue', ...identityArgs(keyFile, ['--kid', 'client-key-1', '--ttl', '120', '--json']));
  assert.equal(json.code, 0, json.stderr);
  const out = JSON.parse(json.stdout) as { token: string; jti: string; iat: number; exp: number; kid: string };
  assert.deepEqual(Object.keys(out).sort(), ['exp', 'iat', 'jti', 'kid', 'token']);
  assert.equal(out.kid, 'client-key-1');
  assert.equal(out.exp - out.iat, 120);
  assert.ok(out.iat >= before && out.iat <= before + 5);
  assert.equal(decodePassportUnverified(out.token).payload['jti'], out.jti);
  assert.equal(decodePassportUnverified(out.token).header.kid, 'client-key-1');
});

test('issue: --ttl must be a positive integer (usage error, exit 2); bad key files fail (exit 1)', async (t) => {
  const dir = tempDir(t);
  const keyFile = writeKeyFile(dir);
  for (const ttl of ['0', '-5', '1.5', 'abc', '']) {
    const r = await run('issue', ...identityArgs(keyFile, ['--ttl', ttl]));
    assert.equal(r.code, 2, `--ttl ${ttl}`);
    assert.ok(isOneErrorLine(r.stderr), r.stderr);
  }
  const blank = await run('issue', '--private-key', keyFile, '--issuer', ' ', '--subject', 's', '--audience', 'a', '--trust-domain', 't');
  assert.equal(blank.code, 2);

  const missing = await run('issue', ...identityArgs(`${dir}/nope.key`));
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^trustplane: cannot read --private-key .*ENOENT/);
  const bad = writeKeyFile(dir, testKey, 'bad.key');
  writeFileSync(bad, 'not a key!\n');
  const badKey = await run('issue', ...identityArgs(bad));
  assert.equal(badKey.code, 1);
  assert.ok(isOneErrorLine(badKey.stderr), badKey.stderr);
  assert.match(badKey.stderr, /invalid_private_key/);
});

test('issue: a --ttl past the default maximum lifetime is issued with one warning line; verifiers deny it unless configured for it', async (t) => {
  const keyFile = writeKeyFile(tempDir(t));
  const atMax = await run('issue', ...identityArgs(keyFile, ['--ttl', '900']));
  assert.equal(atMax.code, 0, atMax.stderr);
  assert.equal(atMax.stderr, '');

  const long = await run('issue', ...identityArgs(keyFile, ['--ttl', '3600']));
  assert.equal(long.code, 0, long.stderr);
  assert.equal(long.stderr, 'trustplane: warning: --ttl 3600 is longer than verifiers accept by default (900 s): one without a longer --max-lifetime denies this passport passport_lifetime_exceeded\n');
  const token = long.stdout.trim();
  const { payload } = decodePassportUnverified(token);
  assert.equal((payload['exp'] as number) - (payload['iat'] as number), 3600);
  await expectInvalid(['--token', token, '--public-key', testPublicKey], 'passport_lifetime_exceeded');
  const configured = await run('verify', '--token', token, '--public-key', testPublicKey, '--max-lifetime', '3600');
  assert.equal(configured.code, 0, configured.stderr);

  // `sign` shares the identity options and the warning; its request stays on stdout.
  const signed = await run('sign', ...identityArgs(keyFile, ['--ttl', '1000', '--method', 'GET', '--url', 'http://127.0.0.1:1/v1/x', '--route-id', 'r']));
  assert.equal(signed.code, 0, signed.stderr);
  assert.match(signed.stderr, /^trustplane: warning: --ttl 1000 is longer than verifiers accept by default \(900 s\)/);
  assert.notEqual(signed.stdout, '');
});

test('issue → verify round trip: exit 0 and the claims', async (t) => {
  const keyFile = writeKeyFile(tempDir(t));
  const token = await issueToken(keyFile);
  const r = await run('verify', '--token', token, '--public-key', testPublicKey, '--audience', IDENTITY.audience, '--issuer', IDENTITY.issuer, '--trust-domain', IDENTITY.trustDomain);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  const claims = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.equal(claims['iss'], IDENTITY.issuer);
  assert.equal(claims['sub'], IDENTITY.subject);
  assert.equal(claims['aud'], IDENTITY.audience);
  assert.equal(claims['trust_domain'], IDENTITY.trustDomain);
  assert.equal(claims['jti'], decodePassportUnverified(token).payload['jti']);

  const json = await run('verify', '--token', token, '--public-key', testPublicKey, '--json');
  assert.equal(json.code, 0, json.stderr);
  const out = JSON.parse(json.stdout) as { valid: boolean; kid: string; claims: Record<string, unknown> };
  assert.equal(out.valid, true);
  assert.equal(out.kid, decodePassportUnverified(token).header.kid);
  assert.deepEqual(out.claims, claims);
});

/** Run verify expecting an invalid result with `reason`, in human and JSON modes. */
async function expectInvalid(args: string[], reason: string): Promise<void> {
  const human = await run('verify', ...args);
  assert.equal(human.code, 1, `${reason}: ${human.stderr}`);
  assert.equal(human.stdout, '');
  assert.ok(isOneErrorLine(human.stderr), human.stderr);
  assert.ok(human.stderr.startsWith(`trustplane: invalid: ${reason}: `), human.stderr);

  const json = await run('verify', ...args, '--json');
  assert.equal(json.code, 1);
  const out = JSON.parse(json.stdout) as Record<string, unknown>;
  assert.deepEqual(Object.keys(out).sort(), ['detail', 'reason', 'valid']);
  assert.equal(out['valid'], false);
  assert.equal(out['reason'], reason);
  assert.equal(typeof out['detail'], 'string');
}

test('verify: wrong key → invalid_passport_signature (exit 1)', async (t) => {
  const token = await issueToken(writeKeyFile(tempDir(t)));
  await expectInvalid(['--token', token, '--public-key', otherPublicKey], 'invalid_passport_signature');
});

test('verify: expected audience, issuer and trust domain mismatches', async (t) => {
  const token = await issueToken(writeKeyFile(tempDir(t)));
  const base = ['--token', token, '--public-key', testPublicKey];
  await expectInvalid([...base, '--audience', 'billing-api'], 'audience_mismatch');
  await expectInvalid([...base, '--issuer', 'https://other.example'], 'issuer_key_mismatch');
  await expectInvalid([...base, '--trust-domain', 'other.local'], 'trust_domain_mismatch');
});

test('verify: expired, not yet valid and over-long passports', async () => {
  const common = { signingKey: testKey, kid: 'client-key-1', ...IDENTITY };
  const expired = issuePassport({ ...common, now: Date.now() - 3_600_000, ttlSeconds: 60 }).token;
  await expectInvalid(['--token', expired, '--public-key', testPublicKey], 'passport_expired');
  // Within a generous skew the same token is still accepted.
  const skewed = await run('verify', '--token', expired, '--public-key', testPublicKey, '--skew', '7200');
  assert.equal(skewed.code, 0, skewed.stderr);

  const future = issuePassport({ ...common, now: Date.now() + 3_600_000, ttlSeconds: 60 }).token;
  await expectInvalid(['--token', future, '--public-key', testPublicKey], 'passport_not_yet_valid');

  const long = issuePassport({ ...common, ttlSeconds: 600 }).token;
  await expectInvalid(['--token', long, '--public-key', testPublicKey, '--max-lifetime', '300'], 'passport_lifetime_exceeded');
});

test('verify: an invalid --public-key and a malformed token are failures with their codes', async (t) => {
  const token = await issueToken(writeKeyFile(tempDir(t)));
  await expectInvalid(['--token', token, '--public-key', 'not+base64url'], 'invalid_public_key');
  await expectInvalid(['--token', token, '--public-key', Buffer.alloc(16).toString('base64url')], 'invalid_public_key');
  await expectInvalid(['--token', 'abc.def', '--public-key', testPublicKey], 'malformed_passport');
  const [h, p] = token.split('.');
  await expectInvalid(['--token', `${h}.${p}.${'A'.repeat(86)}`, '--public-key', testPublicKey], 'invalid_passport_signature');
  const noneHeader = Buffer.from(JSON.stringify({ alg: 'none', kid: 'k' })).toString('base64url');
  await expectInvalid(['--token', `${noneHeader}.${p}.${'A'.repeat(86)}`, '--public-key', testPublicKey], 'unsupported_passport_algorithm');
});
