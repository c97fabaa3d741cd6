import { test } from 'node:test';
import { createHash } from 'node:crypto';
import * as assert from 'node:assert/strict';
import {
  Verifier,
  StaticPolicyProvider,
  ManualClock,
  MemoryReplayStore,
  REASONS,
  BROKER_ONLY_REASONS,
  compilePolicy,
  encodeBase64url,
  issuePassport,
  type VerifyRequest,
  type PolicyBundle,
  type ReasonCode,
  type CompiledPolicy,
  type PolicyProvider,
  type ReplayStore,
  type RoutePolicy,
} from '../src/index.js';
import { forge } from './passport.test.js';
import { compiled, makeRequest, brokerRequest, requestWithProof, SpyReplayStore, withHeaders, T0, ISSUER, issuerKey, otherKey, trustMaterial, policyBundle } from './helpers.js';

function route(b: PolicyBundle, id: string): RoutePolicy {
  for (const g of b.route_groups) for (const r of g.routes) if (r.route_id === id) return r;
  throw new Error(id);
}

interface Setup {
  policy?: CompiledPolicy | undefined;
  provider?: PolicyProvider;
  store?: ReplayStore;
  nowMs?: number;
  confirmedAtMs?: number;
  routeMode?: 'request' | 'route-id';
  routeId?: string;
}

function verifier(s: Setup = {}) {
  const spy = new SpyReplayStore();
  const clock = new ManualClock(s.nowMs ?? T0 + 1000);
  const provider = s.provider ?? new StaticPolicyProvider('policy' in s ? s.policy : compiled(), s.confirmedAtMs ?? T0);
  const v = new Verifier({
    policy: provider,
    replayStore: s.store ?? spy,
    clock,
    ...(s.routeMode !== undefined ? { routeMode: s.routeMode } : {}),
    ...(s.routeId !== undefined ? { routeId: s.routeId } : {}),
  });
  return { v, spy, clock };
}

test('allow: a correctly signed request is accepted once, with its identity, and the jti consumed once', async () => {
  const { v, spy } = verifier();
  const req = makeRequest({ query: 'z=1&a=%7E' });
  const d = await v.verify(req);
  assert.equal(d.allowed, true, JSON.stringify(d));
  if (!d.allowed) return;
  assert.equal(d.subject, 'service:orders-client');
  assert.equal(d.issuer, ISSUER);
  assert.equal(d.trustDomain, 'example.local');
  assert.equal(d.routeId, 'orders.search');
  assert.equal(d.keyBinding, 'software');
  assert.equal(d.policyId, 'acme-orders');
  assert.equal(d.policyVersion, 7);
  assert.equal(d.transcriptSha256, req.headers['x-trustplane-transcript-sha256']);
  assert.equal(spy.consumed.length, 1);
  const again = await v.verify(req);
  assert.equal(again.allowed, false);
  assert.equal(!again.allowed && again.reason, 'jti_replay');
  assert.equal(!again.allowed && again.status, 403);
});

test('allow: POST with a JSON body and content-type signed; template route; attested broker passport with provenance and context', async () => {
  const { v } = verifier();
  const post = makeRequest({ method: 'POST', path: '/v1/orders', body: '{"order_id":"ord_123"}', headers: { 'content-type': 'application/json' } });
  assert.equal((await v.verify(post)).allowed, true);
  const tmpl = makeRequest({ path: '/v1/orders/ord_42', subject: 'service:x' });
  const d = await v.verify(tmpl);
  assert.equal(d.allowed && d.routeId, 'orders.get');
  const attested = brokerRequest({
    keyBinding: 'attested_workload',
    provenance: { profile: 'trustplane-spiffe-spire-k8s-v1', spiffe_id: 'spiffe://example.local/ns/orders/sa/worker', spiffe_trust_domain: 'example.local', posture: 'spiffe_svid_verified' },
    ctx: { tool_name: 'orders-worker' },
  });
  const a = await v.verify(attested);
  assert.equal(a.allowed, true, JSON.stringify(a));
});

const iat = T0 / 1000;
const goodClaims = {
  iss: ISSUER,
  sub: 'service:orders-client',
  aud: 'orders-api',
  iat,
  exp: iat + 300,
  jti: 'j1',
  trust_domain: 'example.local',
  cnf: { kid: 'c', public_key_b64url: encodeBase64url(issuerKey.publicKey), key_binding: 'software' },
};
const prov = { profile: 'trustplane-spiffe-spire-k8s-v1', spiffe_id: 'spiffe://example.local/ns/orders/sa/worker', spiffe_trust_domain: 'example.local', posture: 'spiffe_svid_verified' };

/** Every reason code the verifier can return, with a request that provokes it. */
const denials: { reason: ReasonCode; name: string; setup?: () => Setup; req: () => VerifyRequest; consumes?: boolean }[] = [
  { reason: 'missing_passport', name: 'no Authorization', req: () => withHeaders(makeRequest(), { authorization: undefined }) },
  { reason: 'missing_passport', name: 'Basic auth', req: () => withHeaders(makeRequest(), { authorization: 'Basic dXNlcjpwYXNz' }) },
  { reason: 'malformed_request', name: 'two Authorization headers', req: () => { const r = makeRequest(); return withHeaders(r, { authorization: [r.headers['authorization']!, 'Bearer x'] }); } },
  { reason: 'malformed_request', name: 'a signed header (content-type) repeated', req: () => withHeaders(makeRequest({ method: 'POST', path: '/v1/orders', body: '{}', headers: { 'content-type': 'application/json' } }), { 'content-type': ['application/json', 'text/plain'] }) },
  { reason: 'malformed_request', name: 'a signed header nominated by Connection (not forwarded)', req: () => ({ ...makeRequest({ method: 'POST', path: '/v1/orders', body: '{}', headers: { 'content-type': 'application/json' } }), unforwardedHeaders: new Set(['content-type']) }) },
  { reason: 'malformed_request', name: 'Content-Encoding nominated by Connection (not forwarded)', req: () => ({ ...makeRequest({ method: 'POST', path: '/v1/orders', body: 'x', headers: { 'content-encoding': 'gzip' } }), unforwardedHeaders: new Set(['content-encoding']) }) },
  { reason: 'malformed_request', name: 'Content-Encoding repeated (it is always bound)', req: () => withHeaders(makeRequest({ method: 'POST', path: '/v1/orders', body: 'x', headers: { 'content-encoding': 'gzip' } }), { 'content-encoding': ['gzip', 'br'] }) },
  { reason: 'malformed_request', name: 'X-HTTP-Method-Override on an allowed request (the API would run another method)', req: () => withHeaders(makeRequest(), { 'x-http-method-override': 'DELETE' }) },
  { reason: 'malformed_request', name: 'X_Method_Override (the CGI spelling of an override header)', req: () => withHeaders(makeRequest(), { x_method_override: 'DELETE' }) },
  { reason: 'malformed_request', name: 'X-Original-URL (the API would route another URL)', req: () => withHeaders(makeRequest(), { 'x-original-url': '/admin' }) },
  { reason: 'malformed_request', name: 'X-Rewrite-URL', req: () => withHeaders(makeRequest(), { 'x-rewrite-url': '/admin' }) },
  { reason: 'malformed_request', name: 'X-HTTP-Method', req: () => withHeaders(makeRequest(), { 'x-http-method': 'DELETE' }) },
  { reason: 'malformed_request', name: 'a query starting with a second ?', req: () => makeRequest({ query: '?a=1' }) },
  { reason: 'malformed_request', name: 'a raw ; in the query', req: () => makeRequest({ query: 'a=1;b=2' }) },
  { reason: 'malformed_request', name: 'a query parameter without a name (=x), which some upstreams drop', req: () => makeRequest({ query: 'a=1&=x' }) },
  { reason: 'malformed_request', name: 'a raw # in the query', req: () => ({ ...makeRequest({ query: 'a=1' }), query: 'a=1#&b=2' }) },
  { reason: 'malformed_request', name: 'an unsigned underscore twin beside a signed header', req: () => withHeaders(makeRequest({ headers: { 'x-tenant': 'acme' }, signedHeaders: ['x-tenant', 'x-trustplane-nonce'] }), { x_tenant: 'evil' }) },
  { reason: 'malformed_request', name: 'a signed header spelled with _ beside an unsigned - spelling', req: () => withHeaders(makeRequest({ headers: { x_tenant: 'acme' }, signedHeaders: ['x_tenant', 'x-trustplane-nonce'] }), { 'x-tenant': 'evil' }) },
  { reason: 'malformed_request', name: 'an underscore twin of Content-Encoding', req: () => withHeaders(makeRequest({ method: 'POST', path: '/v1/orders', body: 'x', headers: { 'content-encoding': 'gzip' } }), { content_encoding: 'br' }) },
  { reason: 'malformed_request', name: 'a signed header value ending in U+0085 (the transcript trims it, HTTP does not)', req: () => makeRequest({ headers: { 'x-tenant': 'acme\u0085' }, signedHeaders: ['x-tenant', 'x-trustplane-nonce'] }) },
  { reason: 'malformed_request', name: 'a signed header value starting with U+00A0', req: () => makeRequest({ headers: { 'x-tenant': '\u00a0acme' }, signedHeaders: ['x-tenant', 'x-trustplane-nonce'] }) },
  { reason: 'non_canonical_path', name: 'an escaped unreserved character (%73earch reaches orders.search as orders.get)', req: () => makeRequest({ path: '/v1/orders/%73earch', subject: 'service:x', routeId: 'orders.get' }) },
  { reason: 'non_canonical_path', name: 'letter case (SEARCH is search to a case-insensitive router)', req: () => makeRequest({ path: '/v1/orders/SEARCH', subject: 'service:x', routeId: 'orders.get' }) },
  { reason: 'non_canonical_path', name: 'a ; path parameter (search;x=1 is search to Tomcat)', req: () => makeRequest({ path: '/v1/orders/search;x=1', subject: 'service:x', routeId: 'orders.get' }) },
  { reason: 'non_canonical_path', name: 'a trailing slash that a route without it would answer', setup: () => ({ policy: compiled((b) => b.route_groups[0]!.routes.push({ route_id: 'orders.list', method: 'GET', path_template: '/v1/orders', freshness_class: 'offline-ok', allowed_sources: route(b, 'orders.get').allowed_sources })) }), req: () => makeRequest({ path: '/v1/orders/', subject: 'service:x', routeId: 'orders.list' }) },
  { reason: 'non_canonical_path', name: 'a dot segment', req: () => makeRequest({ path: '/v1/orders/x/%2E%2E', subject: 'service:x', routeId: 'orders.get' }) },
  { reason: 'non_canonical_path', name: 'an empty segment', req: () => ({ ...makeRequest({ path: '/v1/orders/ord_1', subject: 'service:x' }), path: '/v1//orders/ord_1' }) },
  { reason: 'non_canonical_path', name: 'a malformed escape', req: () => ({ ...makeRequest({ path: '/v1/orders/ord_1', subject: 'service:x' }), path: '/v1/orders/ord%2' }) },
  { reason: 'non_canonical_path', name: 'a character outside pchar (backslash)', req: () => ({ ...makeRequest({ path: '/v1/orders/ord_1', subject: 'service:x' }), path: '/v1/orders\\search' }) },
  { reason: 'non_canonical_path', name: 'an encoded sub-delim that decodes onto an exact route', setup: () => ({ policy: compiled((b) => b.route_groups[0]!.routes.push({ route_id: 'orders.colon', method: 'GET', path_template: '/v1/orders/a:b', freshness_class: 'offline-ok', allowed_sources: route(b, 'orders.search').allowed_sources })) }), req: () => makeRequest({ path: '/v1/orders/a%3Ab', subject: 'service:x', routeId: 'orders.get' }) },
  { reason: 'key_subject_mismatch', name: 'a key enrolled for one subject mints another', setup: () => { const t = trustMaterial(); t.issuers[0]!.keys[0]!.subject_exact = 'service:orders-client'; return { policy: compilePolicy(t, policyBundle()) }; }, req: () => makeRequest({ path: '/v1/orders/ord_1', subject: 'service:billing' }) },
  { reason: 'key_subject_mismatch', name: 'a key enrolled for a subject prefix mints a subject outside it', setup: () => { const t = trustMaterial(); t.issuers[0]!.keys[0]!.subject_prefix = 'service:orders-'; return { policy: compilePolicy(t, policyBundle()) }; }, req: () => makeRequest({ path: '/v1/orders/ord_1', subject: 'service:billing' }) },
  { reason: 'key_binding_not_allowed', name: 'a software_jwks issuer, a fresh cnf key claiming hardware_local', req: () => requestWithProof(issuePassport({ signingKey: issuerKey, kid: 'client-key-1', issuer: ISSUER, subject: 'service:orders-client', audience: 'orders-api', trustDomain: 'example.local', now: T0, ttlSeconds: 300, keyBinding: 'hardware_local', proofPublicKey: otherKey.publicKey }).token, otherKey, 'hardware_local', '/v1/orders/ord_1') },
  { reason: 'key_binding_not_allowed', name: 'an issuer capped at remote_kms claiming attested_workload', setup: () => { const t = trustMaterial(); t.issuers[1]!.max_key_binding = 'remote_kms'; return { policy: compilePolicy(t, policyBundle()) }; }, req: () => brokerRequest({ keyBinding: 'attested_workload', provenance: prov, ctx: { tool_name: 'orders-worker' } }) },
  { reason: 'bundle_route_missing', name: 'route-id mode: a path outside the route (orders.get serves no /admin)', setup: () => ({ routeMode: 'route-id', routeId: 'orders.get' }), req: () => makeRequest({ path: '/admin/users/delete-all', subject: 'service:x', routeId: 'orders.get' }) },
  { reason: 'bundle_route_missing', name: 'route-id mode: a path the policy routes elsewhere (search under orders.get)', setup: () => ({ routeMode: 'route-id', routeId: 'orders.get' }), req: () => makeRequest({ path: '/v1/orders/search', subject: 'service:orders-client', routeId: 'orders.get' }) },
  { reason: 'missing_proof_headers', name: 'no nonce', req: () => withHeaders(makeRequest(), { 'x-trustplane-nonce': undefined }) },
  { reason: 'missing_proof_headers', name: 'a nonce of Python whitespace only (U+0085)', req: () => withHeaders(makeRequest(), { 'x-trustplane-nonce': '\u0085 ' }) },
  { reason: 'missing_proof_headers', name: 'no proof', req: () => withHeaders(makeRequest(), { 'x-trustplane-proof': undefined }) },
  { reason: 'malformed_proof_headers', name: 'short proof', req: () => withHeaders(makeRequest(), { 'x-trustplane-proof': 'AAAA' }) },
  { reason: 'malformed_proof_headers', name: 'upper-case transcript digest', req: () => { const r = makeRequest(); return withHeaders(r, { 'x-trustplane-transcript-sha256': r.headers['x-trustplane-transcript-sha256']!.toUpperCase() }); } },
  { reason: 'malformed_proof_headers', name: 'repeated proof', req: () => { const r = makeRequest(); return withHeaders(r, { 'x-trustplane-proof': [r.headers['x-trustplane-proof']!, r.headers['x-trustplane-proof']!] }); } },
  { reason: 'malformed_passport', name: 'garbage passport', req: () => withHeaders(makeRequest(), { authorization: 'Bearer abc.def' }) },
  { reason: 'unsupported_passport_algorithm', name: 'alg none', req: () => withHeaders(makeRequest(), { authorization: `Bearer ${forge('{"alg":"none","kid":"client-key-1"}', JSON.stringify(goodClaims))}` }) },
  { reason: 'unsupported_passport_algorithm', name: 'embedded jwk', req: () => withHeaders(makeRequest(), { authorization: `Bearer ${forge('{"alg":"EdDSA","kid":"client-key-1","jwk":{}}', JSON.stringify(goodClaims))}` }) },
  { reason: 'unknown_issuer_key', name: 'unknown kid', req: () => makeRequest({ kid: 'nobody' }) },
  { reason: 'invalid_passport_signature', name: 'passport signed by another key', req: () => makeRequest({ signingKey: otherKey }) },
  { reason: 'invalid_passport_claims', name: 'a jti with surrounding whitespace (the transcript would trim it, the replay key not)', req: () => withHeaders(makeRequest(), { authorization: `Bearer ${forge('{"alg":"EdDSA","kid":"client-key-1"}', JSON.stringify({ ...goodClaims, jti: ' jti-1 ' }), issuerKey)}` }) },
  { reason: 'invalid_passport_claims', name: 'no trust_domain', req: () => withHeaders(makeRequest(), { authorization: `Bearer ${forge('{"alg":"EdDSA","kid":"client-key-1"}', JSON.stringify({ ...goodClaims, trust_domain: undefined }), issuerKey)}` }) },
  { reason: 'invalid_passport_claims', name: 'small-order cnf key', req: () => { const r = makeRequest(); const c = { ...goodClaims, cnf: { ...goodClaims.cnf, public_key_b64url: encodeBase64url(Buffer.concat([Buffer.from([1]), Buffer.alloc(31)])) } }; return withHeaders(r, { authorization: `Bearer ${forge('{"alg":"EdDSA","kid":"client-key-1"}', JSON.stringify(c), issuerKey)}` }); } },
  { reason: 'passport_expired', name: 'expired', setup: () => ({ nowMs: T0 + 331_000 }), req: () => makeRequest() },
  { reason: 'passport_not_yet_valid', name: 'issued in the future', setup: () => ({ nowMs: T0 - 60_000 }), req: () => makeRequest() },
  { reason: 'passport_lifetime_exceeded', name: 'lifetime 3600 s', req: () => makeRequest({ ttlSeconds: 3600 }) },
  { reason: 'issuer_key_mismatch', name: "iss is not the kid's issuer", req: () => makeRequest({ issuer: 'https://issuer.example/spire' }) },
  { reason: 'trust_domain_mismatch', name: 'other trust domain', req: () => makeRequest({ trustDomain: 'evil.local' }) },
  { reason: 'audience_mismatch', name: 'wrong audience', req: () => makeRequest({ audience: 'billing-api' }) },
  { reason: 'bundle_route_missing', name: 'unknown path', req: () => makeRequest({ path: '/v1/admin' }) },
  { reason: 'bundle_route_missing', name: 'GET proof sent as DELETE', req: () => ({ ...makeRequest(), method: 'DELETE' }) },
  { reason: 'bundle_route_missing', name: 'route-id mode, wrong method', setup: () => ({ routeMode: 'route-id', routeId: 'orders.create' }), req: () => makeRequest() },
  { reason: 'bundle_route_missing', name: 'route-id mode, route not in bundle', setup: () => ({ routeMode: 'route-id', routeId: 'orders.gone' }), req: () => makeRequest() },
  { reason: 'bundle_policy_missing', name: 'no bundle loaded', setup: () => ({ policy: undefined }), req: () => makeRequest() },
  { reason: 'stale_bundle_fail_closed', name: 'realtime route, bundle confirmed 6 s ago', setup: () => ({ policy: compiled((b) => (route(b, 'orders.search').freshness_class = 'realtime')), confirmedAtMs: T0 - 5000 }), req: () => makeRequest() },
  { reason: 'stale_bundle_fail_closed', name: 'bounded route past its max staleness', setup: () => ({ policy: compiled((b) => { const r = route(b, 'orders.search'); r.freshness_class = 'bounded'; r.max_staleness_seconds = 60; }), confirmedAtMs: T0 - 60_000 }), req: () => makeRequest() },
  { reason: 'bundle_freshness_unknown', name: 'unknown freshness class', setup: () => ({ policy: compiled((b) => (route(b, 'orders.search').freshness_class = 'eventually')) }), req: () => makeRequest() },
  { reason: 'bundle_freshness_unknown', name: 'bounded without a positive maximum', setup: () => ({ policy: compiled((b) => { const r = route(b, 'orders.search'); r.freshness_class = 'bounded'; r.max_staleness_seconds = 0; }) }), req: () => makeRequest() },
  { reason: 'request_binding_mismatch', name: 'tampered query', req: () => ({ ...makeRequest({ query: 'limit=10' }), query: 'limit=1000' }) },
  { reason: 'request_binding_mismatch', name: 'tampered path (same route template)', req: () => ({ ...makeRequest({ path: '/v1/orders/ord_1', subject: 'service:a' }), path: '/v1/orders/ord_2' }) },
  { reason: 'request_binding_mismatch', name: 'tampered body', req: () => ({ ...makeRequest({ method: 'POST', path: '/v1/orders', body: '{"amount":"1.00"}' }), body: Buffer.from('{"amount":"9999.00"}') }) },
  { reason: 'request_binding_mismatch', name: 'tampered body with a matching body-hash header', req: () => { const r = makeRequest({ method: 'POST', path: '/v1/orders', body: 'a' }); return { ...withHeaders(r, { 'x-trustplane-body-sha256': createHash('sha256').update('b').digest('hex') }), body: Buffer.from('b') }; } },
  { reason: 'request_binding_mismatch', name: 'content-type added after signing', req: () => withHeaders(makeRequest(), { 'content-type': 'text/plain' }) },
  { reason: 'request_binding_mismatch', name: 'declared signed header missing from the request', req: () => withHeaders(makeRequest(), { 'x-trustplane-signed-headers': 'x-trustplane-nonce,x-absent' }) },
  { reason: 'request_binding_mismatch', name: 'malformed query escape', req: () => ({ ...makeRequest(), query: 'a=%zz' }) },
  { reason: 'request_binding_mismatch', name: 'nonce swapped', req: () => withHeaders(makeRequest(), { 'x-trustplane-nonce': 'another-nonce' }) },
  { reason: 'invalid_request_proof', name: 'corrupted proof', req: () => { const r = makeRequest(); const p = String(r.headers['x-trustplane-proof']); return withHeaders(r, { 'x-trustplane-proof': (p[0] === 'A' ? 'B' : 'A') + p.slice(1) }); } },
  { reason: 'unsigned_required_header', name: 'route requires x-request-id signed', setup: () => ({ policy: compiled((b) => (route(b, 'orders.search').required_signed_headers = ['X-Request-Id'])) }), req: () => makeRequest({ headers: { 'x-request-id': 'r1' } }) },
  { reason: 'insufficient_key_binding', name: 'route minimum hardware_local', setup: () => ({ policy: compiled((b) => (route(b, 'orders.search').required_key_binding = 'hardware_local')) }), req: () => makeRequest() },
  { reason: 'insufficient_key_binding', name: 'a self-issued passport (its own cnf key) claiming attested_workload, on a software route', req: () => requestWithProof(issuePassport({ signingKey: issuerKey, kid: 'client-key-1', issuer: ISSUER, subject: 'service:orders-client', audience: 'orders-api', trustDomain: 'example.local', now: T0, ttlSeconds: 300, keyBinding: 'attested_workload' }).token, issuerKey, 'attested_workload', '/v1/orders/ord_1') },
  { reason: 'insufficient_key_binding', name: 'source minimum attested_workload, broker grants hardware_local', req: () => brokerRequest({ keyBinding: 'hardware_local', provenance: prov, ctx: { tool_name: 'orders-worker' } }) },
  { reason: 'source_issuer_mismatch', name: 'issuer not among the route sources', setup: () => ({ policy: compilePolicy(trustMaterial({ issuers: [...trustMaterial().issuers, { issuer: 'https://issuer.example/other', trust_domain: 'example.local', source_type: 'software_jwks', keys: [{ kid: 'other-key', alg: 'EdDSA', public_key_b64url: encodeBase64url(otherKey.publicKey) }] }] }), policyBundle()) }), req: () => makeRequest({ issuer: 'https://issuer.example/other', kid: 'other-key', signingKey: otherKey }) },
  { reason: 'source_trust_domain_mismatch', name: 'source trust domain differs', setup: () => ({ policy: compiled((b) => (route(b, 'orders.search').allowed_sources[0]!.trust_domain = 'elsewhere.local')) }), req: () => makeRequest() },
  { reason: 'source_subject_mismatch', name: 'subject not allowed', req: () => makeRequest({ subject: 'service:intruder' }) },
  { reason: 'missing_provenance', name: 'attested passport without provenance', req: () => brokerRequest({ keyBinding: 'attested_workload', ctx: { tool_name: 'orders-worker' } }) },
  { reason: 'provenance_mismatch', name: 'wrong posture', req: () => brokerRequest({ keyBinding: 'attested_workload', provenance: { ...prov, posture: 'self_asserted' }, ctx: { tool_name: 'orders-worker' } }) },
  { reason: 'provenance_mismatch', name: 'SPIFFE ID differs from subject', req: () => brokerRequest({ keyBinding: 'attested_workload', provenance: { ...prov, spiffe_id: 'spiffe://example.local/ns/orders/sa/other' }, ctx: { tool_name: 'orders-worker' } }) },
  { reason: 'missing_context', name: 'no tool_name context', req: () => brokerRequest({ keyBinding: 'attested_workload', provenance: prov }) },
  { reason: 'context_mismatch', name: 'other tool_name', req: () => brokerRequest({ keyBinding: 'attested_workload', provenance: prov, ctx: { tool_name: 'shell' } }) },
  { reason: 'revoked', name: 'kid revoked in the bundle', setup: () => ({ policy: compiled((b) => (b.revocations = [{ kid: 'client-key-1', reason: 'offboarded' }])) }), req: () => makeRequest() },
  { reason: 'revoked', name: 'jti revoked', setup: () => ({ policy: compiled((b) => (b.revocations = [{ jti: 'jti-leaked' }])) }), req: () => makeRequest({ jti: 'jti-leaked' }) },
  { reason: 'revoked', name: 'issuer+subject revoked', setup: () => ({ policy: compiled((b) => (b.revocations = [{ issuer: ISSUER, subject: 'service:orders-client' }])) }), req: () => makeRequest() },
  { reason: 'revoked', name: 'key status revoked in trust material', setup: () => { const t = trustMaterial(); t.issuers[0]!.keys[0]!.status = 'revoked'; return { policy: compilePolicy(t, policyBundle()) }; }, req: () => makeRequest() },
  { reason: 'replay_store_unavailable', name: 'replay store throws', consumes: true, setup: () => ({ store: { consume: () => { throw new Error('ECONNREFUSED'); } } }), req: () => makeRequest() },
  { reason: 'replay_store_unavailable', name: 'replay store rejects', consumes: true, setup: () => ({ store: { consume: () => Promise.reject(new Error('timeout')) } }), req: () => makeRequest() },
  { reason: 'internal_error', name: 'policy provider fails', setup: () => ({ provider: { current: () => { throw new Error('boom'); } } }), req: () => makeRequest() },
];

const exercised = new Set<ReasonCode>(['jti_replay', 'replay_store_full']);

for (const c of denials) {
  exercised.add(c.reason);
  test(`deny ${c.reason}: ${c.name} — status ${REASONS[c.reason].status}, replay store untouched`, async () => {
    const { v, spy } = verifier(c.setup?.() ?? {});
    const d = await v.verify(c.req());
    assert.equal(d.allowed, false, `expected ${c.reason}, got allow`);
    if (d.allowed) return;
    assert.equal(d.reason, c.reason, d.detail);
    assert.equal(d.status, REASONS[c.reason].status);
    assert.ok(d.detail.length > 0);
    if (c.consumes !== true) assert.deepEqual(spy.consumed, [], 'a denied request must not consume its jti');
  });
}

test('verifyBatch: every denial, in one batch among valid requests and a copy, gets its own reason; only the valid requests consume', async () => {
  const { v, spy } = verifier();
  const batch: VerifyRequest[] = [];
  const want: string[] = [];
  const valid: VerifyRequest[] = [];
  for (const c of denials.filter((d) => d.setup === undefined)) {
    const ok = makeRequest();
    valid.push(ok);
    batch.push(ok, c.req());
    want.push('allow', c.reason);
  }
  batch.push(valid[0]!, valid[1]!);
  want.push('jti_replay', 'jti_replay');
  const decisions = await Promise.all(v.verifyBatch(batch).map(async (d) => d));
  assert.deepEqual(decisions.map((d) => (d.allowed ? 'allow' : d.reason)), want);
  assert.equal(spy.consumed.length, valid.length + 2, 'the valid requests and the two copies reach the store; no denied request does');
});

for (const c of denials.filter((d) => d.setup !== undefined)) {
  test(`verifyBatch deny ${c.reason}: ${c.name} — each request of the batch gets it`, async () => {
    const { v, spy } = verifier(c.setup!());
    const decisions = await Promise.all(v.verifyBatch([c.req(), c.req()]).map(async (d) => d));
    assert.deepEqual(decisions.map((d) => (d.allowed ? 'allow' : d.reason)), [c.reason, c.reason]);
    if (c.consumes !== true) assert.deepEqual(spy.consumed, []);
  });
}

test('verifyBatch of nothing is nothing; of one request, the same as verify', async () => {
  const { v } = verifier();
  assert.deepEqual(v.verifyBatch([]), []);
  const [d] = v.verifyBatch([makeRequest()]);
  assert.equal((await d!).allowed, true);
});

test('replay_store_full: a full in-memory store refuses new jtis (503) and never evicts a live one', async () => {
  const store = new MemoryReplayStore({ maxEntries: 1 });
  const { v } = verifier({ store });
  const first = makeRequest();
  assert.equal((await v.verify(first)).allowed, true);
  const d = await v.verify(makeRequest());
  assert.equal(!d.allowed && d.reason, 'replay_store_full');
  assert.equal(!d.allowed && d.status, 503);
  const replay = await v.verify(first);
  assert.equal(!replay.allowed && replay.reason, 'jti_replay');
});

test('replay_store_full for one issuer is not full for another: a flood under one issuer stops at its share', async () => {
  const store = new MemoryReplayStore({ maxEntries: 4 });
  const { v } = verifier({ store, nowMs: T0 + 1000 });
  // Issuer A (the software issuer) fills its half, and is refused past it.
  for (let i = 0; i < 2; i++) assert.equal((await v.verify(makeRequest())).allowed, true);
  const flood = await v.verify(makeRequest());
  assert.equal(!flood.allowed && flood.reason, 'replay_store_full');
  // Issuer B (the broker) is still served.
  const other = await v.verify(
    brokerRequest({
      keyBinding: 'attested_workload',
      provenance: { profile: 'trustplane-spiffe-spire-k8s-v1', spiffe_id: 'spiffe://example.local/ns/orders/sa/worker', spiffe_trust_domain: 'example.local', posture: 'spiffe_svid_verified' },
      ctx: { tool_name: 'orders-worker' },
    }),
  );
  assert.equal(other.allowed, true, JSON.stringify(other));
});

test('every verifier reason code in the registry has a negative test', () => {
  const adapterOnly = new Set<ReasonCode>(['body_too_large', 'upstream_unavailable', 'upstream_timeout']);
  const missing = (Object.keys(REASONS) as ReasonCode[]).filter((r) => !adapterOnly.has(r) && !BROKER_ONLY_REASONS.has(r) && !exercised.has(r));
  assert.deepEqual(missing, []);
});

test('route resolution: exact path wins over a template; a template parameter matches one non-empty segment', async () => {
  const policy = compiled((b) => {
    b.route_groups[0]!.routes.push({ route_id: 'orders.by-any', method: 'GET', path_template: '/v1/{a}/{b}', freshness_class: 'offline-ok', allowed_sources: route(b, 'orders.get').allowed_sources });
  });
  const { v } = verifier({ policy });
  const d1 = await v.verify(makeRequest({ path: '/v1/orders/search' }));
  assert.equal(d1.allowed && d1.routeId, 'orders.search');
  const d2 = await v.verify(makeRequest({ path: '/v1/orders/ord_9', subject: 'service:x', routeId: 'orders.get' }));
  assert.equal(d2.allowed && d2.routeId, 'orders.get'); // literal 'orders' beats {a}
  const d3 = await v.verify(makeRequest({ path: '/v1/x/y', subject: 'service:x', routeId: 'orders.by-any' }));
  assert.equal(d3.allowed && d3.routeId, 'orders.by-any');
  const d4 = await v.verify(makeRequest({ path: '/v1/orders/x/y/z', subject: 'service:x', routeId: 'orders.get' }));
  assert.equal(!d4.allowed && d4.reason, 'bundle_route_missing');
});

test('the clock never runs backwards: a wall clock stepping back does not un-expire a passport', async () => {
  const { v, clock } = verifier({ nowMs: T0 + 331_000 });
  const req = makeRequest();
  assert.equal((await v.verify(req)) .allowed, false);
  clock.set(T0 + 1000); // wall clock stepped back 330 s
  const d = await v.verify(makeRequest());
  assert.equal(!d.allowed && d.reason, 'passport_expired');
});

test('denials carry what was known for the audit event, and never the passport or proof', async () => {
  const { v } = verifier();
  const req = makeRequest({ subject: 'service:intruder' });
  const d = await v.verify(req);
  assert.equal(d.allowed, false);
  if (d.allowed) return;
  assert.equal(d.subject, 'service:intruder');
  assert.equal(d.routeId, 'orders.search');
  assert.equal(d.policyVersion, 7);
  const text = JSON.stringify(d);
  assert.ok(!text.includes(String(req.headers['authorization']).slice(7, 40)));
  assert.ok(!text.includes(String(req.headers['x-trustplane-proof'])));
});

test('a replayed request from one issuer does not block the same jti from another issuer', async () => {
  const { v } = verifier({ policy: compilePolicy(trustMaterial({ issuers: [...trustMaterial().issuers, { issuer: 'https://issuer.example/other', trust_domain: 'example.local', source_type: 'software_jwks', keys: [{ kid: 'other-key', alg: 'EdDSA', public_key_b64url: encodeBase64url(otherKey.publicKey) }] }] }), policyBundle((b) => route(b, 'orders.search').allowed_sources.push({ source_type: 'software_jwks', issuer: 'https://issuer.example/other', trust_domain: 'example.local', subject_prefix: 'service:' }))) });
  assert.equal((await v.verify(makeRequest({ jti: 'shared-jti' }))).allowed, true);
  assert.equal((await v.verify(makeRequest({ jti: 'shared-jti', issuer: 'https://issuer.example/other', kid: 'other-key', signingKey: otherKey }))).allowed, true);
});

test('route resolution: dot segments, encoded separators and escaped unreserved characters are non_canonical_path in every spelling', async () => {
  const { v } = verifier();
  for (const path of ['/v1/orders/..', '/v1/orders/.', '/v1/orders/%2e%2E', '/v1/orders/.%2e', '/v1/orders/%2E', '/v1/orders/..%2Fadmin', '/v1/orders/a%2fb', '/v1/orders/a%5Cb', '/v1/orders/a\\b', '/v1/orders/..;', '/v1/orders/%2e%2e;x=1', '/v1/orders/.;', '/v1/orders/..%3B', '/v1/orders/%2e%2e%2e', '/v1/./orders/x', '/v1/x/../orders/search', '/v1/orders/a%2541', '/v1/orders/caf\u00e9', '/v1/orders/a b', '/v1/orders/a#b', '/v1/orders/a|b', 'v1/orders/x']) {
    const d = await v.verify({ ...makeRequest({ path: '/v1/orders/ord_1', subject: 'service:x' }), path });
    assert.equal(!d.allowed && d.reason, 'non_canonical_path', path);
  }
  const long = await v.verify({ ...makeRequest({ path: '/v1/orders/ord_1', subject: 'service:x' }), path: `/v1/orders/${'a'.repeat(4096)}` });
  assert.equal(!long.allowed && long.reason, 'non_canonical_path');
  // Dots, escapes, case and `;` that change no route stay ordinary values.
  for (const path of ['/v1/orders/ord.1', '/v1/orders/...', '/v1/orders/.hidden', '/v1/orders/a%20b', '/v1/orders/ord;v=2', '/v1/orders/...;', '/v1/orders/ORD_1', '/v1/orders/a%3ab', "/v1/orders/a!$&'()*+,=:@~"]) {
    const d = await v.verify(makeRequest({ path, subject: 'service:x' }));
    assert.equal(d.allowed && d.routeId, 'orders.get', `${path}: ${d.allowed ? '' : d.detail}`);
  }
});

test('route resolution: every upstream reading of the path must resolve to the route of the bytes as sent', async () => {
  const { v } = verifier();
  // The attacker (a reader, allowed orders.get) aims at orders.search: each spelling is refused.
  for (const path of ['/v1/orders/SEARCH', '/v1/orders/Search', '/v1/orders/searcH', '/v1/orders/search;x=1', '/v1/orders/search;', '/v1/orders/SEARCH;jsessionid=1', '/v1/orders/search%3Bx', '/v1/ORDERS/search']) {
    const d = await v.verify(makeRequest({ path, subject: 'service:x', routeId: 'orders.get' }));
    assert.equal(!d.allowed && d.reason, 'non_canonical_path', path);
    assert.match(!d.allowed ? d.detail : '', /orders\.search/, path);
  }
  // The admin's own request to the exact route, in its canonical spelling, passes.
  const ok = await v.verify(makeRequest({ path: '/v1/orders/search' }));
  assert.equal(ok.allowed && ok.routeId, 'orders.search');
});

test('compilePolicy: templates in non-canonical form, or told apart only by case, parameter names or a trailing slash, are refused', () => {
  const add = (...templates: string[]) => () =>
    compiled((b) => templates.forEach((t, i) => b.route_groups[0]!.routes.push({ route_id: `extra.${i}`, method: 'GET', path_template: t, allowed_sources: [] })));
  for (const [templates, want] of [
    [['/v1/Orders/search'], /only in letter case/],
    [['/v1/orders/{id}/'], /trailing slash/],
    [['/v1/orders/{other}'], /parameter names/],
    [['/v1/orders/search'], /already routed to orders\.search/],
    [['/v1/files/a%3Ab'], /percent escape/],
    [['/v1/files/a b'], /pchar/],
    [['/v1//files'], /empty segment/],
    [['/v1/../files'], /dot segment/],
  ] as const) {
    assert.throws(add(...templates), (err: Error) => want.test(err.message), templates.join(' '));
  }
  assert.doesNotThrow(add('/v1/files/a:b', '/v1/orders/{id}/items'));
});

test('route-id mode serves its route by method AND path', async () => {
  const { v } = verifier({ routeMode: 'route-id', routeId: 'orders.get' });
  const ok = await v.verify(makeRequest({ path: '/v1/orders/ord_7', subject: 'service:x' }));
  assert.equal(ok.allowed && ok.routeId, 'orders.get', ok.allowed ? '' : ok.detail);
});

test('a key bound to its subject still signs for that subject; an unbound issuer key signs for any', async () => {
  const t = trustMaterial();
  t.issuers[0]!.keys[0]!.subject_prefix = 'service:';
  const { v } = verifier({ policy: compilePolicy(t, policyBundle()) });
  const d = await v.verify(makeRequest({ path: '/v1/orders/ord_1', subject: 'service:x' }));
  assert.equal(d.allowed, true, d.allowed ? '' : d.detail);
  assert.throws(() => { const t2 = trustMaterial(); Object.assign(t2.issuers[0]!.keys[0]!, { subject_exact: 'a', subject_prefix: 'b' }); compilePolicy(t2, policyBundle()); }, /at most one of subject_exact and subject_prefix/);
});

test('an issuer granted a higher class by the trust material may claim it', async () => {
  const t = trustMaterial();
  t.issuers[0]!.max_key_binding = 'hardware_local';
  const { v } = verifier({ policy: compilePolicy(t, policyBundle()) });
  const token = issuePassport({ signingKey: issuerKey, kid: 'client-key-1', issuer: ISSUER, subject: 'service:orders-client', audience: 'orders-api', trustDomain: 'example.local', now: T0, ttlSeconds: 300, keyBinding: 'hardware_local', proofPublicKey: otherKey.publicKey }).token;
  const d = await v.verify(requestWithProof(token, otherKey, 'hardware_local', '/v1/orders/ord_1'));
  assert.equal(d.allowed && d.keyBinding, 'hardware_local', d.allowed ? '' : d.detail);
});

test("documented (SPEC §1, the hard contract): a raw '+' and '%2B' in the query verify alike", async () => {
  // The transcript keeps '+' as a literal plus; an API that form-decodes reads it as a space. So
  // whoever can rewrite a request in transit (no TLS) could turn '%2B' into '+': docs/security-model.md.
  const { v } = verifier();
  const signed = makeRequest({ path: '/v1/orders/ord_1', subject: 'service:x', query: 'q=a%2Bb' });
  const d = await v.verify({ ...signed, query: 'q=a+b' });
  assert.equal(d.allowed, true, d.allowed ? '' : d.detail);
});

test('a repeated header that is not signed is no reason to deny', async () => {
  const { v } = verifier();
  const d = await v.verify(withHeaders(makeRequest(), { accept: ['a/b', 'c/d'] }));
  assert.equal(d.allowed, true, d.allowed ? '' : d.detail);
});
