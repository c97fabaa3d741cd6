import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import {
  BundleFormatError,
  buildBundles,
  documentContentSha256,
  encodeBase64url,
  formatPolicyBundle,
  formatProblem,
  parseBundlePair,
  parseJsonStrict,
  type JsonObject,
} from '../src/index.js';
import { issuerKey, otherKey } from './helpers.js';

const ISSUER = 'https://issuer.example/software-jwks';

export function sampleConfig(): JsonObject {
  return parseJsonStrict(
    JSON.stringify({
      version: 'trustplane-bundle-config-v1',
      policy_id: 'acme-orders',
      policy_version: 3,
      trust_domain: 'example.local',
      defaults: { required_key_binding: 'software', freshness_class: 'bounded', max_staleness_seconds: 300 },
      issuers: [
        { issuer: ISSUER, source_type: 'software_jwks', keys: [{ kid: 'client-key-1', alg: 'EdDSA', public_key_b64url: encodeBase64url(issuerKey.publicKey) }] },
        { issuer: 'https://idp.example', source_type: 'oidc_jwks', jwks: { keys: [{ kty: 'OKP', crv: 'Ed25519', kid: 'idp-1', x: encodeBase64url(otherKey.publicKey) }, { kty: 'RSA', kid: 'r' }] } },
      ],
      apis: [{ api_id: 'orders-api', audience: 'orders-api', base_url: 'https://orders.example' }],
      route_groups: [
        {
          route_group_id: 'orders-read',
          api_id: 'orders-api',
          scopes: ['orders:read'],
          routes: [
            { route_id: 'orders.search', method: 'GET', path_template: '/v1/orders/search', allowed_sources: [{ issuer: ISSUER, subject_exact: 'service:orders-client' }] },
            {
              route_id: 'orders.get',
              method: 'GET',
              path_template: '/v1/orders/{order_id}',
              freshness_class: 'realtime',
              allowed_sources: [
                { issuer: ISSUER, subject_prefix: 'service:' },
                { issuer: 'https://idp.example', subject_exact: 'runner', context_policy: { required_tool_name: 'orders-runner' } },
              ],
            },
          ],
        },
      ],
      'x-owner': 'team-orders',
    }),
  ) as JsonObject;
}

test('build: the configuration becomes a pinned, unsigned pair that loads with the dev flag', () => {
  const built = buildBundles(sampleConfig(), { configFile: 'bundle.config.json' });
  const t = built.trustMaterial;
  assert.deepEqual(t.signed_by, { issuer: 'local://trustplane.bundle.build', kid: 'unsigned-skeleton', alg: 'none' });
  assert.deepEqual(t.signature, { format: 'unsigned-skeleton', value: 'local-build-placeholder-not-a-production-signature' });
  assert.deepEqual(
    t.issuers.map((i) => [i.issuer, i.trust_domain, i.source_type, i.keys.map((k) => k.kid)]),
    [
      [ISSUER, 'example.local', 'software_jwks', ['client-key-1']],
      ['https://idp.example', 'example.local', 'oidc_jwks', ['idp-1']],
    ],
  );
  assert.deepEqual(built.notes, ['bundle.config.json: /issuers/1/jwks/keys/1: kty RSA crv undefined is not OKP Ed25519: skipped']);
  const b = built.policyBundle;
  assert.equal(b.policy_version, 3);
  assert.equal(b['trust_material_sha256'], documentContentSha256(t));
  assert.deepEqual(b.scopes, [{ scope: 'orders:read', route_group_id: 'orders-read' }]);
  assert.equal(b['x-owner'], 'team-orders');
  // Source rules are completed from their issuer.
  assert.deepEqual(b.route_groups[0]!.routes[1]!.allowed_sources[1], {
    source_type: 'oidc_jwks',
    issuer: 'https://idp.example',
    trust_domain: 'example.local',
    subject_exact: 'runner',
    context_policy: { required_tool_name: 'orders-runner' },
  });
  assert.equal(built.policyBundleText, formatPolicyBundle(b));
  // The member order is the documented one.
  assert.deepEqual(Object.keys(JSON.parse(built.policyBundleText) as object).slice(0, 6), ['version', 'kind', 'policy_id', 'policy_version', 'trust_material_sha256', 'trust_domain']);
  const pair = parseBundlePair(Buffer.from(built.trustMaterialText), Buffer.from(built.policyBundleText), { trustMaterialKeys: new Map(), policyBundleKeys: new Map(), allowUnsigned: true });
  assert.equal(pair.policy.routesById.get('orders.get')?.freshnessClass, 'realtime');
});

test('build: deterministic — the same configuration gives the same bytes, whatever its member order', () => {
  const a = buildBundles(sampleConfig());
  const b = buildBundles(sampleConfig());
  assert.equal(a.policyBundleText, b.policyBundleText);
  assert.equal(a.trustMaterialText, b.trustMaterialText);
  const reordered = JSON.parse(JSON.stringify(sampleConfig()), (_k, v: unknown) =>
    typeof v === 'object' && v !== null && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).reverse()) : v,
  ) as unknown;
  const c = buildBundles(reordered);
  assert.equal(c.policyBundleText, a.policyBundleText);
  assert.equal(c.trustMaterialText, a.trustMaterialText);
  assert.ok(a.policyBundleText.endsWith('}\n') && a.policyBundleText.includes('\n  "version": "trustplane-bundle-v1",\n'));
});

test('build: validates everything and lists every problem with its pointer', () => {
  const cfg = sampleConfig() as Record<string, unknown> & { route_groups: { routes: Record<string, unknown>[] }[]; issuers: Record<string, unknown>[] };
  cfg.route_groups[0]!.routes[0]!['freshness_class'] = 'eventually';
  cfg.route_groups[0]!.routes[1]!['freshness_class'] = 'bounded';
  (cfg['defaults'] as Record<string, unknown>)['max_staleness_seconds'] = 0;
  cfg.route_groups[0]!.routes.push({ route_id: 'orders.create', method: 'POST', path_template: '/v1/orders', freshness_class: 'offline-ok', allowed_sources: [{ issuer: 'https://unknown.example', subject_prefix: 'x' }, { issuer: ISSUER, trust_domain: 'other.local', subject_prefix: 'y' }] });
  cfg.issuers[1]!['jwks'] = { keys: [{ kty: 'OKP', crv: 'Ed25519', kid: 'k', x: 'AAAA', d: 'secret' }] };
  let err: unknown;
  try {
    buildBundles(cfg, { configFile: 'cfg.json' });
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof BundleFormatError);
  assert.deepEqual(err.problems.map(formatProblem), [
    'cfg.json: /issuers/1/jwks: invalid JWKS: /keys/0: contains private key material ("d"); publish public keys only',
    'cfg.json: /route_groups/0/routes/0/freshness_class: unknown freshness class "eventually": use realtime, bounded or offline-ok (it would fail closed with bundle_freshness_unknown)',
    'cfg.json: /route_groups/0/routes/1/max_staleness_seconds: a bounded route needs a positive max_staleness_seconds (here or in defaults); without one it fails closed',
    'cfg.json: /route_groups/0/routes/2/allowed_sources/0/issuer: issuer "https://unknown.example" is not declared in /issuers, so no key could ever match this rule',
    `cfg.json: /route_groups/0/routes/2/allowed_sources/1/trust_domain: other.local differs from issuer "${ISSUER}"'s example.local: the rule could never match`,
  ]);
  // Schema errors of the configuration come first, with the same precision.
  const bad = sampleConfig() as Record<string, unknown>;
  bad['policy_versoin'] = 2;
  delete bad['apis'];
  assert.throws(() => buildBundles(bad, { configFile: 'cfg.json' }), (e: unknown) => {
    assert.ok(e instanceof BundleFormatError);
    assert.deepEqual(e.problems.map(formatProblem), ['cfg.json: /apis: is required', 'cfg.json: /policy_versoin: is not allowed here (unknown property)']);
    return true;
  });
  const jwksFile = sampleConfig() as Record<string, unknown> & { issuers: Record<string, unknown>[] };
  delete jwksFile.issuers[1]!['jwks'];
  jwksFile.issuers[1]!['jwks_file'] = 'idp.jwks.json';
  assert.throws(() => buildBundles(jwksFile), /jwks_file: must be read into "jwks" by the caller/);
});
