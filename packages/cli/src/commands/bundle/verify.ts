/**
 * `trustplane bundle verify [--trust-material FILE] [--policy-bundle FILE] --public-key B64URL…
 * [--kid K]`: the checks the adapter's loader makes — the signature with the given
 * bundle-signing key(s), the JSON Schema, and for a pair the pairing pin and `compilePolicy`.
 * Unsigned, tampered, wrongly signed or unknown-format documents fail (exit 1) with their code,
 * unless `--dev-allow-unsigned-bundles` (development only; a warning is printed).
 */
import { Option, type Command } from 'commander';
import {
  DEV_ALLOW_UNSIGNED_FLAG,
  FormatError,
  checkPairing,
  compilePair,
  validatePolicyBundle,
  validateTrustMaterial,
  verifyDocumentSignature,
  type Ed25519PublicKey,
  type JsonObject,
  type VerifiedDocumentSignature,
} from '@trustplane/core';
import { parseNonEmpty, parseText } from '../../options.js';
import { errorDetail, failure, usageError, writeJson, writeRows, type CliIo } from '../../output.js';
import { collect, parsePublicKeys, readDocument } from './io.js';

interface VerifyOptions {
  trustMaterial?: string;
  policyBundle?: string;
  publicKey?: string[];
  kid?: string;
  devAllowUnsignedBundles?: true;
  json?: true;
}

type Outcome = { ok: true; signer: VerifiedDocumentSignature } | { ok: false; code: string; detail: string };

/** Try each key under the document's kid (or --kid): valid when one verifies. */
export function verifyWithKeys(doc: JsonObject, keys: readonly Ed25519PublicKey[], kid: string | undefined): Outcome {
  const by = doc['signed_by'];
  const docKid = typeof by === 'object' && by !== null && !Array.isArray(by) && typeof by['kid'] === 'string' ? by['kid'] : '';
  let first: FormatError | undefined;
  for (const key of keys.length > 0 ? keys : [undefined]) {
    try {
      const trusted = new Map<string, Ed25519PublicKey>(key === undefined ? [] : [[kid ?? docKid, key]]);
      return { ok: true, signer: verifyDocumentSignature(doc, trusted) };
    } catch (err) {
      if (!(err instanceof FormatError)) throw err;
      first ??= err;
    }
  }
  return { ok: false, code: first!.code, detail: errorDetail(first) };
}

export function registerBundleVerify(bundle: Command, io: CliIo): void {
  bundle
    .command('verify')
    .description('Verify the signature and the schema of a trust material and/or policy bundle (both: also the pair)')
    .addOption(new Option('--trust-material <file>', 'the trust material to verify').argParser(parseNonEmpty))
    .addOption(new Option('--policy-bundle <file>', 'the policy bundle to verify').argParser(parseNonEmpty))
    .addOption(new Option('--public-key <b64url>', 'a trusted bundle-signing public key (repeatable, for rotation)').argParser(collect))
    .addOption(new Option('--kid <kid>', 'the kid the key is trusted under (default: the kid the document names)').argParser(parseText))
    .option(DEV_ALLOW_UNSIGNED_FLAG, 'DEVELOPMENT ONLY: accept unsigned or badly signed documents (prints a warning)')
    .option('--json', 'print JSON: {valid, documents:[{file, type, signature, signer}], pair}')
    .action((opts: VerifyOptions) => {
      const docs: { file: string; type: 'trust_material' | 'policy_bundle'; doc: JsonObject }[] = [];
      if (opts.trustMaterial !== undefined) docs.push({ file: opts.trustMaterial, type: 'trust_material', doc: readDocument(opts.trustMaterial, '--trust-material') });
      if (opts.policyBundle !== undefined) docs.push({ file: opts.policyBundle, type: 'policy_bundle', doc: readDocument(opts.policyBundle, '--policy-bundle') });
      if (docs.length === 0) throw usageError('give --trust-material FILE, --policy-bundle FILE, or both');
      const dev = opts.devAllowUnsignedBundles === true;
      if ((opts.publicKey ?? []).length === 0 && !dev) throw usageError('--public-key <b64url> is required: the bundle-signing public key to verify with');
      const keys = parsePublicKeys(opts.publicKey ?? []);
      const report = docs.map(({ file, type, doc }) => {
        const outcome = verifyWithKeys(doc, keys, opts.kid);
        if (!outcome.ok && !dev) throw failure(`${file}: /signature: ${outcome.detail}`, outcome.code);
        if (type === 'trust_material') validateTrustMaterial(doc, file);
        else validatePolicyBundle(doc, file);
        return { file, type, doc, outcome };
      });
      let pair: { policy_id: string; policy_version: number; routes: number; keys: number } | undefined;
      const trustDoc = report.find((r) => r.type === 'trust_material');
      const bundleDoc = report.find((r) => r.type === 'policy_bundle');
      if (trustDoc !== undefined && bundleDoc !== undefined) {
        validateTrustMaterial(trustDoc.doc, trustDoc.file);
        validatePolicyBundle(bundleDoc.doc, bundleDoc.file);
        checkPairing(trustDoc.doc, bundleDoc.doc, bundleDoc.file);
        const policy = compilePair(trustDoc.doc, bundleDoc.doc, { trustMaterialFile: trustDoc.file, policyBundleFile: bundleDoc.file });
        pair = { policy_id: policy.policyId, policy_version: policy.policyVersion, routes: policy.routesById.size, keys: policy.keysByKid.size };
      }
      const unverified = report.filter((r) => !r.outcome.ok);
      if (opts.json === true) {
        writeJson(io, {
          valid: unverified.length === 0,
          documents: report.map((r) =>
            r.outcome.ok
              ? { file: r.file, type: r.type, signature: 'valid', signer: { kid: r.outcome.signer.kid, issuer: r.outcome.signer.issuer, signed_at: r.outcome.signer.signedAt ?? null } }
              : { file: r.file, type: r.type, signature: 'not_verified', reason: r.outcome.code, detail: r.outcome.detail },
          ),
          pair: pair ?? null,
        });
      } else {
        const rows: [string, string][] = [];
        for (const r of report) {
          const label = r.type === 'trust_material' ? 'trust material' : 'policy bundle';
          rows.push([
            label,
            r.outcome.ok
              ? `${r.file}: signature valid (kid ${r.outcome.signer.kid}, issuer ${r.outcome.signer.issuer}${r.outcome.signer.signedAt === undefined ? '' : `, signed ${r.outcome.signer.signedAt}`}); schema valid`
              : `${r.file}: NOT VERIFIED (${r.outcome.code}: ${r.outcome.detail}); schema valid`,
          ]);
        }
        if (pair !== undefined) rows.push(['pair', `policy ${pair.policy_id} version ${pair.policy_version}: ${pair.routes} routes, ${pair.keys} issuer keys; compiles`]);
        writeRows(io, rows);
      }
      if (unverified.length > 0) io.stderr(`trustplane: WARNING: ${DEV_ALLOW_UNSIGNED_FLAG}: ${unverified.map((r) => r.file).join(', ')} not verified; never use this in production\n`);
    });
}
