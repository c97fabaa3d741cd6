/**
 * The upstream-interpretation differential suite (issue 17, "Standing suites"): the policy, the
 * two callers, the GENERATED corpus of spellings, the raw-socket sender and the inspectable
 * replay store. The stacks live in ./stacks.ts (Go, Flask) and in
 * packages/adapter/test/differential-stacks.ts (the Node frameworks and the middleware); the
 * assertions in packages/adapter/test/differential.test.ts. docs/testing.md describes the suite.
 *
 * Every request is signed over the EXACT bytes sent (method, raw path, raw query, headers), so
 * that only the interpretation can differ between the verifier and the upstream.
 */
import { connect } from 'node:net';
import {
  MemoryReplayStore,
  encodeBase64url,
  formatPolicyBundle,
  formatTrustMaterial,
  issuePassport,
  documentContentSha256,
  getEd25519Backend,
  normalizeQuery,
  pyTrim,
  parseBundlePair,
  replayKey,
  resolveRoute,
  signDocument,
  signRequest,
  type BundlePair,
  type ConsumeResult,
  type Ed25519PrivateKey,
  type HeaderEntry,
  type PolicyBundle,
  type TrustMaterial,
} from '@trustplane/core';
import { seedKey } from './fixtures.js';

// ---------------------------------------------------------------------------------------------
// Policy: overlapping exact and template routes, two callers with their own keys and issuers
// ---------------------------------------------------------------------------------------------

export const DIFF_AUDIENCE = 'orders-api';
export const DIFF_BASE = { scheme: 'https', authority: 'orders.example' } as const;

export interface Caller {
  readonly name: 'reader' | 'admin';
  readonly issuer: string;
  readonly kid: string;
  readonly subject: string;
  readonly key: Ed25519PrivateKey;
}

/** Each self-issuing client is its own issuer (so finding 2, a shared issuer, is not in play here). */
export const READER: Caller = { name: 'reader', issuer: 'https://clients.example/reader', kid: 'reader-key-1', subject: 'svc:reader', key: seedKey(41) };
export const ADMIN: Caller = { name: 'admin', issuer: 'https://clients.example/admin', kid: 'admin-key-1', subject: 'svc:admin', key: seedKey(42) };

const bundleSigner = seedKey(43);
const BUNDLE_KID = 'diff-bundle-signer';

function source(c: Caller, rule: { subject_exact: string } | { subject_prefix: string }): Record<string, unknown> {
  return { source_type: 'software_jwks', issuer: c.issuer, trust_domain: 'example.local', required_key_binding: 'software', ...rule };
}

export function diffTrustMaterial(): TrustMaterial {
  return {
    version: 'trustplane-trust-material-v1',
    issuers: [READER, ADMIN].map((c) => ({
      issuer: c.issuer,
      trust_domain: 'example.local',
      source_type: 'software_jwks' as const,
      keys: [{ kid: c.kid, alg: 'EdDSA' as const, public_key_b64url: encodeBase64url(c.key.publicKey) }],
    })),
  };
}

export function diffPolicyBundle(): PolicyBundle {
  const anyService = [source(READER, { subject_prefix: 'svc:' }), source(ADMIN, { subject_prefix: 'svc:' })];
  return {
    version: 'trustplane-bundle-v1',
    policy_id: 'diff-orders',
    policy_version: 1,
    apis: [{ api_id: 'orders-api', audience: DIFF_AUDIENCE, base_url: `${DIFF_BASE.scheme}://${DIFF_BASE.authority}` }],
    route_groups: [
      {
        route_group_id: 'orders',
        api_id: 'orders-api',
        routes: [
          { route_id: 'orders.search', method: 'GET', path_template: '/v1/orders/search', allowed_sources: [source(ADMIN, { subject_exact: ADMIN.subject })] },
          { route_id: 'orders.get', method: 'GET', path_template: '/v1/orders/{order_id}', allowed_sources: anyService },
          { route_id: 'orders.list', method: 'GET', path_template: '/v1/orders', allowed_sources: anyService },
          { route_id: 'orders.create', method: 'POST', path_template: '/v1/orders', required_signed_headers: ['x-tenant'], allowed_sources: anyService },
        ],
      },
    ],
    default_required_key_binding: 'software',
    default_freshness_class: 'offline-ok',
    default_max_staleness_seconds: 300,
    revocations: [],
  } as unknown as PolicyBundle;
}

/** The pair signed, pinned and loaded through the real loader (signatures, schemas, pairing). */
export function diffBundlePair(): BundlePair {
  const trust = diffTrustMaterial();
  const bundle = diffPolicyBundle();
  bundle['trust_material_sha256'] = documentContentSha256(trust);
  const opts = { kid: BUNDLE_KID, signerIssuer: 'https://ops.example/bundles', signedAt: '2026-01-01T00:00:00Z' };
  const keys = new Map([[BUNDLE_KID, getEd25519Backend().importPublicKey(bundleSigner.publicKey)]]);
  return parseBundlePair(
    Buffer.from(formatTrustMaterial(signDocument(trust, bundleSigner, opts) as unknown as TrustMaterial)),
    Buffer.from(formatPolicyBundle(signDocument(bundle, bundleSigner, opts) as unknown as PolicyBundle)),
    { trustMaterialKeys: keys, policyBundleKeys: keys },
  );
}

// ---------------------------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------------------------

export type CaseKind = 'control-allow' | 'control-deny' | 'path' | 'query' | 'header';

/** One request, described before signing: a fresh passport (jti) is minted per send. */
export interface DiffCase {
  readonly name: string;
  readonly kind: CaseKind;
  readonly caller: Caller;
  readonly method: string;
  /** Raw path, sent byte for byte (latin-1). */
  readonly path: string;
  /** Raw query without the first `?` (may itself start with `?`); '' = no `?` at all. */
  readonly query: string;
  /** Extra headers in wire order (beyond Host, the TrustPlane headers and X-Request-Id). */
  readonly headers: readonly HeaderEntry[];
  /** Extra header names to sign (x-trustplane-nonce always; content-type when sent). */
  readonly sign: readonly string[];
  readonly body?: string;
}

const SEARCH = 'search';
const hex = (c: string, upper: boolean): string => {
  const h = Buffer.from(c, 'utf8').toString('hex');
  return (upper ? h.toUpperCase() : h).replace(/(..)/g, '%$1');
};

/** Every spelling of the search path a reader might try to get authorized as `orders.get`. */
export function pathSpellings(): string[] {
  const out = new Set<string>();
  const base = '/v1/orders/search';
  // Percent-encoding of each single character of the whole path (upper and lower hex), then of
  // the whole last segment, then of everything but the slashes.
  for (let i = 0; i < base.length; i++) {
    if (base[i] === '/') continue;
    for (const upper of [true, false]) out.add(base.slice(0, i) + hex(base[i]!, upper) + base.slice(i + 1));
  }
  for (const upper of [true, false]) {
    out.add(`/v1/orders/${hex(SEARCH, upper)}`);
    out.add(base.split('/').map((s) => [...s].map((c) => hex(c, upper)).join('')).join('/'));
  }
  // Encoded slashes between the segments.
  for (const sl of ['%2F', '%2f']) {
    out.add(`/v1/orders${sl}search`);
    out.add(`/v1${sl}orders${sl}search`);
    out.add(`/v1/orders/x${sl}..${sl}search`);
  }
  // Letter case.
  for (const s of ['SEARCH', 'Search', 'sEARCH', 'searcH', 'SeArCh']) out.add(`/v1/orders/${s}`);
  out.add('/V1/orders/search');
  out.add('/v1/ORDERS/search');
  // LATIN SMALL LETTER LONG S (upper-cases to S) as raw UTF-8 bytes (the head is sent as latin-1).
  out.add(`/v1/orders/${Buffer.from('\u017f', 'utf8').toString('latin1')}earch`);
  out.add(`/v1/orders/${hex('\u017f', true)}earch`);
  // Dot segments, plain and encoded, and the `..;` Tomcat-ism.
  for (const p of [
    '/v1/orders/x/../search',
    '/v1/orders/./search',
    '/v1/orders/search/.',
    '/v1/orders/search/x/..',
    '/v1/x/../orders/search',
    '/v1/orders/%2e/search',
    '/v1/orders/%2E%2E/orders/search',
    '/v1/orders/x/%2e%2e/search',
    '/v1/orders/x/.%2e/search',
    '/v1/orders/..;/orders/search',
    '/v1/orders/x/..;/search',
    '/v1/orders/x;/../search',
    '/v1/orders/.;/search',
  ]) {
    out.add(p);
  }
  // `;` path parameters.
  for (const p of ['search;x=1', 'search;', 'search%3Bx=1', 'search%3bx=1', ';x=1', 'search;jsessionid=1']) out.add(`/v1/orders/${p}`);
  // Doubled and trailing slashes.
  for (const p of ['/v1/orders//search', '//v1/orders/search', '/v1//orders/search', '/v1/orders/search/', '/v1/orders/search//', '/v1/orders/']) out.add(p);
  // Backslashes, raw and encoded.
  for (const p of ['/v1/orders\\search', '/v1/orders/x\\..\\search', '/v1/orders/%5Csearch', '/v1/orders/%5csearch', '/v1/orders/search\\', '/v1\\orders\\search']) out.add(p);
  // Fragments (a request target never carries one; some stacks strip it anyway).
  for (const p of ['search#x', 'search#', 'search#/../x', 'search%23x']) out.add(`/v1/orders/${p}`);
  // Every character class beside the segment: unreserved, sub-delims, and the encoded
  // delimiters and escapes.
  const classes = ['-', '.', '_', '~', '!', '$', '&', "'", '(', ')', '*', '+', ',', ';', '=', ':', '@', '%2F', '%2f', '%5C', '%25', '%2E', '%2e', '%00', '%20', '%09', '%0A', '%3F', '%23'];
  for (const c of classes) {
    out.add(`/v1/orders/search${c}`);
    out.add(`/v1/orders/${c}search`);
  }
  return [...out];
}

/** Query spellings on an allowed request (reader GET /v1/orders/123). */
export const QUERY_SPELLINGS: readonly string[] = [
  '?a=1',
  '??a=1',
  'a=1;b=2',
  'a=1%3Bb=2',
  'a=1%3bb=2',
  'a=b+c',
  'a=b%2Bc',
  'a=b%20c',
  'a=1&a=2',
  'a=1&&b=2',
  'a',
  '=x',
  'a[b]=1',
  'a%5Bb%5D=1',
  'a=%7E',
  'a=~',
  'a=1&A=2',
  'a%3D1=2',
  'a=1%26b=2',
];

const TENANT = 'acme';

function post(name: string, headers: readonly HeaderEntry[], sign: readonly string[] = ['x-tenant']): DiffCase {
  return { name, kind: 'header', caller: READER, method: 'POST', path: '/v1/orders', query: '', headers: [{ name: 'Content-Type', value: 'application/json' }, ...headers], sign, body: '{"item":"widget"}' };
}

function getOne(name: string, headers: readonly HeaderEntry[], kind: CaseKind = 'header'): DiffCase {
  return { name, kind, caller: READER, method: 'GET', path: '/v1/orders/123', query: '', headers, sign: [] };
}

/** The whole corpus: controls (that MUST be allowed or denied) and the generated spellings. */
export function diffCorpus(): DiffCase[] {
  const cases: DiffCase[] = [];
  // Controls: the suite cannot pass vacuously.
  cases.push(getOne('control: reader GET /v1/orders/123', [], 'control-allow'));
  cases.push({ name: 'control: reader GET /v1/orders', kind: 'control-allow', caller: READER, method: 'GET', path: '/v1/orders', query: '', headers: [], sign: [] });
  cases.push({ name: 'control: admin GET /v1/orders/search', kind: 'control-allow', caller: ADMIN, method: 'GET', path: '/v1/orders/search', query: '', headers: [], sign: [] });
  cases.push({ name: 'control: admin GET /v1/orders/search?status=open', kind: 'control-allow', caller: ADMIN, method: 'GET', path: '/v1/orders/search', query: 'status=open', headers: [], sign: [] });
  cases.push({ ...post('control: reader POST /v1/orders with signed X-Tenant', [{ name: 'X-Tenant', value: TENANT }]), kind: 'control-allow' });
  cases.push({ ...getOne('control: reader GET /v1/orders/123?b=2&a=1', []), kind: 'control-allow', query: 'b=2&a=1' });
  cases.push({ name: 'control: reader GET /v1/orders/search is denied', kind: 'control-deny', caller: READER, method: 'GET', path: '/v1/orders/search', query: '', headers: [], sign: [] });
  cases.push({ ...post('control: reader POST without signing X-Tenant is denied', [{ name: 'X-Tenant', value: TENANT }], []), kind: 'control-deny' });
  cases.push({ name: 'control: reader DELETE /v1/orders/123 is denied', kind: 'control-deny', caller: READER, method: 'DELETE', path: '/v1/orders/123', query: '', headers: [], sign: [] });

  for (const p of pathSpellings()) cases.push({ name: `path ${p}`, kind: 'path', caller: READER, method: 'GET', path: p, query: '', headers: [], sign: [] });
  for (const q of QUERY_SPELLINGS) cases.push({ name: `query ?${q}`, kind: 'query', caller: READER, method: 'GET', path: '/v1/orders/123', query: q, headers: [], sign: [] });

  // Headers: underscore/dash twins and repeats of the signed X-Tenant.
  const t = (value: string): HeaderEntry => ({ name: 'X-Tenant', value });
  cases.push(post('X_Tenant: evil after signed X-Tenant', [t(TENANT), { name: 'X_Tenant', value: 'evil' }]));
  cases.push(post('X_Tenant: evil before signed X-Tenant', [{ name: 'X_Tenant', value: 'evil' }, t(TENANT)]));
  cases.push(post('x_tenant: evil after signed X-Tenant', [t(TENANT), { name: 'x_tenant', value: 'evil' }]));
  cases.push(post('repeated X-Tenant', [t(TENANT), t('evil')]));
  cases.push(post('repeated X-Tenant, other case', [t(TENANT), { name: 'x-TENANT', value: 'evil' }]));
  cases.push(post('signed X-Tenant ending in U+00A0', [t(`${TENANT}\u00a0`)]));
  cases.push(post('signed X-Tenant ending in U+0085', [t(`${TENANT}\u0085`)]));
  // Identity header twins (the adapter replaces X-TrustPlane-Subject; the twins?).
  cases.push(getOne('X_TrustPlane_Subject: svc:admin', [{ name: 'X_TrustPlane_Subject', value: ADMIN.subject }]));
  cases.push(getOne('X-TrustPlane-Subject: svc:admin', [{ name: 'X-TrustPlane-Subject', value: ADMIN.subject }]));
  // Method and URL override headers.
  for (const h of ['X-HTTP-Method-Override', 'X-HTTP-Method', 'X-Method-Override']) {
    cases.push(post(`${h}: DELETE on the allowed POST`, [t(TENANT), { name: h, value: 'DELETE' }]));
    cases.push(getOne(`${h}: DELETE on the allowed GET`, [{ name: h, value: 'DELETE' }]));
  }
  for (const h of ['X-Original-URL', 'X-Rewrite-URL']) {
    cases.push(getOne(`${h}: /v1/orders/search on the allowed GET`, [{ name: h, value: '/v1/orders/search' }]));
  }
  return cases;
}

// ---------------------------------------------------------------------------------------------
// Signing and sending
// ---------------------------------------------------------------------------------------------

export interface SignedCase {
  readonly c: DiffCase;
  readonly requestId: string;
  readonly jti: string;
  /** The replay-store key this request's jti is consumed under. */
  readonly replayKey: string;
  /** The route id the caller signed (what the verifier resolves the path to, else orders.get). */
  readonly routeId: string;
  /** The whole request, bytes as sent. */
  readonly bytes: Buffer;
  /** The transcript's value of each signed header (what the signature covers). */
  readonly signedValues: ReadonlyMap<string, string>;
}

let seq = 0;

/** Mint a passport for `c.caller` and sign the request over the exact bytes to be sent. */
export function signCase(c: DiffCase, pair: BundlePair, hostHeader: string, nowMs: number = Date.now()): SignedCase {
  seq++;
  const jti = `diff-${process.pid}-${seq}-${Math.random().toString(36).slice(2, 10)}`;
  const requestId = `diff-req-${seq}-${jti.slice(-6)}`;
  const passport = issuePassport({ signingKey: c.caller.key, kid: c.caller.kid, issuer: c.caller.issuer, subject: c.caller.subject, audience: DIFF_AUDIENCE, trustDomain: 'example.local', now: nowMs, ttlSeconds: 300, jti });
  // The route the signer claims: the policy's for the bytes sent, or (a path the verifier refuses
  // as non-canonical, or no route) the one the attacker would name.
  let resolved: string | undefined;
  try {
    resolved = resolveRoute(pair.policy, c.method, c.path)?.routeId;
  } catch {
    resolved = undefined;
  }
  const routeId = resolved ?? (c.method === 'POST' ? 'orders.create' : 'orders.get');
  const hasContentType = c.headers.some((h) => h.name.toLowerCase() === 'content-type');
  const signedHeaders = ['x-trustplane-nonce', ...(hasContentType ? ['content-type'] : []), ...c.sign];
  const signed = signRequest({
    passport: passport.token,
    privateKey: c.caller.key,
    method: c.method,
    scheme: DIFF_BASE.scheme,
    authority: DIFF_BASE.authority,
    path: c.path,
    query: c.query,
    routeId,
    headers: c.headers,
    signedHeaders,
    ...(c.body !== undefined ? { body: c.body } : {}),
  });
  const lines = [`${c.method} ${c.path}${c.query === '' ? '' : `?${c.query}`} HTTP/1.1`, `Host: ${hostHeader}`];
  for (const h of c.headers) lines.push(`${h.name}: ${h.value}`);
  for (const [k, v] of Object.entries(signed.headers)) lines.push(`${k}: ${v}`);
  lines.push(`x-trustplane-signed-headers: ${signed.signedHeaders.join(',')}`);
  lines.push(`X-Request-Id: ${requestId}`);
  const body = c.body === undefined ? Buffer.alloc(0) : Buffer.from(c.body);
  if (c.body !== undefined) lines.push(`Content-Length: ${body.length}`);
  lines.push('Connection: close');
  const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
  // The value the signature covers: the FIRST occurrence, trimmed as the contract trims (SPEC §1).
  const signedValues = new Map<string, string>();
  for (const n of signed.signedHeaders) {
    const first = c.headers.find((h) => h.name.toLowerCase() === n);
    if (first !== undefined) signedValues.set(n, pyTrim(first.value));
  }
  return { c, requestId, jti, replayKey: replayKey(c.caller.issuer, jti), routeId, bytes: Buffer.concat([head, body]), signedValues };
}

export interface RawResponse {
  readonly status: number;
  readonly headers: ReadonlyMap<string, string>;
  readonly body: string;
}

function decodeChunked(b: Buffer): Buffer {
  const out: Buffer[] = [];
  let i = 0;
  for (let n = 0; n < 10_000; n++) {
    const eol = b.indexOf('\r\n', i);
    if (eol < 0) break;
    const size = parseInt(b.subarray(i, eol).toString('latin1'), 16);
    if (!Number.isFinite(size) || size === 0) break;
    out.push(b.subarray(eol + 2, eol + 2 + size));
    i = eol + 2 + size + 2;
  }
  return Buffer.concat(out);
}

/** Send raw bytes on a fresh connection (Connection: close) and read the whole answer. */
export function sendRaw(port: number, bytes: Buffer, timeoutMs = 5000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    // Not end(): some servers drop a half-closed connection before answering; Connection: close ends it.
    const sock = connect(port, '127.0.0.1', () => sock.write(bytes));
    const timer = setTimeout(() => sock.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      const all = Buffer.concat(chunks);
      const split = all.indexOf('\r\n\r\n');
      const head = (split < 0 ? all : all.subarray(0, split)).toString('latin1').split('\r\n');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '');
      if (m === null) return reject(new Error(`not an HTTP response: ${JSON.stringify(all.subarray(0, 200).toString('latin1'))}`));
      const headers = new Map<string, string>();
      for (const l of head.slice(1)) {
        const c = l.indexOf(':');
        if (c > 0) headers.set(l.slice(0, c).trim().toLowerCase(), l.slice(c + 1).trim());
      }
      let body: Buffer = split < 0 ? Buffer.alloc(0) : all.subarray(split + 4);
      if (headers.get('transfer-encoding')?.toLowerCase() === 'chunked') body = decodeChunked(body);
      resolve({ status: Number(m[1]), headers, body: body.toString('utf8') });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// What the app saw, and what it should have seen
// ---------------------------------------------------------------------------------------------

/** The reply every stack's handlers give: which route ran, and what the framework told the app. */
export interface HandlerReply {
  handler: string;
  method: string;
  subject: string | null;
  tenant: string | null;
  /** The framework's parsed query, as sorted [key, value] pairs. */
  query: [string, string][];
  /** Middleware stacks only: the decision's route id (there is no audit sink in-process). */
  policy_route?: string;
}

export function parseHandlerReply(body: string): HandlerReply | undefined {
  try {
    const j = JSON.parse(body) as Record<string, unknown>;
    return typeof j['handler'] === 'string' ? (j as unknown as HandlerReply) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The query's meaning as the signature binds it: the transcript's normalized query
 * (`rfc3986-sort-keys-values`, SPEC §1) read as application/x-www-form-urlencoded. An app
 * whose parsed query differs from this ran with parameters other than the ones signed.
 */
export function signedQueryPairs(rawQuery: string): [string, string][] {
  // The `+` rule is SPEC §1's hard contract (docs/security-model.md): the transcript binds a raw
  // `+` as a literal plus, while a form-decoding API reads it as a space. What the API sees for
  // such a query is what the caller's own bytes mean under form decoding: the documented reading.
  if (rawQuery.includes('+')) return meaningfulPairs([...new URLSearchParams(rawQuery)]);
  const norm = normalizeQuery(rawQuery);
  if (norm === '') return [];
  const pairs: [string, string][] = norm.split('&').map((p) => {
    const eq = p.indexOf('=');
    const dec = (s: string) => decodeURIComponent(s.replace(/\+/g, ' '));
    return [dec(p.slice(0, eq)), dec(p.slice(eq + 1))];
  });
  return meaningfulPairs(pairs);
}

/**
 * Sorted, without `["", ""]`: an empty part (`a=1&&b=2`) normalizes to `=`, and neither carries a
 * name or a value (the WHATWG urlencoded parser skips the first, frameworks differ on the second).
 */
export function meaningfulPairs(p: readonly [string, string][]): [string, string][] {
  return sortPairs(p.filter(([k, v]) => k !== '' || v !== ''));
}

export function sortPairs(p: [string, string][]): [string, string][] {
  return [...p].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
}

/** A MemoryReplayStore that can say whether it holds a key (without consuming it). */
export class InspectableReplayStore extends MemoryReplayStore {
  private readonly held = new Set<string>();
  override consume(key: string, expiresAtMs: number, nowMs: number): ConsumeResult {
    const r = super.consume(key, expiresAtMs, nowMs);
    if (r === 'fresh') this.held.add(key);
    return r;
  }
  holds(key: string): boolean {
    return this.held.has(key);
  }
}
