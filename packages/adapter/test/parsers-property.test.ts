/**
 * Property tests for the adapter's readers of untrusted bytes (issue 17, "Standing suites"): the
 * inbound header reader (`inboundHeaders`, checked against Node's own `req.headersDistinct` over
 * a real socket), the forward-auth description of the original request (`originalRequest`, and
 * the decision endpoint over real HTTP: never a 500), and issuer JWKS parsing.
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import fc from 'fast-check';
import { FormatError, MemoryReplayStore, StaticPolicyProvider, compilePolicy, encodeBase64url, trustKeysFromJwks, type JsonValue, type VerifyRequest } from '@trustplane/core';
import { PropertyTally, makeRequest, policyBundle, seedKey, trustMaterial } from '@trustplane/testkit';
import { MemoryAuditSink, inboundHeaders, originalRequest, requestIdOf, startForwardAuthVerifier, type RunningForwardAuthVerifier } from '../src/index.js';

const tally = new PropertyTally('adapter parsers');

const NAMES = ['x-tenant', 'X-Tenant', 'x_tenant', 'X_TENANT', '__proto__', 'constructor', 'toString', 'authorization', 'Authorization', 'x-request-id', 'x-original-uri', 'X-Original-Method', 'x-forwarded-uri', 'x-forwarded-method', 'content-type', 'x-trustplane-nonce'];
const headerValue = fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,10}[\x21-\x7e])?$/);

// ---------------------------------------------------------------------------------------------
// inboundHeaders against Node's parser

let echo: Server;
let echoPort = 0;
let lastCheck: ((req: IncomingMessage) => void) | undefined;
before(async () => {
  echo = createServer((req, res) => {
    let status = 200;
    let body = '';
    try {
      lastCheck?.(req);
    } catch (e) {
      status = 500;
      body = String(e);
    }
    res.writeHead(status, { connection: 'close' }).end(body);
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  echoPort = (echo.address() as AddressInfo).port;
});
after(() => new Promise<void>((r) => echo.close(() => r())));

/** Send a raw request over a socket; resolve with the whole response text. */
function rawRequest(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.end(text));
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    s.on('close', () => resolve(Buffer.concat(got).toString('latin1')));
    s.on('error', reject);
  });
}

test('property: inboundHeaders equals req.headersDistinct (a repeated header is every value, __proto__ is a header)', async () => {
  await tally.checkAsync(
    fc.asyncProperty(fc.array(fc.tuple(fc.constantFrom(...NAMES), headerValue), { maxLength: 8 }), async (list) => {
      lastCheck = (req) => {
        const mine = inboundHeaders(req.rawHeaders);
        const node = req.headersDistinct;
        assert.equal(Object.getPrototypeOf(mine), null);
        const names = Object.keys(node).sort();
        assert.deepEqual(Object.keys(mine).sort(), names);
        for (const n of names) {
          const v = mine[n]!;
          assert.deepEqual(typeof v === 'string' ? [v] : v, node[n]);
        }
        const id = requestIdOf(mine);
        const given = mine['x-request-id'];
        if (typeof given === 'string' && /^[\x21-\x7e]{1,128}$/.test(given)) assert.equal(id, given);
        else assert.match(id, /^[0-9a-f-]{36}$/);
      };
      const text = `GET /p HTTP/1.1\r\nHost: 127.0.0.1\r\n${list.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`;
      const res = await rawRequest(echoPort, text);
      assert.match(res, /^HTTP\/1\.1 200 /, res);
    }),
    { numRuns: 200, timeLimitMs: 2500, minRuns: 20 },
  );
});

// ---------------------------------------------------------------------------------------------
// forward-auth: the original request as the gateway describes it

test('property: originalRequest describes the request by exactly one convention, or gives a reason', () => {
  const gatewayHeader = fc.tuple(fc.constantFrom('x-original-method', 'x-original-uri', 'x-forwarded-method', 'x-forwarded-uri', 'X-Original-URI', 'x-tenant', '__proto__'), fc.constantFrom('GET', 'POST', '/v1/orders/search', '/ext_authz/x', '', 'http://evil/x', '*'));
  tally.check(
    fc.property(fc.array(gatewayHeader, { maxLength: 5 }), fc.constantFrom('/auth', '/ext_authz/v1/orders/search?x=1', '/ext_authz', '/ext_authzX/a', '/', ''), fc.boolean(), fc.constantFrom('/ext_authz', ''), (hs, url, trust, prefix) => {
      const rawHeaders = hs.flatMap(([n, v]) => [n, v]);
      const req = { url, method: 'GET', rawHeaders } as unknown as IncomingMessage;
      const r = originalRequest(req, { trustForwardedHeaders: trust, envoyPathPrefix: prefix });
      const h = inboundHeaders(rawHeaders);
      const nginx = trust && (h['x-original-uri'] !== undefined || h['x-original-method'] !== undefined);
      const traefik = trust && (h['x-forwarded-uri'] !== undefined || h['x-forwarded-method'] !== undefined);
      const envoy = prefix !== '' && url.startsWith(`${prefix}/`);
      if ('error' in r) {
        assert.ok(r.error.length > 0);
        return;
      }
      assert.equal([nginx, traefik, envoy].filter(Boolean).length, 1, JSON.stringify({ hs, url, trust, prefix, r }));
      if (r.convention === 'nginx') assert.deepEqual([r.method, r.target], [h['x-original-method'], h['x-original-uri']]);
      if (r.convention === 'traefik') assert.deepEqual([r.method, r.target], [h['x-forwarded-method'], h['x-forwarded-uri']]);
      if (r.convention === 'envoy') assert.equal(prefix + r.target, url);
    }),
    { numRuns: 3000 },
  );
});

let fa: RunningForwardAuthVerifier;
before(async () => {
  fa = await startForwardAuthVerifier({
    listen: { host: '127.0.0.1', port: 0 },
    policy: new StaticPolicyProvider(compilePolicy(trustMaterial(), policyBundle())),
    replayStore: new MemoryReplayStore(),
    audit: new MemoryAuditSink(),
    trustForwardedHeaders: true,
    envoyPathPrefix: '/ext_authz',
  });
});
after(() => fa.close());

test('property: the forward-auth endpoint answers any gateway description with a mapped decision, never a 500', async () => {
  const port = Number(new URL(fa.url).port);
  const signed = makeRequest({ nowMs: Date.now(), path: '/v1/orders/ord_1' });
  const credentials = Object.entries(signed.headers as VerifyRequest['headers']).map(([n, v]) => `${n}: ${String(v)}\r\n`).join('');
  const target = fc.oneof(fc.constantFrom('/v1/orders/ord_1', '/v1/orders/%6Frd_1', '/v1/orders/search', '/v1/orders/..%2Fadmin', '//v1/orders/ord_1', '/v1/orders/ord_1?', '/v1/orders/ord_1??a=1', 'http://h/v1/orders/ord_1', '*', ''), fc.stringMatching(/^\/[\x21-\x7e]{0,20}$/));
  const extra = fc.array(fc.tuple(fc.constantFrom('x-original-method', 'x-original-uri', 'x-forwarded-method', 'x-forwarded-uri', 'x_trustplane_proof', 'authorization', 'content-encoding', 'x-trustplane-signed-headers'), headerValue), { maxLength: 3 });
  await tally.checkAsync(
    fc.asyncProperty(fc.constantFrom('nginx', 'traefik', 'envoy'), fc.constantFrom('GET', 'POST', 'get', 'DELETE'), target, extra, async (conv, method, t, more) => {
      const head = conv === 'envoy' ? `${method} /ext_authz${t.startsWith('/') ? t : `/${t}`} HTTP/1.1\r\n` : `GET /auth HTTP/1.1\r\n${conv === 'nginx' ? 'X-Original-Method' : 'X-Forwarded-Method'}: ${method}\r\n${conv === 'nginx' ? 'X-Original-URI' : 'X-Forwarded-Uri'}: ${t === '' ? '/' : t}\r\n`;
      const text = `${head}Host: 127.0.0.1\r\nConnection: close\r\n${credentials}${more.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`;
      const res = await rawRequest(port, text);
      const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(res)?.[1]);
      assert.ok([200, 400, 401, 403, 404, 409, 503].includes(status), res.slice(0, 300));
      assert.doesNotMatch(res, /internal_error/);
      // A denial by the verifier names its reason (Node's own parser may refuse first with a bare
      // 400, e.g. a lower-case method: no decision was made then).
      if (res.includes('{"allowed":false')) assert.match(res, /\r\nx-trustplane-reason: [a-z_]+\r\n/i);
      else if (status !== 200) assert.equal(status, 400, res.slice(0, 300));
    }),
    { numRuns: 200, timeLimitMs: 3000, minRuns: 20 },
  );
});

// ---------------------------------------------------------------------------------------------
// issuer JWKS (jwks-source.ts → core trustKeysFromJwks)

test('property: JWKS parsing gives Ed25519 trust keys, or invalid_jwks', () => {
  const x = encodeBase64url(seedKey(5).publicKey);
  const jwk = fc.record(
    {
      kty: fc.constantFrom<JsonValue>('OKP', 'RSA', 'EC', 'okp', null),
      crv: fc.constantFrom<JsonValue>('Ed25519', 'X25519', 'ed25519'),
      x: fc.oneof(fc.constantFrom<JsonValue>(x, `${x}=`, x.slice(1), 'AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', '', 5), fc.string({ maxLength: 44 })),
      kid: fc.oneof(fc.constantFrom<JsonValue>('k1', 'k2', '', ' k', 'k'.repeat(257), '__proto__', 'é'), fc.jsonValue({ maxDepth: 0 }) as fc.Arbitrary<JsonValue>),
      use: fc.constantFrom<JsonValue>('sig', 'enc', 1),
      alg: fc.constantFrom<JsonValue>('EdDSA', 'Ed25519', 'RS256'),
      d: fc.constant<JsonValue>(x),
    },
    { requiredKeys: ['kty', 'crv', 'x', 'kid'] },
  );
  const jwks = fc.oneof(
    { weight: 4, arbitrary: fc.array(jwk, { maxLength: 4 }).map((keys) => ({ keys })) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<JsonValue> },
  );
  tally.check(
    fc.property(jwks, (doc) => {
      let out;
      try {
        out = trustKeysFromJwks(doc);
      } catch (e) {
        assert.ok(e instanceof FormatError && e.code === 'invalid_jwks', String(e));
        return;
      }
      assert.ok(out.keys.length > 0);
      assert.equal(new Set(out.keys.map((k) => k.kid)).size, out.keys.length, 'kids are unique');
      for (const k of out.keys) {
        assert.match(k.kid, /^[\x21-\x7e]{1,256}$/);
        assert.equal(k.public_key_b64url, x, 'only the one valid key can come out');
      }
    }),
    { numRuns: 3000 },
  );
});

test('property: counts (every property in this file ran)', (t) => {
  t.diagnostic(tally.summary());
  assert.equal(tally.properties, 4);
});
