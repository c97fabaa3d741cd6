/**
 * The one registry of reason codes (SPEC §5 and §9.2): every denial anywhere in TrustPlane Auth
 * carries one of these codes and the HTTP status mapped here. `docs/reason-codes.md` is kept
 * equal to this table by a test, both ways.
 */

export interface ReasonInfo {
  readonly status: number;
  readonly meaning: string;
  /** `spec` = a code TrustPlane documents (SPEC §5); `extension` = this project's (SPEC §9.2). */
  readonly origin: 'spec' | 'extension';
}

export const REASONS = {
  // Authentication: the passport itself (401).
  missing_passport: { status: 401, origin: 'extension', meaning: 'No `Authorization: Bearer <passport>` header was sent.' },
  malformed_passport: { status: 401, origin: 'extension', meaning: 'The passport is not a well-formed compact JWS with a valid JSON header and claims.' },
  unsupported_passport_algorithm: { status: 401, origin: 'extension', meaning: 'The passport header uses an algorithm other than EdDSA, or a forbidden header (`jwk`, `jku`, `x5u`, `x5c`, unknown `crit`).' },
  unknown_issuer_key: { status: 401, origin: 'extension', meaning: 'The passport `kid` is not in the trust material.' },
  issuer_key_mismatch: { status: 401, origin: 'extension', meaning: 'The passport `iss` is not the issuer that owns the key named by `kid`.' },
  key_subject_mismatch: { status: 401, origin: 'extension', meaning: 'The passport `sub` is not a subject the trust material enrols for the key that signed it (`subject_exact` / `subject_prefix` on the key).' },
  invalid_passport_signature: { status: 401, origin: 'extension', meaning: 'The passport signature does not verify with the issuer key.' },
  invalid_passport_claims: { status: 401, origin: 'extension', meaning: 'A required claim is missing or has the wrong type (iss, sub, aud, iat, exp, jti, trust_domain, cnf).' },
  passport_expired: { status: 401, origin: 'extension', meaning: 'The passport `exp` is in the past (beyond the allowed clock skew).' },
  passport_not_yet_valid: { status: 401, origin: 'extension', meaning: 'The passport `iat` is in the future (beyond the allowed clock skew).' },
  passport_lifetime_exceeded: { status: 401, origin: 'extension', meaning: 'The passport lifetime `exp - iat` exceeds the configured maximum.' },
  missing_proof_headers: { status: 401, origin: 'extension', meaning: 'A required proof header is absent (`X-TrustPlane-Proof`, `-Transcript-SHA256`, `-Nonce`, `-Body-SHA256`).' },
  malformed_proof_headers: { status: 401, origin: 'extension', meaning: 'A proof header is present but malformed, duplicated or oversized.' },
  // Policy, binding and replay (403).
  audience_mismatch: { status: 403, origin: 'extension', meaning: 'The passport audience is not the audience of the API this route belongs to.' },
  trust_domain_mismatch: { status: 403, origin: 'extension', meaning: "The passport `trust_domain` is not the issuer's trust domain in the trust material." },
  request_binding_mismatch: { status: 403, origin: 'spec', meaning: 'The request (method, path, query, signed headers, body, audience, route, nonce, time) does not match the signed transcript.' },
  invalid_request_proof: { status: 403, origin: 'spec', meaning: 'The request proof does not verify with the passport `cnf` key.' },
  jti_replay: { status: 403, origin: 'spec', meaning: 'This passport jti was already used.' },
  bundle_route_missing: { status: 403, origin: 'spec', meaning: 'No route in the policy bundle matches this request.' },
  source_issuer_mismatch: { status: 403, origin: 'spec', meaning: "No source rule of the route accepts the passport's issuer." },
  source_trust_domain_mismatch: { status: 403, origin: 'spec', meaning: "No source rule of the route accepts the passport's trust domain." },
  source_subject_mismatch: { status: 403, origin: 'spec', meaning: "No source rule of the route accepts the passport's subject." },
  key_binding_not_allowed: { status: 403, origin: 'extension', meaning: "The passport claims a signer class above the highest its issuer may grant (the issuer's `max_key_binding` in the trust material; by default `software` for software_jwks and oidc_jwks sources)." },
  insufficient_key_binding: { status: 403, origin: 'spec', meaning: 'The signer class (`cnf.key_binding`) ranks below the minimum the route or source requires.' },
  missing_provenance: { status: 403, origin: 'spec', meaning: 'The source rule has a provenance policy and the passport carries no provenance.' },
  provenance_mismatch: { status: 403, origin: 'spec', meaning: "The passport provenance does not satisfy the source rule's provenance policy." },
  missing_context: { status: 403, origin: 'spec', meaning: 'The source rule has a context policy and the passport lacks a required context field.' },
  context_mismatch: { status: 403, origin: 'spec', meaning: "A passport context value differs from the source rule's context policy." },
  unsigned_required_header: { status: 403, origin: 'extension', meaning: 'The route requires a header to be signed and the signed header list does not include it.' },
  revoked: { status: 403, origin: 'extension', meaning: 'The key, the issuer and subject, or the jti is revoked in the policy bundle.' },
  // Malformed HTTP (400), size (413).
  malformed_request: { status: 400, origin: 'extension', meaning: 'The HTTP request is ambiguous or malformed (e.g. duplicated Authorization, invalid path, a signed header sent twice or named in `Connection`, an HTTP/1.1 request without exactly one `Host`).' },
  non_canonical_path: {
    status: 400,
    origin: 'extension',
    meaning:
      'The path is not in the one canonical form route matching uses (a percent-encoded unreserved character, an encoded slash or backslash, a dot or empty segment, a malformed escape, a character outside RFC 3986 pchar), or it would resolve to another route as an upstream may read it (percent-decoded, ignoring letter case, without `;` parameters or a trailing slash).',
  },
  body_too_large: { status: 413, origin: 'extension', meaning: 'The request body exceeds the configured maximum.' },
  // The verifier cannot decide (503), upstream failures (502/504).
  bundle_policy_missing: { status: 503, origin: 'spec', meaning: 'No valid signed policy bundle is loaded.' },
  stale_bundle_fail_closed: { status: 503, origin: 'spec', meaning: "The bundle is older than the route's freshness class allows; the verifier fails closed." },
  bundle_freshness_unknown: { status: 503, origin: 'spec', meaning: "The route's freshness class is unknown, or bounded without a positive maximum age." },
  replay_store_unavailable: { status: 503, origin: 'extension', meaning: 'The replay store could not answer; the request is denied rather than risk a replay.' },
  replay_store_full: { status: 503, origin: 'extension', meaning: 'The in-memory replay store is at its configured capacity of live entries.' },
  upstream_unavailable: { status: 502, origin: 'extension', meaning: 'The upstream could not be reached or failed mid-response.' },
  upstream_timeout: { status: 504, origin: 'extension', meaning: 'The upstream did not answer within 30 s (response head, or between body chunks; `upstreamHeadersTimeoutMs` / `upstreamBodyTimeoutMs` of `startAdapter`).' },
  internal_error: { status: 500, origin: 'extension', meaning: 'An unexpected internal failure; the request was denied (fail closed).' },
  // The broker (IPC v1, SPEC §6): refusals to issue. `insufficient_key_binding` and
  // `internal_error` above are used by the broker too.
  broker_request_malformed: { status: 400, origin: 'extension', meaning: 'Broker: the IPC line is not JSON, or not a valid `trustplane-broker-ipc-v1` `issue_request_bound_passport` request (the detail names the field).' },
  broker_request_too_large: { status: 413, origin: 'extension', meaning: 'Broker: the IPC line exceeds 1 MiB; the connection is closed after this answer.' },
  broker_audience_not_allowed: { status: 403, origin: 'extension', meaning: "Broker: the broker's policy does not issue passports for this audience." },
  broker_route_not_allowed: { status: 403, origin: 'extension', meaning: "Broker: the broker's policy does not issue passports for this route of the audience." },
  broker_context_pinned: { status: 403, origin: 'extension', meaning: 'Broker: the request asks for a `ctx` field the broker pins itself (`--ctx FIELD=VALUE`) with another value; nothing is signed.' },
  workload_attestation_failed: { status: 403, origin: 'extension', meaning: "Broker: the workload's X.509-SVID failed validation (chain, validity, trust domain, SPIFFE ID selector), so `attested_workload` cannot be granted." },
  workload_attestation_unavailable: { status: 503, origin: 'extension', meaning: 'Broker: no X.509-SVID could be obtained from the SPIFFE Workload API (agent down, stream error); retryable.' },
} as const satisfies Record<string, ReasonInfo>;

export type ReasonCode = keyof typeof REASONS;

/** Codes only the broker emits (the verifier never does). */
export const BROKER_ONLY_REASONS: ReadonlySet<ReasonCode> = new Set<ReasonCode>([
  'broker_request_malformed',
  'broker_request_too_large',
  'broker_audience_not_allowed',
  'broker_route_not_allowed',
  'broker_context_pinned',
  'workload_attestation_failed',
  'workload_attestation_unavailable',
]);

/** The broker's `reason_code` on success (SPEC §6); not a denial, so not in the registry. */
export const BROKER_PASSPORT_ISSUED = 'broker_passport_issued';

export function isReasonCode(value: string): value is ReasonCode {
  return Object.prototype.hasOwnProperty.call(REASONS, value);
}

export function statusOf(reason: ReasonCode): number {
  return REASONS[reason].status;
}
