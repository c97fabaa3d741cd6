/**
 * The broker's decision (SPEC §6): given a parsed IPC request, either issue a request-bound
 * passport and its stamp, or refuse with a reason code. The broker holds the keys; the caller
 * never sees a private key.
 *
 * What it signs:
 * - a compact JWS passport from the broker's issuer key, `cnf` = a fresh Ed25519 proof key
 *   generated for this one passport (its private half never leaves this function), `jti` fresh,
 *   `cnf.key_binding` = the granted signer class, `ctx` = the caller's selected context fields
 *   plus the fields the broker pins itself (`pinnedContext`, which a caller cannot change), and
 *   for `attested_workload` `sub` = the verified SPIFFE ID plus `provenance`;
 * - the stamp: transcript-v1 of the described request with the passport's jti/iat and the
 *   granted key binding, signed with the proof key (SPEC §2) — exactly what a verifier rebuilds.
 *
 * Which class it grants: the highest class a configured source can grant right now that the
 * request accepts (`acceptable_key_bindings`, or every class ranked at least
 * `requested_key_binding` when that list is empty); else `software` only when both the request
 * and the broker policy allow software fallback; else a refusal.
 */
import { randomBytes } from 'node:crypto';
import {
  BROKER_PASSPORT_ISSUED,
  FormatError,
  buildTranscript,
  encodeBase64url,
  generatePrivateKey,
  getEd25519Backend,
  issuePassport,
  meetsMinimum,
  signerRank,
  systemClock,
  type Clock,
  type Ed25519Backend,
  type Ed25519PrivateKey,
  type PassportProvenance,
  type ReasonCode,
  type SignerClass,
  type Transcript,
} from '@trustplane/core';
import { PASSPORT_FORMAT, STAMP_FORMAT, denyResponse, type IpcRequest, type IpcResponse } from './ipc.js';

export const DEFAULT_BROKER_TTL_SECONDS = 300;
export const MAX_BROKER_TTL_SECONDS = 900;

/** What a source can grant right now, or why it cannot. */
export type SourceGrant =
  | { ok: true; subject: string; provenance?: PassportProvenance; /** The grant's evidence ends here (ms); the passport's exp is capped to it. */ notAfterMs?: number }
  | { ok: false; reason: ReasonCode; detail: string; retryable: boolean };

/**
 * A signer source: one class of key binding the broker can grant. The software source is a local
 * key; the SPIFFE source grants `attested_workload` only while the workload's X.509-SVID
 * validates. Other classes (KMS, TPM) plug in here without touching the passport contract.
 */
export interface SignerSource {
  readonly keyBinding: SignerClass;
  /** Called per request: must be cheap (cached state), and must never throw. */
  grant(): SourceGrant;
}

/** Which audiences and routes the broker issues for: `routes` `['*']` means every route. */
export interface BrokerAllowRule {
  audience: string;
  routes: readonly string[];
}

export interface BrokerPolicy {
  issuer: string;
  trustDomain: string;
  /** The issuer key (its kid is what the verifier's trust material lists). */
  signingKey: Ed25519PrivateKey;
  kid: string;
  allow: readonly BrokerAllowRule[];
  /** Passport lifetime (default 300 s, at most 900 s). */
  ttlSeconds?: number;
  /** Broker-side consent to grant `software` when the request accepts fallback (default false). */
  allowSoftwareFallback?: boolean;
  /** Context fields the broker copies from the caller into the passport; others are refused. Default: any. */
  allowedContextFields?: readonly string[];
  /**
   * Context fields the broker sets itself (`--ctx FIELD=VALUE`): always in the passport's `ctx`
   * with this value. A caller that asks for one with another value is refused
   * (`broker_context_pinned`); asking for the same value is allowed (it changes nothing).
   */
  pinnedContext?: Readonly<Record<string, string>>;
}

/** A ctx field name, as the IPC parser accepts them (SPEC §6 `ctx.selected_fields`). */
export const CONTEXT_FIELD_NAME = /^[a-z][a-z0-9_]{0,63}$/;
/** The longest ctx value (as the IPC parser accepts them). */
export const MAX_CONTEXT_VALUE_CHARS = 1024;
/** At most this many context fields in one passport (caller's and pinned together). */
const MAX_CONTEXT_FIELDS = 32;

export interface BrokerDecision {
  response: IpcResponse;
  /** For the audit event: what was granted (allow) or asked for (deny). */
  audit: {
    accepted: boolean;
    reasonCode: string;
    detail: string;
    subject?: string;
    jti?: string;
    keyBinding?: string;
    requiredKeyBinding: string;
    transcriptSha256?: string;
    sourceProfile?: string;
    sourceSpiffeId?: string;
  };
}

export interface BrokerOptions {
  policy: BrokerPolicy;
  sources: readonly SignerSource[];
  clock?: Clock;
  backend?: Ed25519Backend;
  /** Test hook: deterministic jti. */
  jti?: () => string;
  /** Test hook: deterministic proof keys. */
  proofKey?: () => Ed25519PrivateKey;
}

export class Broker {
  private readonly policy: BrokerPolicy;
  private readonly sources: readonly SignerSource[];
  private readonly clock: Clock;
  private readonly backend: Ed25519Backend;
  private readonly ttl: number;
  private readonly opts: BrokerOptions;
  private readonly pinned: ReadonlyMap<string, string>;

  constructor(opts: BrokerOptions) {
    this.opts = opts;
    this.policy = opts.policy;
    // Highest class first, so the first source that grants wins.
    this.sources = [...opts.sources].sort((a, b) => signerRank(b.keyBinding) - signerRank(a.keyBinding));
    this.clock = opts.clock ?? systemClock;
    this.backend = opts.backend ?? getEd25519Backend();
    const ttl = opts.policy.ttlSeconds ?? DEFAULT_BROKER_TTL_SECONDS;
    if (!Number.isSafeInteger(ttl) || ttl <= 0 || ttl > MAX_BROKER_TTL_SECONDS) {
      throw new RangeError(`broker passport ttl must be 1..${MAX_BROKER_TTL_SECONDS} seconds, got ${ttl}`);
    }
    this.ttl = ttl;
    if (opts.sources.length === 0) throw new RangeError('the broker needs at least one signer source (software key or SPIFFE)');
    const pinned = opts.policy.pinnedContext ?? {};
    if (Object.keys(pinned).length > MAX_CONTEXT_FIELDS) throw new RangeError(`at most ${MAX_CONTEXT_FIELDS} pinned context fields`);
    for (const [field, value] of Object.entries(pinned)) {
      if (!CONTEXT_FIELD_NAME.test(field)) throw new RangeError(`pinned context field ${JSON.stringify(field)} must be a snake_case name (a-z, 0-9, _; at most 64 characters)`);
      if (typeof value !== 'string' || value.length > MAX_CONTEXT_VALUE_CHARS || value.includes('\n')) throw new RangeError(`pinned context field ${field} must have a string value of at most ${MAX_CONTEXT_VALUE_CHARS} characters without a line feed`);
    }
    this.pinned = new Map(Object.entries(pinned));
  }

  /** The classes configured, highest first (for `available_key_binding` and docs). */
  get keyBindings(): SignerClass[] {
    return this.sources.map((s) => s.keyBinding);
  }

  decide(req: IpcRequest): BrokerDecision {
    const kb = req.key_binding;
    const required = kb.requested_key_binding;
    const deny = (reason: ReasonCode, message: string, details: Record<string, string | number | boolean> = {}, retryable = false): BrokerDecision => ({
      response: denyResponse(req.request_id, reason, message, retryable, details),
      audit: { accepted: false, reasonCode: reason, detail: message, requiredKeyBinding: required },
    });

    // Every rule for the audience counts (`--allow` may name one audience several times).
    const rules = this.policy.allow.filter((a) => a.audience === req.http.audience);
    if (rules.length === 0) return deny('broker_audience_not_allowed', 'the broker does not issue passports for this audience', { audience: req.http.audience });
    if (!rules.some((rule) => rule.routes.includes('*') || rule.routes.includes(req.http.route_id))) {
      return deny('broker_route_not_allowed', 'the broker does not issue passports for this route', { audience: req.http.audience, route_id: req.http.route_id });
    }
    // Pinned fields first: the broker sets them, so a caller's other value is a refusal, not a choice.
    for (const f of req.ctx.selected_fields) {
      const pinned = this.pinned.get(f);
      if (pinned !== undefined && req.ctx.values[f] !== pinned) return deny('broker_context_pinned', `context field ${f} is set by the broker; the request asks for another value`, { field: f });
    }
    const allowedCtx = this.policy.allowedContextFields;
    if (allowedCtx !== undefined) {
      const extra = req.ctx.selected_fields.find((f) => !allowedCtx.includes(f) && !this.pinned.has(f));
      if (extra !== undefined) return deny('broker_request_malformed', `context field ${extra} is not allowed by the broker policy`, { field: extra });
    }
    const ctxValues: Record<string, string> = { ...req.ctx.values, ...Object.fromEntries(this.pinned) };
    if (Object.keys(ctxValues).length > MAX_CONTEXT_FIELDS) return deny('broker_request_malformed', `more than ${MAX_CONTEXT_FIELDS} context fields with the broker's pinned ones`);

    const acceptable = (c: SignerClass): boolean =>
      kb.acceptable_key_bindings.length > 0 ? kb.acceptable_key_bindings.includes(c) && meetsMinimum(c, required) : meetsMinimum(c, required);

    let granted: { source: SignerSource; grant: Extract<SourceGrant, { ok: true }> } | undefined;
    let sourceFailure: Extract<SourceGrant, { ok: false }> | undefined;
    for (const source of this.sources) {
      if (!acceptable(source.keyBinding)) continue;
      const g = source.grant();
      if (g.ok) {
        granted = { source, grant: g };
        break;
      }
      sourceFailure ??= g;
    }
    if (granted === undefined && kb.allow_software_fallback && this.policy.allowSoftwareFallback === true) {
      const software = this.sources.find((s) => s.keyBinding === 'software');
      const g = software?.grant();
      if (software !== undefined && g?.ok === true) granted = { source: software, grant: g };
    }
    if (granted === undefined) {
      // A source that could have granted but failed (e.g. the SVID is invalid) is the more
      // useful answer than a generic class mismatch.
      if (sourceFailure !== undefined) return deny(sourceFailure.reason, sourceFailure.detail, { requested_key_binding: required }, sourceFailure.retryable);
      return deny('insufficient_key_binding', 'requested key binding cannot be satisfied by the local broker', {
        requested_key_binding: required,
        available_key_binding: this.sources[0]?.keyBinding ?? 'none',
      });
    }

    const keyBinding = granted.source.keyBinding;
    // The transcript first, with the jti and issue time the passport will carry: a request that
    // cannot be described (e.g. a field that is only whitespace) is refused before any key signs.
    const nowMs = this.clock.now();
    const jti = this.opts.jti?.() ?? `jti-${encodeBase64url(randomBytes(16))}`;
    const h = req.http;
    let transcript: Transcript;
    try {
      transcript = buildTranscript({
        method: h.method,
        scheme: h.scheme,
        authority: h.authority,
        path: h.path,
        rawQuery: h.query.raw,
        audience: h.audience,
        routeId: h.route_id,
        contentEncoding: h.content_encoding,
        bodySha256: h.body_sha256,
        headerHashes: Object.fromEntries(h.headers.selected.map((s) => [s.name, s.value_sha256])),
        headerAllowList: h.headers.allow_list,
        allowListIsCanonical: true,
        passportJti: jti,
        nonce: h.nonce,
        issuedAt: Math.floor(nowMs / 1000),
        keyBinding,
      });
    } catch (err) {
      if (err instanceof FormatError) return deny('broker_request_malformed', `the request cannot be described: ${err.message}`, { code: err.code });
      throw err;
    }
    // A passport never outlives the evidence it was granted on (e.g. the SVID's notAfter).
    let ttl = this.ttl;
    const until = granted.grant.notAfterMs;
    if (until !== undefined) {
      ttl = Math.min(ttl, Math.floor(until / 1000) - Math.floor(nowMs / 1000));
      if (ttl < 1) return deny('workload_attestation_failed', 'the attesting credential expires within a second', { requested_key_binding: required });
    }
    const proofKey = this.opts.proofKey?.() ?? generatePrivateKey();
    const ctx = Object.keys(ctxValues).length > 0 ? ctxValues : undefined;
    const passport = issuePassport({
      signingKey: this.policy.signingKey,
      kid: this.policy.kid,
      issuer: this.policy.issuer,
      subject: granted.grant.subject,
      audience: req.http.audience,
      trustDomain: this.policy.trustDomain,
      ttlSeconds: ttl,
      now: nowMs,
      proofPublicKey: proofKey.publicKey,
      keyBinding,
      backend: this.backend,
      jti,
      ...(ctx !== undefined ? { ctx } : {}),
      ...(granted.grant.provenance !== undefined ? { provenance: granted.grant.provenance } : {}),
    });
    const stamp = encodeBase64url(this.backend.sign(proofKey, transcript.digest));
    const provenance = granted.grant.provenance;
    return {
      response: {
        request_id: req.request_id,
        accepted: true,
        status: 'allow',
        reason_code: BROKER_PASSPORT_ISSUED,
        issued_at: passport.iat,
        expires_at: passport.exp,
        artifacts: {
          passport: { format: PASSPORT_FORMAT, value: passport.token, jti: passport.jti },
          stamp: { format: STAMP_FORMAT, value: stamp, transcript_sha256: transcript.sha256 },
        },
        error: null,
      },
      audit: {
        accepted: true,
        reasonCode: BROKER_PASSPORT_ISSUED,
        detail: `issued ${keyBinding} passport`,
        subject: granted.grant.subject,
        jti: passport.jti,
        keyBinding,
        requiredKeyBinding: required,
        transcriptSha256: transcript.sha256,
        ...(provenance !== undefined ? { sourceProfile: provenance.profile } : {}),
        ...(provenance?.spiffe_id !== undefined ? { sourceSpiffeId: provenance.spiffe_id } : {}),
      },
    };
  }
}

/** The software source: a local key, so only ever `software` (SPEC §3). */
export function softwareSource(subject: string): SignerSource {
  if (subject === '') throw new RangeError('the software source needs a subject');
  return { keyBinding: 'software', grant: () => ({ ok: true, subject }) };
}
