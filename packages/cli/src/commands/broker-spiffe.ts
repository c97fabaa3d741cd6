/** SPIFFE options of `trustplane broker serve` (placeholder until the Workload API source lands). */
import type { Command } from 'commander';
import type { SignerSource } from '@trustplane/broker';
import { usageError, type CliIo } from '../output.js';

export interface SpiffeCliOptions {
  spiffeSocket?: string;
}

export function addSpiffeOptions(cmd: Command): Command {
  return cmd.option('--spiffe-socket <path>', 'SPIFFE Workload API socket');
}

export function spiffeSourceFromOptions(o: SpiffeCliOptions, _trustDomain: string, _io: CliIo): Promise<{ source: SignerSource; close: () => Promise<void> } | undefined> {
  if (o.spiffeSocket !== undefined) throw usageError('--spiffe-socket is not available in this build yet');
  return Promise.resolve(undefined);
}
