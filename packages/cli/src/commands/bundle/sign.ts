/**
 * `trustplane bundle sign (--trust-material | --policy-bundle) FILE --out FILE --private-key FILE
 * --kid K --signer-issuer I`: Ed25519 over the RFC 8785 form of the document without its
 * `signature` (SPEC §9.4). The document is validated against its JSON Schema first; the input
 * is never modified; the output is written atomically.
 */
import { Option, type Command } from 'commander';
import { fingerprint, formatPolicyBundle, formatTrustMaterial, signDocument, validatePolicyBundle, validateTrustMaterial, SIGNATURE_FORMAT } from '@trustplane/core';
import { loadPrivateKey } from '../../files.js';
import { parseNonEmpty, parseText } from '../../options.js';
import { usageError, writeJson, writeRows, type CliIo } from '../../output.js';
import { readDocument, refuseOverlap, writeFileAtomic } from './io.js';

interface SignOptions {
  trustMaterial?: string;
  policyBundle?: string;
  out: string;
  privateKey: string;
  kid: string;
  signerIssuer: string;
  json?: true;
}

/** Exactly one of --trust-material and --policy-bundle. */
export function oneDocument(opts: { trustMaterial?: string; policyBundle?: string }): { option: string; file: string; type: 'trust_material' | 'policy_bundle' } {
  if (opts.trustMaterial !== undefined && opts.policyBundle !== undefined) throw usageError('give one of --trust-material and --policy-bundle, not both');
  if (opts.trustMaterial !== undefined) return { option: '--trust-material', file: opts.trustMaterial, type: 'trust_material' };
  if (opts.policyBundle !== undefined) return { option: '--policy-bundle', file: opts.policyBundle, type: 'policy_bundle' };
  throw usageError('give the document to work on: --trust-material FILE or --policy-bundle FILE');
}

export function registerBundleSign(bundle: Command, io: CliIo): void {
  bundle
    .command('sign')
    .description('Sign a trust material or policy bundle with an Ed25519 bundle-signing key (ed25519-jcs-v1)')
    .addOption(new Option('--trust-material <file>', 'the trust material to sign').argParser(parseNonEmpty))
    .addOption(new Option('--policy-bundle <file>', 'the policy bundle to sign').argParser(parseNonEmpty))
    .addOption(new Option('--out <file>', 'where to write the signed document (not the input)').argParser(parseNonEmpty).makeOptionMandatory())
    .addOption(new Option('--private-key <file>', 'the bundle-signing private key file (as gen-key writes it)').argParser(parseNonEmpty).makeOptionMandatory())
    .addOption(new Option('--kid <kid>', 'the bundle-signing key id verifiers know the public key by').argParser(parseText).makeOptionMandatory())
    .addOption(new Option('--signer-issuer <issuer>', 'who signs, recorded in signed_by.issuer').argParser(parseText).makeOptionMandatory())
    .option('--json', 'print JSON: {file, out, kid, signer_issuer, signed_at, public_key_fingerprint}')
    .action((opts: SignOptions) => {
      const { option, file, type } = oneDocument(opts);
      refuseOverlap([['--out', opts.out]], [[option, file], ['--private-key', opts.privateKey]]);
      const key = loadPrivateKey(opts.privateKey);
      const doc = readDocument(file, option);
      if (type === 'trust_material') validateTrustMaterial(doc, file);
      else validatePolicyBundle(doc, file);
      const signedAt = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
      const signed = signDocument(doc, key, { kid: opts.kid, signerIssuer: opts.signerIssuer, signedAt });
      writeFileAtomic(opts.out, type === 'trust_material' ? formatTrustMaterial(signed) : formatPolicyBundle(signed));
      const result = { file, out: opts.out, kid: opts.kid, signer_issuer: opts.signerIssuer, signed_at: signedAt, public_key_fingerprint: fingerprint(key.publicKey) };
      if (opts.json === true) {
        writeJson(io, result);
        return;
      }
      writeRows(io, [
        ['signed', `${file} -> ${opts.out} (${SIGNATURE_FORMAT})`],
        ['kid', opts.kid],
        ['signer issuer', opts.signerIssuer],
        ['signed at', signedAt],
        ['key fingerprint', result.public_key_fingerprint],
      ]);
    });
}
