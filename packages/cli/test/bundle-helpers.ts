/** Helpers for the `trustplane bundle` tests: a signing key file, a build configuration, paths. */
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { encodeBase64url, privateKeyFromSeed, type Ed25519PrivateKey } from '@trustplane/core';
import { issuerKey, ISSUER } from '@trustplane/testkit';
import { writeKeyFile } from './helpers.js';

export const signingKey: Ed25519PrivateKey = privateKeyFromSeed(Buffer.alloc(32, 30));
export const signingPublicKey = encodeBase64url(signingKey.publicKey);
export const wrongKey: Ed25519PrivateKey = privateKeyFromSeed(Buffer.alloc(32, 31));
export const SIGNER_KID = 'bundle-signer-1';
export const SIGNER_ISSUER = 'https://ops.example/bundles';

export function configObject(freshness = 'bounded'): Record<string, unknown> {
  return {
    version: 'trustplane-bundle-config-v1',
    policy_id: 'acme-orders',
    policy_version: 1,
    trust_domain: 'example.local',
    defaults: { required_key_binding: 'software', freshness_class: freshness, max_staleness_seconds: 300 },
    issuers: [{ issuer: ISSUER, source_type: 'software_jwks', keys: [{ kid: 'client-key-1', alg: 'EdDSA', public_key_b64url: encodeBase64url(issuerKey.publicKey) }] }],
    apis: [{ api_id: 'orders-api', audience: 'orders-api', base_url: 'https://orders.example' }],
    route_groups: [
      {
        route_group_id: 'orders-read',
        api_id: 'orders-api',
        scopes: ['orders:read'],
        routes: [
          { route_id: 'orders.search', method: 'GET', path_template: '/v1/orders/search', allowed_sources: [{ issuer: ISSUER, subject_exact: 'service:orders-client' }] },
          { route_id: 'orders.get', method: 'GET', path_template: '/v1/orders/{order_id}', freshness_class: 'realtime', allowed_sources: [{ issuer: ISSUER, subject_prefix: 'service:' }] },
        ],
      },
    ],
  };
}

export interface Workspace {
  dir: string;
  config: string;
  signerKey: string;
  wrongKeyFile: string;
  f: (name: string) => string;
}

export function workspace(dir: string, freshness = 'bounded'): Workspace {
  const config = path.join(dir, 'bundle.config.json');
  writeFileSync(config, `${JSON.stringify(configObject(freshness), null, 2)}\n`);
  return {
    dir,
    config,
    signerKey: writeKeyFile(dir, signingKey, 'bundle-signer.key'),
    wrongKeyFile: writeKeyFile(dir, wrongKey, 'wrong.key'),
    f: (name) => path.join(dir, name),
  };
}

export function signArgs(w: Workspace, kind: '--trust-material' | '--policy-bundle', input: string, out: string, key = w.signerKey): string[] {
  return ['bundle', 'sign', kind, input, '--out', out, '--private-key', key, '--kid', SIGNER_KID, '--signer-issuer', SIGNER_ISSUER];
}
