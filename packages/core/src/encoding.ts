/**
 * Strict encoders and decoders for untrusted input (SPEC §2): base64url that must round-trip,
 * lower-case hex, strict UTF-8, SHA-256. `Buffer.from(s, 'base64url')` alone accepts padding,
 * '+', '/', whitespace and junk, so every decode goes through `decodeBase64url` here.
 */
import * as crypto from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import { FormatError } from './errors.js';

const B64URL = /^[A-Za-z0-9_-]*$/;
const B64URL_VALUE = new Uint8Array(128);
'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.split('').forEach((c, i) => (B64URL_VALUE[c.charCodeAt(0)] = i));

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
  // With the alphabet and length checked, the only non-canonical form left is non-zero unused
  // low bits in the last character; checking them replaces a full re-encode.
  const rem = value.length % 4;
  if (rem !== 0) {
    const last = B64URL_VALUE[value.charCodeAt(value.length - 1)]!;
    if ((rem === 2 && (last & 0x0f) !== 0) || (rem === 3 && (last & 0x03) !== 0)) {
      throw new FormatError('invalid_base64url', `${what} is not canonical base64url`);
    }
  }
  return Buffer.from(value, 'base64url');
}

const LOWER_HEX = new Uint8Array(128);
for (const c of '0123456789abcdef') LOWER_HEX[c.charCodeAt(0)] = 1;

/** 64 lower-case hex characters. (A table loop: about twice as fast as /^[0-9a-f]{64}$/ here.) */
export function isSha256Hex(value: string): boolean {
  if (value.length !== 64) return false;
  for (let i = 0; i < 64; i++) {
    const c = value.charCodeAt(i);
    if (c >= 128 || LOWER_HEX[c] === 0) return false;
  }
  return true;
}

const hashOneShot: ((alg: string, data: string | Uint8Array, enc: 'hex' | 'latin1') => string) | undefined =
  (crypto as unknown as { hash?: (alg: string, data: string | Uint8Array, enc: 'hex' | 'latin1') => string }).hash;

/** Lower-hex SHA-256 of a string's UTF-8 bytes or of raw bytes. */
export function sha256Hex(data: string | Uint8Array): string {
  if (hashOneShot !== undefined) return hashOneShot('sha256', data, 'hex');
  return crypto.createHash('sha256').update(data).digest('hex');
}

/**
 * The first 16 bytes of SHA-256, as a flat 16-character one-byte string (compact map keys). The
 * one-shot hash's one-byte-string output is used: its 'buffer' output allocates an ArrayBuffer
 * from C++ per call (~2.5× the cost on the hot path). The characters are copied out one by one:
 * `d.slice(0, 16)` would be a V8 SlicedString keeping the whole 32-character parent alive, 48
 * more bytes per live entry in MemoryReplayStore (bench/memory.mjs: 135 → 87 B/entry).
 */
export function sha256Prefix16(data: string): string {
  if (hashOneShot === undefined) return crypto.createHash('sha256').update(data).digest().toString('latin1', 0, 16);
  const d = hashOneShot('sha256', data, 'latin1');
  return String.fromCharCode(
    d.charCodeAt(0), d.charCodeAt(1), d.charCodeAt(2), d.charCodeAt(3), d.charCodeAt(4), d.charCodeAt(5), d.charCodeAt(6), d.charCodeAt(7),
    d.charCodeAt(8), d.charCodeAt(9), d.charCodeAt(10), d.charCodeAt(11), d.charCodeAt(12), d.charCodeAt(13), d.charCodeAt(14), d.charCodeAt(15),
  );
}

/**
 * sha256Prefix16(data) followed by the 4 characters of `tag`, as one flat 20-character string
 * (a `+` would make a V8 ConsString of two, 32 more bytes per live map key).
 */
export function sha256Prefix16Tagged(data: string, tag: string): string {
  if (tag.length !== 4) throw new TypeError('tag must be 4 characters');
  const t0 = tag.charCodeAt(0), t1 = tag.charCodeAt(1), t2 = tag.charCodeAt(2), t3 = tag.charCodeAt(3);
  const d = hashOneShot === undefined ? crypto.createHash('sha256').update(data).digest().toString('latin1', 0, 16) : hashOneShot('sha256', data, 'latin1');
  return String.fromCharCode(
    d.charCodeAt(0), d.charCodeAt(1), d.charCodeAt(2), d.charCodeAt(3), d.charCodeAt(4), d.charCodeAt(5), d.charCodeAt(6), d.charCodeAt(7),
    d.charCodeAt(8), d.charCodeAt(9), d.charCodeAt(10), d.charCodeAt(11), d.charCodeAt(12), d.charCodeAt(13), d.charCodeAt(14), d.charCodeAt(15),
    t0, t1, t2, t3,
  );
}

export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** Decode UTF-8 strictly: invalid sequences are an error, never U+FFFD. */
export function decodeUtf8Strict(bytes: Uint8Array, what = 'text'): string {
  // buffer.isUtf8 is a native validator (no decoding work); toString then cannot substitute.
  if (!isUtf8(bytes)) throw new FormatError('invalid_utf8', `${what} is not valid UTF-8`);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
}

/** Constant-time equality of two strings of equal length (e.g. digests); unequal lengths → false. */
export function timingSafeEqualString(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  // Branch-free accumulation over UTF-16 code units: the time depends on the length only.
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}
