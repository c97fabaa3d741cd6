import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { parsePrivateKey, readPrivateKeyFile, formatPrivateKey, parsePublicKey, publicKeyBase64url, fingerprint, FormatError, privateKeyFromSeed } from '../src/index.js';

const isCode = (code: string) => (e: unknown) => e instanceof FormatError && e.code === code;

test('private key files: 64-byte seed‖public and bare 32-byte seed both load to the same key', () => {
  // An independent key from node:crypto: its JWK gives the seed (d) and public key (x).
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  const seed = Buffer.from(jwk.d!, 'base64url');
  const pub = Buffer.from(jwk.x!, 'base64url');
  const k64 = parsePrivateKey(Buffer.concat([seed, pub]).toString('base64url'));
  const k32 = parsePrivateKey(`  ${seed.toString('base64url')}\n`);
  assert.deepEqual(k64.publicKey, pub);
  assert.deepEqual(k32.publicKey, pub);
  assert.equal(formatPrivateKey(k32), Buffer.concat([seed, pub]).toString('base64url'));
  assert.equal(publicKeyBase64url(k64), jwk.x);
});

test('private key files: mismatched public half, wrong sizes and non-canonical base64url are refused', () => {
  const a = privateKeyFromSeed(Buffer.alloc(32, 1));
  const b = privateKeyFromSeed(Buffer.alloc(32, 2));
  assert.throws(() => parsePrivateKey(Buffer.concat([a.seed, b.publicKey]).toString('base64url')), isCode('invalid_private_key'));
  assert.throws(() => parsePrivateKey(Buffer.alloc(48).toString('base64url')), isCode('invalid_private_key'));
  assert.throws(() => parsePrivateKey(Buffer.alloc(32).toString('base64') + '=='), isCode('invalid_private_key'));
  assert.throws(() => parsePrivateKey(''), isCode('invalid_private_key'));
});

test('key file on disk, size-capped', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tp-keys-'));
  try {
    const key = privateKeyFromSeed(Buffer.alloc(32, 3));
    writeFileSync(join(dir, 'k'), formatPrivateKey(key) + '\n');
    assert.deepEqual(readPrivateKeyFile(join(dir, 'k')).publicKey, key.publicKey);
    writeFileSync(join(dir, 'big'), 'A'.repeat(10_000));
    assert.throws(() => readPrivateKeyFile(join(dir, 'big')), isCode('invalid_private_key'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('public keys: strict base64url of 32 bytes, small-order rejected; fingerprint is sha256:<hex>', () => {
  const key = privateKeyFromSeed(Buffer.alloc(32, 4));
  const b64 = key.publicKey.toString('base64url');
  assert.deepEqual(parsePublicKey(b64).raw, key.publicKey);
  assert.throws(() => parsePublicKey(Buffer.concat([Buffer.from([1]), Buffer.alloc(31)]).toString('base64url')), isCode('invalid_public_key'));
  assert.throws(() => parsePublicKey(b64 + 'A'), isCode('invalid_public_key'));
  assert.throws(() => parsePublicKey(b64.slice(0, 42)), isCode('invalid_public_key'));
  assert.equal(fingerprint(key.publicKey), `sha256:${createHash('sha256').update(key.publicKey).digest('hex')}`);
});

test('a private key never prints its secret', () => {
  const key = privateKeyFromSeed(Buffer.alloc(32, 0xab));
  const secretB64 = Buffer.alloc(32, 0xab).toString('base64url');
  for (const shown of [inspect(key), JSON.stringify({ key }), String(JSON.stringify(key))]) {
    assert.ok(!shown.includes(secretB64) && !shown.includes('abab'), shown);
  }
});
