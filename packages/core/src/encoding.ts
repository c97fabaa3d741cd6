/**
 * Strict encoders and decoders for untrusted input (SPEC §2): base64url that must round-trip,
 * lower-case hex, strict UTF-8, SHA-256. `Buffer.from(s, 'base64url')` alone accepts padding,
 * '+', '/', whitespace and junk, so every decode goes through `decodeBase64url` here.
 */
import * as crypto from 'node:crypto';
import { FormatError } from './errors.js';

const B64URL = /^[A-Za-z0-9_-]*$/;
const HEX64 = /^[0-9a-f]{64}$/;

export function encodeBase64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

/**
 * Decode base64url (no padding) strictly: alphabet A–Z a–z 0–9 - _, length cap checked BEFORE
 * decoding, and the decoded bytes must re-encode to exactly the input (rejects non-zero
 * trailing bits and impossible lengths).
 */
export function decodeBase64url(value: string, maxChars: number, what = 'base64url'): Buffer {
  if (value.length > maxChars) throw new FormatError('invalid_base64url', `${what} longer than ${maxChars} characters`);
  if (value.length % 4 === 1 || !B64URL.test(value)) throw new FormatError('invalid_base64url', `${what} is not strict base64url`);
  const bytes = Buffer.from(value, 'base64url');
  if (bytes.toString('base64url') !== value) throw new FormatError('invalid_base64url', `${what} is not canonical base64url`);
  return bytes;
}

export function isSha256Hex(value: string): boolean {
  return value.length === 64 && HEX64.test(value);
}

const hashOneShot: ((alg: string, data: string | Uint8Array, enc: 'hex' | 'buffer') => string | Buffer) | undefined =
  (crypto as unknown as { hash?: (alg: string, data: string | Uint8Array, enc: 'hex' | 'buffer') => string | Buffer }).hash;

/** Lower-hex SHA-256 of a string's UTF-8 bytes or of raw bytes. */
export function sha256Hex(data: string | Uint8Array): string {
  if (hashOneShot !== undefined) return hashOneShot('sha256', data, 'hex') as string;
  return crypto.createHash('sha256').update(data).digest('hex');
}

export function sha256Bytes(data: string | Uint8Array): Buffer {
  if (hashOneShot !== undefined) return hashOneShot('sha256', data, 'buffer') as Buffer;
  return crypto.createHash('sha256').update(data).digest();
}

export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decode UTF-8 strictly: invalid sequences are an error, never U+FFFD. */
export function decodeUtf8Strict(bytes: Uint8Array, what = 'text'): string {
  try {
    return utf8Strict.decode(bytes);
  } catch {
    throw new FormatError('invalid_utf8', `${what} is not valid UTF-8`);
  }
}

/** Constant-time equality of two strings of equal length (e.g. digests); unequal lengths → false. */
export function timingSafeEqualString(a: string, b: string): boolean {
  const ab = Buffer.from(a, 'utf8');
  const bb = Buffer.from(b, 'utf8');
  return ab.length === bb.length && crypto.timingSafeEqual(ab, bb);
}
