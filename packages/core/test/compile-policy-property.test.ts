/**
 * compilePolicy is public API (SPEC §8: core usable on its own) and documents one error,
 * FormatError('invalid_bundle'), "every field checked, typed or not". These tests hold it to
 * that for documents that did not pass the JSON Schema first (library callers, merged JWKS
 * trust material). FAILS on the base commit: a null entry in trust_material.issuers[].keys,
 * policy_bundle.apis, route_groups or routes, or a null document, throws a TypeError
 * ("Cannot read properties of null") instead (policy.ts, reqString on a non-object).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import { FormatError, compilePolicy, type JsonValue, type PolicyBundle, type TrustMaterial } from '../src/index.js';
import { PropertyTally, policyBundle, trustMaterial } from './helpers.js';

const tally = new PropertyTally('compilePolicy');

function refused(f: () => unknown, what: string): void {
  assert.throws(f, (e) => e instanceof FormatError && e.code === 'invalid_bundle', what);
}

test('compilePolicy refuses a non-object array entry or document with invalid_bundle, not a TypeError', () => {
  refused(() => compilePolicy({ ...trustMaterial(), issuers: [{ ...trustMaterial().issuers[0]!, keys: [null as never] }] }, policyBundle()), 'keys: [null]');
  refused(() => compilePolicy(trustMaterial(), policyBundle((b) => (b.apis = [null as never]))), 'apis: [null]');
  refused(() => compilePolicy(trustMaterial(), policyBundle((b) => (b.route_groups = [null as never]))), 'route_groups: [null]');
  refused(() => compilePolicy(trustMaterial(), policyBundle((b) => (b.route_groups[0]!.routes = [null as never]))), 'routes: [null]');
  refused(() => compilePolicy(null as unknown as TrustMaterial, policyBundle()), 'trust material null');
  refused(() => compilePolicy(trustMaterial(), null as unknown as PolicyBundle), 'policy bundle null');
});

test('property: compilePolicy on any value at any place of a valid pair compiles or gives invalid_bundle', () => {
  const value = fc.oneof(fc.constantFrom<JsonValue>(null, 0, '', 'x', true, [], {}, [null], [{}]), fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<JsonValue>);
  tally.check(
    fc.property(fc.boolean(), fc.nat(), value, (inTrust, at, v) => {
      const docs = { trust: trustMaterial() as unknown as JsonValue, bundle: policyBundle() as unknown as JsonValue };
      const root = inTrust ? docs.trust : docs.bundle;
      const locs: { parent: Record<string | number, JsonValue>; key: string | number }[] = [];
      const walk = (n: JsonValue): void => {
        if (n === null || typeof n !== 'object') return;
        for (const k of Array.isArray(n) ? n.keys() : Object.keys(n)) {
          locs.push({ parent: n as Record<string | number, JsonValue>, key: k });
          walk((n as Record<string | number, JsonValue>)[k]!);
        }
      };
      walk(root);
      const loc = locs[at % locs.length]!;
      loc.parent[loc.key] = v;
      try {
        compilePolicy(docs.trust as unknown as TrustMaterial, docs.bundle as unknown as PolicyBundle);
      } catch (e) {
        assert.ok(e instanceof FormatError && e.code === 'invalid_bundle', `${String(e)} (${(e as Error)?.constructor?.name})`);
      }
    }),
    { numRuns: 2000 },
  );
});

test('property: counts (every property in this file ran)', (t) => {
  t.diagnostic(tally.summary());
  assert.equal(tally.properties, 1);
});
