/**
 * Strict RFC 8032 input checks shared by every Ed25519 backend, so that libsodium and
 * node:crypto give the same answer on every input (a differential test holds them to it).
 *
 * - Public keys: exactly 32 bytes, canonical y (< p), and not of small order. node:crypto
 *   (OpenSSL) accepts the identity key `01 00…00`, with which the signature `01 00…00 ‖ 00…00`
 *   verifies for ANY message; that forgery is stopped here, at load time.
 * - Signatures: exactly 64 bytes, S < L (no malleability), R not of small order (libsodium's
 *   rule, applied to both backends).
 */

// The y-coordinates of the eight small-order points, sign bit cleared: y = 0 (order 4),
// y = 1 (order 1, the identity), y = p − 1 (order 2) and the two order-8 values. Together with
// the canonical-y check, this covers every encoding libsodium's blocklist covers.
const SMALL_ORDER_Y: readonly Uint8Array[] = [
  hex('0000000000000000000000000000000000000000000000000000000000000000'),
  hex('0100000000000000000000000000000000000000000000000000000000000000'),
  hex('ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f'),
  hex('26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05'),
  hex('c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a'),
];

// L = 2^252 + 27742317777372353535851937790883648493, little-endian.
const L = hex('edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010');

function hex(s: string): Uint8Array {
  return Uint8Array.from(Buffer.from(s, 'hex'));
}

/** y (sign bit cleared) ≥ p = 2^255 − 19, i.e. a non-canonical field element. */
function isNonCanonicalY(p: Uint8Array): boolean {
  if ((p[31]! & 0x7f) !== 0x7f) return false;
  for (let i = 30; i > 0; i--) if (p[i] !== 0xff) return false;
  return p[0]! >= 0xed;
}

function isSmallOrder(p: Uint8Array): boolean {
  outer: for (const y of SMALL_ORDER_Y) {
    if ((p[31]! & 0x7f) !== y[31]) continue;
    for (let i = 0; i < 31; i++) if (p[i] !== y[i]) continue outer;
    return true;
  }
  return false;
}

export type PublicKeyProblem = 'wrong_length' | 'non_canonical' | 'small_order';

/** Why a raw public key is unacceptable, or undefined when it passes the strict checks. */
export function publicKeyProblem(raw: Uint8Array): PublicKeyProblem | undefined {
  if (raw.byteLength !== 32) return 'wrong_length';
  if (isNonCanonicalY(raw)) return 'non_canonical';
  if (isSmallOrder(raw)) return 'small_order';
  return undefined;
}

/** Signature pre-checks: 64 bytes, S < L, R not of small order. */
export function isAcceptableSignature(sig: Uint8Array): boolean {
  if (sig.byteLength !== 64) return false;
  // S < L, compared from the most significant byte down.
  let lt = false;
  for (let i = 31; i >= 0; i--) {
    const s = sig[32 + i]!;
    const l = L[i]!;
    if (s < l) {
      lt = true;
      break;
    }
    if (s > l) return false;
  }
  if (!lt) return false; // S == L
  return !isSmallOrder(sig.subarray(0, 32));
}
