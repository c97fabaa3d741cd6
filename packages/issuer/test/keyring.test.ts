import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { request } from 'undici';
import { ManualClock, encodeBase64url, formatPrivateKey, generatePrivateKey, parsePrivateKey } from '@trustplane/core';
import { IssuerKeyring, startIssuer } from '../src/index.js';

const T = 1_800_000_000_000;
const opts = (clock: ManualClock) => ({ clock, rotateEverySeconds: 86_400, prepublishSeconds: 3600, maxPassportLifetimeSeconds: 900, skewSeconds: 30 });

function tmp(t: { after(fn: () => void): void }): string {
  const d = mkdtempSync(path.join(tmpdir(), 'tp-issuer-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return path.join(d, 'keys');
}

test('a new key directory gets one active key: 0700 dir, 0600 files, the file holds the published key', (t) => {
  const dir = tmp(t);
  const k = IssuerKeyring.open(dir, opts(new ManualClock(T)));
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  const files = readdirSync(dir).sort();
  assert.equal(files.length, 2);
  for (const f of files) assert.equal(statSync(path.join(dir, f)).mode & 0o777, 0o600, f);
  const published = k.publishedKeys();
  assert.equal(published.length, 1);
  assert.equal(published[0]!.status, 'active');
  const { kid, privateKey } = k.signingKey();
  assert.equal(kid, published[0]!.kid);
  const onDisk = parsePrivateKey(readFileSync(path.join(dir, `${kid}.key`), 'utf8'));
  assert.equal(encodeBase64url(onDisk.publicKey), published[0]!.publicKeyB64url);
  assert.equal(encodeBase64url(privateKey.publicKey), published[0]!.publicKeyB64url);
  // Reopening reads the same key back.
  assert.equal(IssuerKeyring.open(dir, opts(new ManualClock(T))).signingKey().kid, kid);
});

test('rotation timeline: pre-published, then signing; the old key stays published for lifetime + skew, then disappears', (t) => {
  const dir = tmp(t);
  const clock = new ManualClock(T);
  const k = IssuerKeyring.open(dir, opts(clock));
  const first = k.signingKey().kid;
  // Not due yet: nothing happens.
  clock.advance((86_400 - 3600 - 1) * 1000);
  assert.equal(k.maintain().rotated, undefined);
  // Due: the next key is published an hour before it signs.
  clock.advance(1000);
  const next = k.maintain().rotated!;
  assert.notEqual(next, first);
  assert.deepEqual(k.publishedKeys().map((p) => [p.kid, p.status]), [[first, 'active'], [next, 'next']]);
  assert.equal(k.signingKey().kid, first, 'the current key still signs during pre-publication');
  assert.equal(k.maintain().rotated, undefined, 'a pending rotation is not repeated');
  // The switch.
  clock.advance(3600 * 1000);
  assert.equal(k.signingKey().kid, next);
  assert.deepEqual(k.publishedKeys().map((p) => [p.kid, p.status]), [[first, 'retiring'], [next, 'active']]);
  // Still published until lifetime + skew after it stopped signing…
  clock.advance((900 + 30 - 1) * 1000);
  assert.equal(k.maintain().removed.length, 0);
  assert.ok(k.publishedKeys().some((p) => p.kid === first));
  // …then gone from the JWKS and from disk.
  clock.advance(1000);
  assert.deepEqual(k.maintain().removed, [first]);
  assert.deepEqual(k.publishedKeys().map((p) => p.kid), [next]);
  assert.ok(!readdirSync(dir).includes(`${first}.key`));
  // The timeline survives a restart.
  assert.equal(IssuerKeyring.open(dir, opts(clock)).signingKey().kid, next);
});

test('the JWKS never carries private material; a tampered key file is refused at open', (t) => {
  const dir = tmp(t);
  const k = IssuerKeyring.open(dir, opts(new ManualClock(T)));
  k.rotate();
  const jwks = k.jwks();
  assert.equal(jwks.keys.length, 2);
  for (const key of jwks.keys) {
    assert.deepEqual(Object.keys(key).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x']);
    assert.equal(key.kty, 'OKP');
    assert.equal(key.crv, 'Ed25519');
  }
  const kid = k.signingKey().kid;
  writeFileSync(path.join(dir, `${kid}.key`), `${encodeBase64url(Buffer.alloc(64, 9))}\n`);
  assert.throws(() => IssuerKeyring.open(dir, opts(new ManualClock(T))), /invalid_private_key/);
  writeFileSync(path.join(dir, `${kid}.key`), `${formatPrivateKey(generatePrivateKey())}\n`);
  assert.throws(() => IssuerKeyring.open(dir, opts(new ManualClock(T))), /does not hold the public key/);
});

test('configuration limits: rotation must outlast pre-publication', (t) => {
  assert.throws(() => IssuerKeyring.open(tmp(t), { rotateEverySeconds: 60, prepublishSeconds: 60 }), /longer than prepublishSeconds/);
});

test('the issuer service: JWKS and discovery over HTTP, cache headers, 404/405, no private key anywhere', async (t) => {
  const dir = tmp(t);
  const k = IssuerKeyring.open(dir, opts(new ManualClock(T)));
  const svc = await startIssuer({ listen: { host: '127.0.0.1', port: 0 }, issuer: 'https://issuer.acme.example', keyring: k, maintainEveryMs: 0 });
  t.after(() => svc.close());
  const jwksRes = await request(`${svc.url}/.well-known/jwks.json`);
  assert.equal(jwksRes.statusCode, 200);
  assert.match(String(jwksRes.headers['cache-control']), /max-age=300/);
  const jwksText = await jwksRes.body.text();
  const jwks = JSON.parse(jwksText) as { keys: { kid: string; x: string }[] };
  assert.deepEqual(jwks.keys.map((x) => x.kid), [k.signingKey().kid]);
  assert.ok(!jwksText.includes(encodeBase64url(k.signingKey().privateKey.seed)), 'no private seed in the JWKS');
  const disc = (await (await request(`${svc.url}/.well-known/openid-configuration`)).body.json()) as Record<string, unknown>;
  assert.equal(disc['issuer'], 'https://issuer.acme.example');
  assert.equal(disc['jwks_uri'], 'https://issuer.acme.example/.well-known/jwks.json');
  assert.deepEqual(disc['id_token_signing_alg_values_supported'], ['EdDSA']);
  const missing = await request(`${svc.url}/keys`);
  assert.equal(missing.statusCode, 404);
  await missing.body.dump();
  const post = await request(`${svc.url}/.well-known/jwks.json`, { method: 'POST', body: '{}' });
  assert.equal(post.statusCode, 405);
  await post.body.dump();
});
