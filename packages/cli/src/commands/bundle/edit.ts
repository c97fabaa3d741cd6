/** The input/output options merge-source and remove-source share, and writing their result. */
import { Option, type Command } from 'commander';
import { formatPolicyBundle, formatTrustMaterial, type BundleEditResult, type PolicyBundle, type TrustMaterial } from '@trustplane/core';
import { parseNonEmpty } from '../../options.js';
import { writeJson, writeRows, type CliIo } from '../../output.js';
import { readDocument, refuseOverlap, writePairAtomic } from './io.js';

export interface PairFileOptions {
  trustMaterial: string;
  policyBundle: string;
  outTrustMaterial: string;
  outPolicyBundle: string;
  json?: true;
}

export function addPairFileOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--trust-material <file>', 'the trust material to start from (not modified)').argParser(parseNonEmpty).makeOptionMandatory())
    .addOption(new Option('--policy-bundle <file>', 'the policy bundle to start from (not modified)').argParser(parseNonEmpty).makeOptionMandatory())
    .addOption(new Option('--out-trust-material <file>', 'where to write the new trust material').argParser(parseNonEmpty).makeOptionMandatory())
    .addOption(new Option('--out-policy-bundle <file>', 'where to write the new policy bundle').argParser(parseNonEmpty).makeOptionMandatory());
}

/** Refuse overlapping files, then read both inputs (strict, capped). */
export function readPair(o: PairFileOptions): { trust: TrustMaterial; bundle: PolicyBundle } {
  refuseOverlap(
    [
      ['--out-trust-material', o.outTrustMaterial],
      ['--out-policy-bundle', o.outPolicyBundle],
    ],
    [
      ['--trust-material', o.trustMaterial],
      ['--policy-bundle', o.policyBundle],
    ],
  );
  // Typed loosely here: the core edit functions validate both against their schemas first.
  const trust = readDocument(o.trustMaterial, '--trust-material') as unknown as TrustMaterial;
  const bundle = readDocument(o.policyBundle, '--policy-bundle') as unknown as PolicyBundle;
  return { trust, bundle };
}

/** Write both outputs atomically, as a pair (both staged, then both renamed), and report the changes. */
export function writeEdit(o: PairFileOptions, result: BundleEditResult, io: CliIo): void {
  writePairAtomic([
    { file: o.outTrustMaterial, data: formatTrustMaterial(result.trustMaterial) },
    { file: o.outPolicyBundle, data: formatPolicyBundle(result.policyBundle) },
  ]);
  if (o.json === true) {
    writeJson(io, { trust_material_file: o.outTrustMaterial, policy_bundle_file: o.outPolicyBundle, policy_version: result.policyVersion, changes: result.changes, signed: false });
    return;
  }
  writeRows(io, [
    ...result.changes.map((c): [string, string] => ['change', c]),
    ['wrote', `${o.outTrustMaterial}, ${o.outPolicyBundle} (unsigned)`],
    ['next', 'review the diff, then `trustplane bundle sign` both files'],
  ]);
}
