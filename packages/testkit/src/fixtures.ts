/** Shared test fixtures: keys, trust material, a policy bundle, signed requests, a spy replay store. */
import {
  compilePolicy,
  encodeBase64url,
  issuePassport,
  privateKeyFromSeed,
  signRequest,
  type Ed25519PrivateKey,
  type PolicyBundle,
  type TrustMaterial,
  type VerifyRequest,
  type ReplayStore,
  type ConsumeResult,
  type SignerClass,
  type PassportProvenance,
} from '@trustplane/core';

export function seedKey(fill: number): Ed25519PrivateKey {
  return privateKeyFromSeed(Buffer.alloc(32, fill));
}

/** Fixed test time: 2025-02-19T21:20:00Z (the vectors' iat 1740000000). */
export const T0 = 1_740_000_000_000;

export const issuerKey = seedKey(1);
export const brokerKey = seedKey(2);
export const otherKey = seedKey(3);

export const ISSUER = 'https://issuer.example/software-jwks';
export const BROKER_ISSUER = 'https://issuer.example/spire';

export function trustMaterial(overrides: Partial<TrustMaterial> = {}): TrustMaterial {
  return {
    version: 'trustplane-trust-material-v1',
    issuers: [
      {
        issuer: ISSUER,
        trust_domain: 'example.local',
        source_type: 'software_jwks',
        keys: [{ kid: 'client-key-1', alg: 'EdDSA', public_key_b64url: encodeBase64url(issuerKey.publicKey) }],
      },
      {
        issuer: BROKER_ISSUER,
        trust_domain: 'example.local',
        source_type: 'spiffe_spire',
        keys: [{ kid: 'broker-key-1', alg: 'EdDSA', public_key_b64url: encodeBase64url(brokerKey.publicKey) }],
      },
    ],
    ...overrides,
  };
}

export function policyBundle(mutate?: (b: PolicyBundle) => void): PolicyBundle {
  const b: PolicyBundle = {
    version: 'trustplane-bundle-v1',
    policy_id: 'acme-orders',
    policy_version: 7,
    apis: [{ api_id: 'orders-api', audience: 'orders-api', base_url: 'https://orders.example' }],
    route_groups: [
      {
        route_group_id: 'orders',
        api_id: 'orders-api',
        routes: [
          {
            route_id: 'orders.search',
            method: 'GET',
            path_template: '/v1/orders/search',
            required_key_binding: 'software',
            freshness_class: 'offline-ok',
            allowed_sources: [
              { source_type: 'software_jwks', issuer: ISSUER, trust_domain: 'example.local', subject_exact: 'service:orders-client', required_key_binding: 'software' },
            ],
          },
          {
            route_id: 'orders.create',
            method: 'POST',
            path_template: '/v1/orders',
            required_key_binding: 'software',
            freshness_class: 'offline-ok',
            allowed_sources: [
              { source_type: 'software_jwks', issuer: ISSUER, trust_domain: 'example.local', subject_prefix: 'service:', required_key_binding: 'software' },
            ],
          },
          {
            route_id: 'orders.get',
            method: 'GET',
            path_template: '/v1/orders/{order_id}',
            freshness_class: 'offline-ok',
            allowed_sources: [
              { source_type: 'software_jwks', issuer: ISSUER, trust_domain: 'example.local', subject_prefix: 'service:' },
              {
                source_type: 'spiffe_spire',
                issuer: BROKER_ISSUER,
                trust_domain: 'example.local',
                subject_prefix: 'spiffe://example.local/ns/orders/sa/',
                required_key_binding: 'attested_workload',
                provenance_policy: { profile: 'trustplane-spiffe-spire-k8s-v1', required_spiffe_trust_domain: 'example.local', required_posture: 'spiffe_svid_verified' },
                context_policy: { required_tool_name: 'orders-worker' },
              },
            ],
          },
        ],
      },
    ],
    default_required_key_binding: 'software',
    default_freshness_class: 'bounded',
    default_max_staleness_seconds: 300,
    revocations: [],
  };
  mutate?.(b);
  return b;
}

export function compiled(mutate?: (b: PolicyBundle) => void, trust: TrustMaterial = trustMaterial()) {
  return compilePolicy(trust, policyBundle(mutate));
}

export interface MakeRequestOptions {
  method?: string;
  path?: string;
  query?: string;
  body?: string;
  headers?: Record<string, string>;
  routeId?: string;
  subject?: string;
  audience?: string;
  issuer?: string;
  kid?: string;
  trustDomain?: string;
  signingKey?: Ed25519PrivateKey;
  nowMs?: number;
  ttlSeconds?: number;
  jti?: string;
  nonce?: string;
  /** Header names to sign, declared in X-TrustPlane-Signed-Headers. */
  signedHeaders?: readonly string[];
}

/** A self-issued software request signed exactly as a caller would, as the verifier sees it. */
export function makeRequest(o: MakeRequestOptions = {}): VerifyRequest & { headers: Record<string, string> } {
  const method = o.method ?? 'GET';
  const p = o.path ?? '/v1/orders/search';
  const query = o.query ?? '';
  const key = o.signingKey ?? issuerKey;
  const passport = issuePassport({
    signingKey: key,
    kid: o.kid ?? 'client-key-1',
    issuer: o.issuer ?? ISSUER,
    subject: o.subject ?? 'service:orders-client',
    audience: o.audience ?? 'orders-api',
    trustDomain: o.trustDomain ?? 'example.local',
    now: o.nowMs ?? T0,
    ttlSeconds: o.ttlSeconds ?? 300,
    ...(o.jti !== undefined ? { jti: o.jti } : {}),
  });
  const extra = o.headers ?? {};
  const signed = signRequest({
    passport: passport.token,
    privateKey: key,
    method,
    url: `https://orders.example${p}${query === '' ? '' : `?${query}`}`,
    routeId: o.routeId ?? (method === 'POST' ? 'orders.create' : p === '/v1/orders/search' ? 'orders.search' : 'orders.get'),
    headers: extra,
    ...(o.body !== undefined ? { body: o.body } : {}),
    ...(o.nonce !== undefined ? { nonce: o.nonce } : {}),
    ...(o.signedHeaders !== undefined ? { signedHeaders: o.signedHeaders } : {}),
  });
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...extra, ...signed.headers })) headers[k.toLowerCase()] = v;
  if (o.signedHeaders !== undefined) headers['x-trustplane-signed-headers'] = signed.signedHeaders.join(',');
  return { method, path: p, query, headers, ...(o.body !== undefined ? { body: Buffer.from(o.body) } : {}) };
}

/** A replay store that records calls, to prove a denial consumed nothing. */
export class SpyReplayStore implements ReplayStore {
  readonly consumed: string[] = [];
  private readonly seen = new Set<string>();
  fail: Error | undefined;

  consume(key: string): ConsumeResult {
    if (this.fail !== undefined) throw this.fail;
    this.consumed.push(key);
    if (this.seen.has(key)) return 'replay';
    this.seen.add(key);
    return 'fresh';
  }
}

export function withHeaders(req: VerifyRequest, change: Record<string, string | undefined | string[]>): VerifyRequest {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers[k] = v as string | string[];
  for (const [k, v] of Object.entries(change)) {
    if (v === undefined) delete headers[k];
    else headers[k] = v;
  }
  return { ...req, headers };
}

/** A passport from the broker key with a chosen signer class, provenance and context. */
export function brokerRequest(o: { keyBinding: SignerClass; provenance?: PassportProvenance; ctx?: Record<string, string>; subject?: string; nowMs?: number; path?: string }): VerifyRequest {
  const proofKey = seedKey(9);
  const passport = issuePassport({
    signingKey: brokerKey,
    kid: 'broker-key-1',
    issuer: BROKER_ISSUER,
    subject: o.subject ?? 'spiffe://example.local/ns/orders/sa/worker',
    audience: 'orders-api',
    trustDomain: 'example.local',
    now: o.nowMs ?? T0,
    ttlSeconds: 300,
    proofPublicKey: proofKey.publicKey,
    keyBinding: o.keyBinding,
    ...(o.provenance !== undefined ? { provenance: o.provenance } : {}),
    ...(o.ctx !== undefined ? { ctx: o.ctx } : {}),
  });
  // The broker signs the proof for the granted class; build it with the transcript directly.
  return requestWithProof(passport.token, proofKey, o.keyBinding, o.path ?? '/v1/orders/ord_1');
}

import { buildTranscript, getEd25519Backend, decodePassportUnverified } from '@trustplane/core';

/**
 * A GET of `p` (route orders.get) carrying `token`, with the proof signed by `proofKey` for the
 * given class, built from the transcript directly: no SDK check on what the passport claims.
 */
export function requestWithProof(token: string, proofKey: Ed25519PrivateKey, keyBinding: string, p: string): VerifyRequest {
  const { payload } = decodePassportUnverified(token);
  const nonce = 'nonce-broker-1';
  const t = buildTranscript({
    method: 'GET',
    scheme: 'https',
    authority: 'orders.example',
    path: p,
    audience: 'orders-api',
    routeId: 'orders.get',
    headers: [{ name: 'x-trustplane-nonce', value: nonce }],
    headerAllowList: ['x-trustplane-nonce'],
    passportJti: payload['jti'] as string,
    nonce,
    issuedAt: payload['iat'] as number,
    keyBinding,
  });
  const proof = encodeBase64url(getEd25519Backend().sign(proofKey, t.digest));
  return {
    method: 'GET',
    path: p,
    headers: {
      authorization: `Bearer ${token}`,
      'x-trustplane-proof': proof,
      'x-trustplane-transcript-sha256': t.sha256,
      'x-trustplane-nonce': nonce,
      'x-trustplane-body-sha256': t.bodySha256,
    },
  };
}
