/**
 * Property tests for route matching and the bundle loader (issue 17, "Standing suites"):
 * `resolveRoute` gives a route that really matches, or none (or a TrustPlaneError, for paths it
 * refuses outright); `parseBundlePair` gives a pair or a BundleFormatError for any mutation of a
 * valid pair, and a signed pair survives a byte mutation only when its content did not change.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  BUNDLE_ERROR_CODES,
  BundleFormatError,
  TrustPlaneError,
  parseBundlePair,
  resolveRoute,
  type CompiledPolicy,
  type CompiledRoute,
  type JsonValue,
  type PolicyBundle,
  type RoutePolicy,
} from '../src/index.js';
import { ISSUER, PropertyTally, compiled } from './helpers.js';
import { pairTexts, trustedKeys } from './bundle-helpers.js';

const tally = new PropertyTally('core routes and bundles');

const PROTO_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty'];

// ---------------------------------------------------------------------------------------------
// route matching (policy.ts resolveRoute)

function addRoute(b: PolicyBundle, id: string, method: string, template: string): void {
  const r: RoutePolicy = {
    route_id: id,
    method,
    path_template: template,
    freshness_class: 'offline-ok',
    allowed_sources: [{ source_type: 'software_jwks', issuer: ISSUER, trust_domain: 'example.local', subject_prefix: 'service:' }],
  };
  b.route_groups[0]!.routes.push(r);
}

/** Overlapping exact and template routes (the fixture's three plus these). */
const policy: CompiledPolicy = compiled((b) => {
  addRoute(b, 'items.get', 'GET', '/v1/orders/{order_id}/items/{item_id}');
  addRoute(b, 'items.search', 'GET', '/v1/orders/{order_id}/items/search');
  addRoute(b, 'tenant.search', 'GET', '/v1/{tenant}/orders/search');
  addRoute(b, 'admin.users', 'DELETE', '/admin/users/{user_id}');
  addRoute(b, 'root', 'GET', '/');
  addRoute(b, 'proto', 'GET', '/__proto__/{constructor}');
});
const ROUTES = [...policy.routesById.values()];

/** Path segments from the interesting space: literals, their encoded and cased twins, dot segments, encoded slashes. */
const segment = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('v1', 'orders', 'search', 'items', 'admin', 'users', 'ord_1', 'i-2', '__proto__', 'constructor', 'toString') },
  { weight: 3, arbitrary: fc.constantFrom('%73earch', 'searc%68', 'SEARCH', 'Search', '%76%31', 'v%31', 'ord%5F1', '.', '..', '%2e', '%2E%2E', '.%2e', '..;', '..%3B', 'a;b', ';', '%2F', 'a%2fb', '%5C', 'a\\b', '%', '%zz', '%00', '~', 'ord_1.json', '') },
  { weight: 2, arbitrary: fc.stringMatching(/^[A-Za-z0-9\-._~%;:@!$&'()*+,=]{1,6}$/) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 3 }) },
  { weight: 1, arbitrary: fc.constantFrom('\ud800', 'é', '%C3%A9', '\u0000', ' ', '\t') },
);
const pathArb = fc.oneof(
  { weight: 6, arbitrary: fc.array(segment, { minLength: 1, maxLength: 5 }).map((s) => `/${s.join('/')}`) },
  { weight: 1, arbitrary: fc.constantFrom('', '*', 'v1/orders/search', '//v1/orders/search', '/v1/orders/search/', '/v1/orders/search?x=1', '/v1/orders/search#f') },
  { weight: 1, arbitrary: fc.string({ maxLength: 30 }) },
);
const methodArb = fc.constantFrom('GET', 'POST', 'DELETE', 'get', 'Get', 'GET ', 'HEAD', 'PUT', '', '__proto__', 'constructor');

/** A literal template segment matches itself only; a `{param}` a non-empty, non-dot, slash-free segment. */
function matches(route: CompiledRoute, method: string, path: string): boolean {
  if (route.method !== method || !path.startsWith('/')) return false;
  const segs = path.slice(1).split('/');
  if (segs.length !== route.segments.length) return false;
  return route.segments.every((t, i) => {
    const s = segs[i]!;
    if (t !== null) return t === s;
    if (s === '' || s.includes('\\') || /%(?:2f|5c)/i.test(s)) return false;
    const bare = s.replace(/%2e/gi, '.').split(/;|%3b/i)[0];
    return bare !== '.' && bare !== '..';
  });
}

/** resolveRoute, with a refusal (the stricter canonical-path rule) as `'refused'`. */
function resolve(method: string, path: string): CompiledRoute | undefined | 'refused' {
  try {
    return resolveRoute(policy, method, path);
  } catch (e) {
    if (e instanceof TrustPlaneError) return 'refused';
    assert.fail(`resolveRoute(${JSON.stringify(method)}, ${JSON.stringify(path)}) threw ${String(e)} (${(e as Error)?.constructor?.name})`);
  }
}

test('property: resolveRoute returns a route that matches method and path, none, or a TrustPlaneError', () => {
  tally.check(
    fc.property(methodArb, pathArb, (method, path) => {
      const r = resolve(method, path);
      if (r === undefined || r === 'refused') return;
      assert.ok(matches(r, method, path), `${method} ${path} resolved to ${r.routeId} (${r.method} ${r.pathTemplate})`);
      // An exact route at this very path wins over every template.
      const exact = ROUTES.find((x) => x.method === method && x.segments.every((s) => s !== null) && x.pathTemplate === path);
      if (exact !== undefined) assert.equal(r.routeId, exact.routeId);
      // Of the templates that match, the one returned is not less specific than any other.
      for (const other of ROUTES) {
        if (other === r || !matches(other, method, path)) continue;
        const first = r.segments.findIndex((s, i) => (s === null) !== (other.segments[i] === null));
        if (first !== -1) assert.ok(r.segments[first] !== null, `${path}: ${r.routeId} chosen over the more specific ${other.routeId}`);
      }
    }),
    { numRuns: 5000 },
  );
});

test('property: every route resolves for its own template with canonical parameter values', () => {
  const value = fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,11}$/);
  tally.check(
    fc.property(fc.constantFrom(...ROUTES), fc.array(value, { minLength: 4, maxLength: 4 }), (route, values) => {
      let k = 0;
      const path = route.segments.length === 1 && route.segments[0] === '' ? '/' : `/${route.segments.map((s) => s ?? values[k++]!).join('/')}`;
      const r = resolve(route.method, path);
      assert.ok(r !== undefined && r !== 'refused', `${route.routeId}: ${route.method} ${path} does not resolve`);
      // The route itself, or one at least as specific that also matches (a value equal to a literal).
      assert.ok(matches(r, route.method, path), `${path} resolved to ${r.routeId}`);
      if (r !== route) assert.ok(values.some((v) => ROUTES.some((x) => x.segments.includes(v))) || r.segments.every((s) => s !== null), `${path}: ${r.routeId} instead of ${route.routeId}`);
    }),
    { numRuns: 1500 },
  );
});

// ---------------------------------------------------------------------------------------------
// bundle loader (bundle/load.ts parseBundlePair, schema, compilePolicy)

type Json = JsonValue;

/** Every location inside a document: the path of keys/indexes from the root. */
function locations(v: Json, at: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(at);
  if (Array.isArray(v)) v.forEach((x, i) => locations(x, [...at, i], out));
  else if (v !== null && typeof v === 'object') for (const k of Object.keys(v)) locations(v[k]!, [...at, k], out);
  return out;
}

function define(o: Record<string, Json> | Json[], k: string | number, v: Json): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

const junkValue: fc.Arbitrary<Json> = fc.oneof(
  fc.constantFrom<Json>(null, '', ' ', 0, -1, 1.5, 2 ** 53 - 1, true, [], {}, [null], [{}], 'EdDSA', 'GET', 'get', '/v1/{x}', '/v1/{x}y', 'software', 'attested_workload', 'realtime', 'https://h.example', 'A'.repeat(43)),
  fc.dictionary(fc.constantFrom(...PROTO_KEYS, 'kid', 'issuer', 'keys', 'routes'), fc.oneof(fc.string({ maxLength: 3 }), fc.constant(null), fc.constant([])), { maxKeys: 3 }) as fc.Arbitrary<Json>,
  fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Json>,
);

type Mutation = { op: 'set'; at: number; value: Json } | { op: 'delete'; at: number } | { op: 'add'; at: number; key: string; value: Json } | { op: 'dup'; at: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), value: junkValue }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('add' as const), at: fc.nat(), key: fc.constantFrom(...PROTO_KEYS, 'extra', 'status', 'jwks_uri', 'nbf'), value: junkValue }),
  fc.record({ op: fc.constant('dup' as const), at: fc.nat() }),
);

/** Apply a mutation at the `at`-th location (root excluded for set/delete). */
function mutate(doc: Json, m: Mutation): void {
  const locs = locations(doc).slice(1);
  if (locs.length === 0) return; // an earlier mutation emptied the document
  const loc = locs[m.at % locs.length]!;
  let parent = doc as Record<string, Json> | Json[];
  for (const k of loc.slice(0, -1)) parent = (parent as Record<string | number, Json>)[k] as Record<string, Json> | Json[];
  const last = loc[loc.length - 1]!;
  const target = (parent as Record<string | number, Json>)[last]!;
  if (m.op === 'set') define(parent, last, m.value);
  else if (m.op === 'delete') {
    if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete parent[last as string];
  } else if (m.op === 'add') {
    if (target !== null && typeof target === 'object' && !Array.isArray(target)) define(target, m.key, m.value);
  } else if (Array.isArray(parent)) parent.push(structuredClone(target));
}

function expectBundleError(e: unknown, what: unknown): void {
  if (e instanceof BundleFormatError && Object.prototype.hasOwnProperty.call(BUNDLE_ERROR_CODES, e.code)) return;
  assert.fail(`expected a BundleFormatError for ${JSON.stringify(what)?.slice(0, 300)}, got ${String(e)} (${(e as Error)?.constructor?.name})`);
}

const unsigned = pairTexts({ unsigned: true });
const signed = pairTexts();
const keys = { trustMaterialKeys: trustedKeys(), policyBundleKeys: trustedKeys() };

test('property: parseBundlePair on a structurally mutated pair gives a compiled pair or a BundleFormatError', () => {
  // Both documents unsigned and the loader in development mode: every mutation reaches the
  // schema, the pairing pin and compilePolicy instead of stopping at the signature.
  const base = parseBundlePair(Buffer.from(unsigned.trust), Buffer.from(unsigned.bundle), { ...keys, allowUnsigned: true });
  assert.ok(base.policy.routesById.size > 0);
  tally.check(
    fc.property(fc.boolean(), fc.array(mutationArb, { minLength: 1, maxLength: 3 }), fc.boolean(), (inTrust, ms, unpin) => {
      const trust = JSON.parse(unsigned.trust) as Json;
      const bundle = JSON.parse(unsigned.bundle) as Record<string, Json>;
      // Without the pairing pin a trust-material mutation reaches compilePolicy too.
      if (unpin) delete bundle['trust_material_sha256'];
      for (const m of ms) mutate(inTrust ? trust : bundle, m);
      const t = JSON.stringify(trust);
      const b = JSON.stringify(bundle);
      try {
        const pair = parseBundlePair(Buffer.from(t), Buffer.from(b), { ...keys, allowUnsigned: true });
        assert.equal(typeof pair.policyVersion, 'number');
        for (const r of pair.policy.routesById.values()) assert.ok(typeof r.method === 'string' && r.pathTemplate.startsWith('/'));
      } catch (e) {
        expectBundleError(e, { ms, inTrust });
      }
    }),
    { numRuns: 1500, timeLimitMs: 3000, minRuns: 100 },
  );
});

test('property: a byte-mutated signed pair loads only when its content is unchanged, else a BundleFormatError', () => {
  const original = parseBundlePair(Buffer.from(signed.trust), Buffer.from(signed.bundle), keys);
  const edit = fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat(7) }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), text: fc.constantFrom(' ', '\n', '\t', ',', '"', '{', '}', '\\', '0', '\u00e9', '\ud800', '"__proto__":1,', '"kid":"x",') }),
    fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 8 }) }),
    fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  );
  tally.check(
    fc.property(fc.boolean(), edit, (inTrust, e) => {
      const bytes = Buffer.from(inTrust ? signed.trust : signed.bundle);
      let out: Buffer;
      const at = e.at % bytes.length;
      if (e.kind === 'flip') {
        out = Buffer.from(bytes);
        out[at]! ^= 1 << e.bit;
      } else if (e.kind === 'insert') out = Buffer.concat([bytes.subarray(0, at), Buffer.from(e.text), bytes.subarray(at)]);
      else if (e.kind === 'delete') out = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + e.len)]);
      else out = bytes.subarray(0, at);
      const [t, b] = inTrust ? [out, Buffer.from(signed.bundle)] : [Buffer.from(signed.trust), out];
      let pair;
      try {
        pair = parseBundlePair(t, b, keys);
      } catch (err) {
        expectBundleError(err, e);
        return;
      }
      // Accepted: the signatures verified, so the content is the signed content (only
      // insignificant whitespace can have changed).
      assert.equal(pair.trustSignature.status, 'valid');
      assert.equal(pair.bundleSignature.status, 'valid');
      assert.equal(pair.contentSha256, original.contentSha256, `content changed yet accepted: ${JSON.stringify(e)}`);
    }),
    { numRuns: 1500, timeLimitMs: 3000, minRuns: 100 },
  );
});

test('property: counts (every property in this file ran)', (t) => {
  t.diagnostic(tally.summary());
  assert.equal(tally.properties, 4);
});
