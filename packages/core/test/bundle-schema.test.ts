import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import {
  BUNDLE_SCHEMAS,
  BundleFormatError,
  FormatError,
  MemoryReplayStore,
  StaticPolicyProvider,
  Verifier,
  compilePair,
  encodeBase64url,
  formatProblem,
  parseBundlePair,
  signDocument,
  trustKeysFromJwks,
  trustMaterialFromJwks,
  validateDocument,
  validatePolicyBundle,
  validateTrustMaterial,
  type JsonObject,
  type PolicyBundle,
  type TrustMaterial,
} from '../src/index.js';
import { repoRoot, readVector, trustMaterial, policyBundle, issuerKey, otherKey, brokerKey, makeRequest, T0 } from './helpers.js';
import { BUNDLE_KID, bundleSigner, trustedKeys } from './bundle-helpers.js';

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof BundleFormatError) return err.problems.map(formatProblem);
    throw err;
  }
  return [];
}

test('schemas/*.schema.json are exactly the schemas the loader validates with', () => {
  for (const { file, schema } of BUNDLE_SCHEMAS) {
    const onDisk = readFileSync(path.join(repoRoot, 'schemas', file), 'utf8');
    assert.equal(onDisk, `${JSON.stringify(schema, null, 2)}\n`, `schemas/${file} is stale: run node scripts/gen-bundle-schemas.mjs`);
    const parsed = JSON.parse(onDisk) as { $schema: string };
    assert.equal(parsed.$schema, 'https://json-schema.org/draft/2020-12/schema');
  }
});

function fixtureTrust(): TrustMaterial {
  return {
    version: 'trustplane-trust-material-v1',
    issuers: [
      { issuer: 'https://issuer.example/software-jwks', trust_domain: 'example.local', source_type: 'software_jwks', keys: [{ kid: 'client-key-1', alg: 'EdDSA', public_key_b64url: encodeBase64url(issuerKey.publicKey) }] },
      { issuer: 'https://issuer.example/oidc', trust_domain: 'example.local', source_type: 'oidc_jwks', keys: [{ kid: 'oidc-key-1', alg: 'EdDSA', public_key_b64url: encodeBase64url(otherKey.publicKey) }] },
      { issuer: 'https://issuer.example/spire', trust_domain: 'example.local', source_type: 'spiffe_spire', keys: [{ kid: 'broker-key-1', alg: 'EdDSA', public_key_b64url: encodeBase64url(brokerKey.publicKey) }] },
    ],
  };
}

test('the conformance fixture bundle-v1.source-rules.json loads and means what it says', async () => {
  const vector = readVector('v1/bundle-v1.source-rules.json');
  const fixture = vector['policy_bundle'] as JsonObject;
  validatePolicyBundle(fixture, 'bundle-v1.source-rules.json');
  // Signed (it ships as an unsigned skeleton) and loaded like any bundle.
  const opts = { kid: BUNDLE_KID, signerIssuer: 'https://ops.example/bundles' };
  const pair = parseBundlePair(Buffer.from(JSON.stringify(signDocument(fixtureTrust(), bundleSigner, opts))), Buffer.from(JSON.stringify(signDocument(fixture, bundleSigner, opts))), {
    trustMaterialKeys: trustedKeys(),
    policyBundleKeys: trustedKeys(),
  });
  const route = pair.policy.routesById.get('orders.search');
  assert.ok(route !== undefined);
  assert.equal(route.method, 'GET');
  assert.equal(route.pathTemplate, '/v1/orders/search');
  assert.equal(route.freshnessClass, 'bounded');
  assert.equal(route.maxStalenessSeconds, 300);
  assert.deepEqual(
    route.sources.map((s) => s.source_type),
    vector['expected_source_types'],
  );
  assert.equal(route.sources[2]?.required_key_binding, 'attested_workload');

  const verifier = new Verifier({ policy: new StaticPolicyProvider(pair.policy, T0), replayStore: new MemoryReplayStore(), clock: { now: () => T0 + 1000 } });
  // The software client with the exact subject: allowed.
  const ok = await verifier.verify(makeRequest({ nowMs: T0 }));
  assert.equal(ok.allowed, true, JSON.stringify(ok));
  // Another subject of the same issuer: no rule matches it.
  const other = await verifier.verify(makeRequest({ nowMs: T0, subject: 'service:someone-else' }));
  assert.equal(other.reason, 'source_subject_mismatch');
  // The OIDC runner without the context its rule requires.
  const oidc = await verifier.verify(
    makeRequest({ nowMs: T0, issuer: 'https://issuer.example/oidc', kid: 'oidc-key-1', signingKey: otherKey, subject: 'system:serviceaccount:automation:orders-runner' }),
  );
  assert.equal(oidc.reason, 'missing_context');
  // A POST can never pass for the GET route.
  const post = await verifier.verify(makeRequest({ nowMs: T0, method: 'POST', path: '/v1/orders/search', routeId: 'orders.search' }));
  assert.equal(post.reason, 'bundle_route_missing');
  // Bounded at 300 s: a bundle last confirmed 301 s ago fails closed.
  const stale = new Verifier({ policy: new StaticPolicyProvider(pair.policy, T0 - 301_000), replayStore: new MemoryReplayStore(), clock: { now: () => T0 + 1000 } });
  assert.equal((await stale.verify(makeRequest({ nowMs: T0 }))).reason, 'stale_bundle_fail_closed');
});

test('schema errors name the file, the JSON pointer and what is wrong', () => {
  const b = policyBundle() as unknown as Record<string, unknown>;
  const bad = structuredClone(b) as unknown as PolicyBundle & Record<string, unknown>;
  bad['extra'] = 1;
  bad.policy_version = -1;
  bad.apis[0]!.base_url = 'orders.example';
  const r0 = bad.route_groups[0]!.routes[0]!;
  r0.method = 'get';
  r0.allowed_sources[0]!.subject_prefix = 'service:';
  r0.required_key_binding = 'root' as never;
  delete (r0.allowed_sources[0] as Partial<typeof r0.allowed_sources[0]>).issuer;
  bad.route_groups[0]!.routes[2]!.allowed_sources[1]!.context_policy = { tool_name: 'x' };
  bad.revocations = [{ reason: 'no target' }];
  assert.deepEqual(problems(() => validatePolicyBundle(bad, 'policy.json')), [
    'policy.json: /extra: is not allowed here (unknown property)',
    'policy.json: /policy_version: must be >= 0',
    'policy.json: /apis/0/base_url: must be an absolute URL like https://host[:port] without query, fragment or credentials',
    'policy.json: /route_groups/0/routes/0/method: must be an upper-case HTTP method such as GET or POST',
    'policy.json: /route_groups/0/routes/0/required_key_binding: must be one of software, remote_kms, hardware_local, attested_workload',
    'policy.json: /route_groups/0/routes/0/allowed_sources/0: exactly one of subject_exact and subject_prefix is required',
    'policy.json: /route_groups/0/routes/0/allowed_sources/0/issuer: is required',
    'policy.json: /route_groups/0/routes/2/allowed_sources/1/context_policy/tool_name: property name must be required_<field>',
    'policy.json: /revocations/0: a revocation must name a kid, a jti, or an issuer and a subject',
  ]);

  const t = trustMaterial() as unknown as Record<string, unknown>;
  const badTrust = structuredClone(t) as unknown as TrustMaterial;
  badTrust.issuers[1]!.keys[0]!.public_key_b64url = 'not-a-key';
  (badTrust.issuers[0] as unknown as Record<string, unknown>)['source_type'] = 'ldap';
  (badTrust as unknown as Record<string, unknown>)['version'] = 'v2';
  assert.deepEqual(problems(() => validateTrustMaterial(badTrust, 'trust.json')), [
    'trust.json: /version: must be "trustplane-trust-material-v1"',
    'trust.json: /issuers/0/source_type: must be one of software_jwks, oidc_jwks, spiffe_spire',
    'trust.json: /issuers/1/keys/0/public_key_b64url: must be base64url (no padding) of a raw 32-byte Ed25519 public key: 43 characters',
  ]);
  assert.deepEqual(problems(() => validateTrustMaterial([], 'trust.json')), ['trust.json: (root): must be an object']);
  const err = (() => {
    try {
      validateTrustMaterial(badTrust, 'trust.json');
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  assert.ok(err instanceof FormatError);
  assert.equal(err.code, 'invalid_bundle');
  assert.match(err.message, /^invalid_bundle: trust\.json: \/version: .*; trust\.json: \/issuers\/0\/source_type/);
});

test('semantic errors from compilePolicy are turned into file + pointer too', () => {
  const dup = trustMaterial();
  dup.issuers[1]!.keys.push({ kid: 'client-key-1', alg: 'EdDSA', public_key_b64url: encodeBase64url(otherKey.publicKey) });
  assert.deepEqual(problems(() => compilePair(dup, policyBundle(), { trustMaterialFile: 't.json', policyBundleFile: 'p.json' })), [
    't.json: /issuers/1/keys/1/kid: duplicate kid "client-key-1"',
  ]);
  const smallOrder = trustMaterial();
  smallOrder.issuers[0]!.keys[0]!.public_key_b64url = encodeBase64url(Buffer.alloc(32));
  assert.deepEqual(problems(() => compilePair(smallOrder, policyBundle(), { trustMaterialFile: 't.json', policyBundleFile: 'p.json' })), [
    't.json: /issuers/0/keys/0/public_key_b64url: invalid_public_key: Ed25519 public key is a small-order point',
  ]);
  const b = policyBundle((x) => {
    x.route_groups[0]!.routes[1]!.route_id = 'orders.search';
  });
  assert.deepEqual(problems(() => compilePair(trustMaterial(), b, { trustMaterialFile: 't.json', policyBundleFile: 'p.json' })), [
    'p.json: /route_groups/0/routes/1/route_id: duplicate route_id "orders.search"',
  ]);
  const unknownApi = policyBundle((x) => {
    x.route_groups[0]!.api_id = 'billing-api';
  });
  assert.deepEqual(problems(() => compilePair(trustMaterial(), unknownApi, { policyBundleFile: 'p.json' })), ['p.json: /route_groups/0/api_id: unknown api_id "billing-api"']);
});

test('JWKS (RFC 7517/8037 OKP Ed25519) is accepted as input for trust material', () => {
  const x1 = encodeBase64url(issuerKey.publicKey);
  const x2 = encodeBase64url(otherKey.publicKey);
  const jwks = {
    keys: [
      { kty: 'OKP', crv: 'Ed25519', x: x1, kid: 'k1', use: 'sig', alg: 'EdDSA' },
      { kty: 'RSA', n: 'AQAB', e: 'AQAB', kid: 'rsa-1' },
      { kty: 'OKP', crv: 'X25519', x: x2, kid: 'ecdh' },
      { kty: 'OKP', crv: 'Ed25519', x: x2, kid: 'k2' },
    ],
  };
  const tm = trustMaterialFromJwks(jwks, { issuer: 'https://idp.example', trustDomain: 'example.local', sourceType: 'oidc_jwks', jwksUri: 'https://idp.example/jwks.json' });
  validateTrustMaterial(tm, 'converted');
  assert.deepEqual(tm.issuers, [
    {
      issuer: 'https://idp.example',
      trust_domain: 'example.local',
      source_type: 'oidc_jwks',
      jwks_uri: 'https://idp.example/jwks.json',
      keys: [
        { kid: 'k1', alg: 'EdDSA', public_key_b64url: x1 },
        { kid: 'k2', alg: 'EdDSA', public_key_b64url: x2 },
      ],
    },
  ]);
  assert.equal(trustKeysFromJwks(jwks).skipped.length, 2);
  const refused = (j: unknown): string => {
    try {
      trustKeysFromJwks(j);
      return 'ok';
    } catch (err) {
      assert.ok(err instanceof FormatError);
      assert.equal(err.code, 'invalid_jwks');
      return err.message;
    }
  };
  assert.match(refused({ keys: [{ kty: 'OKP', crv: 'Ed25519', x: x1, kid: 'k', d: x2 }] }), /private key material/);
  assert.match(refused({ keys: [{ kty: 'OKP', crv: 'Ed25519', x: x1 }] }), /\/keys\/0\/kid/);
  assert.match(refused({ keys: [{ kty: 'OKP', crv: 'Ed25519', x: `${x1}=`, kid: 'k' }] }), /\/keys\/0\/x/);
  assert.match(refused({ keys: [{ kty: 'OKP', crv: 'Ed25519', x: encodeBase64url(Buffer.alloc(32)), kid: 'k' }] }), /small-order/);
  assert.match(refused({ keys: [{ kty: 'OKP', crv: 'Ed25519', x: x1, kid: 'k' }, { kty: 'OKP', crv: 'Ed25519', x: x2, kid: 'k' }] }), /duplicate kid/);
  assert.match(refused({ keys: [{ kty: 'RSA', kid: 'r' }] }), /no usable Ed25519 key/);
  assert.match(refused({ keys: {} }), /must be an array/);
  assert.match(refused([]), /JSON object/);
  assert.throws(() => trustMaterialFromJwks(jwks, { issuer: 'x', trustDomain: 'y', sourceType: 'spiffe_spire' as never }), TypeError);
});

test('schema validation (property): any JSON is accepted or refused with a BundleFormatError, never a crash', () => {
  const base = policyBundle() as unknown as JsonObject;
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 3 }), fc.constantFrom('apis', 'route_groups', 'revocations', 'policy_version', 'signed_by', 'default_freshness_class'), (value, member) => {
      for (const doc of [value, { ...base, [member]: value }]) {
        for (const kind of ['trust_material', 'policy_bundle', 'bundle_config'] as const) {
          try {
            validateDocument(kind, doc, 'f');
          } catch (err) {
            assert.ok(err instanceof BundleFormatError, String(err));
            assert.ok(err.problems.length > 0);
          }
        }
      }
    }),
    { numRuns: 200 },
  );
});
