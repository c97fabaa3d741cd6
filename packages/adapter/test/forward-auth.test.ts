import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { request } from 'undici';
import { MemoryReplayStore, StaticPolicyProvider, compilePolicy, type VerifyRequest } from '@trustplane/core';
import { makeRequest, policyBundle, trustMaterial } from '@trustplane/testkit';
import { startForwardAuthVerifier, MemoryAuditSink, type RunningForwardAuthVerifier } from '../src/index.js';

let v: RunningForwardAuthVerifier;
before(async () => {
  v = await startForwardAuthVerifier({
    listen: { host: '127.0.0.1', port: 0 },
    policy: new StaticPolicyProvider(compilePolicy(trustMaterial(), policyBundle())),
    replayStore: new MemoryReplayStore(),
    audit: new MemoryAuditSink(),
    trustForwardedHeaders: true,
    envoyPathPrefix: '/ext_authz',
  });
});
after(async () => {
  await v.close();
});

const now = () => ({ nowMs: Date.now() });

function headersOf(r: VerifyRequest): Record<string, string> {
  const h: Record<string, string> = {};
  for (const [k, val] of Object.entries(r.headers)) if (typeof val === 'string') h[k] = val;
  return h;
}

async function check(method: string, path: string, headers: Record<string, string>) {
  const res = await request(`${v.url}${path}`, { method: method as 'GET', headers });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text };
}

function assertAllowed(r: Awaited<ReturnType<typeof check>>): void {
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers['x-trustplane-subject'], 'service:orders-client');
  assert.equal(r.headers['x-trustplane-issuer'], 'https://issuer.example/software-jwks');
  assert.equal(r.headers['x-trustplane-trust-domain'], 'example.local');
  assert.match(String(r.headers['x-trustplane-jti']), /.+/);
}

function assertTamperDenied(r: Awaited<ReturnType<typeof check>>): void {
  assert.equal(r.status, 403, r.text);
  assert.equal(r.headers['x-trustplane-reason'], 'request_binding_mismatch');
  assert.deepEqual(JSON.parse(r.text), { allowed: false, reason: 'request_binding_mismatch' });
  assert.equal(r.headers['x-trustplane-subject'], undefined);
}

test('NGINX auth_request convention: X-Original-Method / X-Original-URI', async () => {
  const r = makeRequest({ ...now(), query: 'status=open&limit=5' });
  assertAllowed(await check('GET', '/auth', { ...headersOf(r), 'x-original-method': 'GET', 'x-original-uri': '/v1/orders/search?status=open&limit=5' }));
  const t = makeRequest({ ...now(), path: '/v1/orders/ord_1' });
  assertTamperDenied(await check('GET', '/auth', { ...headersOf(t), 'x-original-method': 'GET', 'x-original-uri': '/v1/orders/ord_2' }));
  // Replay of the allowed request.
  const again = await check('GET', '/auth', { ...headersOf(r), 'x-original-method': 'GET', 'x-original-uri': '/v1/orders/search?status=open&limit=5' });
  assert.equal(again.status, 403);
  assert.equal(again.headers['x-trustplane-reason'], 'jti_replay');
});

test('Traefik forwardAuth convention: X-Forwarded-Method / X-Forwarded-Uri; body bound as claimed', async () => {
  const r = makeRequest({ ...now(), method: 'POST', path: '/v1/orders', body: '{"order_id":"ord_1"}' });
  // The body is not sent: the claimed X-TrustPlane-Body-SHA256 is what gets bound.
  assertAllowed(await check('GET', '/', { ...headersOf(r), 'x-forwarded-method': 'POST', 'x-forwarded-uri': '/v1/orders', 'x-forwarded-host': 'orders.example', 'x-forwarded-proto': 'https' }));
  const swapped = makeRequest({ ...now(), path: '/v1/orders/ord_1' });
  const d = await check('GET', '/', { ...headersOf(swapped), 'x-forwarded-method': 'DELETE', 'x-forwarded-uri': '/v1/orders/ord_1' });
  assert.ok(d.status === 403 || d.status === 401, d.text);
  const t = makeRequest({ ...now(), path: '/v1/orders/ord_1' });
  assertTamperDenied(await check('GET', '/', { ...headersOf(t), 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/v1/orders/ord_2' }));
});

test('Envoy ext_authz HTTP convention: method as-is, path after the configured prefix', async () => {
  const r = makeRequest({ ...now(), path: '/v1/orders/ord_42', query: 'expand=items' });
  assertAllowed(await check('GET', '/ext_authz/v1/orders/ord_42?expand=items', headersOf(r)));
  const t = makeRequest({ ...now(), path: '/v1/orders/ord_1' });
  assertTamperDenied(await check('GET', '/ext_authz/v1/orders/ord_2', headersOf(t)));
});

test('a request described by two conventions (a caller adding the other gateway\'s headers) is 400 malformed_request, its jti unused', async () => {
  // Under Traefik, which copies the caller's headers onto its check request, a caller signs a
  // harmless request, describes it in X-Original-*, and sends something else: Traefik describes
  // that in X-Forwarded-*. Preferring either convention would verify one request and forward another.
  const r = makeRequest(now());
  const harmless = { ...headersOf(r), 'x-original-method': 'GET', 'x-original-uri': '/v1/orders/search' };
  for (const [path, extra] of [
    ['/', { 'x-forwarded-method': 'DELETE', 'x-forwarded-uri': '/v1/admin/purge-all' }],
    ['/ext_authz/v1/admin/purge-all', {}],
  ] as const) {
    const d = await check('GET', path, { ...harmless, ...extra });
    assert.equal(d.status, 400, d.text);
    assert.equal(d.headers['x-trustplane-reason'], 'malformed_request');
    assert.equal(d.headers['x-trustplane-subject'], undefined);
  }
  const traefikTwice = await check('GET', '/ext_authz/v1/orders/search', { ...headersOf(makeRequest(now())), 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/v1/orders/search' });
  assert.equal(traefikTwice.status, 400, traefikTwice.text);
  // Refused before verification: the passport is still unused.
  assertAllowed(await check('GET', '/auth', harmless));
});

test('no recognised convention, or forwarded headers when not trusted → 400 malformed_request; missing passport → 401', async () => {
  const r = makeRequest(now());
  const none = await check('GET', '/v1/orders/search', headersOf(r));
  assert.equal(none.status, 400);
  assert.deepEqual(JSON.parse(none.text), { allowed: false, reason: 'malformed_request' });
  const half = await check('GET', '/auth', { ...headersOf(r), 'x-original-uri': '/v1/orders/search' });
  assert.equal(half.status, 400);
  const bare = await check('GET', '/auth', { 'x-original-method': 'GET', 'x-original-uri': '/v1/orders/search' });
  assert.equal(bare.status, 401);
  assert.equal(bare.headers['x-trustplane-reason'], 'missing_passport');

  const strict = await startForwardAuthVerifier({
    listen: { host: '127.0.0.1', port: 0 },
    policy: new StaticPolicyProvider(compilePolicy(trustMaterial(), policyBundle())),
    replayStore: new MemoryReplayStore(),
    audit: new MemoryAuditSink(),
    trustForwardedHeaders: false,
  });
  try {
    const res = await request(`${strict.url}/auth`, { headers: { ...headersOf(r), 'x-original-method': 'GET', 'x-original-uri': '/v1/orders/search' } });
    await res.body.text();
    assert.equal(res.statusCode, 400);
  } finally {
    await strict.close();
  }
});
