import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { MemoryReplayStore, REPLAY_KEY_LENGTH, ReplayStoreError, replayKey } from '../src/index.js';

test('memory store: consume once, replay while live, fresh again after expiry', () => {
  const s = new MemoryReplayStore();
  assert.equal(s.consume('k', 10_000, 1_000), 'fresh');
  assert.equal(s.consume('k', 10_000, 5_000), 'replay');
  assert.equal(s.consume('k', 10_000, 9_999), 'replay');
  assert.equal(s.consume('k', 20_000, 10_000), 'fresh');
});

test('memory store: expired entries are reclaimed', () => {
  const s = new MemoryReplayStore();
  for (let i = 0; i < 1000; i++) s.consume(`k${i}`, 5_000 + i, 1_000);
  assert.equal(s.size, 1000);
  s.consume('late', 100_000, 7_000); // sweeps everything that expired by 7 s
  assert.equal(s.size, 1);
});

test('memory store: at capacity it refuses new keys with replay_store_full and keeps live ones', () => {
  const s = new MemoryReplayStore({ maxEntries: 2 });
  s.consume('a', 10_000, 0);
  s.consume('b', 10_000, 0);
  assert.throws(() => s.consume('c', 10_000, 0), (e: unknown) => e instanceof ReplayStoreError && e.reason === 'replay_store_full');
  assert.equal(s.consume('a', 10_000, 1), 'replay');
  // Once entries expire there is room again.
  assert.equal(s.consume('c', 30_000, 11_000), 'fresh');
  assert.throws(() => new MemoryReplayStore({ maxEntries: 0 }), TypeError);
});

test('memory store: concurrent consumers of one key — exactly one wins', async () => {
  const s = new MemoryReplayStore();
  const results = await Promise.all(Array.from({ length: 50 }, () => Promise.resolve().then(() => s.consume('same', 10_000, 0))));
  assert.equal(results.filter((r) => r === 'fresh').length, 1);
});

test('replay keys are namespaced by issuer and fixed-size', () => {
  assert.notEqual(replayKey('a', 'j'), replayKey('b', 'j'));
  assert.notEqual(replayKey('a\nb', 'c'), replayKey('a', 'b\nc'));
  assert.equal(replayKey('i', 'x'.repeat(300)).length, REPLAY_KEY_LENGTH);
  assert.equal(REPLAY_KEY_LENGTH, 20);
});

test('replay keys start with the first 16 bytes of SHA-256 over "<len(issuer)>:<issuer>\\n<jti>" (stable: Redis keeps them across upgrades)', () => {
  for (const [iss, jti] of [['https://issuer.example', 'jti-tDajGQGCoQEB5AhwPgxaeA'], ['i', ''], ['é', 'ü\u{1f600}']] as const) {
    const want = createHash('sha256').update(`${iss.length}:${iss}\n${jti}`, 'utf8').digest().subarray(0, 16);
    assert.deepEqual(Buffer.from(replayKey(iss, jti), 'latin1').subarray(0, 16), want);
    // Then the issuer tag: the same for every jti of one issuer.
    assert.equal(replayKey(iss, jti).slice(16), replayKey(iss, `${jti}-other`).slice(16));
  }
  // Computed independently: python3 hashlib.sha256(b'22:https://issuer.example\njti-tDajGQGCoQEB5AhwPgxaeA').digest()[:16]
  assert.equal(Buffer.from(replayKey('https://issuer.example', 'jti-tDajGQGCoQEB5AhwPgxaeA'), 'latin1').subarray(0, 16).toString('hex'), '5fbd675186945c54fd046085137ecbc5');
});

const isFull = (e: unknown) => e instanceof ReplayStoreError && e.reason === 'replay_store_full';

test('memory store: one issuer holds at most its share (default half); another issuer is still served', () => {
  const s = new MemoryReplayStore({ maxEntries: 10 });
  assert.equal(s.maxEntriesPerIssuer, 5);
  const a = (j: string) => replayKey('https://a.example', j);
  const b = (j: string) => replayKey('https://b.example', j);
  for (let i = 0; i < 5; i++) assert.equal(s.consume(a(`j${i}`), 10_000, 0), 'fresh');
  // The flood of one issuer stops at its share…
  assert.throws(() => s.consume(a('j5'), 10_000, 0), isFull);
  assert.equal(s.consume(a('j0'), 10_000, 1), 'replay', 'a replay is still a replay when the share is full');
  // …and the other issuer gets the rest.
  for (let i = 0; i < 5; i++) assert.equal(s.consume(b(`j${i}`), 20_000, 0), 'fresh');
  assert.throws(() => s.consume(b('j5'), 20_000, 0), isFull);
  assert.equal(s.size, 10);
  // A's entries expire: its share is free again, B's is not.
  assert.equal(s.consume(a('j6'), 30_000, 11_000), 'fresh');
  assert.throws(() => s.consume(b('j6'), 30_000, 11_000), isFull);
  assert.equal(s.size, 6);
});

test('memory store: shares are counted right through expiries and re-consumes of expired keys', () => {
  const s = new MemoryReplayStore({ maxEntries: 8, issuerShare: 0.5 });
  const a = (j: string) => replayKey('https://a.example', j);
  let now = 0;
  // 40 rounds: fill A's share, let it expire, re-consume the same jtis (expired: fresh again).
  for (let round = 0; round < 40; round++) {
    for (let i = 0; i < 4; i++) assert.equal(s.consume(a(`j${i}`), now + 500, now), 'fresh', `round ${round} jti ${i}`);
    assert.throws(() => s.consume(a('extra'), now + 500, now), isFull);
    now += 1000;
  }
  // After the last expiry A may hold exactly its share again, no more, no less.
  for (let i = 0; i < 4; i++) assert.equal(s.consume(a(`k${i}`), now + 500, now), 'fresh');
  assert.throws(() => s.consume(a('k4'), now + 500, now), isFull);
});

test('memory store: issuerShare 1 lets one issuer fill the store; keys without an issuer tag count only against the total', () => {
  const whole = new MemoryReplayStore({ maxEntries: 4, issuerShare: 1 });
  for (let i = 0; i < 4; i++) assert.equal(whole.consume(replayKey('https://a.example', `j${i}`), 10_000, 0), 'fresh');
  assert.throws(() => whole.consume(replayKey('https://b.example', 'j'), 10_000, 0), isFull);
  const untagged = new MemoryReplayStore({ maxEntries: 4 });
  for (let i = 0; i < 4; i++) assert.equal(untagged.consume(`k${i}`, 10_000, 0), 'fresh');
  assert.throws(() => untagged.consume('k4', 10_000, 0), isFull);
  for (const bad of [0, -0.5, 1.01, Number.NaN]) assert.throws(() => new MemoryReplayStore({ issuerShare: bad }), TypeError);
  // Tiny stores: every issuer may hold at least one entry.
  assert.equal(new MemoryReplayStore({ maxEntries: 1 }).maxEntriesPerIssuer, 1);
});
