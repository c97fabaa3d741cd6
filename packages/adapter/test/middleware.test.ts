import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { serve } from '@hono/node-server';
import { MemoryReplayStore, StaticPolicyProvider, Verifier, compilePolicy, type VerifyRequest } from '@trustplane/core';
import { makeRequest, policyBundle, trustMaterial } from '@trustplane/testkit';
import { createTrustPlaneMiddleware, createTrustPlaneExpressMiddleware, trustplaneFastify, trustplaneHono, type TrustPlaneHonoEnv, type TrustPlaneRequest, type TrustPlaneFastifyRequest } from '../src/middleware/index.js';

function newVerifier(): Verifier {
  return new Verifier({ policy: new StaticPolicyProvider(compilePolicy(trustMaterial(), policyBundle())), replayStore: new MemoryReplayStore() });
}

const now = () => ({ nowMs: Date.now() });

async function send(base: string, r: VerifyRequest, pathOverride?: string, bodyOverride?: string) {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(r.headers)) if (v !== undefined) headers[k] = v as string | string[];
  const body = bodyOverride ?? (r.body === undefined ? null : Buffer.from(r.body).toString());
  const res = await request(`${base}${pathOverride ?? r.path}${r.query ? `?${r.query}` : ''}`, { method: r.method as 'GET', headers, body });
  const text = await res.body.text();
  return { status: res.statusCode, text, json: JSON.parse(text) as Record<string, unknown> };
}

function urlOf(server: Server): string {
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** The same scenario for every framework: allow (POST with body, identity and body seen by the handler), tampered path, tampered body, missing passport. */
async function scenario(base: string, handled: () => number): Promise<void> {
  const post = makeRequest({ ...now(), method: 'POST', path: '/v1/orders', body: '{"order_id":"ord_123"}', headers: { 'content-type': 'application/json' } });
  const ok = await send(base, post);
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.json['subject'], 'service:orders-client');
  assert.equal(ok.json['issuer'], 'https://issuer.example/software-jwks');
  assert.deepEqual(ok.json['body'], { order_id: 'ord_123' });
  assert.equal(handled(), 1);

  const get = makeRequest({ ...now(), path: '/v1/orders/ord_1' });
  const tamperedPath = await send(base, get, '/v1/orders/ord_2');
  assert.equal(tamperedPath.status, 403, tamperedPath.text);
  assert.deepEqual(tamperedPath.json, { allowed: false, reason: 'request_binding_mismatch' });

  const post2 = makeRequest({ ...now(), method: 'POST', path: '/v1/orders', body: '{"order_id":"ord_1"}', headers: { 'content-type': 'application/json' } });
  const tamperedBody = await send(base, post2, undefined, '{"order_id":"ord_9"}');
  assert.equal(tamperedBody.status, 403, tamperedBody.text);
  assert.deepEqual(tamperedBody.json, { allowed: false, reason: 'request_binding_mismatch' });

  const bare = await request(`${base}/v1/orders/search`);
  assert.equal(bare.statusCode, 401);
  assert.deepEqual(await bare.body.json(), { allowed: false, reason: 'missing_passport' });
  assert.equal(handled(), 1, 'no denied request reached the handler');
}

test('node:http middleware: allow with identity and body, denials never reach the handler', async () => {
  const mw = createTrustPlaneMiddleware(newVerifier());
  let handled = 0;
  const server = createServer((req, res) => {
    mw(req, res, () => {
      handled++;
      const tr = req as TrustPlaneRequest;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ subject: tr.trustplane?.subject, issuer: tr.trustplane?.issuer, body: JSON.parse(tr.trustplaneBody!.toString()) as unknown }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    await scenario(urlOf(server), () => handled);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

test('Express middleware: req.trustplane and req.trustplaneBody in the route handler', async () => {
  const app = express();
  app.set('case sensitive routing', true);
  let handled = 0;
  app.use(createTrustPlaneExpressMiddleware(newVerifier()));
  app.post('/v1/orders', (req, res) => {
    handled++;
    const tr = req as typeof req & TrustPlaneRequest;
    res.json({ subject: tr.trustplane?.subject, issuer: tr.trustplane?.issuer, body: JSON.parse(tr.trustplaneBody!.toString()) as unknown });
  });
  app.get('/v1/orders/:id', (_req, res) => {
    handled++;
    res.json({});
  });
  const server = await new Promise<Server>((r) => {
    const s = app.listen(0, '127.0.0.1', () => r(s));
  });
  try {
    await scenario(urlOf(server), () => handled);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

test('Express with its default case-insensitive routing and a default Router: /v1/orders/SEARCH signed for orders.get never runs the search handler', async () => {
  // The policy routes /v1/orders/SEARCH as orders.get (/v1/orders/{order_id}); Express, ignoring
  // case, would run the /v1/orders/search handler. The verifier refuses the path because its
  // case-folded reading resolves to orders.search; no handler runs and the jti is not spent.
  const store = new MemoryReplayStore();
  const verifier = new Verifier({ policy: new StaticPolicyProvider(compilePolicy(trustMaterial(), policyBundle())), replayStore: store });
  const ran: string[] = [];
  const app = express(); // case-insensitive: Express's default
  const router = express.Router(); // its own default, case-insensitive, mounted under /v1
  app.use(createTrustPlaneExpressMiddleware(verifier));
  router.get('/orders/search', (_req, res) => {
    ran.push('search');
    res.json({ handler: 'search' });
  });
  router.get('/orders/:id', (_req, res) => {
    ran.push('get');
    res.json({ handler: 'get' });
  });
  app.use('/v1', router);
  const server = await new Promise<Server>((r) => {
    const s = app.listen(0, '127.0.0.1', () => r(s));
  });
  try {
    const base = urlOf(server);
    for (const path of ['/v1/orders/SEARCH', '/v1/ORDERS/search', '/v1/orders/Search/']) {
      const upper = makeRequest({ ...now(), path, subject: 'service:reader', routeId: 'orders.get' });
      const r = await send(base, upper);
      assert.equal(r.status, 400, r.text);
      assert.deepEqual(r.json, { allowed: false, reason: 'non_canonical_path' });
      assert.equal(store.size, 0, 'the refused request spent no jti');
    }
    assert.deepEqual(ran, []);
    const get = await send(base, makeRequest({ ...now(), path: '/v1/orders/ORD_1', subject: 'service:reader' }));
    assert.equal(get.status, 200, get.text);
    const search = await send(base, makeRequest({ ...now(), path: '/v1/orders/search' }));
    assert.equal(search.status, 200, search.text);
    assert.deepEqual(ran, ['get', 'search'], 'the handlers that ran are the routes the policy authorized');
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

test('Fastify routing case-insensitively: the plugin guards it, and a spelling of another route is refused before any handler', async () => {
  const app = Fastify({ routerOptions: { caseSensitive: false } });
  const ran: string[] = [];
  await app.register(trustplaneFastify, { verifier: newVerifier() });
  app.get('/v1/orders/search', () => (ran.push('search'), { handler: 'search' }));
  app.get('/v1/orders/:id', () => (ran.push('get'), { handler: 'get' }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  try {
    const base = urlOf(app.server);
    for (const path of ['/v1/orders/SEARCH', '/v1/orders/%73earch']) {
      const r = await send(base, makeRequest({ ...now(), path, subject: 'service:reader', routeId: 'orders.get' }));
      assert.equal(r.status, 400, `${path}: ${r.text}`);
      assert.deepEqual(r.json, { allowed: false, reason: 'non_canonical_path' });
    }
    const ok = await send(base, makeRequest({ ...now(), path: '/v1/orders/ord_1', subject: 'service:reader' }));
    assert.equal(ok.status, 200, ok.text);
    assert.deepEqual(ran, ['get']);
  } finally {
    await app.close();
  }
});

test('Fastify plugin: body re-provided to the parser, request.trustplane in the handler', async () => {
  const app = Fastify();
  let handled = 0;
  await app.register(trustplaneFastify, { verifier: newVerifier() });
  app.post('/v1/orders', (req) => {
    handled++;
    const tr = req as TrustPlaneFastifyRequest;
    return Promise.resolve({ subject: tr.trustplane?.subject, issuer: tr.trustplane?.issuer, body: req.body, raw: tr.trustplaneBody?.toString() });
  });
  app.get('/v1/orders/:id', () => {
    handled++;
    return Promise.resolve({});
  });
  const base = await app.listen({ port: 0, host: '127.0.0.1' });
  try {
    await scenario(base, () => handled);
  } finally {
    await app.close();
  }
});

test('Hono middleware: c.get("trustplane") and c.req.json() in the handler', async () => {
  const app = new Hono<TrustPlaneHonoEnv>();
  let handled = 0;
  app.use('*', trustplaneHono(newVerifier()));
  app.post('/v1/orders', async (c) => {
    handled++;
    const d = c.get('trustplane');
    return c.json({ subject: d.subject, issuer: d.issuer, body: (await c.req.json()) as unknown });
  });
  app.get('/v1/orders/:id', (c) => {
    handled++;
    return c.json({});
  });
  const server = await new Promise<Server>((r) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => r(s as Server));
  });
  try {
    await scenario(urlOf(server), () => handled);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});
