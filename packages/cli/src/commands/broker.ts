/** `trustplane broker …` (placeholder until the broker commands land). */
import type { Command } from 'commander';
import type { CliIo } from '../output.js';

export function registerBroker(_program: Command, _io: CliIo): void {}
