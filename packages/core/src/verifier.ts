/**
 * The verifier pipeline (SPEC §5): one request in, one decision out. Every check runs before the
 * jti is consumed, so a malformed or unauthorized request can never burn a caller's passport.
 * Cheap structural checks come first, so junk costs no Ed25519 work. It never throws: an
 * unexpected failure is a deny with `internal_error` (fail closed).
 *
 *   passport present → proof headers present and well-formed → route → parse passport (alg
 *   allow-list) → issuer key by kid → passport signature → claims and time → issuer and trust
 *   domain → audience → freshness → body hash and transcript → proof with the cnf key →
 *   signer class and source rules → revocation → consume jti (atomic)
 */
import { TrustPlaneError, FormatError } from './errors.js';
import { REASONS, type ReasonCode } from './reasons.js';
import { decodeBase64url, isSha256Hex, sha256Hex, timingSafeEqualString } from './encoding.js';
import { getEd25519Backend, type Ed25519Backend, type Ed25519PublicKey } from './ed25519/backend.js';
import { parsePassport, validatePassportClaims, DEFAULT_SKEW_SECONDS, DEFAULT_MAX_LIFETIME_SECONDS, type PassportClaims, type ParsedPassport } from './passport.js';
import { resolveRoute, type CompiledPolicy, type CompiledRoute, type SourceRule, type CompiledKey } from './policy.js';
import { buildTranscript, canonicalAllowList, type Transcript } from './transcript.js';
import { ReplayStoreError, replayKey, type ConsumeResult, type ReplayStore } from './replay.js';
import { MonotonicClock, systemClock, type Clock } from './clock.js';
import { meetsMinimum, type SignerClass } from './signer-classes.js';
import { asciiLower, pyTrim } from './text.js';

/** Header values: a string, or every occurrence in wire order (Node's `req.headersDistinct`). */
export type HeaderValue = string | readonly string[] | undefined;
/** Request headers keyed by LOWER-CASE name. */
export type RequestHeaders = Readonly<Record<string, HeaderValue>>;

export interface VerifyRequest {
  method: string;
  /** The raw request path as received, without the query. */
  path: string;
  /** The raw query, without the leading '?'. */
  query?: string;
  /** Lower-case names → values. Pass `req.headersDistinct` so duplicates are visible. */
  headers: RequestHeaders;
  /** The body bytes, when buffered. */
  body?: Uint8Array;
  /** SHA-256 (lower hex) of the body computed by the enforcement point while streaming it. */
  bodySha256?: string;
  /**
   * Forward-auth mode: the body is not visible to the verifier, so the transcript binds the
   * caller's `X-TrustPlane-Body-SHA256` as claimed. Never set this when the body is available.
   */
  bodyNotAvailable?: boolean;
  requestId?: string;
  /**
   * Lower-case names of request headers the enforcement point will NOT pass on to the API (a
   * proxy drops those a `Connection` header nominates). A signed header, or `content-encoding`
   * (bound by the transcript), among them is denied `malformed_request`: the API would receive
   * a request other than the one verified.
   */
  unforwardedHeaders?: ReadonlySet<string>;
}

export interface PolicySnapshot {
  readonly policy: CompiledPolicy;
  /** When the policy's source was last confirmed current (ms); drives freshness classes. */
  readonly confirmedAtMs: number;
}

export interface PolicyProvider {
  current(): PolicySnapshot | undefined;
  /**
   * Told when a passport names a kid the current policy does not know (the request is denied
   * `unknown_issuer_key` regardless). A provider that fetches keys (JwksTrustSource) may refetch,
   * rate-limited; it must return at once and never throw.
   */
  onUnknownKid?(kid: string): void;
}

export interface VerifierOptions {
  policy: PolicyProvider;
  replayStore: ReplayStore;
  clock?: Clock;
  /** Allowed clock skew in seconds (default 30). */
  skewSeconds?: number;
  /** Maximum passport lifetime exp − iat in seconds (default 900). */
  maxLifetimeSeconds?: number;
  /** `request` (method + path_template, default) or `route-id` (this verifier serves one route). */
  routeMode?: 'request' | 'route-id';
  routeId?: string;
  /** `realtime` routes need the bundle confirmed within this many seconds (default 5). */
  freshnessWindowSeconds?: number;
  backend?: Ed25519Backend;
}

export interface AllowDecision {
  readonly allowed: true;
  readonly reason: 'request_verified';
  readonly status: 200;
  readonly subject: string;
  readonly issuer: string;
  readonly trustDomain: string;
  readonly jti: string;
  readonly keyBinding: SignerClass;
  readonly requiredKeyBinding: SignerClass;
  readonly routeId: string;
  readonly audience: string;
  readonly transcriptSha256: string;
  readonly policyId: string;
  readonly policyVersion: number;
  readonly sourceType: string;
  readonly claims: PassportClaims;
}

export interface DenyDecision {
  readonly allowed: false;
  readonly reason: ReasonCode;
  readonly status: number;
  /** Human detail for logs and audit; never sent to the client. */
  readonly detail: string;
  readonly routeId?: string;
  readonly audience?: string;
  readonly issuer?: string;
  readonly subject?: string;
  readonly jti?: string;
  readonly keyBinding?: string;
  readonly requiredKeyBinding?: string;
  readonly transcriptSha256?: string;
  readonly policyId?: string;
  readonly policyVersion?: number;
}

export type Decision = AllowDecision | DenyDecision;

export const SIGNED_HEADERS_HEADER = 'x-trustplane-signed-headers';
const MAX_NONCE = 256;
const MAX_SIGNED_HEADERS_CHARS = 1024;
const MAX_SIGNED_HEADER_NAMES = 32;
const CNF_CACHE_MAX = 4096;

/** Accumulates what is known so far, so a denial's audit event carries it. */
interface Ctx {
  route?: CompiledRoute;
  claims?: PassportClaims;
  transcriptSha256?: string;
  policy?: CompiledPolicy;
}

/** One request on its way through the stages of `verifyBatch`. */
interface Checking {
  readonly index: number;
  readonly req: VerifyRequest;
  readonly ctx: Ctx;
  readonly snapshot: PolicySnapshot;
  readonly policy: CompiledPolicy;
  readonly route: CompiledRoute;
  readonly parsed: ParsedPassport;
  readonly key: CompiledKey;
  readonly proofSig: Buffer;
  readonly claimedDigest: string;
  readonly claimedBody: string;
  readonly nonce: string;
  readonly declared: string | undefined;
  /** Header names spelled with `_`, by their `-` spelling (CGI/WSGI merge the two); usually none. */
  readonly underscored: ReadonlyMap<string, string> | undefined;
  claims: PassportClaims | undefined;
  cnfKey: Ed25519PublicKey | undefined;
  transcript: Transcript | undefined;
}

function deny(reason: ReasonCode, detail: string, ctx: Ctx): DenyDecision {
  const d: { -readonly [K in keyof DenyDecision]: DenyDecision[K] } = { allowed: false, reason, status: REASONS[reason].status, detail };
  if (ctx.route !== undefined) {
    d.routeId = ctx.route.routeId;
    d.requiredKeyBinding = ctx.route.requiredKeyBinding;
  }
  if (ctx.claims !== undefined) {
    d.audience = ctx.claims.aud;
    d.issuer = ctx.claims.iss;
    d.subject = ctx.claims.sub;
    d.jti = ctx.claims.jti;
    d.keyBinding = ctx.claims.cnf.key_binding;
  }
  if (ctx.transcriptSha256 !== undefined) d.transcriptSha256 = ctx.transcriptSha256;
  if (ctx.policy !== undefined) {
    d.policyId = ctx.policy.policyId;
    d.policyVersion = ctx.policy.policyVersion;
  }
  return d;
}

/** The single value of a header that must not repeat; `null` when it is repeated. */
function single(headers: RequestHeaders, name: string): string | undefined | null {
  const v = headers[name];
  if (v === undefined) return undefined;
  if (typeof v === 'string') return v;
  if (v.length === 0) return undefined;
  return v.length === 1 ? v[0] : null;
}

function firstValue(headers: RequestHeaders, name: string): string | undefined {
  const v = headers[name];
  return v === undefined || typeof v === 'string' ? v : v[0];
}

/**
 * Another request header that an API merging `_` and `-` (CGI, WSGI) would read as the signed
 * header `name` — `X_Tenant` beside a signed `X-Tenant`, or the other way round — else undefined.
 */
function signedTwin(name: string, h: RequestHeaders, underscored: ReadonlyMap<string, string>): string | undefined {
  const dashed = name.indexOf('_') === -1 ? name : name.replaceAll('_', '-');
  if (dashed !== name && h[dashed] !== undefined) return dashed;
  const other = underscored.get(dashed);
  return other !== undefined && other !== name ? other || 'more than one header spelled with _' : undefined;
}

const FRESHNESS_OFFLINE = new Set(['offline-ok', 'offline_ok']);

/** The stage at which a source rule failed; the deepest failure across rules is reported. */
const STAGES: readonly ReasonCode[] = [
  'source_issuer_mismatch',
  'source_trust_domain_mismatch',
  'source_subject_mismatch',
  'insufficient_key_binding',
  'missing_provenance',
  'provenance_mismatch',
  'missing_context',
  'context_mismatch',
];

function checkSource(rule: SourceRule, claims: PassportClaims, key: CompiledKey, route: CompiledRoute): { stage: number; detail: string } | undefined {
  if (rule.issuer !== claims.iss || rule.source_type !== key.sourceType) return { stage: 0, detail: `source rule issuer ${rule.issuer} (${rule.source_type})` };
  if (rule.trust_domain !== claims.trust_domain) return { stage: 1, detail: `source rule trust domain ${rule.trust_domain}` };
  if (rule.subject_exact !== undefined ? claims.sub !== rule.subject_exact : !claims.sub.startsWith(rule.subject_prefix ?? '\u0000')) {
    return { stage: 2, detail: `source rule subject ${rule.subject_exact ?? `${rule.subject_prefix ?? ''}*`}` };
  }
  const min = rule.required_key_binding ?? route.requiredKeyBinding;
  if (!meetsMinimum(claims.cnf.key_binding, min)) return { stage: 3, detail: `signer class ${claims.cnf.key_binding} is below the source minimum ${min}` };
  const pp = rule.provenance_policy;
  if (pp !== undefined) {
    const prov = claims.provenance;
    if (prov === undefined) return { stage: 4, detail: 'passport carries no provenance' };
    if (pp.profile !== undefined && prov.profile !== pp.profile) return { stage: 5, detail: `provenance profile ${prov.profile} is not ${pp.profile}` };
    if (pp.required_spiffe_trust_domain !== undefined && prov.spiffe_trust_domain !== pp.required_spiffe_trust_domain) {
      return { stage: 5, detail: `provenance SPIFFE trust domain is not ${pp.required_spiffe_trust_domain}` };
    }
    if (pp.required_posture !== undefined && prov.posture !== pp.required_posture) return { stage: 5, detail: `provenance posture is not ${pp.required_posture}` };
    if (prov.spiffe_id !== undefined && prov.spiffe_id !== claims.sub) return { stage: 5, detail: 'provenance SPIFFE ID differs from the passport subject' };
  }
  const cp = rule.context_policy;
  if (cp !== undefined) {
    for (const [req, want] of Object.entries(cp)) {
      const field = req.slice('required_'.length);
      const got = claims.ctx?.[field];
      if (got === undefined) return { stage: 6, detail: `passport context lacks ${field}` };
      if (got !== want) return { stage: 7, detail: `passport context ${field} differs from the policy` };
    }
  }
  return undefined;
}

/**
 * Headers with which common frameworks run another method or URL than the request line's
 * (Rack, Express's method-override, Laravel, Symfony, IIS URL Rewrite): the verified method
 * and path would not be what the upstream runs, so a request carrying one is refused.
 */
export const OVERRIDE_HEADERS: ReadonlySet<string> = new Set(['x-http-method-override', 'x-http-method', 'x-method-override', 'x-original-url', 'x-rewrite-url']);

/**
 * One pass over the request's header names: an override header (in either spelling) is refused
 * (its detail returned); names spelled with `_` are returned by their `-` spelling, for the
 * twin check of signed headers. `undefined` when no name holds `_` (the usual case).
 */
function scanHeaderNames(h: RequestHeaders): Map<string, string> | string | undefined {
  let underscored: Map<string, string> | undefined;
  for (const name in h) {
    let n = name;
    if (name.indexOf('_') !== -1) {
      n = name.replaceAll('_', '-');
      (underscored ??= new Map()).set(n, underscored?.has(n) === true ? '' : name);
    }
    if (OVERRIDE_HEADERS.has(n)) return `${n} would make the API run another method or URL than the one verified`;
  }
  return underscored;
}

/**
 * A query whose bytes upstream parsers read otherwise than SPEC §1 normalization binds it: a
 * second leading `?` (normalization drops one, an API sees a key starting with `?`), a raw `;`
 * (a separator to some parsers, data to the transcript, so `a=1;b=2` and `a=1%3Bb%3D2` would
 * verify alike), `#` (a fragment to most URL parsers, which drop the rest) and a parameter with
 * an empty name (`=x`, which some parsers drop).
 */
function queryAmbiguity(query: string): string | undefined {
  if (query.charCodeAt(0) === 0x3f) return 'the query starts with a second ?';
  if (query.indexOf(';') !== -1) return 'the query holds a raw ; (some upstreams split parameters on it): send it as %3B';
  if (query.indexOf('#') !== -1) return 'the query holds a raw # (a fragment to most upstreams): send it as %23';
  if (query.charCodeAt(0) === 0x3d || query.indexOf('&=') !== -1) return 'the query holds a parameter without a name (=value), which some upstreams drop';
  return undefined;
}

export class Verifier {
  private readonly policy: PolicyProvider;
  private readonly replay: ReplayStore;
  private readonly clock: Clock;
  private readonly skew: number;
  private readonly maxLifetime: number;
  private readonly routeMode: 'request' | 'route-id';
  private readonly routeId: string | undefined;
  private readonly freshnessWindowMs: number;
  readonly backend: Ed25519Backend;
  private readonly cnfCache = new Map<string, Ed25519PublicKey>();
  private lastDeclared: { readonly raw: string | undefined; readonly list: readonly string[] } = { raw: undefined, list: [] };

  constructor(opts: VerifierOptions) {
    this.policy = opts.policy;
    this.replay = opts.replayStore;
    this.clock = new MonotonicClock(opts.clock ?? systemClock);
    this.skew = opts.skewSeconds ?? DEFAULT_SKEW_SECONDS;
    this.maxLifetime = opts.maxLifetimeSeconds ?? DEFAULT_MAX_LIFETIME_SECONDS;
    this.routeMode = opts.routeMode ?? 'request';
    this.routeId = opts.routeId;
    this.freshnessWindowMs = (opts.freshnessWindowSeconds ?? 5) * 1000;
    this.backend = opts.backend ?? getEd25519Backend();
    if (this.routeMode === 'route-id' && (this.routeId === undefined || this.routeId === '')) {
      throw new TypeError('routeMode "route-id" needs a routeId');
    }
    if (!(this.skew >= 0) || !(this.maxLifetime > 0) || !(this.freshnessWindowMs > 0)) throw new TypeError('skewSeconds, maxLifetimeSeconds and freshnessWindowSeconds must be positive numbers');
  }

  /** Verify one request. Never throws; never consumes the jti unless every other check passed. */
  async verify(req: VerifyRequest): Promise<Decision> {
    // The stages of verifyBatch, for one request.
    const c = this.checkStructure(req, 0);
    if ('allowed' in c) return c;
    const denied = this.checkPassportSignature(c) ?? this.checkClaimsAndTranscript(c, this.clock.now()) ?? this.checkProofAndPolicy(c);
    return denied ?? this.consume(c, this.clock.now());
  }

  /**
   * Verify several requests: for each, exactly the checks, order and decision of `verify`, but
   * run stage by stage across the batch (every structural check, then every passport signature,
   * then every transcript, then every proof, then the consumes in request order), so each
   * stage's code, libsodium's included, runs back to back while it is in the CPU caches. Never
   * throws. A decision is a promise only when the replay store answers asynchronously.
   */
  verifyBatch(reqs: readonly VerifyRequest[]): (Decision | Promise<Decision>)[] {
    const out = new Array<Decision | Promise<Decision>>(reqs.length);
    const live = this.checkStages(reqs, out, false);
    // Atomic consume, in request order: the only state change, and only for a request that
    // passed every other check.
    const consumeMs = this.clock.now();
    for (const c of live) out[c.index] = this.consume(c, consumeMs);
    return out;
  }

  /**
   * Verify the heads of requests whose bodies have not been read yet: every check of
   * `verifyBatch` — passport, claims, route, source rule, signer class, the transcript rebuilt
   * with the caller's `X-TrustPlane-Body-SHA256`, the proof — except the body's own hash and the
   * consume. An enforcement point reads (and holds) a body only for a request whose head passed,
   * so an unauthenticated caller cannot make it buffer anything; it then calls `completeHead`
   * with the hash of the bytes received. Never throws, consumes nothing.
   */
  verifyHeadBatch(reqs: readonly VerifyRequest[]): (DenyDecision | VerifiedHead)[] {
    const out = new Array<DenyDecision | VerifiedHead>(reqs.length);
    for (const c of this.checkStages(reqs, out, true)) out[c.index] = new VerifiedHead(c);
    return out;
  }

  /**
   * The rest of a request whose head passed `verifyHeadBatch`: the body hash against the
   * claimed one (`request_binding_mismatch`), the passport still current, then the atomic
   * consume. A head is completed at most once.
   */
  completeHead(head: VerifiedHead, bodySha256: string): Decision | Promise<Decision> {
    const c = head.take();
    if (c === undefined) throw new TypeError('this verified head was already completed');
    if (!timingSafeEqualString(bodySha256, c.claimedBody)) return deny('request_binding_mismatch', 'the body does not match X-TrustPlane-Body-SHA256', c.ctx);
    const nowMs = this.clock.now();
    if (nowMs > (c.claims!.exp + this.skew) * 1000) return deny('passport_expired', 'the passport expired while its body was being received', c.ctx);
    return this.consume(c, nowMs);
  }

  /**
   * Every stage but the consume, stage by stage across the batch: each stage keeps only the
   * requests that passed it, and a denied request's decision is written to `out` where it
   * failed. Returns the requests that passed them all.
   */
  private checkStages(reqs: readonly VerifyRequest[], out: (Decision | Promise<Decision> | VerifiedHead)[], headOnly: boolean): Checking[] {
    const live: Checking[] = [];
    for (let i = 0; i < reqs.length; i++) {
      const c = this.checkStructure(reqs[i]!, i);
      if ('allowed' in c) out[i] = c;
      else live.push(c);
    }
    this.keepPassing(live, out, (c) => this.checkPassportSignature(c));
    const nowMs = this.clock.now();
    this.keepPassing(live, out, (c) => this.checkClaimsAndTranscript(c, nowMs, headOnly));
    this.keepPassing(live, out, (c) => this.checkProofAndPolicy(c));
    return live;
  }

  /** Run one stage over the live requests, in place: the passing ones stay, in order. */
  private keepPassing(live: Checking[], out: (Decision | Promise<Decision> | VerifiedHead)[], stage: (c: Checking) => DenyDecision | undefined): void {
    let m = 0;
    for (const c of live) {
      const d = stage(c);
      if (d === undefined) live[m++] = c;
      else out[c.index] = d;
    }
    live.length = m;
  }

  private failure(err: unknown, ctx: Ctx): DenyDecision {
    if (err instanceof TrustPlaneError) return deny(err.reason, err.detail, ctx);
    return deny('internal_error', `unexpected verifier failure: ${err instanceof Error ? err.message : String(err)}`, ctx);
  }

  private consume(c: Checking, nowMs: number): Decision | Promise<Decision> {
    const claims = c.claims!;
    let pending: ConsumeResult | Promise<ConsumeResult>;
    try {
      pending = this.replay.consume(replayKey(claims.iss, claims.jti), (claims.exp + this.skew) * 1000, nowMs);
    } catch (err) {
      return this.consumeFailure(err, c.ctx);
    }
    // A synchronous store (memory) answers without a microtask turn.
    if (typeof pending === 'string') return this.decide(c, pending);
    return pending.then(
      (result) => this.decide(c, result),
      (err: unknown) => this.consumeFailure(err, c.ctx),
    );
  }

  private consumeFailure(err: unknown, ctx: Ctx): DenyDecision {
    if (err instanceof ReplayStoreError) return deny(err.reason, err.message, ctx);
    return deny('replay_store_unavailable', `replay store error: ${err instanceof Error ? err.message : String(err)}`, ctx);
  }

  private decide(c: Checking, result: ConsumeResult): Decision {
    if (result !== 'fresh') return deny('jti_replay', 'this passport jti was already used', c.ctx);
    const claims = c.claims!;
    const { route, policy } = c;
    return {
      allowed: true,
      reason: 'request_verified',
      status: 200,
      subject: claims.sub,
      issuer: claims.iss,
      trustDomain: claims.trust_domain,
      jti: claims.jti,
      keyBinding: claims.cnf.key_binding,
      requiredKeyBinding: route.requiredKeyBinding,
      routeId: route.routeId,
      audience: claims.aud,
      transcriptSha256: c.transcript!.sha256,
      policyId: policy.policyId,
      policyVersion: policy.policyVersion,
      sourceType: c.key.sourceType,
      claims,
    };
  }

  private importCnfKey(b64: string): Ed25519PublicKey {
    let key = this.cnfCache.get(b64);
    if (key === undefined) {
      try {
        key = this.backend.importPublicKey(decodeBase64url(b64, 43, 'cnf public key'));
      } catch (err) {
        throw new TrustPlaneError('invalid_passport_claims', `cnf.public_key_b64url: ${err instanceof Error ? err.message : 'invalid'}`);
      }
      if (this.cnfCache.size >= CNF_CACHE_MAX) this.cnfCache.clear();
      this.cnfCache.set(b64, key);
    }
    return key;
  }

  /** Steps 1–4 up to the issuer key: headers, route, passport parse. No signature work. */
  private checkStructure(req: VerifyRequest, index: number): DenyDecision | Checking {
    const ctx: Ctx = {};
    try {
      const h = req.headers;
      // 1. Passport present (401), unambiguous.
      const auth = single(h, 'authorization');
      if (auth === null) return deny('malformed_request', 'more than one Authorization header', ctx);
      if (auth === undefined || auth === '') return deny('missing_passport', 'no Authorization header', ctx);
      const sp = auth.indexOf(' ');
      // The scheme is case-insensitive (RFC 9110 §11.1); 'Bearer' as callers send it is the fast path.
      if (sp !== 6 || (!auth.startsWith('Bearer') && asciiLower(auth.slice(0, 6)) !== 'bearer')) return deny('missing_passport', 'Authorization is not a Bearer passport', ctx);
      const token = auth.slice(7).trim();
      if (token === '') return deny('missing_passport', 'empty Bearer passport', ctx);

      // 2. Proof headers present and well-formed: cheap, before any signature work.
      const proof = single(h, 'x-trustplane-proof');
      const claimedDigest = single(h, 'x-trustplane-transcript-sha256');
      const nonce = single(h, 'x-trustplane-nonce');
      const claimedBody = single(h, 'x-trustplane-body-sha256');
      if (proof === null || claimedDigest === null || nonce === null || claimedBody === null) return deny('malformed_proof_headers', 'a TrustPlane proof header is repeated', ctx);
      // Python's str.strip() (pyTrim), as the transcript trims: JS trim() would keep U+0085.
      if (proof === undefined || claimedDigest === undefined || nonce === undefined || claimedBody === undefined || pyTrim(nonce) === '') {
        return deny('missing_proof_headers', 'X-TrustPlane-Proof, -Transcript-SHA256, -Nonce and -Body-SHA256 are all required', ctx);
      }
      if (proof.length !== 86) return deny('malformed_proof_headers', 'X-TrustPlane-Proof is not 64 bytes of base64url', ctx);
      if (!isSha256Hex(claimedDigest)) return deny('malformed_proof_headers', 'X-TrustPlane-Transcript-SHA256 is not 64 lower-hex characters', ctx);
      if (!isSha256Hex(claimedBody)) return deny('malformed_proof_headers', 'X-TrustPlane-Body-SHA256 is not 64 lower-hex characters', ctx);
      if (nonce.length > MAX_NONCE) return deny('malformed_proof_headers', `X-TrustPlane-Nonce is longer than ${MAX_NONCE} characters`, ctx);
      let proofSig: Buffer;
      try {
        proofSig = decodeBase64url(proof, 86, 'X-TrustPlane-Proof');
      } catch {
        return deny('malformed_proof_headers', 'X-TrustPlane-Proof is not strict base64url', ctx);
      }
      const declared = single(h, SIGNED_HEADERS_HEADER);
      if (declared === null) return deny('malformed_proof_headers', 'X-TrustPlane-Signed-Headers is repeated', ctx);
      if (declared !== undefined && declared.length > MAX_SIGNED_HEADERS_CHARS) return deny('malformed_proof_headers', 'X-TrustPlane-Signed-Headers is too long', ctx);

      // 3. Policy and route (structural, no crypto yet).
      const snapshot = this.policy.current();
      if (snapshot === undefined) return deny('bundle_policy_missing', 'no valid signed policy bundle is loaded', ctx);
      const policy = snapshot.policy;
      ctx.policy = policy;
      const method = req.method;
      // The path's one canonical form, and the same route under every upstream reading of it,
      // or non_canonical_path (thrown by resolveRoute).
      const route = resolveRoute(policy, method, req.path);
      if (this.routeMode === 'route-id') {
        // This verifier serves one route: the request must be that route as the policy
        // resolves it (method and path), not merely carry its method.
        const served = policy.routesById.get(this.routeId!);
        if (served === undefined) return deny('bundle_route_missing', `route ${this.routeId!} is not in the policy bundle`, ctx);
        if (route !== served) {
          ctx.route = served;
          return deny('bundle_route_missing', `this verifier serves route ${served.routeId} (${served.method} ${served.pathTemplate}); ${method} ${req.path.slice(0, 256)} is ${route === undefined ? 'no route' : `route ${route.routeId}`}`, ctx);
        }
      } else if (route === undefined) {
        return deny('bundle_route_missing', `no route for ${method} ${req.path.slice(0, 256)}`, ctx);
      }
      ctx.route = route;
      const query = req.query ?? '';
      if (query !== '') {
        const problem = queryAmbiguity(query);
        if (problem !== undefined) return deny('malformed_request', problem, ctx);
      }
      const scan = scanHeaderNames(h);
      if (typeof scan === 'string') return deny('malformed_request', scan, ctx);
      const underscored = scan;

      // 4. Passport: parse (alg allow-list first), then the issuer key by kid.
      const parsed = parsePassport(token);
      const key = policy.keysByKid.get(parsed.header.kid);
      if (key === undefined) {
        this.policy.onUnknownKid?.(parsed.header.kid);
        return deny('unknown_issuer_key', `kid ${parsed.header.kid.slice(0, 128)} is not in the trust material`, ctx);
      }
      return { index, req, ctx, snapshot, policy, route, parsed, key, proofSig, claimedDigest, claimedBody, nonce, declared, underscored, claims: undefined, cnfKey: undefined, transcript: undefined };
    } catch (err) {
      return this.failure(err, ctx);
    }
  }

  /** Step 4, the passport signature with the issuer key. */
  private checkPassportSignature(c: Checking): DenyDecision | undefined {
    try {
      if (!this.backend.verify(c.key.key, c.parsed.signingInput, c.parsed.signature)) return deny('invalid_passport_signature', `passport signature does not verify with kid ${c.key.kid}`, c.ctx);
      return undefined;
    } catch (err) {
      return this.failure(err, c.ctx);
    }
  }

  /** Steps 5–8: claims and time, issuer, audience, freshness, body hash and transcript. */
  private checkClaimsAndTranscript(c: Checking, nowMs: number, headOnly = false): DenyDecision | undefined {
    const { ctx, req, key, route, snapshot } = c;
    try {
      const h = req.headers;
      // 5. Claims and time window.
      const claims = validatePassportClaims(c.parsed.payload, { nowMs, skewSeconds: this.skew, maxLifetimeSeconds: this.maxLifetime });
      ctx.claims = claims;
      c.claims = claims;
      // The cnf key is part of the claims: a bad one (not 32 bytes, small order) is invalid claims.
      c.cnfKey = this.importCnfKey(claims.cnf.public_key_b64url);
      if (claims.iss !== key.issuer) return deny('issuer_key_mismatch', `kid ${key.kid} belongs to issuer ${key.issuer}, not ${claims.iss}`, ctx);
      if (claims.trust_domain !== key.trustDomain) return deny('trust_domain_mismatch', `issuer ${key.issuer} is trusted for ${key.trustDomain}, not ${claims.trust_domain}`, ctx);
      // A key enrolled for one client asserts only that client's subjects: under an issuer
      // shared by several self-issuing clients, one client's key cannot mint another's.
      if (key.subjectExact !== undefined ? claims.sub !== key.subjectExact : key.subjectPrefix !== undefined && !claims.sub.startsWith(key.subjectPrefix)) {
        return deny('key_subject_mismatch', `key ${key.kid} may assert only ${key.subjectExact ?? `${key.subjectPrefix ?? ''}*`}, not subject ${claims.sub.slice(0, 256)}`, ctx);
      }

      // 6. Audience of the route's API.
      if (claims.aud !== route.audience) return deny('audience_mismatch', `passport audience ${claims.aud} is not ${route.audience}`, ctx);

      // 7. Freshness of the bundle for this route's class.
      const fc = route.freshnessClass;
      const ageMs = nowMs - snapshot.confirmedAtMs;
      if (fc === 'realtime') {
        if (ageMs > this.freshnessWindowMs) return deny('stale_bundle_fail_closed', `realtime route needs a bundle confirmed within ${this.freshnessWindowMs / 1000} s; last confirmed ${Math.round(ageMs / 1000)} s ago`, ctx);
      } else if (fc === 'bounded') {
        const max = route.maxStalenessSeconds;
        if (max === undefined || !(max > 0)) return deny('bundle_freshness_unknown', `bounded route ${route.routeId} has no positive max_staleness_seconds`, ctx);
        if (ageMs > max * 1000) return deny('stale_bundle_fail_closed', `bundle last confirmed ${Math.round(ageMs / 1000)} s ago, route allows ${max} s`, ctx);
      } else if (!FRESHNESS_OFFLINE.has(fc)) {
        return deny('bundle_freshness_unknown', `unknown freshness class ${fc.slice(0, 64)}`, ctx);
      }

      // 8. Body hash and transcript, rebuilt from the request as received.
      let bodyDigest: string;
      if (req.bodyNotAvailable === true || headOnly) {
        // Forward-auth: bound as claimed (documented limitation). A head: bound as claimed
        // now, the bytes received are checked against the claim by completeHead.
        bodyDigest = c.claimedBody;
      } else {
        bodyDigest = req.bodySha256 ?? sha256Hex(req.body ?? new Uint8Array(0));
        if (!timingSafeEqualString(bodyDigest, c.claimedBody)) return deny('request_binding_mismatch', 'the body does not match X-TrustPlane-Body-SHA256', ctx);
      }
      const declared = c.declared;
      let allowList: readonly string[];
      if (declared !== undefined) {
        // A caller sends the same list on every request: the last one's canonical form is kept.
        if (declared === this.lastDeclared.raw) {
          allowList = this.lastDeclared.list;
        } else {
          allowList = Object.freeze(canonicalAllowList(declared.split(',')));
          this.lastDeclared = { raw: declared, list: allowList };
        }
        if (allowList.length > MAX_SIGNED_HEADER_NAMES) return deny('malformed_proof_headers', `more than ${MAX_SIGNED_HEADER_NAMES} signed headers`, ctx);
      } else {
        allowList = route.signedHeaders.filter((n) => h[n] !== undefined);
      }
      for (const n of route.requiredSignedHeaders) {
        if (!allowList.includes(n)) return deny('unsigned_required_header', `route ${route.routeId} requires header ${n} to be signed`, ctx);
      }
      // The transcript binds the first value of a signed header; a second copy would reach the
      // API unverified (and a comma-joining or last-wins API would read it), so a repeated
      // signed header is refused. So is one the enforcement point will not forward.
      const dropped = req.unforwardedHeaders;
      for (let i = 0; i < allowList.length; i++) {
        const n = allowList[i]!;
        const v = h[n];
        if (v !== undefined && typeof v !== 'string' && v.length > 1) return deny('malformed_request', `signed header ${n} is repeated`, ctx);
        if (dropped !== undefined && dropped.has(n)) return deny('malformed_request', `signed header ${n} is nominated by Connection and would not reach the API`, ctx);
        // The transcript trims a value the Python way (SPEC §1); HTTP trims only spaces and tabs,
        // so a value ending in U+0085 or U+00A0 would verify as trimmed and arrive raw.
        const sv = v === undefined || typeof v === 'string' ? v : v[0];
        if (sv !== undefined && sv !== '' && pyTrim(sv) !== sv) return deny('malformed_request', `signed header ${n} has surrounding whitespace the transcript would trim`, ctx);
        const twin = c.underscored === undefined ? undefined : signedTwin(n, h, c.underscored);
        if (twin !== undefined) return deny('malformed_request', `${twin} would reach a CGI/WSGI API as the signed header ${n}`, ctx);
      }
      // Content-Encoding is always bound (transcript line 8), so it may not be repeated either.
      const encoding = h['content-encoding'];
      if (encoding !== undefined && typeof encoding !== 'string' && encoding.length > 1) return deny('malformed_request', 'Content-Encoding is repeated', ctx);
      if (dropped !== undefined && dropped.has('content-encoding') && encoding !== undefined) {
        return deny('malformed_request', 'Content-Encoding is nominated by Connection and would not reach the API', ctx);
      }
      if (c.underscored !== undefined) {
        const twin = signedTwin('content-encoding', h, c.underscored);
        if (twin !== undefined) return deny('malformed_request', `${twin} would reach a CGI/WSGI API as Content-Encoding`, ctx);
      }
      let transcript: Transcript;
      try {
        transcript = buildTranscript({
          method: req.method,
          scheme: route.scheme,
          authority: route.authority,
          path: req.path,
          rawQuery: req.query ?? '',
          audience: claims.aud,
          routeId: route.routeId,
          contentEncoding: firstValue(h, 'content-encoding') ?? '',
          bodySha256: bodyDigest,
          headers: (n) => firstValue(h, n),
          headerAllowList: allowList,
          allowListIsCanonical: true,
          passportJti: claims.jti,
          nonce: c.nonce,
          issuedAt: claims.iat,
          keyBinding: claims.cnf.key_binding,
        });
      } catch (err) {
        if (err instanceof FormatError) return deny('request_binding_mismatch', `cannot rebuild the transcript: ${err.message}`, ctx);
        throw err;
      }
      ctx.transcriptSha256 = transcript.sha256;
      c.transcript = transcript;
      if (!timingSafeEqualString(transcript.sha256, c.claimedDigest)) return deny('request_binding_mismatch', 'the request does not match the signed transcript', ctx);
      return undefined;
    } catch (err) {
      return this.failure(err, ctx);
    }
  }

  /** Steps 9–11: the proof with the cnf key, signer class and source rules, revocation. */
  private checkProofAndPolicy(c: Checking): DenyDecision | undefined {
    const { ctx, key, route, policy } = c;
    const claims = c.claims!;
    try {
      // 9. The proof, over the 32 raw digest bytes, with the passport's cnf key.
      if (!this.backend.verify(c.cnfKey!, c.transcript!.digest, c.proofSig)) return deny('invalid_request_proof', 'the request proof does not verify with the passport cnf key', ctx);

      // 10. Signer class for the route, then ONE source rule must match entirely. A raw local key
      // may only ever sign as `software` (SPEC §3): a self-issued passport — signed by the very
      // key it binds in cnf — that claims a higher class is refused whatever the minimum.
      if (claims.cnf.key_binding !== 'software' && c.cnfKey!.raw.equals(key.key.raw)) {
        return deny('insufficient_key_binding', `a self-issued passport (signed by its own cnf key) is software; it claims ${claims.cnf.key_binding}`, ctx);
      }
      // The trust material caps the class an issuer may grant (a software source only
      // `software`): a client that binds a fresh key of its own in cnf and claims
      // `hardware_local` is refused.
      if (!meetsMinimum(key.maxKeyBinding, claims.cnf.key_binding)) {
        return deny('key_binding_not_allowed', `issuer ${key.issuer} may grant at most ${key.maxKeyBinding}; the passport claims ${claims.cnf.key_binding}`, ctx);
      }
      if (!meetsMinimum(claims.cnf.key_binding, route.requiredKeyBinding)) {
        return deny('insufficient_key_binding', `signer class ${claims.cnf.key_binding} is below the route minimum ${route.requiredKeyBinding}`, ctx);
      }
      let deepest: { stage: number; detail: string } | undefined;
      let matched = false;
      for (const rule of route.sources) {
        const failure = checkSource(rule, claims, key, route);
        if (failure === undefined) {
          matched = true;
          break;
        }
        if (deepest === undefined || failure.stage > deepest.stage) deepest = failure;
      }
      if (!matched) {
        if (deepest === undefined) return deny('source_issuer_mismatch', `route ${route.routeId} allows no sources`, ctx);
        return deny(STAGES[deepest.stage]!, deepest.detail, ctx);
      }

      // 11. Revocation. (An empty list costs no lookup: hashing the jti and building the subject
      // key are not free.)
      const { revokedKids, revokedJtis, revokedSubjects } = policy;
      if (key.status === 'revoked' || (revokedKids.size !== 0 && (revokedKids.has(key.kid) || revokedKids.has(claims.cnf.kid)))) return deny('revoked', `key ${key.kid} is revoked`, ctx);
      if (revokedJtis.size !== 0 && revokedJtis.has(claims.jti)) return deny('revoked', 'this jti is revoked', ctx);
      if (revokedSubjects.size !== 0 && revokedSubjects.has(`${claims.iss}\n${claims.sub}`)) return deny('revoked', `subject ${claims.sub} of ${claims.iss} is revoked`, ctx);
      return undefined;
    } catch (err) {
      return this.failure(err, ctx);
    }
  }
}

/**
 * A request whose head passed every check but the body hash and the consume
 * (`Verifier.verifyHeadBatch`); `Verifier.completeHead` finishes it, once.
 */
export class VerifiedHead {
  readonly allowed = 'pending' as const;
  #checking: Checking | undefined;

  /** @internal */
  constructor(c: Checking) {
    this.#checking = c;
  }

  /** @internal The checked request, handed out once. */
  take(): Checking | undefined {
    const c = this.#checking;
    this.#checking = undefined;
    return c;
  }
}

/** A policy provider for a policy held in memory (library use, tests). */
export class StaticPolicyProvider implements PolicyProvider {
  private snapshot: PolicySnapshot | undefined;

  constructor(policy?: CompiledPolicy, confirmedAtMs: number = Date.now()) {
    this.snapshot = policy === undefined ? undefined : { policy, confirmedAtMs };
  }

  current(): PolicySnapshot | undefined {
    return this.snapshot;
  }

  set(policy: CompiledPolicy | undefined, confirmedAtMs: number): void {
    this.snapshot = policy === undefined ? undefined : { policy, confirmedAtMs };
  }

  /** Record that the source was confirmed current at `atMs`. */
  confirm(atMs: number): void {
    if (this.snapshot !== undefined) this.snapshot = { policy: this.snapshot.policy, confirmedAtMs: atMs };
  }
}
