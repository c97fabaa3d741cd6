// The key directory and its rotation timeline, driven by an injected clock; several keyrings on
// one directory stand for the service and `trustplane issuer rotate` running side by side.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ManualClock, encodeBase64url, formatPrivateKey, generatePrivateKey, parsePrivateKey } from '@trustplane/core';
import { IssuerKeyring } from '../src/index.js';

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
  assert.equal(files.length, 2, 'one key file and keyring.json; no lock or temporary left');
  for (const f of files) assert.equal(statSync(path.join(dir, f)).mode & 0o777, 0o600, f);
  const published = k.publishedKeys();
  assert.equal(published.length, 1);
  assert.equal(published[0]!.status, 'active');
  const { kid, privateKey } = k.signingKey();
  assert.equal(k.createdKid, kid);
  assert.equal(kid, published[0]!.kid);
  assert.match(kid, /^issuer-20270115-[A-Za-z0-9_-]{8}$/);
  const onDisk = parsePrivateKey(readFileSync(path.join(dir, `${kid}.key`), 'utf8'));
  assert.equal(onDisk.seed.length, 32);
  assert.equal(readFileSync(path.join(dir, `${kid}.key`), 'utf8').trim().length, 86, 'base64url of 64 bytes (SPEC §3)');
  assert.equal(encodeBase64url(onDisk.publicKey), published[0]!.publicKeyB64url);
  assert.equal(encodeBase64url(privateKey.publicKey), published[0]!.publicKeyB64url);
  // The state file holds public data only.
  const state = readFileSync(path.join(dir, 'keyring.json'), 'utf8');
  assert.ok(!state.includes(encodeBase64url(privateKey.seed)));
  // Reopening reads the same key back and creates nothing.
  const again = IssuerKeyring.open(dir, opts(new ManualClock(T)));
  assert.equal(again.signingKey().kid, kid);
  assert.equal(again.createdKid, undefined);
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
  assert.equal(k.rotate().kid, next, 'rotate() during pre-publication returns the pending key');
  const firstEntry = k.timeline().find((e) => e.kid === first)!;
  const nextEntry = k.timeline().find((e) => e.kid === next)!;
  assert.equal(firstEntry.retires_at, nextEntry.activates_at);
  assert.equal(firstEntry.expires_at, nextEntry.activates_at + 930);
  // The switch, to the second.
  clock.advance(3600 * 1000 - 1);
  assert.equal(k.signingKey().kid, first);
  clock.advance(1);
  assert.equal(k.signingKey().kid, next);
  assert.deepEqual(k.publishedKeys().map((p) => [p.kid, p.status]), [[first, 'retiring'], [next, 'active']]);
  // Still published until lifetime + skew after it stopped signing…
  clock.advance((900 + 30 - 1) * 1000);
  assert.equal(k.maintain().removed.length, 0);
  assert.ok(k.publishedKeys().some((p) => p.kid === first));
  // …then gone from the JWKS (even before maintain runs) and, after maintain, from disk.
  clock.advance(1000);
  assert.deepEqual(k.jwks().keys.map((x) => x.kid), [next]);
  assert.deepEqual(k.maintain().removed, [first]);
  assert.deepEqual(k.publishedKeys().map((p) => p.kid), [next]);
  assert.ok(!readdirSync(dir).includes(`${first}.key`));
  // The next rotation comes rotate-every after the previous switch.
  clock.advance((86_400 - 3600 - 930) * 1000 - 1000);
  assert.equal(k.maintain().rotated, undefined);
  clock.advance(1000);
  assert.ok(k.maintain().rotated !== undefined);
  // The timeline survives a restart.
  assert.equal(IssuerKeyring.open(dir, opts(clock)).signingKey().kid, next);
});

test('the JWKS never carries private material; RFC 8037 members only', (t) => {
  const k = IssuerKeyring.open(tmp(t), opts(new ManualClock(T)));
  k.rotate();
  const jwks = k.jwks();
  assert.equal(jwks.keys.length, 2);
  for (const key of jwks.keys) {
    assert.deepEqual(Object.keys(key).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x']);
    assert.deepEqual([key.kty, key.crv, key.alg, key.use], ['OKP', 'Ed25519', 'EdDSA', 'sig']);
    assert.equal(Buffer.from(key.x, 'base64url').length, 32);
  }
});

test('a tampered key file or state file is refused at open, never silently replaced', (t) => {
  const dir = tmp(t);
  const k = IssuerKeyring.open(dir, opts(new ManualClock(T)));
  const kid = k.signingKey().kid;
  const keyFile = path.join(dir, `${kid}.key`);
  const good = readFileSync(keyFile, 'utf8');
  writeFileSync(keyFile, `${encodeBase64url(Buffer.alloc(64, 9))}\n`);
  assert.throws(() => IssuerKeyring.open(dir, opts(new ManualClock(T))), /invalid_private_key/);
  writeFileSync(keyFile, `${formatPrivateKey(generatePrivateKey())}\n`);
  assert.throws(() => IssuerKeyring.open(dir, opts(new ManualClock(T))), /does not hold the public key/);
  rmSync(keyFile);
  assert.throws(() => IssuerKeyring.open(dir, opts(new ManualClock(T))), /ENOENT/);
  writeFileSync(keyFile, good);

  const stateFile = path.join(dir, 'keyring.json');
  const state = readFileSync(stateFile, 'utf8');
  const entry = (JSON.parse(state) as { keys: Record<string, unknown>[] }).keys[0]!;
  const cases: [string, string, RegExp][] = [
    ['not JSON', '{', /not valid JSON/],
    ['duplicate member', '{"keys":[],"keys":[]}', /not valid JSON/],
    ['no keys array', '{"keys":{}}', /expected/],
    ['path in kid', JSON.stringify({ keys: [{ ...entry, kid: '../../etc/x' }] }), /kid: must match/],
    ['duplicate kid', JSON.stringify({ keys: [entry, entry] }), /duplicate kid/],
    ['non-integer time', JSON.stringify({ keys: [{ ...entry, activates_at: 1.5 }] }), /activates_at/],
    ['expires without retires', JSON.stringify({ keys: [{ ...entry, expires_at: 2e9 }] }), /expires_at needs a retires_at/],
    ['retires before activates', JSON.stringify({ keys: [{ ...entry, retires_at: 1 }] }), /retires_at is before/],
  ];
  for (const [what, text, re] of cases) {
    writeFileSync(stateFile, text);
    assert.throws(() => IssuerKeyring.open(dir, opts(new ManualClock(T))), re, what);
  }
  writeFileSync(stateFile, state);
  assert.equal(IssuerKeyring.open(dir, opts(new ManualClock(T))).signingKey().kid, kid);
});

test('two processes on one directory: a rotation by one is seen by the other, and never overwritten', (t) => {
  const dir = tmp(t);
  const clock = new ManualClock(T);
  const service = IssuerKeyring.open(dir, opts(clock));
  const first = service.signingKey().kid;
  assert.deepEqual(service.publishedKeys().map((p) => p.kid), [first]);
  // `trustplane issuer rotate` in another process.
  clock.advance(1000);
  const next = IssuerKeyring.open(dir, opts(clock)).rotate();
  assert.deepEqual(service.publishedKeys().map((p) => [p.kid, p.status]), [[first, 'active'], [next.kid, 'next']], 'the service reads the new timeline');
  // The service's own step works from the timeline on disk: no second key, nothing lost.
  clock.advance(5000 * 1000);
  const r = service.maintain();
  assert.equal(service.signingKey().kid, next.kid);
  assert.equal(r.rotated, undefined, 'the rotation is not repeated');
  const third = IssuerKeyring.open(dir, opts(clock));
  assert.deepEqual(third.timeline().map((e) => e.kid), service.timeline().map((e) => e.kid));
  // A state file that turns unreadable: readers keep the last good timeline, writers refuse.
  const stateFile = path.join(dir, 'keyring.json');
  const good = readFileSync(stateFile, 'utf8');
  writeFileSync(stateFile, 'garbage');
  assert.equal(service.signingKey().kid, next.kid);
  assert.throws(() => service.rotate(), /not valid JSON/);
  writeFileSync(stateFile, good);
});

test('crash leftovers: an unnamed key file and temporaries are removed; a stale lock is taken over; other files are kept', (t) => {
  const dir = tmp(t);
  const clock = new ManualClock(T);
  const k = IssuerKeyring.open(dir, opts(clock));
  const orphan = `issuer-20270115-${encodeBase64url(generatePrivateKey().publicKey).slice(0, 8)}.key`;
  writeFileSync(path.join(dir, orphan), `${formatPrivateKey(generatePrivateKey())}\n`, { mode: 0o600 });
  writeFileSync(path.join(dir, '.keyring.json.0123456789abcdef.tmp'), '{');
  writeFileSync(path.join(dir, 'operator-notes.key'), 'not ours');
  // A lock left by a crashed process (older than 30 s).
  const lock = path.join(dir, 'keyring.lock');
  writeFileSync(lock, '12345\n');
  const old = new Date(Date.now() - 60_000);
  utimesSync(lock, old, old);
  k.maintain();
  const files = readdirSync(dir).sort();
  assert.deepEqual(files, [`${k.signingKey().kid}.key`, 'keyring.json', 'operator-notes.key'].sort());
});

test('configuration limits', (t) => {
  assert.throws(() => IssuerKeyring.open(tmp(t), { rotateEverySeconds: 60, prepublishSeconds: 60 }), /longer than prepublishSeconds/);
  assert.throws(() => IssuerKeyring.open(tmp(t), { rotateEverySeconds: 0 }), /rotateEverySeconds/);
  assert.throws(() => IssuerKeyring.open(tmp(t), { maxPassportLifetimeSeconds: 1.5 }), /maxPassportLifetimeSeconds/);
  assert.throws(() => IssuerKeyring.open(tmp(t), { skewSeconds: -1 }), /skewSeconds/);
  assert.equal(IssuerKeyring.open(tmp(t), { maxPassportLifetimeSeconds: 600, skewSeconds: 10 }).retentionSeconds, 610);
});
