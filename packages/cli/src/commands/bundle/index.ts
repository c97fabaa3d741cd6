/** `trustplane bundle …`: one file per verb (build, sign, verify, merge-source, remove-source, inspect). */
import type { Command } from 'commander';
import type { CliIo } from '../../output.js';
import { registerBundleBuild } from './build.js';
import { registerBundleSign } from './sign.js';
import { registerBundleVerify } from './verify.js';
import { registerBundleMergeSource } from './merge-source.js';
import { registerBundleRemoveSource } from './remove-source.js';
import { registerBundleInspect } from './inspect.js';

export function registerBundle(program: Command, io: CliIo): void {
  const bundle = program.command('bundle').description('Signed trust material and policy bundles: build, sign, verify, merge-source, remove-source, inspect');
  registerBundleBuild(bundle, io);
  registerBundleSign(bundle, io);
  registerBundleVerify(bundle, io);
  registerBundleMergeSource(bundle, io);
  registerBundleRemoveSource(bundle, io);
  registerBundleInspect(bundle, io);
}
