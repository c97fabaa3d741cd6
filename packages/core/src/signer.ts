/**
 * Caller-side signing (SPEC §2): the five TrustPlane headers for one request, byte-identical to
 * TrustPlane's Python SDK `sign_request` for the same inputs, and a `fetch`-compatible wrapper
 * that mints a fresh passport, jti and nonce for every request from a local software key.
 */
import { randomBytes } from 'node:crypto';
import { FormatError } from './errors.js';
import { encodeBase64url } from './encoding.js';
import { getEd25519Backend, type Ed25519Backend, type Ed25519PrivateKey } from './ed25519/backend.js';
import { decodePassportUnverified, issuePassport, type IssuedPassport } from './passport.js';
import { buildTranscript, type HeaderEntry, type Transcript } from './transcript.js';
import { isJsonObject } from './json.js';
import { asciiLower, pyTrim } from './text.js';

export const HEADER_AUTHORIZATION = 'Authorization';
export const HEADER_TRANSCRIPT_SHA256 = 'X-TrustPlane-Transcript-SHA256';
export const HEADER_PROOF = 'X-TrustPlane-Proof';
export const HEADER_NONCE = 'X-TrustPlane-Nonce';
export const HEADER_BODY_SHA256 = 'X-TrustPlane-Body-SHA256';
/** Our extension (SPEC §9.1): the allow-list the caller signed. */
export const HEADER_SIGNED_HEADERS = 'X-TrustPlane-Signed-Headers';

const RESERVED = new Set(
  [HEADER_AUTHORIZATION, HEADER_TRANSCRIPT_SHA256, HEADER_PROOF, HEADER_NONCE, HEADER_BODY_SHA256, HEADER_SIGNED_HEADERS].map((n) => n.toLowerCase()),
);

export interface SignRequestOptions {
  /** The compact JWS passport; its aud, jti, iat and cnf bind the transcript. */
  passport: string;
  /** The proof key; it must be the passport's `cnf` key. */
  privateKey: Ed25519PrivateKey;
  method: string;
  /** Absolute URL as it will be sent; or give scheme/authority/path/query separately. */
  url?: string | URL;
  scheme?: string;
  authority?: string;
  path?: string;
  query?: string;
  routeId: string;
  /** Request headers as they will be sent (wire order; the first occurrence of a name wins). */
  headers?: readonly HeaderEntry[] | Readonly<Record<string, string>>;
  body?: Uint8Array | string;
  bodySha256?: string;
  /** Header names to sign. Default: `x-trustplane-nonce`, plus `content-type` when present. */
  signedHeaders?: readonly string[];
  /** Default: 16 random bytes as 32 lower-hex characters (the Python SDK's nonce). */
  nonce?: string;
  backend?: Ed25519Backend;
}

export interface SignedRequest {
  /** Exactly the five TrustPlane headers of SPEC §2. */
  headers: Record<string, string>;
  /** The canonical allow-list that was signed, for `X-TrustPlane-Signed-Headers`. */
  signedHeaders: string[];
  transcript: Transcript;
}

function headerEntries(headers: SignRequestOptions['headers']): HeaderEntry[] {
  if (headers === undefined) return [];
  if (Array.isArray(headers)) return [...(headers as readonly HeaderEntry[])];
  return Object.entries(headers as Record<string, string>).map(([name, value]) => ({ name, value }));
}

/** Sign one request: the five headers a TrustPlane verifier checks. */
export function signRequest(opts: SignRequestOptions): SignedRequest {
  const token = pyTrim(opts.passport);
  if (token === '') throw new TypeError('missing_passport_token');
  const { payload } = decodePassportUnverified(token);
  const cnf = payload['cnf'];
  const aud = payload['aud'];
  const audience = typeof aud === 'string' ? aud : Array.isArray(aud) && typeof aud[0] === 'string' ? aud[0] : '';
  const jti = payload['jti'];
  const iat = payload['iat'];
  if (audience === '' || typeof jti !== 'string' || jti === '' || typeof iat !== 'number' || !isJsonObject(cnf)) {
    throw new FormatError('invalid_passport_binding', 'passport lacks aud, jti, iat or cnf');
  }
  if (cnf['key_binding'] !== 'software') {
    // SPEC §3: a raw local key may only ever sign as software.
    throw new FormatError('local_raw_key_supports_only_software_key_binding', `passport cnf.key_binding is ${JSON.stringify(cnf['key_binding'])}`);
  }
  if (cnf['public_key_b64url'] !== encodeBase64url(opts.privateKey.publicKey)) {
    throw new FormatError('cnf_public_key_mismatch', "the private key is not the passport's cnf key");
  }

  let scheme = opts.scheme ?? '';
  let authority = opts.authority ?? '';
  let path = opts.path ?? '';
  let query = opts.query ?? '';
  if (opts.url !== undefined) {
    const u = typeof opts.url === 'string' ? new URL(opts.url) : opts.url;
    scheme = u.protocol.replace(/:$/, '');
    authority = u.host;
    path = u.pathname;
    query = u.search.replace(/^\?/, '');
  }
  const nonce = opts.nonce ?? randomBytes(16).toString('hex');
  const entries = headerEntries(opts.headers).filter((e) => asciiLower(pyTrim(e.name)) !== 'x-trustplane-nonce');
  entries.push({ name: 'x-trustplane-nonce', value: nonce });
  const present = new Set(entries.map((e) => asciiLower(pyTrim(e.name))));
  const signed = opts.signedHeaders ?? ['x-trustplane-nonce', ...(present.has('content-type') ? ['content-type'] : [])];
  const contentEncoding = entries.find((e) => asciiLower(pyTrim(e.name)) === 'content-encoding')?.value ?? '';

  const transcriptInput = {
    method: opts.method,
    scheme,
    authority,
    path,
    rawQuery: query,
    audience,
    routeId: opts.routeId,
    contentEncoding,
    headers: entries,
    headerAllowList: signed,
    passportJti: jti,
    nonce,
    issuedAt: iat,
    keyBinding: 'software',
  };
  const transcript = buildTranscript(
    opts.bodySha256 !== undefined ? { ...transcriptInput, bodySha256: opts.bodySha256 } : opts.body !== undefined ? { ...transcriptInput, body: opts.body } : transcriptInput,
  );
  const backend = opts.backend ?? getEd25519Backend();
  const proof = encodeBase64url(backend.sign(opts.privateKey, transcript.digest));
  return {
    headers: {
      [HEADER_AUTHORIZATION]: `Bearer ${token}`,
      [HEADER_TRANSCRIPT_SHA256]: transcript.sha256,
      [HEADER_PROOF]: proof,
      [HEADER_NONCE]: pyTrim(nonce),
      [HEADER_BODY_SHA256]: transcript.bodySha256,
    },
    signedHeaders: [...transcript.allowList],
    transcript,
  };
}

export interface SoftwareIdentity {
  privateKey: Ed25519PrivateKey;
  /** Issuer key id: the `kid` the verifier's trust material knows this key by. */
  kid: string;
  issuer: string;
  subject: string;
  trustDomain: string;
  audience: string;
  /** Passport lifetime in seconds (default 600). */
  ttlSeconds?: number;
}

export interface SignedFetchOptions extends SoftwareIdentity {
  /** The route id for a request, or one route id for all. */
  routeId: string | ((method: string, url: URL) => string);
  /** Extra header names to sign (nonce and content-type are always signed when present). */
  signedHeaders?: readonly string[];
  /** Send `X-TrustPlane-Signed-Headers` (default true). */
  declareSignedHeaders?: boolean;
  fetch?: typeof fetch;
  now?: () => number;
}

type FetchBody = string | Uint8Array | ArrayBuffer | undefined | null;

/**
 * A `fetch` that signs every request: a fresh software passport (new jti), a fresh nonce, and a
 * proof bound to the method, URL, signed headers and body. Redirects are not followed (a proof
 * is bound to one URL). Bodies must be a string, Uint8Array or ArrayBuffer.
 */
export function createSignedFetch(opts: SignedFetchOptions): (input: string | URL, init?: RequestInit) => Promise<Response> {
  const doFetch = opts.fetch ?? globalThis.fetch;
  return async (input, init = {}) => {
    const url = new URL(typeof input === 'string' ? input : input.href);
    const method = (init.method ?? 'GET').toUpperCase();
    const raw = init.body as unknown as FetchBody | object;
    let body: Uint8Array | undefined;
    if (raw === undefined || raw === null) body = undefined;
    else if (typeof raw === 'string') body = Buffer.from(raw, 'utf8');
    else if (raw instanceof Uint8Array) body = raw;
    else if (raw instanceof ArrayBuffer) body = new Uint8Array(raw);
    else throw new TypeError('createSignedFetch: body must be a string, Uint8Array or ArrayBuffer so it can be hashed');
    const headers = new Headers(init.headers);
    for (const name of headers.keys()) {
      if (RESERVED.has(name)) throw new TypeError(`createSignedFetch: header ${name} is set by the signer`);
    }
    const entries: HeaderEntry[] = [];
    headers.forEach((value, name) => entries.push({ name, value }));
    const passport: IssuedPassport = issuePassport({
      signingKey: opts.privateKey,
      kid: opts.kid,
      issuer: opts.issuer,
      subject: opts.subject,
      audience: opts.audience,
      trustDomain: opts.trustDomain,
      ...(opts.ttlSeconds !== undefined ? { ttlSeconds: opts.ttlSeconds } : {}),
      ...(opts.now !== undefined ? { now: opts.now() } : {}),
    });
    const extra = (opts.signedHeaders ?? []).map((n) => asciiLower(pyTrim(n)));
    const signedNames = ['x-trustplane-nonce', ...(headers.has('content-type') ? ['content-type'] : []), ...extra];
    const signed = signRequest({
      passport: passport.token,
      privateKey: opts.privateKey,
      method,
      url,
      routeId: typeof opts.routeId === 'string' ? opts.routeId : opts.routeId(method, url),
      headers: entries,
      ...(body !== undefined ? { body } : {}),
      signedHeaders: signedNames,
    });
    for (const [name, value] of Object.entries(signed.headers)) headers.set(name, value);
    if (opts.declareSignedHeaders ?? true) headers.set(HEADER_SIGNED_HEADERS, signed.signedHeaders.join(','));
    return doFetch(url, { ...init, method, headers, ...(body !== undefined ? { body } : {}), redirect: init.redirect ?? 'manual' });
  };
}
