/**
 * Key files (SPEC §3): a private key file holds base64url of 64 bytes (seed ‖ public) — a bare
 * 32-byte seed is accepted too; a public key is base64url of the raw 32 bytes; a fingerprint is
 * `sha256:<hex>` of the raw public key.
 */
import { readFileSync } from 'node:fs';
import { FormatError } from './errors.js';
import { decodeBase64url, encodeBase64url, sha256Hex } from './encoding.js';
import { getEd25519Backend, privateKeyFromSeed, type Ed25519PrivateKey, type Ed25519PublicKey, type Ed25519Backend } from './ed25519/backend.js';
import { pyTrim } from './text.js';

/** Private key text cap: 64 bytes is 86 base64url characters; allow surrounding whitespace. */
const MAX_KEY_FILE_BYTES = 4096;

export function parsePrivateKey(text: string): Ed25519PrivateKey {
  const value = pyTrim(text);
  let bytes: Buffer;
  try {
    bytes = decodeBase64url(value, 128, 'private key');
  } catch (err) {
    throw new FormatError('invalid_private_key', err instanceof Error ? err.message : 'not base64url');
  }
  if (bytes.length === 32) return privateKeyFromSeed(bytes);
  if (bytes.length === 64) {
    const key = privateKeyFromSeed(bytes.subarray(0, 32));
    if (!key.publicKey.equals(bytes.subarray(32))) {
      throw new FormatError('invalid_private_key', 'the public half of the 64-byte private key does not match its seed');
    }
    return key;
  }
  throw new FormatError('invalid_private_key', `private key must decode to 32 or 64 bytes, got ${bytes.length}`);
}

export function readPrivateKeyFile(path: string): Ed25519PrivateKey {
  const buf = readFileSync(path);
  if (buf.length > MAX_KEY_FILE_BYTES) throw new FormatError('invalid_private_key', `${path} is larger than ${MAX_KEY_FILE_BYTES} bytes`);
  return parsePrivateKey(buf.toString('utf8'));
}

/** The 64-byte key file form (seed ‖ public), as the Python SDK exports it. */
export function formatPrivateKey(key: Ed25519PrivateKey): string {
  return encodeBase64url(Buffer.concat([key.seed, key.publicKey]));
}

export function parsePublicKey(text: string, backend: Ed25519Backend = getEd25519Backend()): Ed25519PublicKey {
  let bytes: Buffer;
  try {
    bytes = decodeBase64url(pyTrim(text), 64, 'public key');
  } catch (err) {
    throw new FormatError('invalid_public_key', err instanceof Error ? err.message : 'not base64url');
  }
  return backend.importPublicKey(bytes);
}

export function publicKeyBase64url(key: Ed25519PrivateKey | Ed25519PublicKey): string {
  return encodeBase64url('raw' in key ? key.raw : key.publicKey);
}

export function fingerprint(publicKey: Uint8Array): string {
  return `sha256:${sha256Hex(publicKey)}`;
}
