import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  createSignedFetch,
  signRequest,
  issuePassport,
  Verifier,
  StaticPolicyProvider,
  MemoryReplayStore,
  compilePolicy,
  FormatError,
  type Decision,
} from '../src/index.js';
import { issuerKey, otherKey, ISSUER, trustMaterial, policyBundle, T0 } from './helpers.js';

const identity = { privateKey: issuerKey, kid: 'client-key-1', issuer: ISSUER, subject: 'service:orders-client', trustDomain: 'example.local', audience: 'orders-api' };

/** A real HTTP server on loopback whose handler runs the verifier on what actually arrived. */
async function withVerifyingServer(fn: (base: string, decisions: Decision[]) => Promise<void>): Promise<void> {
  // The API's base_url is the server's own address, so scheme/authority match what the caller used.
  const decisions: Decision[] = [];
  const holder: { verifier?: Verifier } = {};
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = req.url ?? '/';
      const q = url.indexOf('?');
      void holder.verifier!
        .verify({ method: req.method ?? '', path: q < 0 ? url : url.slice(0, q), query: q < 0 ? '' : url.slice(q + 1), headers: req.headersDistinct, body: Buffer.concat(chunks) })
        .then((d) => {
          decisions.push(d);
          res.writeHead(d.allowed ? 200 : d.status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(d.allowed ? { ok: true } : { allowed: false, reason: d.reason }));
        });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const base = `http://127.0.0.1:${port}`;
  const bundle = policyBundle((b) => {
    b.apis[0]!.base_url = base;
  });
  holder.verifier = new Verifier({ policy: new StaticPolicyProvider(compilePolicy(trustMaterial(), bundle)), replayStore: new MemoryReplayStore() });
  try {
    await fn(base, decisions);
  } finally {
    server.close();
  }
}

test('createSignedFetch: real requests over loopback are accepted; each one gets a fresh passport and nonce', async () => {
  await withVerifyingServer(async (base, decisions) => {
    const signedFetch = createSignedFetch({ ...identity, routeId: (m) => (m === 'POST' ? 'orders.create' : 'orders.search') });
    const r1 = await signedFetch(`${base}/v1/orders/search?z=1&a=%7e&q=caf%C3%A9`);
    assert.equal(r1.status, 200, await r1.text());
    const r2 = await signedFetch(`${base}/v1/orders/search?z=1&a=%7e&q=caf%C3%A9`);
    assert.equal(r2.status, 200);
    const r3 = await signedFetch(`${base}/v1/orders`, { method: 'POST', body: JSON.stringify({ order_id: 'ord_1' }), headers: { 'Content-Type': 'application/json', 'X-Extra': 'unsigned' } });
    assert.equal(r3.status, 200, await r3.text());
    const jtis = decisions.map((d) => d.allowed && d.jti);
    assert.equal(new Set(jtis).size, 3);
  });
});

test('createSignedFetch refuses caller-supplied TrustPlane headers and unhashable bodies', async () => {
  const signedFetch = createSignedFetch({ ...identity, routeId: 'orders.search', fetch: () => Promise.reject(new Error('must not be called')) });
  await assert.rejects(signedFetch('http://127.0.0.1:1/x', { headers: { Authorization: 'Bearer x' } }), TypeError);
  await assert.rejects(signedFetch('http://127.0.0.1:1/x', { method: 'POST', body: new Blob(['x']) }), TypeError);
});

test('signRequest: a proof replayed against a different path is refused by the verifier over HTTP', async () => {
  await withVerifyingServer(async (base) => {
    const p = issuePassport({ signingKey: issuerKey, kid: 'client-key-1', issuer: ISSUER, subject: 'service:orders-client', audience: 'orders-api', trustDomain: 'example.local' });
    const signed = signRequest({ passport: p.token, privateKey: issuerKey, method: 'GET', url: `${base}/v1/orders/search`, routeId: 'orders.search' });
    const res = await fetch(`${base}/v1/orders/ord_1`, { headers: signed.headers });
    assert.equal(res.status, 403);
    assert.deepEqual(await res.json(), { allowed: false, reason: 'request_binding_mismatch' });
  });
});

test('signRequest refuses a key that is not the passport cnf key, and non-software passports', () => {
  const p = issuePassport({ signingKey: issuerKey, kid: 'k', issuer: 'i', subject: 's', audience: 'a', trustDomain: 't', now: T0 });
  assert.throws(() => signRequest({ passport: p.token, privateKey: otherKey, method: 'GET', url: 'https://x/y', routeId: 'r' }), (e: unknown) => e instanceof FormatError && e.code === 'cnf_public_key_mismatch');
  const hw = issuePassport({ signingKey: issuerKey, kid: 'k', issuer: 'i', subject: 's', audience: 'a', trustDomain: 't', now: T0, keyBinding: 'hardware_local' });
  assert.throws(() => signRequest({ passport: hw.token, privateKey: issuerKey, method: 'GET', url: 'https://x/y', routeId: 'r' }), (e: unknown) => e instanceof FormatError && e.code === 'local_raw_key_supports_only_software_key_binding');
  assert.throws(() => signRequest({ passport: ' ', privateKey: issuerKey, method: 'GET', url: 'https://x/y', routeId: 'r' }), TypeError);
});

test('signRequest returns exactly the five SPEC §2 headers, well-formed', () => {
  const p = issuePassport({ signingKey: issuerKey, kid: 'k', issuer: 'i', subject: 's', audience: 'a', trustDomain: 't', now: T0 });
  const s = signRequest({ passport: p.token, privateKey: issuerKey, method: 'post', url: 'https://orders.example/v1/orders', routeId: 'r', body: 'x', headers: { 'Content-Type': 'text/plain' } });
  assert.deepEqual(Object.keys(s.headers), ['Authorization', 'X-TrustPlane-Transcript-SHA256', 'X-TrustPlane-Proof', 'X-TrustPlane-Nonce', 'X-TrustPlane-Body-SHA256']);
  assert.match(s.headers['X-TrustPlane-Proof']!, /^[A-Za-z0-9_-]{86}$/);
  assert.match(s.headers['X-TrustPlane-Nonce']!, /^[0-9a-f]{32}$/);
  assert.match(s.headers['X-TrustPlane-Transcript-SHA256']!, /^[0-9a-f]{64}$/);
  assert.equal(s.headers['Authorization'], `Bearer ${p.token}`);
  assert.deepEqual(s.signedHeaders, ['content-type', 'x-trustplane-nonce']);
});
