import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { MemoryReplayStore, ReplayStoreError, replayKey } from '../src/index.js';

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
  assert.equal(replayKey('i', 'x'.repeat(300)).length, 16);
});

test('replay keys are the first 16 bytes of SHA-256 over "<len(issuer)>:<issuer>\\n<jti>" (stable: Redis keeps them across upgrades)', () => {
  for (const [iss, jti] of [['https://issuer.example', 'jti-tDajGQGCoQEB5AhwPgxaeA'], ['i', ''], ['é', 'ü\u{1f600}']] as const) {
    const want = createHash('sha256').update(`${iss.length}:${iss}\n${jti}`, 'utf8').digest().subarray(0, 16);
    assert.deepEqual(Buffer.from(replayKey(iss, jti), 'latin1'), want);
  }
  // Computed independently: python3 hashlib.sha256(b'22:https://issuer.example\njti-tDajGQGCoQEB5AhwPgxaeA').digest()[:16]
  assert.equal(Buffer.from(replayKey('https://issuer.example', 'jti-tDajGQGCoQEB5AhwPgxaeA'), 'latin1').toString('hex'), '5fbd675186945c54fd046085137ecbc5');
});
