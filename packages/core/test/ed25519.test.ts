import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { getEd25519Backend, sodiumAvailable, privateKeyFromSeed, publicKeyProblem, FormatError, type Ed25519Backend } from '../src/index.js';
import { readVector } from './helpers.js';

interface WycheproofGroup {
  publicKey: { pk: string };
  tests: { tcId: number; msg: string; sig: string; result: 'valid' | 'invalid' | 'acceptable'; flags: string[]; comment: string }[];
}

const wycheproof = readVector('wycheproof/ed25519_test.json') as { numberOfTests: number; testGroups: WycheproofGroup[] };

function backends(): Ed25519Backend[] {
  const list = [getEd25519Backend('node')];
  if (sodiumAvailable()) list.push(getEd25519Backend('sodium'));
  else if (process.env['CI'] === 'true') throw new Error('sodium-native must be installed in CI');
  else console.warn('WARNING: sodium-native is not installed; only the node:crypto backend is tested');
  return list;
}

/** Verify through the project's own path: strict key import, then strict verify. */
function ownVerify(b: Ed25519Backend, pkHex: string, msgHex: string, sigHex: string): boolean {
  let key;
  try {
    key = b.importPublicKey(Buffer.from(pkHex, 'hex'));
  } catch (e) {
    assert.ok(e instanceof FormatError && e.code === 'invalid_public_key');
    return false;
  }
  return b.verify(key, Buffer.from(msgHex, 'hex'), Buffer.from(sigHex, 'hex'));
}

for (const b of backends()) {
  test(`Wycheproof ed25519_test.json through the ${b.name} backend: every vector gives the expected result`, () => {
    let count = 0;
    for (const group of wycheproof.testGroups) {
      for (const t of group.tests) {
        const got = ownVerify(b, group.publicKey.pk, t.msg, t.sig);
        assert.equal(got, t.result === 'valid', `tcId ${t.tcId} (${t.flags.join(',')}: ${t.comment})`);
        count++;
      }
    }
    assert.equal(count, wycheproof.numberOfTests);
  });
}

test('the identity-key forgery is refused at key import, by both backends', () => {
  // node:crypto alone accepts pk = 01 00…00 with sig = 01 00…00 ‖ 00…00 for ANY message.
  const identity = Buffer.concat([Buffer.from([1]), Buffer.alloc(31)]);
  for (const b of backends()) {
    assert.throws(() => b.importPublicKey(identity), (e: unknown) => e instanceof FormatError && e.code === 'invalid_public_key');
  }
  assert.equal(publicKeyProblem(identity), 'small_order');
});

test('small-order and non-canonical public keys are rejected, with and without the sign bit', () => {
  const smallOrder = [
    '0000000000000000000000000000000000000000000000000000000000000000',
    '0100000000000000000000000000000000000000000000000000000000000000',
    'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
    'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  ];
  for (const hex of smallOrder) {
    const raw = Buffer.from(hex, 'hex');
    assert.equal(publicKeyProblem(raw), 'small_order', hex);
    raw[31] = raw[31]! | 0x80;
    assert.equal(publicKeyProblem(raw), 'small_order', `${hex} with sign bit`);
  }
  // y = p and y = p + 1 (non-canonical encodings of 0 and 1), and the largest value 2^255 − 1.
  for (const hex of [
    'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    'ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  ]) {
    assert.equal(publicKeyProblem(Buffer.from(hex, 'hex')), 'non_canonical', hex);
  }
  assert.equal(publicKeyProblem(Buffer.alloc(31)), 'wrong_length');
  assert.equal(publicKeyProblem(privateKeyFromSeed(Buffer.alloc(32, 7)).publicKey), undefined);
});

test('S ≥ L (malleated signature) is refused by both backends', () => {
  const key = privateKeyFromSeed(Buffer.alloc(32, 5));
  const msg = Buffer.from('hello');
  const L = Buffer.from('edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010', 'hex');
  for (const b of backends()) {
    const sig = b.sign(key, msg);
    const pub = b.importPublicKey(key.publicKey);
    assert.equal(b.verify(pub, msg, sig), true);
    // S + L is the same scalar mod L: a textbook malleation that strict verifiers must refuse.
    const s = BigInt('0x' + Buffer.from(sig.subarray(32)).reverse().toString('hex'));
    const sl = s + BigInt('0x' + Buffer.from(L).reverse().toString('hex'));
    const slBytes = Buffer.from(sl.toString(16).padStart(64, '0'), 'hex').reverse();
    const malleated = Buffer.concat([sig.subarray(0, 32), slBytes]);
    assert.equal(b.verify(pub, msg, malleated), false);
    assert.equal(b.verify(pub, msg, sig.subarray(0, 63)), false);
    assert.equal(b.verify(pub, msg, Buffer.concat([sig, Buffer.from([0])])), false);
  }
});

test('differential: the backends agree on every Wycheproof vector and on random (mostly corrupted) signatures', (t) => {
  const all = backends();
  if (all.length < 2) {
    t.skip('sodium-native not installed locally (CI requires it)');
    return;
  }
  const [node, sodium] = all as [Ed25519Backend, Ed25519Backend];
  for (const group of wycheproof.testGroups) {
    for (const v of group.tests) {
      assert.equal(ownVerify(node, group.publicKey.pk, v.msg, v.sig), ownVerify(sodium, group.publicKey.pk, v.msg, v.sig), `tcId ${v.tcId}`);
    }
  }
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 64 }), fc.nat(66), fc.nat(255), (seed, msg, flipAt, flipBits) => {
      const key = privateKeyFromSeed(seed);
      const sig = node.sign(key, msg);
      // Deterministic Ed25519: both backends produce the same signature.
      assert.deepEqual(sodium.sign(key, msg), sig);
      const mutated = Buffer.from(sig);
      if (flipAt < 64) mutated[flipAt] = mutated[flipAt]! ^ (flipBits | 1);
      const pn = node.importPublicKey(key.publicKey);
      const ps = sodium.importPublicKey(key.publicKey);
      const a = node.verify(pn, msg, mutated);
      assert.equal(a, sodium.verify(ps, msg, mutated));
      assert.equal(a, flipAt >= 64);
    }),
    { numRuns: 400 },
  );
  // Random public keys (most are not points, some are small-order): import agrees.
  for (let i = 0; i < 300; i++) {
    const raw = randomBytes(32);
    let nodeOk = true;
    let sodiumOk = true;
    try {
      node.importPublicKey(raw);
    } catch {
      nodeOk = false;
    }
    try {
      sodium.importPublicKey(raw);
    } catch {
      sodiumOk = false;
    }
    assert.equal(nodeOk, sodiumOk);
  }
});

test('the default backend is libsodium when installed, and TRUSTPLANE_ED25519_BACKEND can force node', () => {
  const saved = process.env['TRUSTPLANE_ED25519_BACKEND'];
  try {
    delete process.env['TRUSTPLANE_ED25519_BACKEND'];
    assert.equal(getEd25519Backend().name, sodiumAvailable() ? 'sodium' : 'node');
    process.env['TRUSTPLANE_ED25519_BACKEND'] = 'node';
    assert.equal(getEd25519Backend().name, 'node');
    process.env['TRUSTPLANE_ED25519_BACKEND'] = 'openssl';
    assert.throws(() => getEd25519Backend(), TypeError);
  } finally {
    if (saved === undefined) delete process.env['TRUSTPLANE_ED25519_BACKEND'];
    else process.env['TRUSTPLANE_ED25519_BACKEND'] = saved;
  }
});
