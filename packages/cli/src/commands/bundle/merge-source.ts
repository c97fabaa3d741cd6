/**
 * `trustplane bundle merge-source`: add one client — its key to the trust material and a source
 * rule to one route — preserving everything else. A duplicate kid or an identical selector is
 * refused unless `--replace-existing`. The client's key is bound to its subject selector, and a
 * second client under an issuer whose other keys could mint its subjects is refused unless
 * `--shared-issuer`. The inputs are not modified; the outputs are unsigned
 * (sign them after review) with policy_version incremented.
 */
import { Option, type Command } from 'commander';
import { mergeSource, SIGNER_CLASS_ORDER, SOURCE_TYPES, type SignerClass, type SourceType } from '@trustplane/core';
import { parseText } from '../../options.js';
import { usageError, type CliIo } from '../../output.js';
import { addPairFileOptions, readPair, writeEdit, type PairFileOptions } from './edit.js';

interface MergeOptions extends PairFileOptions {
  issuer: string;
  trustDomain: string;
  kid: string;
  publicKey: string;
  routeId: string;
  subjectExact?: string;
  subjectPrefix?: string;
  requiredKeyBinding: SignerClass;
  sourceType: SourceType;
  replaceExisting?: true;
  sharedIssuer?: true;
}

export function registerBundleMergeSource(bundle: Command, io: CliIo): void {
  addPairFileOptions(bundle.command('merge-source').description("Add a client's key and a route source rule, preserving everything else"))
    .addOption(new Option('--issuer <issuer>', 'the issuer of the client passports').argParser(parseText).makeOptionMandatory())
    .addOption(new Option('--trust-domain <domain>', 'the trust domain of the issuer').argParser(parseText).makeOptionMandatory())
    .addOption(new Option('--kid <kid>', 'the key id of the client key (passport header kid)').argParser(parseText).makeOptionMandatory())
    .addOption(new Option('--public-key <b64url>', 'the client public key: base64url of the raw 32 bytes').argParser(parseText).makeOptionMandatory())
    .addOption(new Option('--route-id <route>', 'the route the client may call').argParser(parseText).makeOptionMandatory())
    .addOption(new Option('--subject-exact <subject>', 'accept exactly this subject').argParser(parseText).conflicts('subjectPrefix'))
    .addOption(new Option('--subject-prefix <prefix>', 'accept subjects starting with this prefix').argParser(parseText))
    .addOption(new Option('--required-key-binding <class>', 'the minimum signer class').choices(SIGNER_CLASS_ORDER).makeOptionMandatory())
    .addOption(new Option('--source-type <type>', 'the source type of the issuer').choices(SOURCE_TYPES).default('software_jwks'))
    .option('--replace-existing', 'replace a key with the same kid and a rule with the same selector instead of refusing')
    .option('--shared-issuer', "add the client under an issuer whose other keys could mint its subjects (refused otherwise: give each client its own issuer)")
    .option('--json', 'print JSON: {trust_material_file, policy_bundle_file, policy_version, changes, signed:false}')
    .action((opts: MergeOptions) => {
      if (opts.subjectExact === undefined && opts.subjectPrefix === undefined) throw usageError('give --subject-exact SUBJECT or --subject-prefix PREFIX');
      const { trust, bundle: doc } = readPair(opts);
      const result = mergeSource(trust, doc, {
        issuer: opts.issuer,
        trustDomain: opts.trustDomain,
        kid: opts.kid,
        publicKey: opts.publicKey,
        routeId: opts.routeId,
        ...(opts.subjectExact !== undefined ? { subjectExact: opts.subjectExact } : { subjectPrefix: opts.subjectPrefix! }),
        requiredKeyBinding: opts.requiredKeyBinding,
        sourceType: opts.sourceType,
        replaceExisting: opts.replaceExisting === true,
        sharedIssuer: opts.sharedIssuer === true,
        trustMaterialFile: opts.trustMaterial,
        policyBundleFile: opts.policyBundle,
      });
      writeEdit(opts, result, io);
    });
}
