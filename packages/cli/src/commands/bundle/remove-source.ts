/**
 * `trustplane bundle remove-source --kid K --confirm-remove [--revoke]`: remove one key and its
 * source rules, keeping everything else; `--revoke` also appends revocation metadata. Refused
 * (exit 2) without `--confirm-remove`. The inputs are not modified; the outputs are unsigned
 * with policy_version incremented.
 */
import { Option, type Command } from 'commander';
import { removeSource } from '@trustplane/core';
import { parseText } from '../../options.js';
import { usageError, type CliIo } from '../../output.js';
import { addPairFileOptions, readPair, writeEdit, type PairFileOptions } from './edit.js';

interface RemoveOptions extends PairFileOptions {
  kid: string;
  confirmRemove?: true;
  revoke?: true;
  reason?: string;
  routeId?: string;
  subjectExact?: string;
  subjectPrefix?: string;
}

export function registerBundleRemoveSource(bundle: Command, io: CliIo): void {
  addPairFileOptions(bundle.command('remove-source').description('Remove one client key and its source rules (needs --confirm-remove); --revoke also revokes it'))
    .addOption(new Option('--kid <kid>', 'the key id to remove').argParser(parseText).makeOptionMandatory())
    .option('--confirm-remove', 'required: confirms that the key and its source rules are removed')
    .option('--revoke', 'also append {kid, issuer, subject?, reason, revoked_at} to the policy bundle revocations')
    .addOption(new Option('--reason <text>', 'the revocation reason (with --revoke)').argParser(parseText))
    .addOption(new Option('--route-id <route>', "only remove the issuer's rules on this route").argParser(parseText))
    .addOption(new Option('--subject-exact <subject>', 'only remove rules with this exact subject').argParser(parseText).conflicts('subjectPrefix'))
    .addOption(new Option('--subject-prefix <prefix>', 'only remove rules with this subject prefix').argParser(parseText))
    .option('--json', 'print JSON: {trust_material_file, policy_bundle_file, policy_version, changes, signed:false}')
    .action((opts: RemoveOptions) => {
      if (opts.confirmRemove !== true) {
        throw usageError(`refusing to remove kid ${JSON.stringify(opts.kid)} and its source rules without --confirm-remove`);
      }
      if (opts.reason !== undefined && opts.revoke !== true) throw usageError('--reason is only used with --revoke');
      const { trust, bundle: doc } = readPair(opts);
      const result = removeSource(trust, doc, {
        kid: opts.kid,
        revoke: opts.revoke === true,
        now: Date.now(),
        ...(opts.reason === undefined ? {} : { reason: opts.reason }),
        ...(opts.routeId === undefined ? {} : { routeId: opts.routeId }),
        ...(opts.subjectExact === undefined ? {} : { subjectExact: opts.subjectExact }),
        ...(opts.subjectPrefix === undefined ? {} : { subjectPrefix: opts.subjectPrefix }),
        trustMaterialFile: opts.trustMaterial,
        policyBundleFile: opts.policyBundle,
      });
      writeEdit(opts, result, io);
    });
}
