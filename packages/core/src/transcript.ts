/**
 * transcript-v1 (SPEC §1): the canonical 20-line request transcript that a request proof signs.
 * Byte-exact with TrustPlane's SDKs; the conformance vectors and an independent Python
 * implementation (conformance/python) hold it to that.
 */
import { FormatError } from './errors.js';
import { EMPTY_SHA256, isSha256Hex, sha256Hex } from './encoding.js';
import { asciiLower, asciiUpper, pyTrim } from './text.js';

export const TRANSCRIPT_VERSION = 'trustplane-transcript-v1';
export const QUERY_NORMALIZATION = 'rfc3986-sort-keys-values';
export const TIME_BUCKET_SECONDS = 20;

export interface HeaderEntry {
  readonly name: string;
  readonly value: string;
}

/**
 * Request headers: a list in wire order (the FIRST occurrence of a name wins), or a lookup
 * function that is given a lower-case name and returns the first value or undefined.
 */
export type TranscriptHeaders = readonly HeaderEntry[] | ((lowerName: string) => string | undefined);

export interface TranscriptInput {
  method: string;
  scheme: string;
  authority: string;
  /** Path as sent: no decoding, no dot-segment removal. */
  path: string;
  /** Raw query string, with or without one leading '?'. */
  rawQuery?: string;
  audience: string;
  routeId: string;
  /** Empty or absent means `identity`. */
  contentEncoding?: string;
  /** Raw body bytes (a string is taken as UTF-8). Ignored when `bodySha256` is given. */
  body?: Uint8Array | string;
  /** Lower-hex SHA-256 of the body, when already computed (e.g. while streaming). */
  bodySha256?: string;
  headers?: TranscriptHeaders;
  /**
   * Instead of header values: their SHA-256 (lower hex) by lower-case name, as a broker receives
   * them in IPC v1 (`headers.selected[].value_sha256`). Takes precedence over `headers`.
   */
  headerHashes?: Readonly<Record<string, string>>;
  headerAllowList?: readonly string[];
  /** Set when `headerAllowList` is already canonical (lower-case, unique, sorted): skips re-sorting. */
  allowListIsCanonical?: boolean;
  passportJti: string;
  nonce: string;
  /** Passport `iat`, integer seconds. */
  issuedAt: number;
  keyBinding: string;
}

export interface Transcript {
  readonly lines: readonly string[];
  /** The transcript bytes as text: the lines joined by LF. */
  readonly text: string;
  /** Lower-hex SHA-256 of the transcript bytes (`transcript_sha256`). */
  readonly sha256: string;
  /** The same digest as 32 raw bytes: what the proof signs (SPEC §2). */
  readonly digest: Buffer;
  readonly bodySha256: string;
  readonly allowList: readonly string[];
}

const UNRESERVED = /^[A-Za-z0-9\-._~]*$/;
const HEX = '0123456789ABCDEF';

function hexVal(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/** Strict UTF-8 validation of a byte array (no overlongs, no surrogates, ≤ U+10FFFF). */
function isValidUtf8(b: readonly number[]): boolean {
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    let n: number;
    let min: number;
    if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
      min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      min = 0x10000;
    } else return false;
    let cp = c & (0x3f >> n);
    for (let k = 1; k <= n; k++) {
      const d = b[i + k];
      if (d === undefined || (d & 0xc0) !== 0x80) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n + 1;
  }
  return true;
}

/**
 * Percent-decode one query component strictly and re-encode it canonically: UTF-8 bytes, only
 * A–Z a–z 0–9 - . _ ~ kept, everything else %XX upper-case. '+' is data and stays '+' (→ %2B).
 */
function canonicalComponent(raw: string): string {
  if (UNRESERVED.test(raw)) return raw; // fast path: already canonical
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x25 /* % */) {
      const hi = hexVal(raw.charCodeAt(i + 1));
      const lo = hexVal(raw.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) throw new FormatError('invalid_query_percent_encoding', 'malformed percent escape in query');
      bytes.push((hi << 4) | lo);
      i += 2;
    } else if (c < 0x80) {
      bytes.push(c);
    } else if (c < 0x800) {
      bytes.push(0xc0 | (c >> 6), 0x80 | (c & 0x3f));
    } else if (c >= 0xd800 && c <= 0xdbff) {
      const d = raw.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) throw new FormatError('invalid_query_utf8', 'lone surrogate in query');
      const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
      bytes.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      throw new FormatError('invalid_query_utf8', 'lone surrogate in query');
    } else {
      bytes.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
    }
  }
  if (!isValidUtf8(bytes)) throw new FormatError('invalid_query_utf8', 'percent-decoded query is not valid UTF-8');
  let out = '';
  for (const b of bytes) {
    if ((b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x2d || b === 0x2e || b === 0x5f || b === 0x7e) {
      out += String.fromCharCode(b);
    } else {
      out += '%' + HEX[b >> 4]! + HEX[b & 15]!;
    }
  }
  return out;
}

const CANONICAL_PAIR = /^[A-Za-z0-9\-._~]*=[A-Za-z0-9\-._~]*$/;

/**
 * Fast path: every part is already `key=value` in canonical form (unreserved characters only)
 * and the parts are already in (key, value) order, so normalizing would return the query as is.
 */
function isCanonicalSortedQuery(parts: readonly string[]): boolean {
  let prevK = '';
  let prevV = '';
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (!CANONICAL_PAIR.test(part)) return false;
    const eq = part.indexOf('=');
    const k = part.slice(0, eq);
    const v = part.slice(eq + 1);
    if (i > 0 && (k < prevK || (k === prevK && v < prevV))) return false;
    prevK = k;
    prevV = v;
  }
  return true;
}

/** Query normalization `rfc3986-sort-keys-values` (SPEC §1). */
export function normalizeQuery(rawQuery: string): string {
  return normalizeQueryWith(rawQuery, true);
}

/** The same normalization without the fast path (differential tests). */
export function normalizeQueryReference(rawQuery: string): string {
  return normalizeQueryWith(rawQuery, false);
}

function normalizeQueryWith(rawQuery: string, fastPath: boolean): string {
  let raw = pyTrim(rawQuery);
  if (raw.charCodeAt(0) === 0x3f /* ? */) raw = raw.slice(1);
  if (raw === '') return '';
  const parts = raw.split('&');
  if (fastPath && isCanonicalSortedQuery(parts)) return raw;
  const pairs: { k: string; v: string; i: number }[] = [];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    const eq = part.indexOf('=');
    const k = canonicalComponent(eq === -1 ? part : part.slice(0, eq));
    const v = eq === -1 ? '' : canonicalComponent(part.slice(eq + 1));
    pairs.push({ k, v, i });
  }
  if (pairs.length > 1) {
    // Encoded components are ASCII, so UTF-16 comparison is byte order.
    pairs.sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : a.v < b.v ? -1 : a.v > b.v ? 1 : a.i - b.i));
  }
  let out = '';
  for (let i = 0; i < pairs.length; i++) {
    const p = pairs[i]!;
    out += (i === 0 ? '' : '&') + p.k + '=' + p.v;
  }
  return out;
}

/** Canonical header allow-list: trimmed, lower-cased, de-duplicated, empties dropped, sorted. */
export function canonicalAllowList(names: readonly string[]): string[] {
  const set = new Set<string>();
  for (const n of names) {
    const name = asciiLower(pyTrim(n));
    if (name !== '') set.add(name);
  }
  return [...set].sort(compareCodePoints);
}

/**
 * Code-point order (Python's `sorted` on str), not JavaScript's UTF-16 code-unit order: the two
 * disagree when a surrogate pair (U+10000 and above) meets a BMP character at U+E000..U+FFFF.
 */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let ca = a.charCodeAt(i);
    let cb = b.charCodeAt(i);
    if (ca === cb) continue;
    if (ca >= 0xd800 && cb >= 0xd800) {
      // Surrogates (0xD800..0xDFFF) move above 0xFFFF; 0xE000..0xFFFF move down to make room.
      ca += ca >= 0xe000 ? -0x800 : 0x2000;
      cb += cb >= 0xe000 ? -0x800 : 0x2000;
    }
    return ca - cb;
  }
  return a.length - b.length;
}

function headerLookup(headers: TranscriptHeaders | undefined): (lowerName: string) => string | undefined {
  if (headers === undefined) return () => undefined;
  if (typeof headers === 'function') return headers;
  const first = new Map<string, string>();
  for (const h of headers) {
    const name = asciiLower(pyTrim(h.name));
    if (name !== '' && !first.has(name)) first.set(name, h.value);
  }
  return (n) => first.get(n);
}

export function bodySha256(body: Uint8Array | string | undefined): string {
  if (body === undefined || body.length === 0) return EMPTY_SHA256;
  return sha256Hex(body);
}

function required(name: string, value: string): string {
  if (value === '') throw new FormatError(`missing_${name}`, `transcript field ${name} is empty`);
  if (value.includes('\n')) throw new FormatError('invalid_field', `transcript field ${name} contains a line feed`);
  return value;
}

/** Build transcript-v1 for a request. Throws FormatError with a specific code on bad input. */
export function buildTranscript(input: TranscriptInput): Transcript {
  const method = required('method', asciiUpper(pyTrim(input.method)));
  const scheme = required('scheme', asciiLower(pyTrim(input.scheme)));
  const authority = required('authority', asciiLower(pyTrim(input.authority)));
  const path = required('path', pyTrim(input.path));
  const audience = required('audience', pyTrim(input.audience));
  const routeId = required('route_id', pyTrim(input.routeId));
  const contentEncoding = required('content_encoding', asciiLower(pyTrim(input.contentEncoding ?? '')) || 'identity');
  const passportJti = required('passport_jti', pyTrim(input.passportJti));
  const nonce = required('nonce', pyTrim(input.nonce));
  const keyBinding = required('key_binding', pyTrim(input.keyBinding));
  if (!Number.isSafeInteger(input.issuedAt) || input.issuedAt <= 0) {
    throw new FormatError('missing_issued_at', 'issued_at must be a positive integer');
  }
  const bodyDigest = input.bodySha256 !== undefined && pyTrim(input.bodySha256) !== '' ? pyTrim(input.bodySha256) : bodySha256(input.body);
  required('body_sha256', bodyDigest);

  const normalized = normalizeQuery(input.rawQuery ?? '');
  const queryDigest = normalized === '' ? EMPTY_SHA256 : sha256Hex(normalized);
  const allowList = input.allowListIsCanonical === true ? (input.headerAllowList ?? []) : canonicalAllowList(input.headerAllowList ?? []);
  const lookup = headerLookup(input.headers);
  let selected = '';
  for (let i = 0; i < allowList.length; i++) {
    const name = allowList[i]!;
    let digest: string;
    if (input.headerHashes !== undefined) {
      const given = Object.prototype.hasOwnProperty.call(input.headerHashes, name) ? input.headerHashes[name] : undefined;
      if (given === undefined) throw new FormatError('missing_signed_header', `signed header ${name} has no value hash`);
      if (!isSha256Hex(given)) throw new FormatError('invalid_field', `value hash of ${name} is not 64 lower-hex characters`);
      digest = given;
    } else {
      const value = lookup(name);
      if (value === undefined) throw new FormatError('missing_signed_header', `signed header ${name} is not on the request`);
      digest = sha256Hex(pyTrim(value));
    }
    selected += (i === 0 ? '' : ',') + name + ':' + digest;
  }

  // The 20 lines of SPEC §1, LF-joined, no trailing newline; built in one pass (hot path). Lines
  // 1–4 and 6–9 are the same for every request to a route, so they come from a small cache: a
  // string of fewer pieces is cheaper to flatten for hashing.
  const text =
    routeLines(method, scheme, authority, audience, routeId, contentEncoding, path) +
    normalized +
    `\nquery_normalization.sha256=${queryDigest}\nquery_sha256=${queryDigest}` +
    `\nheaders.allow_list=${allowList.join(',')}\nheaders.selected=${selected}\nbody_sha256=${bodyDigest}` +
    `\npassport_jti=${passportJti}\nnonce=${nonce}\nissued_at=${input.issuedAt}` +
    `\ntime_bucket=${Math.floor(input.issuedAt / TIME_BUCKET_SECONDS)}\nkey_binding=${keyBinding}`;
  // Hex first: Node's one-shot hash has its fastest path for hex output, and both forms are needed.
  const sha256 = sha256Hex(text);
  return new TranscriptResult(text, sha256, Buffer.from(sha256, 'hex'), bodyDigest, allowList);
}

interface RouteLines {
  readonly method: string;
  readonly scheme: string;
  readonly authority: string;
  readonly audience: string;
  readonly routeId: string;
  readonly contentEncoding: string;
  readonly head: string;
  readonly middle: string;
}

const ROUTE_LINES_CACHE = 16;
const routeLinesCache: RouteLines[] = [];
let routeLinesNext = 0;

/** Lines 1–9 up to `query_normalization.normalized=`, with the constant parts cached per route. */
function routeLines(method: string, scheme: string, authority: string, audience: string, routeId: string, contentEncoding: string, path: string): string {
  for (let i = 0; i < routeLinesCache.length; i++) {
    const c = routeLinesCache[i]!;
    if (c.routeId === routeId && c.method === method && c.audience === audience && c.authority === authority && c.scheme === scheme && c.contentEncoding === contentEncoding) {
      return c.head + path + c.middle;
    }
  }
  const head = `version=${TRANSCRIPT_VERSION}\nmethod=${method}\nscheme=${scheme}\nauthority=${authority}\npath=`;
  const middle = `\naudience=${audience}\nroute_id=${routeId}\ncontent_encoding=${contentEncoding}\nquery_normalization.algorithm=${QUERY_NORMALIZATION}\nquery_normalization.normalized=`;
  routeLinesCache[routeLinesNext] = { method, scheme, authority, audience, routeId, contentEncoding, head, middle };
  routeLinesNext = (routeLinesNext + 1) % ROUTE_LINES_CACHE;
  return head + path + middle;
}

class TranscriptResult implements Transcript {
  constructor(
    readonly text: string,
    readonly sha256: string,
    readonly digest: Buffer,
    readonly bodySha256: string,
    readonly allowList: readonly string[],
  ) {}

  /** The 20 lines, split on demand (debugging and display; not needed to verify). */
  get lines(): readonly string[] {
    return this.text.split('\n');
  }
}
