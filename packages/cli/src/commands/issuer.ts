/** `trustplane issuer …` (placeholder until the issuer commands land). */
import type { Command } from 'commander';
import type { CliIo } from '../output.js';

export function registerIssuer(_program: Command, _io: CliIo): void {}
