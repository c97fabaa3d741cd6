/** Core test helpers: repository paths and vector loading; fixtures come from @trustplane/testkit. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';

export * from '@trustplane/testkit';

/** Repository root (tests run from packages/core/dist/test). */
export const repoRoot = path.resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../..');

export function readVector(rel: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path.join(repoRoot, 'conformance/vectors', rel), 'utf8')) as Record<string, unknown>;
}
