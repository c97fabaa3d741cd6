import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ManualClock,
  StaticPolicyProvider,
  Verifier,
  MemoryReplayStore,
  decodePassportUnverified,
  getEd25519Backend,
  buildTranscript,
  decodeBase64url,
  parsePublicKey,
  encodeBase64url,
} from '@trustplane/core';
import { brokerKey, seedKey, T0, compiled, trustMaterial, BROKER_ISSUER } from '@trustplane/testkit';
import { Broker, softwareSource, spiffeSource, parseIpcLine, IpcRequestError, buildIpcEnvelope, type SignerSource, type IpcRequest } from '../src/index.js';

const repoRoot = path.resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../..');
type Fixture = { request: IpcRequest; response: Record<string, unknown> & { issued_at: number; artifacts: { passport: { jti: string }; stamp: { transcript_sha256: string } } | null } };
const fixture = (name: string): Fixture => JSON.parse(readFileSync(path.join(repoRoot, 'conformance/vectors/v1', name), 'utf8')) as Fixture;

/** A stand-in for a hardware-backed signer class, as the fixtures' broker had one. */
const hardwareSource = (subject: string): SignerSource => ({ keyBinding: 'hardware_local', grant: () => ({ ok: true, subject }) });

function broker(sources: SignerSource[], o: { nowMs?: number; jti?: string; fallback?: boolean; allow?: { audience: string; routes: string[] }[] } = {}): Broker {
  return new Broker({
    policy: {
      issuer: BROKER_ISSUER,
      trustDomain: 'example.local',
      signingKey: brokerKey,
      kid: 'broker-key-1',
      allow: o.allow ?? [{ audience: 'orders-api', routes: ['*'] }],
      ...(o.fallback !== undefined ? { allowSoftwareFallback: o.fallback } : {}),
    },
    sources,
    clock: new ManualClock(o.nowMs ?? T0),
    ...(o.jti !== undefined ? { jti: () => o.jti! } : {}),
  });
}

test('broker-ipc-v1.success.json is reproduced: same response fields, and the stamp digest of the fixture', () => {
  const f = fixture('broker-ipc-v1.success.json');
  const env = parseIpcLine(JSON.stringify({ version: 'trustplane-broker-ipc-v1', kind: 'broker_ipc_exchange', request: f.request }));
  const b = broker([hardwareSource('svc:orders-worker')], { nowMs: f.response.issued_at * 1000, jti: f.response.artifacts!.passport.jti });
  const r = b.decide(env.request).response;
  assert.equal(r.request_id, f.response['request_id']);
  assert.equal(r.accepted, true);
  assert.equal(r.status, 'allow');
  assert.equal(r.reason_code, 'broker_passport_issued');
  assert.equal(r.issued_at, f.response.issued_at);
  assert.equal(r.expires_at, f.response['expires_at']);
  assert.equal(r.error, null);
  assert.equal(r.artifacts!.passport.jti, f.response.artifacts!.passport.jti);
  // The fixture's formats are placeholders; a real broker returns the real labels (SPEC §6).
  assert.equal(r.artifacts!.passport.format, 'compact-jws');
  assert.equal(r.artifacts!.stamp.format, 'ed25519-transcript-v1');
  assert.equal(r.artifacts!.stamp.transcript_sha256, f.response.artifacts!.stamp.transcript_sha256);
});

test('broker-ipc-v1.denied.json is reproduced exactly', () => {
  const f = fixture('broker-ipc-v1.denied.json');
  const env = parseIpcLine(JSON.stringify({ version: 'trustplane-broker-ipc-v1', kind: 'broker_ipc_exchange', request: f.request }));
  const r = broker([hardwareSource('svc:orders-worker')]).decide(env.request).response;
  assert.deepEqual(JSON.parse(JSON.stringify(r)), f.response);
});

test('the passport is a real compact JWS from the broker key and the stamp a real proof over the transcript', () => {
  const { envelope, nonce } = buildIpcEnvelope({ method: 'POST', url: 'https://orders.example/v1/orders?b=2&a=1', audience: 'orders-api', routeId: 'orders.create', headers: { 'Content-Type': 'application/json' }, body: '{"sku":"A1"}', ctx: { purpose: 'create_order' } });
  const r = broker([softwareSource('svc:orders-worker')]).decide(parseIpcLine(JSON.stringify(envelope)).request).response;
  assert.equal(r.accepted, true);
  const token = r.artifacts!.passport.value;
  const { header, payload } = decodePassportUnverified(token);
  assert.deepEqual(header, { alg: 'EdDSA', kid: 'broker-key-1', typ: 'JWT' });
  assert.equal(payload['iss'], BROKER_ISSUER);
  assert.equal(payload['sub'], 'svc:orders-worker');
  assert.equal(payload['exp'], (payload['iat'] as number) + 300);
  assert.deepEqual(payload['ctx'], { purpose: 'create_order' });
  const cnf = payload['cnf'] as Record<string, string>;
  assert.equal(cnf['key_binding'], 'software');
  assert.notEqual(cnf['public_key_b64url'], encodeBase64url(brokerKey.publicKey), 'the proof key is a fresh key, not the issuer key');
  const backend = getEd25519Backend();
  const [h, p, s] = token.split('.');
  assert.ok(backend.verify(parsePublicKey(encodeBase64url(brokerKey.publicKey)), Buffer.from(`${h}.${p}`), decodeBase64url(s!, 200)));
  // Rebuild the transcript independently from the plain request and check the stamp against cnf.
  const t = buildTranscript({
    method: 'POST', scheme: 'https', authority: 'orders.example', path: '/v1/orders', rawQuery: 'b=2&a=1', audience: 'orders-api', routeId: 'orders.create',
    headers: [{ name: 'content-type', value: 'application/json' }, { name: 'x-trustplane-nonce', value: nonce }], headerAllowList: ['content-type', 'x-trustplane-nonce'],
    body: '{"sku":"A1"}', passportJti: payload['jti'] as string, nonce, issuedAt: payload['iat'] as number, keyBinding: 'software',
  });
  assert.equal(r.artifacts!.stamp.transcript_sha256, t.sha256);
  assert.ok(backend.verify(parsePublicKey(cnf['public_key_b64url']!), t.digest, decodeBase64url(r.artifacts!.stamp.value, 200)));
});

test('class selection: highest acceptable source; fallback only with both consents; refusals name what is available', () => {
  const req = (requested: 'software' | 'attested_workload', acceptable: string[] = [], fallback = false): IpcRequest => {
    const { envelope } = buildIpcEnvelope({ method: 'GET', url: 'https://orders.example/v1/orders', audience: 'orders-api', routeId: 'orders.list', requestedKeyBinding: requested, acceptableKeyBindings: acceptable as never, allowSoftwareFallback: fallback });
    return envelope.request;
  };
  const svid = { status: () => ({ ok: true as const, identity: { spiffeId: 'spiffe://example.local/ns/orders/sa/worker', trustDomain: 'example.local' } }) };
  const both = broker([softwareSource('svc:w'), spiffeSource(svid)]);
  const granted = (b: Broker, r: IpcRequest) => {
    const d = b.decide(r);
    return d.response.accepted ? (decodePassportUnverified(d.response.artifacts!.passport.value).payload['cnf'] as Record<string, string>)['key_binding'] : d.response.reason_code;
  };
  assert.equal(granted(both, req('software')), 'attested_workload', 'the highest class that meets the minimum');
  assert.equal(granted(both, req('software', ['software'])), 'software', 'restricted by acceptable_key_bindings');
  const softOnly = broker([softwareSource('svc:w')]);
  const d = softOnly.decide(req('attested_workload'));
  assert.equal(d.response.reason_code, 'insufficient_key_binding');
  assert.deepEqual(d.response.error!.details, { requested_key_binding: 'attested_workload', available_key_binding: 'software' });
  assert.equal(granted(softOnly, req('attested_workload', [], true)), 'insufficient_key_binding', 'the broker policy did not consent to fallback');
  assert.equal(granted(broker([softwareSource('svc:w')], { fallback: true }), req('attested_workload', [], true)), 'software');
  assert.equal(granted(broker([softwareSource('svc:w')], { fallback: true }), req('attested_workload', [], false)), 'insufficient_key_binding', 'the request did not consent');
});

test('SPIFFE source: provenance and sub from the SVID; failures map to attestation reason codes', () => {
  let status: ReturnType<Parameters<typeof spiffeSource>[0]['status']> = { ok: true, identity: { spiffeId: 'spiffe://example.local/ns/orders/sa/worker', trustDomain: 'example.local' } };
  const b = broker([spiffeSource({ status: () => status })]);
  const { envelope } = buildIpcEnvelope({ method: 'GET', url: 'https://orders.example/v1/orders', audience: 'orders-api', routeId: 'orders.list', requestedKeyBinding: 'attested_workload' });
  const ok = b.decide(envelope.request);
  const payload = decodePassportUnverified(ok.response.artifacts!.passport.value).payload;
  assert.equal(payload['sub'], 'spiffe://example.local/ns/orders/sa/worker');
  assert.deepEqual(payload['provenance'], { profile: 'trustplane-spiffe-spire-k8s-v1', spiffe_id: 'spiffe://example.local/ns/orders/sa/worker', spiffe_trust_domain: 'example.local', posture: 'spiffe_svid_verified' });
  assert.equal(ok.audit.sourceSpiffeId, 'spiffe://example.local/ns/orders/sa/worker');
  status = { ok: false, code: 'svid_expired', detail: 'leaf expired' };
  const failed = b.decide(envelope.request).response;
  assert.equal(failed.reason_code, 'workload_attestation_failed');
  assert.equal(failed.error!.retryable, false);
  assert.equal(failed.artifacts, null);
  status = { ok: false, code: 'svid_unavailable', detail: 'agent down' };
  const unavailable = b.decide(envelope.request).response;
  assert.equal(unavailable.reason_code, 'workload_attestation_unavailable');
  assert.equal(unavailable.error!.retryable, true);
});

test('broker policy: audiences and routes outside the allow-list are refused', () => {
  const b = broker([softwareSource('svc:w')], { allow: [{ audience: 'orders-api', routes: ['orders.list'] }] });
  const mk = (audience: string, routeId: string) => buildIpcEnvelope({ method: 'GET', url: 'https://orders.example/v1/orders', audience, routeId }).envelope.request;
  assert.equal(b.decide(mk('orders-api', 'orders.list')).response.accepted, true);
  assert.equal(b.decide(mk('billing-api', 'orders.list')).response.reason_code, 'broker_audience_not_allowed');
  assert.equal(b.decide(mk('orders-api', 'orders.delete')).response.reason_code, 'broker_route_not_allowed');
});

test('broker policy: several allow rules for one audience add up (--allow given once per route)', () => {
  const b = broker([softwareSource('svc:w')], { allow: [{ audience: 'orders-api', routes: ['orders.create'] }, { audience: 'orders-api', routes: ['orders.list'] }] });
  const mk = (routeId: string) => buildIpcEnvelope({ method: 'GET', url: 'https://orders.example/v1/orders', audience: 'orders-api', routeId }).envelope.request;
  assert.equal(b.decide(mk('orders.create')).response.accepted, true);
  assert.equal(b.decide(mk('orders.list')).response.accepted, true);
  assert.equal(b.decide(mk('orders.delete')).response.reason_code, 'broker_route_not_allowed');
});

test('a broker-issued attested_workload passport is accepted by a route whose source rule has a provenance_policy', async () => {
  const svid = { status: () => ({ ok: true as const, identity: { spiffeId: 'spiffe://example.local/ns/orders/sa/worker', trustDomain: 'example.local' } }) };
  const b = broker([spiffeSource(svid)]);
  const url = 'https://orders.example/v1/orders/ord_1';
  const { envelope, nonce } = buildIpcEnvelope({ method: 'GET', url, audience: 'orders-api', routeId: 'orders.get', requestedKeyBinding: 'attested_workload' });
  const r = b.decide(envelope.request).response;
  assert.equal(r.accepted, true, JSON.stringify(r.error));
  const policy = compiled((bundle) => {
    const route = bundle.route_groups[0]!.routes.find((x) => x.route_id === 'orders.get')!;
    route.allowed_sources = [
      { source_type: 'spiffe_spire', issuer: BROKER_ISSUER, trust_domain: 'example.local', subject_prefix: 'spiffe://example.local/ns/orders/', required_key_binding: 'attested_workload', provenance_policy: { profile: 'trustplane-spiffe-spire-k8s-v1', required_spiffe_trust_domain: 'example.local', required_posture: 'spiffe_svid_verified' } },
    ];
  }, trustMaterial());
  const v = new Verifier({ policy: new StaticPolicyProvider(policy), replayStore: new MemoryReplayStore(), clock: new ManualClock(T0) });
  const headers: Record<string, string> = {
    authorization: `Bearer ${r.artifacts!.passport.value}`,
    'x-trustplane-proof': r.artifacts!.stamp.value,
    'x-trustplane-transcript-sha256': r.artifacts!.stamp.transcript_sha256,
    'x-trustplane-nonce': nonce,
    'x-trustplane-body-sha256': envelope.request.http.body_sha256,
  };
  const d = await v.verify({ method: 'GET', path: '/v1/orders/ord_1', headers });
  assert.equal(d.allowed, true, d.allowed ? '' : `${d.reason}: ${d.detail}`);
  // A software broker claiming the same subject is refused by that route.
  const softReq = buildIpcEnvelope({ method: 'GET', url, audience: 'orders-api', routeId: 'orders.get', nonce });
  const soft = broker([softwareSource('spiffe://example.local/ns/orders/sa/worker')]).decide(softReq.envelope.request).response;
  assert.equal(soft.accepted, true);
  const sh: Record<string, string> = { ...headers, authorization: `Bearer ${soft.artifacts!.passport.value}`, 'x-trustplane-proof': soft.artifacts!.stamp.value, 'x-trustplane-transcript-sha256': soft.artifacts!.stamp.transcript_sha256 };
  const d2 = await v.verify({ method: 'GET', path: '/v1/orders/ord_1', headers: sh });
  assert.equal(d2.allowed ? 'allowed' : d2.reason, 'insufficient_key_binding');
});

test('malformed requests: each names its field and echoes the request_id when it can', () => {
  const good = buildIpcEnvelope({ method: 'GET', url: 'https://orders.example/v1/orders?x=1', audience: 'orders-api', routeId: 'orders.list', requestId: 'rid-7' }).envelope;
  // Deliberately untyped: these mutations make the document invalid in ways the types forbid.
  /* eslint-disable @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-explicit-any */
  const mutate = (f: (e: Record<string, any>) => void): string => {
    const e = JSON.parse(JSON.stringify(good)) as Record<string, any>;
    f(e);
    return JSON.stringify(e);
  };
  const cases: [string, string, RegExp][] = [
    ['not JSON', '{"version":', /not valid JSON/],
    ['array', '[]', /must be a JSON object/],
    ['duplicate key', '{"version":"a","version":"b"}', /not valid JSON/],
    ['wrong version', mutate((e) => (e['version'] = 'v2')), /\$\.version/],
    ['wrong operation', mutate((e) => (e['request'].operation = 'sign_anything')), /\$\.request\.operation/],
    ['unknown field', mutate((e) => (e['request'].extra = 1)), /\$\.request\.extra: unknown field/],
    ['query digest lies', mutate((e) => (e['request'].http.query.sha256 = '0'.repeat(64))), /query\.sha256/],
    ['normalized lies', mutate((e) => (e['request'].http.query.normalized = 'x=2')), /query\.normalized/],
    ['bad percent escape', mutate((e) => (e['request'].http.query.raw = 'a=%zz')), /query\.raw/],
    ['allow-list not canonical', mutate((e) => (e['request'].http.headers.allow_list = ['X-TrustPlane-Nonce'])), /allow_list/],
    ['header name with a comma', mutate((e) => (e['request'].http.headers.allow_list = ['a,b:c'])), /allow_list\[0\]: must be a header name \(an RFC 9110 token\)/],
    ['selected out of step', mutate((e) => (e['request'].http.headers.selected = [])), /selected/],
    ['nonce header lies', mutate((e) => (e['request'].http.headers.selected[0].value_sha256 = 'a'.repeat(64))), /x-trustplane-nonce/],
    ['body hash not hex', mutate((e) => (e['request'].http.body_sha256 = 'XYZ')), /body_sha256/],
    ['line feed in path', mutate((e) => (e['request'].http.path = '/a\nb')), /path: contains a line feed/],
    ['unknown class', mutate((e) => (e['request'].key_binding.requested_key_binding = 'root')), /requested_key_binding/],
    ['fallback not boolean', mutate((e) => (e['request'].key_binding.allow_software_fallback = 'yes')), /allow_software_fallback/],
    ['ctx value not selected', mutate((e) => (e['request'].ctx.values = { x: '1' })), /ctx\.values\.x/],
    ['ctx value not a string', mutate((e) => { e['request'].ctx = { selected_fields: ['n'], values: { n: 5 } }; }), /ctx\.values\.n/],
  ];
  /* eslint-enable @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-explicit-any */
  for (const [name, line, re] of cases) {
    assert.throws(() => parseIpcLine(line), (err: unknown) => {
      assert.ok(err instanceof IpcRequestError, name);
      assert.match(err.detail, re, name);
      if (line.includes('rid-7')) assert.equal(err.requestId, 'rid-7', name);
      return true;
    }, name);
  }
  assert.equal(parseIpcLine(JSON.stringify(good)).request.request_id, 'rid-7');
});

test('the ttl is bounded and a broker needs a source', () => {
  const base = { issuer: 'i', trustDomain: 't', signingKey: seedKey(4), kid: 'k', allow: [] };
  assert.throws(() => new Broker({ policy: { ...base, ttlSeconds: 901 }, sources: [softwareSource('s')] }), /ttl/);
  assert.throws(() => new Broker({ policy: { ...base, ttlSeconds: 0 }, sources: [softwareSource('s')] }), /ttl/);
  assert.throws(() => new Broker({ policy: base, sources: [] }), /at least one signer source/);
});

test('a passport attested by an SVID never outlives it: exp is capped at the SVID notAfter; an SVID ending within a second grants nothing', () => {
  let notAfterMs = T0 + 60_000;
  const svid = { status: () => ({ ok: true as const, identity: { spiffeId: 'spiffe://example.local/ns/orders/sa/worker', trustDomain: 'example.local', notAfterMs } }) };
  const b = broker([spiffeSource(svid)]);
  const { envelope } = buildIpcEnvelope({ method: 'GET', url: 'https://orders.example/v1/orders/ord_1', audience: 'orders-api', routeId: 'orders.get', requestedKeyBinding: 'attested_workload' });
  const r = b.decide(envelope.request).response;
  assert.equal(r.accepted, true, JSON.stringify(r.error));
  assert.equal(r.expires_at - r.issued_at, 60, 'capped at the SVID, below the 300 s default');
  notAfterMs = T0 + 500;
  const late = b.decide(envelope.request).response;
  assert.equal(late.accepted, false);
  assert.equal(late.reason_code, 'workload_attestation_failed');
});
