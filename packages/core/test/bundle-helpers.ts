/** Helpers for the bundle tests: a signing key, signed pairs (with the pairing pin), temp files. */
import { mkdtempSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { TestContext } from 'node:test';
import {
  documentContentSha256,
  encodeBase64url,
  formatPolicyBundle,
  formatTrustMaterial,
  getEd25519Backend,
  signDocument,
  type Ed25519PrivateKey,
  type Ed25519PublicKey,
  type PolicyBundle,
  type TrustMaterial,
} from '../src/index.js';
import { seedKey, trustMaterial, policyBundle } from './helpers.js';

export const bundleSigner = seedKey(20);
export const rotatedSigner = seedKey(21);
export const strangerSigner = seedKey(22);
export const BUNDLE_KID = 'bundle-signer-1';
export const ROTATED_KID = 'bundle-signer-2';

export function publicOf(key: Ed25519PrivateKey): Ed25519PublicKey {
  return getEd25519Backend().importPublicKey(key.publicKey);
}

export const signerB64 = encodeBase64url(bundleSigner.publicKey);

/** The keys a loader is configured with: both the current and the rotated signer. */
export function trustedKeys(): Map<string, Ed25519PublicKey> {
  return new Map([
    [BUNDLE_KID, publicOf(bundleSigner)],
    [ROTATED_KID, publicOf(rotatedSigner)],
  ]);
}

export interface PairOptions {
  version?: number;
  mutateBundle?: (b: PolicyBundle) => void;
  mutateTrust?: (t: TrustMaterial) => void;
  signer?: Ed25519PrivateKey;
  kid?: string;
  pin?: boolean;
  unsigned?: boolean;
}

/** A pinned, signed pair as file texts. */
export function pairTexts(o: PairOptions = {}): { trust: string; bundle: string; trustDoc: TrustMaterial; bundleDoc: PolicyBundle } {
  const trust = trustMaterial();
  o.mutateTrust?.(trust);
  const bundle = policyBundle((b) => {
    b.policy_version = o.version ?? 1;
    o.mutateBundle?.(b);
  });
  if (o.pin !== false) bundle['trust_material_sha256'] = documentContentSha256(trust);
  if (o.unsigned === true) return { trust: formatTrustMaterial(trust), bundle: formatPolicyBundle(bundle), trustDoc: trust, bundleDoc: bundle };
  const opts = { kid: o.kid ?? BUNDLE_KID, signerIssuer: 'https://ops.example/bundles', signedAt: '2025-02-19T21:00:00Z' };
  const st = signDocument(trust, o.signer ?? bundleSigner, opts);
  const sb = signDocument(bundle, o.signer ?? bundleSigner, opts);
  return { trust: formatTrustMaterial(st), bundle: formatPolicyBundle(sb), trustDoc: st as unknown as TrustMaterial, bundleDoc: sb as unknown as PolicyBundle };
}

export function tempDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'trustplane-bundle-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Replace a file atomically, as the CLI and ConfigMap updates do. */
export function replaceFile(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.${Math.random().toString(16).slice(2)}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

export function writePair(dir: string, texts: { trust: string; bundle: string }): { trustFile: string; bundleFile: string } {
  const trustFile = path.join(dir, 'trust-material.json');
  const bundleFile = path.join(dir, 'policy-bundle.json');
  replaceFile(trustFile, texts.trust);
  replaceFile(bundleFile, texts.bundle);
  return { trustFile, bundleFile };
}
