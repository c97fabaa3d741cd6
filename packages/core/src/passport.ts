/**
 * Passports (SPEC §3): compact JWS, EdDSA only. Issuing reproduces TrustPlane's Python SDK byte
 * for byte (compact JSON, the SDK's key order, `jti-<b64url(16 random bytes)>`). Parsing treats
 * the token as hostile: size cap first, strict base64url, strict JSON, the algorithm allow-list
 * and forbidden header parameters checked BEFORE any key lookup.
 */
import { randomBytes } from 'node:crypto';
import { TrustPlaneError } from './errors.js';
import { decodeBase64url, encodeBase64url } from './encoding.js';
import { parseJsonBytes, isJsonObject, type JsonObject, type JsonValue } from './json.js';
import { getEd25519Backend, type Ed25519Backend, type Ed25519PrivateKey, type Ed25519PublicKey } from './ed25519/backend.js';
import { isSignerClass, type SignerClass } from './signer-classes.js';
import { pyTrim } from './text.js';

/** Hard cap on a passport token (characters). Real passports are well under 2 KiB. */
export const MAX_PASSPORT_CHARS = 8192;
const MAX_SEGMENT_JSON_BYTES = 6144;

export const DEFAULT_SKEW_SECONDS = 30;
export const DEFAULT_MAX_LIFETIME_SECONDS = 900;
/** The Python SDK's default passport lifetime. */
export const DEFAULT_PASSPORT_TTL_SECONDS = 600;

export interface PassportHeader {
  alg: 'EdDSA';
  kid: string;
  typ?: string;
}

export interface PassportCnf {
  kid: string;
  key_binding: SignerClass;
  public_key_b64url: string;
}

export interface PassportProvenance {
  profile: string;
  spiffe_id?: string;
  spiffe_trust_domain?: string;
  posture?: string;
}

export interface PassportClaims {
  iss: string;
  sub: string;
  /** The audience the transcript binds: `aud`, or its first element when it is an array. */
  aud: string;
  iat: number;
  exp: number;
  jti: string;
  trust_domain: string;
  cnf: PassportCnf;
  /** Optional request context set by a broker (SPEC §9.7, an extension). */
  ctx?: Readonly<Record<string, string>>;
  /** Optional provenance set by a broker (SPEC §9.7, an extension). */
  provenance?: PassportProvenance;
}

export interface ParsedPassport {
  readonly header: PassportHeader;
  /** Raw claims object as parsed (strict JSON); validate with `validatePassportClaims`. */
  readonly payload: JsonObject;
  readonly signingInput: Buffer;
  readonly signature: Buffer;
}

const FORBIDDEN_HEADER_PARAMS = ['jwk', 'jku', 'x5u', 'x5c', 'x5t', 'x5t#S256'];

function malformed(detail: string, cause?: unknown): TrustPlaneError {
  return new TrustPlaneError('malformed_passport', detail, cause === undefined ? undefined : { cause });
}

function decodeSegment(seg: string, what: string): JsonObject {
  let value: JsonValue;
  try {
    value = parseJsonBytes(decodeBase64url(seg, Math.ceil((MAX_SEGMENT_JSON_BYTES * 4) / 3), `passport ${what}`), MAX_SEGMENT_JSON_BYTES, `passport ${what}`);
  } catch (err) {
    throw malformed(`passport ${what}: ${err instanceof Error ? err.message : 'undecodable'}`, err);
  }
  if (!isJsonObject(value)) throw malformed(`passport ${what} is not a JSON object`);
  return value;
}

/**
 * Parse a compact JWS passport and check its header. No signature is verified here; the
 * caller looks up the issuer key by `header.kid` only after this returns.
 */
export function parsePassport(token: string): ParsedPassport {
  if (token.length > MAX_PASSPORT_CHARS) throw malformed(`passport longer than ${MAX_PASSPORT_CHARS} characters`);
  const d1 = token.indexOf('.');
  const d2 = d1 < 0 ? -1 : token.indexOf('.', d1 + 1);
  if (d1 <= 0 || d2 <= d1 + 1 || d2 === token.length - 1 || token.indexOf('.', d2 + 1) !== -1) {
    throw malformed('passport is not a compact JWS (header.payload.signature)');
  }
  const headerSeg = token.slice(0, d1);
  const payloadSeg = token.slice(d1 + 1, d2);
  const sigSeg = token.slice(d2 + 1);
  // Cheap shape check of the signature first: 64 bytes is exactly 86 base64url characters.
  if (sigSeg.length !== 86) throw malformed('passport signature is not 64 bytes of base64url');

  // Headers repeat for every passport of an issuer key, so decoded headers are cached (the
  // cache holds only headers that passed every check below).
  // The last header seen is compared first: one startsWith, where a Map lookup hashes the slice.
  let header: PassportHeader;
  if (d1 === lastHeader.seg.length && token.startsWith(lastHeader.seg)) {
    header = lastHeader.header;
  } else {
    const cached = headerCache.get(headerSeg);
    header = cached ?? checkHeader(decodeSegment(headerSeg, 'header'));
    if (cached === undefined) {
      if (headerCache.size >= HEADER_CACHE_MAX) headerCache.clear();
      headerCache.set(headerSeg, header);
    }
    lastHeader = { seg: headerSeg, header };
  }

  let signature: Buffer;
  try {
    signature = decodeBase64url(sigSeg, 86, 'passport signature');
  } catch (err) {
    throw malformed('passport signature is not strict base64url', err);
  }
  const payload = decodeSegment(payloadSeg, 'claims');
  return { header, payload, signingInput: Buffer.from(token.slice(0, d2), 'latin1'), signature };
}

const HEADER_CACHE_MAX = 1024;
const headerCache = new Map<string, PassportHeader>();
let lastHeader: { readonly seg: string; readonly header: PassportHeader } = { seg: '', header: { alg: 'EdDSA', kid: '' } };

function checkHeader(rawHeader: JsonObject): PassportHeader {
  // Algorithm allow-list before anything else touches the header (SPEC §3).
  if (rawHeader['alg'] !== 'EdDSA') {
    throw new TrustPlaneError('unsupported_passport_algorithm', `passport alg ${typeof rawHeader['alg'] === 'string' ? JSON.stringify(rawHeader['alg'].slice(0, 32)) : 'missing'} is not EdDSA`);
  }
  for (const p of FORBIDDEN_HEADER_PARAMS) {
    if (p in rawHeader) throw new TrustPlaneError('unsupported_passport_algorithm', `passport header parameter ${p} is not allowed`);
  }
  if ('crit' in rawHeader) {
    // We understand no JWS extensions, so any critical parameter is unknown to us (RFC 7515 §4.1.11).
    throw new TrustPlaneError('unsupported_passport_algorithm', 'passport header lists critical extensions this verifier does not understand');
  }
  const kid = rawHeader['kid'];
  if (typeof kid !== 'string' || kid === '' || kid.length > 256) throw malformed('passport header kid is missing or not a short string');
  const typ = rawHeader['typ'];
  if (typ !== undefined && typ !== 'JWT') throw malformed('passport header typ must be "JWT" when present');
  return typ === undefined ? { alg: 'EdDSA', kid } : { alg: 'EdDSA', kid, typ };
}

export function verifyPassportSignature(parsed: ParsedPassport, key: Ed25519PublicKey, backend: Ed25519Backend = getEd25519Backend()): boolean {
  return backend.verify(key, parsed.signingInput, parsed.signature);
}

export interface ClaimTimeOptions {
  /** Current time, milliseconds since the epoch. */
  nowMs: number;
  skewSeconds?: number;
  maxLifetimeSeconds?: number;
}

function badClaim(detail: string): TrustPlaneError {
  return new TrustPlaneError('invalid_passport_claims', detail);
}

function str(payload: JsonObject, name: string, max = 1024): string {
  const v = payload[name];
  if (typeof v !== 'string' || v === '') throw badClaim(`claim ${name} is missing or not a non-empty string`);
  if (v.length > max) throw badClaim(`claim ${name} is longer than ${max} characters`);
  return v;
}

function int(payload: JsonObject, name: string): number {
  const v = payload[name];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw badClaim(`claim ${name} is missing or not a positive integer`);
  return v;
}

/**
 * Type-check the claims and the time window (SPEC §3, §9.6): exp/iat integers, iat not in the
 * future beyond the skew, exp not in the past beyond the skew, lifetime ≤ the maximum.
 */
export function validatePassportClaims(payload: JsonObject, opts: ClaimTimeOptions): PassportClaims {
  const skew = opts.skewSeconds ?? DEFAULT_SKEW_SECONDS;
  const maxLifetime = opts.maxLifetimeSeconds ?? DEFAULT_MAX_LIFETIME_SECONDS;
  const iss = str(payload, 'iss');
  const sub = str(payload, 'sub');
  const rawAud = payload['aud'];
  let aud: string;
  if (typeof rawAud === 'string') aud = rawAud;
  else if (Array.isArray(rawAud) && rawAud.length > 0 && rawAud.length <= 16 && rawAud.every((a) => typeof a === 'string')) aud = rawAud[0] as string;
  else throw badClaim('claim aud is missing or not a string or array of strings');
  if (aud === '' || aud.length > 1024) throw badClaim('claim aud is empty or too long');
  const iat = int(payload, 'iat');
  const exp = int(payload, 'exp');
  const jti = str(payload, 'jti', 256);
  // The transcript binds the trimmed jti and the replay key the jti as given: with surrounding
  // whitespace, " J1 " and "J1" would share a transcript line but not a replay slot.
  if (pyTrim(jti) !== jti) throw badClaim('claim jti has leading or trailing whitespace');
  const trustDomain = str(payload, 'trust_domain');
  const cnfRaw = payload['cnf'];
  if (!isJsonObject(cnfRaw)) throw badClaim('claim cnf is missing or not an object');
  const cnfKid = str(cnfRaw, 'kid', 256);
  const keyBinding = cnfRaw['key_binding'];
  if (!isSignerClass(keyBinding)) throw badClaim('claim cnf.key_binding is missing or not a known signer class');
  const cnfKey = str(cnfRaw, 'public_key_b64url', 64);
  if (cnfKey.length !== 43) throw badClaim('claim cnf.public_key_b64url is not a 32-byte base64url key');

  if (exp <= iat) throw badClaim('claim exp is not after iat');
  const nowS = opts.nowMs / 1000;
  if (iat > nowS + skew) throw new TrustPlaneError('passport_not_yet_valid', `passport iat is ${Math.ceil(iat - nowS)} s in the future (skew ${skew} s)`);
  const nbf = payload['nbf'];
  if (nbf !== undefined) {
    if (typeof nbf !== 'number' || !Number.isSafeInteger(nbf)) throw badClaim('claim nbf is not an integer');
    if (nbf > nowS + skew) throw new TrustPlaneError('passport_not_yet_valid', 'passport nbf is in the future');
  }
  if (exp <= nowS - skew) throw new TrustPlaneError('passport_expired', `passport expired ${Math.floor(nowS - exp)} s ago (skew ${skew} s)`);
  if (exp - iat > maxLifetime) throw new TrustPlaneError('passport_lifetime_exceeded', `passport lifetime ${exp - iat} s exceeds the maximum ${maxLifetime} s`);

  const claims: PassportClaims = { iss, sub, aud, iat, exp, jti, trust_domain: trustDomain, cnf: { kid: cnfKid, key_binding: keyBinding, public_key_b64url: cnfKey } };
  const ctx = payload['ctx'];
  if (ctx !== undefined) {
    if (!isJsonObject(ctx)) throw badClaim('claim ctx is not an object');
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(ctx)) {
      if (typeof v !== 'string') throw badClaim(`claim ctx.${k.slice(0, 64)} is not a string`);
      // Defined, not assigned: `out['__proto__'] = v` would be dropped silently (a string cannot
      // be a prototype), so a member the passport signed would vanish from the claims.
      Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
    }
    claims.ctx = out;
  }
  const prov = payload['provenance'];
  if (prov !== undefined) {
    if (!isJsonObject(prov) || typeof prov['profile'] !== 'string') throw badClaim('claim provenance is not an object with a profile');
    const p: PassportProvenance = { profile: prov['profile'] };
    for (const k of ['spiffe_id', 'spiffe_trust_domain', 'posture'] as const) {
      const v = prov[k];
      if (v === undefined) continue;
      if (typeof v !== 'string') throw badClaim(`claim provenance.${k} is not a string`);
      p[k] = v;
    }
    claims.provenance = p;
  }
  return claims;
}

export interface IssuePassportOptions {
  /** The issuer's signing key. */
  signingKey: Ed25519PrivateKey;
  /** Issuer key id (header `kid`). */
  kid: string;
  issuer: string;
  subject: string;
  audience: string;
  trustDomain: string;
  /** Lifetime in seconds (default 600, as the Python SDK). */
  ttlSeconds?: number;
  /** Issue time; default now. Sub-second precision is dropped, as the Python SDK does. */
  now?: Date | number;
  /** Default `jti-<base64url(16 random bytes)>`. */
  jti?: string;
  /** The proof key; default the signing key itself (a self-issued software passport). */
  proofPublicKey?: Uint8Array;
  /** `cnf.kid`; default the proof key's base64url. */
  cnfKid?: string;
  /** `cnf.key_binding`; default `software`. */
  keyBinding?: SignerClass;
  ctx?: Readonly<Record<string, string>>;
  provenance?: PassportProvenance;
  randomBytes?: (n: number) => Uint8Array;
  backend?: Ed25519Backend;
}

export interface IssuedPassport {
  token: string;
  jti: string;
  iat: number;
  exp: number;
  claims: PassportClaims;
}

function b64json(value: unknown): string {
  // JSON.stringify with no spacing matches Python's json.dumps(separators=(",", ":"),
  // ensure_ascii=False) for the strings and integers a passport holds.
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}

function canonicalText(name: string, value: string): string {
  if (pyTrim(value) === '') throw new TypeError(`missing_${name}`);
  if (value !== pyTrim(value)) throw new TypeError(`non_canonical_${name}: leading or trailing whitespace`);
  return value;
}

/**
 * Issue a passport. With only the required options this is the Python SDK's `issue_passport`:
 * a self-issued software passport whose key signs both the passport and the request proofs.
 */
export function issuePassport(opts: IssuePassportOptions): IssuedPassport {
  const issuer = canonicalText('issuer', opts.issuer);
  const subject = canonicalText('subject', opts.subject);
  const audience = canonicalText('audience', opts.audience);
  const trustDomain = canonicalText('trust_domain', opts.trustDomain);
  const kid = canonicalText('kid', opts.kid);
  const ttl = opts.ttlSeconds ?? DEFAULT_PASSPORT_TTL_SECONDS;
  if (!Number.isSafeInteger(ttl) || ttl <= 0) throw new TypeError('invalid_passport_ttl: ttlSeconds must be a positive integer');
  const nowMs = opts.now === undefined ? Date.now() : typeof opts.now === 'number' ? opts.now : opts.now.getTime();
  const iat = Math.floor(nowMs / 1000);
  const exp = iat + ttl;
  const rnd = opts.randomBytes ?? randomBytes;
  const jti = opts.jti !== undefined && pyTrim(opts.jti) !== '' ? pyTrim(opts.jti) : `jti-${encodeBase64url(rnd(16))}`;
  const proofKey = encodeBase64url(opts.proofPublicKey ?? opts.signingKey.publicKey);
  const keyBinding = opts.keyBinding ?? 'software';
  const header = { alg: 'EdDSA', kid, typ: 'JWT' };
  // Key order is the Python SDK's: kid, public_key_b64url, key_binding.
  const cnf: PassportCnf = { kid: opts.cnfKid ?? proofKey, public_key_b64url: proofKey, key_binding: keyBinding };
  const body: Record<string, unknown> = { iss: issuer, sub: subject, aud: audience, iat, exp, jti, trust_domain: trustDomain, cnf };
  if (opts.ctx !== undefined) body['ctx'] = opts.ctx;
  if (opts.provenance !== undefined) body['provenance'] = opts.provenance;
  const signingInput = `${b64json(header)}.${b64json(body)}`;
  const backend = opts.backend ?? getEd25519Backend();
  const sig = backend.sign(opts.signingKey, Buffer.from(signingInput, 'ascii'));
  const claims: PassportClaims = { iss: issuer, sub: subject, aud: audience, iat, exp, jti, trust_domain: trustDomain, cnf };
  if (opts.ctx !== undefined) claims.ctx = opts.ctx;
  if (opts.provenance !== undefined) claims.provenance = opts.provenance;
  return { token: `${signingInput}.${encodeBase64url(sig)}`, jti, iat, exp, claims };
}

/** Read the claims of a token without verifying it (for display and for the caller-side signer). */
export function decodePassportUnverified(token: string): { header: PassportHeader; payload: JsonObject } {
  const parsed = parsePassport(token);
  return { header: parsed.header, payload: parsed.payload };
}
