// The key directory and its rotation timeline, driven by an injected clock; several keyrings on
// one directory stand for the service and `trustplane issuer rotate` running side by side.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
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
  const again = k.rotate();
  assert.equal(again.kid, next, 'rotate() during pre-publication returns the pending key');
  assert.equal(again.alreadyPublished, true, 'and says it was already published');
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
  assert.equal(k.rotate().alreadyPublished, false, 'a fresh rotation creates the next key');
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
  writeFileSync(keyFile, good, { mode: 0o600 });

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
    ['settings not an object', JSON.stringify({ settings: 1, keys: [entry] }), /settings: must be an object/],
    ['a setting missing', JSON.stringify({ settings: { rotate_every_seconds: 86_400, prepublish_seconds: 3600, skew_seconds: 30 }, keys: [entry] }), /settings: max_passport_lifetime_seconds must be an integer/],
    ['rotation not longer than pre-publication', JSON.stringify({ settings: { rotate_every_seconds: 60, prepublish_seconds: 60, max_passport_lifetime_seconds: 900, skew_seconds: 30 }, keys: [entry] }), /rotate_every_seconds must be longer than prepublish_seconds/],
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

test('crash leftovers: a key file written after the timeline and temporaries are removed; a stale lock is taken over; other files are kept', (t) => {
  const dir = tmp(t);
  const clock = new ManualClock(T);
  const k = IssuerKeyring.open(dir, opts(clock));
  const orphan = `issuer-20270115-${encodeBase64url(generatePrivateKey().publicKey).slice(0, 8)}.key`;
  writeFileSync(path.join(dir, orphan), `${formatPrivateKey(generatePrivateKey())}\n`, { mode: 0o600 });
  // Written after keyring.json last changed, as a crash between the key and the timeline leaves it
  // (set explicitly: both writes may fall within one tick of the file system's clock).
  const later = new Date(Date.now() + 10_000);
  utimesSync(path.join(dir, orphan), later, later);
  writeFileSync(path.join(dir, '.keyring.json.0123456789abcdef.tmp'), '{');
  writeFileSync(path.join(dir, 'operator-notes.key'), 'not ours');
  // A lock left by a crashed process (older than 30 s).
  const lock = path.join(dir, 'keyring.lock');
  writeFileSync(lock, '12345\n');
  const old = new Date(Date.now() - 60_000);
  utimesSync(lock, old, old);
  assert.deepEqual(k.maintain().kept, []);
  const files = readdirSync(dir).sort();
  assert.deepEqual(files, [`${k.signingKey().kid}.key`, 'keyring.json', 'operator-notes.key'].sort());
  assert.ok(!existsSync(lock), 'the taken-over lock is gone, and so is this process\'s own');
});

test('configuration limits', (t) => {
  assert.throws(() => IssuerKeyring.open(tmp(t), { rotateEverySeconds: 60, prepublishSeconds: 60 }), /longer than prepublishSeconds/);
  assert.throws(() => IssuerKeyring.open(tmp(t), { rotateEverySeconds: 0 }), /rotateEverySeconds/);
  assert.throws(() => IssuerKeyring.open(tmp(t), { maxPassportLifetimeSeconds: 1.5 }), /maxPassportLifetimeSeconds/);
  assert.throws(() => IssuerKeyring.open(tmp(t), { skewSeconds: -1 }), /skewSeconds/);
  assert.equal(IssuerKeyring.open(tmp(t), { maxPassportLifetimeSeconds: 600, skewSeconds: 10 }).retentionSeconds, 610);
});

test('keys without keyring.json are refused, never given a new first key, and never deleted', (t) => {
  const dir = tmp(t);
  const clock = new ManualClock(T);
  const k = IssuerKeyring.open(dir, opts(clock));
  const first = k.signingKey().kid;
  const next = k.rotate().kid;
  rmSync(path.join(dir, 'keyring.json')); // deleted, or lost
  const keyFiles = [`${first}.key`, `${next}.key`].sort();
  for (const create of [true, false]) {
    assert.throws(
      () => IssuerKeyring.open(dir, { ...opts(clock), create }),
      (err: Error) => err.message === `${dir} holds ${keyFiles.join(', ')} but no keyring.json: refusing to create a new key beside them; restore keyring.json from a backup of this directory (or use an empty directory for a new issuer)`,
    );
  }
  // The service that had it open refuses to change anything either.
  assert.throws(() => k.maintain(), /keyring\.json disappeared/);
  assert.deepEqual(readdirSync(dir).sort(), keyFiles, 'nothing created, nothing deleted');
  // Anything else that is not ours is refused the same way; our own leftovers are not.
  const other = tmp(t);
  mkdirSync(other, { mode: 0o700 });
  writeFileSync(path.join(other, 'notes.txt'), 'x');
  assert.throws(() => IssuerKeyring.open(other, opts(clock)), /holds notes\.txt but no keyring\.json/);
  rmSync(path.join(other, 'notes.txt'));
  writeFileSync(path.join(other, '.keyring.json.0123456789abcdef.tmp'), '{');
  assert.ok(IssuerKeyring.open(other, opts(clock)).createdKid !== undefined, 'an empty directory (but for a staging temporary) gets its first key');
});

test('an unnamed key file that may have been published is kept and reported, never deleted', (t) => {
  const dir = tmp(t);
  const clock = new ManualClock(T);
  const k = IssuerKeyring.open(dir, opts(clock));
  const stateFile = path.join(dir, 'keyring.json');
  const before = readFileSync(stateFile, 'utf8');
  const next = k.rotate().kid; // published from now on
  const nextFile = path.join(dir, `${next}.key`);
  const earlier = new Date(Date.now() - 60_000);
  utimesSync(nextFile, earlier, earlier);
  // keyring.json restored from a backup taken before the rotation: it does not name `next`.
  writeFileSync(stateFile, before);
  const r = k.maintain();
  assert.ok(existsSync(nextFile), 'the published key is kept');
  assert.deepEqual(r.kept, [`${next}.key`], 'and reported');
});

test('create: false never creates a directory or a first key', (t) => {
  const missing = tmp(t);
  const noKeys = (dir: string) => (err: Error) => err.message === `${dir}: no issuer keys; start \`trustplane issuer serve\` to create the first`;
  assert.throws(() => IssuerKeyring.open(missing, { create: false }), noKeys(missing));
  assert.ok(!existsSync(missing), 'a mistyped directory is not created');
  mkdirSync(missing, { mode: 0o700 });
  assert.throws(() => IssuerKeyring.open(missing, { create: false }), noKeys(missing));
  assert.deepEqual(readdirSync(missing), [], 'an empty directory stays empty');
  writeFileSync(path.join(missing, 'keyring.json'), '{"keys":[]}\n');
  assert.throws(() => IssuerKeyring.open(missing, { create: false }), noKeys(missing));
  const k = IssuerKeyring.open(missing, opts(new ManualClock(T)));
  assert.equal(IssuerKeyring.open(missing, { clock: new ManualClock(T), create: false }).signingKey().kid, k.signingKey().kid);
});

test('settings: the service records its own; create: false uses the recorded ones, and refuses different ones', (t) => {
  const dir = tmp(t);
  const clock = new ManualClock(T);
  const service = IssuerKeyring.open(dir, { ...opts(clock), maxPassportLifetimeSeconds: 3600 });
  const stateFile = path.join(dir, 'keyring.json');
  const recorded = (JSON.parse(readFileSync(stateFile, 'utf8')) as { settings: unknown }).settings;
  assert.deepEqual(recorded, { rotate_every_seconds: 86_400, prepublish_seconds: 3600, max_passport_lifetime_seconds: 3600, skew_seconds: 30 });
  // `trustplane issuer rotate` gives no settings: the service's retention applies, not the default 930 s.
  const oneShot = IssuerKeyring.open(dir, { clock, create: false });
  assert.equal(oneShot.retentionSeconds, 3630);
  const next = oneShot.rotate();
  const old = oneShot.timeline().find((e) => e.kid === service.signingKey().kid)!;
  assert.equal(old.retires_at, next.activates_at);
  assert.equal(old.expires_at, next.activates_at + 3630, 'unpublished only after the longest passport it signed has expired');
  assert.deepEqual((JSON.parse(readFileSync(stateFile, 'utf8')) as { settings: unknown }).settings, recorded, 'the one-shot kept the recorded settings');
  assert.throws(() => IssuerKeyring.open(dir, { clock, create: false, maxPassportLifetimeSeconds: 900 }), /records maxPassportLifetimeSeconds 3600 \(the service's setting\); refusing 900/);
  assert.equal(IssuerKeyring.open(dir, { clock, create: false, maxPassportLifetimeSeconds: 3600 }).retentionSeconds, 3630);
  // A service started with other settings records them, and says which it replaced.
  const restarted = IssuerKeyring.open(dir, { ...opts(clock), maxPassportLifetimeSeconds: 600 });
  assert.equal(restarted.replacedSettings?.maxPassportLifetimeSeconds, 3600);
  assert.equal(IssuerKeyring.open(dir, { clock, create: false }).retentionSeconds, 630);
  assert.equal(IssuerKeyring.open(dir, opts(clock)).replacedSettings?.maxPassportLifetimeSeconds, 600);
  assert.equal(IssuerKeyring.open(dir, opts(clock)).replacedSettings, undefined, 'unchanged settings are not rewritten');
});

test('a keyring.json from before settings were recorded still loads; only the service records them', (t) => {
  const dir = tmp(t);
  const clock = new ManualClock(T);
  const k = IssuerKeyring.open(dir, opts(clock));
  const stateFile = path.join(dir, 'keyring.json');
  const { keys } = JSON.parse(readFileSync(stateFile, 'utf8')) as { keys: unknown[] };
  writeFileSync(stateFile, `${JSON.stringify({ keys }, null, 2)}\n`);
  const oneShot = IssuerKeyring.open(dir, { clock, create: false });
  assert.deepEqual(oneShot.jwks().keys.map((x) => x.kid), [k.signingKey().kid]);
  assert.throws(() => oneShot.rotate(), /keyring\.json records no settings \(written by an older version\): start `trustplane issuer serve` once/);
  assert.equal(readFileSync(stateFile, 'utf8'), `${JSON.stringify({ keys }, null, 2)}\n`, 'nothing written');
  const service = IssuerKeyring.open(dir, opts(clock));
  assert.equal(service.replacedSettings, undefined);
  assert.ok('settings' in (JSON.parse(readFileSync(stateFile, 'utf8')) as object), 'the service recorded its settings');
  assert.equal(IssuerKeyring.open(dir, { clock, create: false }).rotate().alreadyPublished, false);
});

test('maintain({ wait: false }) never waits for a held lock: it reports busy and changes nothing', (t) => {
  const dir = tmp(t);
  const clock = new ManualClock(T);
  const k = IssuerKeyring.open(dir, opts(clock));
  clock.advance((86_400 - 3600) * 1000); // a rotation is due
  const lock = path.join(dir, 'keyring.lock');
  writeFileSync(lock, '4242 0123456789abcdef\n'); // another process's, fresh
  const started = Date.now();
  const r = k.maintain({ wait: false });
  assert.ok(Date.now() - started < 1000, 'did not wait');
  assert.deepEqual(r, { removed: [], kept: [], busy: true });
  assert.equal(k.timeline().length, 1, 'no rotation while another process holds the lock');
  assert.equal(readFileSync(lock, 'utf8'), '4242 0123456789abcdef\n', 'the other process\'s lock is untouched');
  rmSync(lock);
  const done = k.maintain({ wait: false });
  assert.equal(done.busy, undefined);
  assert.ok(done.rotated !== undefined);
});

test('a process removes only its own lock: one taken over meanwhile stays', (t) => {
  const dir = tmp(t);
  IssuerKeyring.open(dir, opts(new ManualClock(T)));
  const lock = path.join(dir, 'keyring.lock');
  let takeOver = false;
  // The clock is read while the lock is held: stand in for a process that took the lock over as
  // stale (this one held it past 30 s) and holds its own now.
  const clock = {
    now: () => {
      if (takeOver) {
        takeOver = false;
        rmSync(lock);
        writeFileSync(lock, '4242 0123456789abcdef\n');
      }
      return T;
    },
  };
  const k = IssuerKeyring.open(dir, { ...opts(new ManualClock(T)), clock });
  takeOver = true;
  k.rotate();
  assert.equal(takeOver, false, 'the clock was read under the lock');
  assert.equal(readFileSync(lock, 'utf8'), '4242 0123456789abcdef\n', 'the other process\'s lock was not removed');
});

test('modes: a key directory writable by group or others, or a key file open to them, is refused', (t) => {
  const dir = tmp(t);
  const clock = new ManualClock(T);
  const k = IssuerKeyring.open(dir, opts(clock));
  const keyFile = path.join(dir, `${k.signingKey().kid}.key`);
  chmodSync(dir, 0o777);
  assert.throws(() => IssuerKeyring.open(dir, opts(clock)), (err: Error) => err.message === `${dir} is writable by group or others (mode 0777): run chmod 700 ${dir}`);
  assert.throws(() => IssuerKeyring.open(dir, { clock, create: false }), /writable by group or others \(mode 0777\)/);
  assert.throws(() => k.maintain(), /writable by group or others \(mode 0777\)/, 'checked at every change, not only at open');
  chmodSync(dir, 0o750);
  assert.equal(IssuerKeyring.open(dir, opts(clock)).signingKey().kid, k.signingKey().kid, 'readable by group is fine: the key files are not');
  chmodSync(dir, 0o700);
  for (const mode of [0o644, 0o640, 0o604, 0o620]) {
    chmodSync(keyFile, mode);
    assert.throws(() => IssuerKeyring.open(dir, opts(clock)), (err: Error) => err.message === `${keyFile} is readable or writable by group or others (mode 0${mode.toString(8)}): run chmod 600 ${keyFile}`);
    assert.throws(() => k.rotate(), /readable or writable by group or others/);
  }
  chmodSync(keyFile, 0o400);
  assert.equal(IssuerKeyring.open(dir, opts(clock)).signingKey().kid, k.signingKey().kid);
});
