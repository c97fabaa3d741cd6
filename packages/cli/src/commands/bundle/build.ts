/**
 * `trustplane bundle build --config FILE --out FILE [--out-trust-material FILE]`: the unsigned
 * skeletons from one configuration (docs/bundles.md). Deterministic: the same configuration
 * gives the same bytes. `jwks_file` entries are read here, relative to the configuration.
 */
import * as path from 'node:path';
import { Option, type Command } from 'commander';
import { buildBundles, isJsonObject, parseJsonBytes, type JsonObject } from '@trustplane/core';
import { readFileCapped } from '../../files.js';
import { parseNonEmpty } from '../../options.js';
import { CliError, failure, usageError, writeJson, writeRows, type CliIo } from '../../output.js';
import { readDocument, refuseOverlap, writePairAtomic } from './io.js';

const MAX_JWKS_BYTES = 1024 * 1024;

interface BuildOptions {
  config: string;
  out: string;
  outTrustMaterial?: string;
  json?: true;
}

/** Replace each `issuers[i].jwks_file` by the parsed JWKS it names (relative to the config). */
function resolveJwksFiles(config: JsonObject, configFile: string): void {
  const issuers = config['issuers'];
  if (!Array.isArray(issuers)) return;
  issuers.forEach((iss, i) => {
    if (!isJsonObject(iss) || typeof iss['jwks_file'] !== 'string' || iss['jwks_file'] === '') return;
    const file = path.resolve(path.dirname(configFile), iss['jwks_file']);
    const option = `${configFile}: /issuers/${i}/jwks_file`;
    let jwks;
    try {
      jwks = parseJsonBytes(readFileCapped(file, MAX_JWKS_BYTES, option), MAX_JWKS_BYTES, file);
    } catch (err) {
      if (err instanceof CliError) throw err;
      throw failure(`${option}: ${file}: ${err instanceof Error ? err.message : String(err)}`, 'invalid_jwks', err);
    }
    delete iss['jwks_file'];
    iss['jwks'] = jwks;
  });
}

export function registerBundleBuild(bundle: Command, io: CliIo): void {
  bundle
    .command('build')
    .description('Build the unsigned trust material and policy bundle skeletons from a configuration file')
    .addOption(new Option('--config <file>', 'the build configuration (trustplane-bundle-config-v1, JSON)').argParser(parseNonEmpty).makeOptionMandatory())
    .addOption(new Option('--out <file>', 'where to write the policy bundle').argParser(parseNonEmpty).makeOptionMandatory())
    .addOption(new Option('--out-trust-material <file>', 'where to write the trust material (required when the configuration declares issuers)').argParser(parseNonEmpty))
    .option('--json', 'print JSON: {policy_bundle_file, trust_material_file, policy_id, policy_version, routes, issuers, notes}')
    .action((opts: BuildOptions) => {
      const outputs: [string, string][] = [['--out', opts.out]];
      if (opts.outTrustMaterial !== undefined) outputs.push(['--out-trust-material', opts.outTrustMaterial]);
      refuseOverlap(outputs, [['--config', opts.config]]);
      const config = readDocument(opts.config, '--config');
      const issuers = config['issuers'];
      if (opts.outTrustMaterial === undefined && Array.isArray(issuers) && issuers.length > 0) {
        throw usageError('the configuration declares issuers: pass --out-trust-material FILE so their keys are written');
      }
      resolveJwksFiles(config, opts.config);
      const built = buildBundles(config, {
        configFile: opts.config,
        policyBundleFile: opts.out,
        ...(opts.outTrustMaterial === undefined ? { pin: false } : { trustMaterialFile: opts.outTrustMaterial }),
      });
      writePairAtomic([...(opts.outTrustMaterial !== undefined ? [{ file: opts.outTrustMaterial, data: built.trustMaterialText }] : []), { file: opts.out, data: built.policyBundleText }]);
      const routes = built.policyBundle.route_groups.reduce((n, g) => n + g.routes.length, 0);
      const keys = built.trustMaterial.issuers.reduce((n, i) => n + i.keys.length, 0);
      if (opts.json === true) {
        writeJson(io, {
          policy_bundle_file: opts.out,
          trust_material_file: opts.outTrustMaterial ?? null,
          policy_id: built.policyBundle.policy_id,
          policy_version: built.policyBundle.policy_version,
          routes,
          issuers: built.trustMaterial.issuers.length,
          keys,
          notes: built.notes,
        });
        return;
      }
      const rows: [string, string][] = [
        ['policy bundle', `${opts.out} (unsigned skeleton)`],
        ['policy', `${built.policyBundle.policy_id ?? ''} version ${built.policyBundle.policy_version ?? 0}`],
        ['routes', String(routes)],
      ];
      if (opts.outTrustMaterial !== undefined) rows.splice(1, 0, ['trust material', `${opts.outTrustMaterial} (unsigned skeleton)`], ['issuers', `${built.trustMaterial.issuers.length} (${keys} keys)`]);
      for (const n of built.notes) rows.push(['note', n]);
      rows.push(['next', 'review, then `trustplane bundle sign` each file']);
      writeRows(io, rows);
    });
}
