import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { BUNDLE_ERROR_CODES } from '../src/index.js';
import { repoRoot } from './helpers.js';

test('docs/bundles.md lists exactly the bundle error codes, with their meanings (both ways)', () => {
  const doc = readFileSync(path.join(repoRoot, 'docs/bundles.md'), 'utf8');
  const section = doc.slice(doc.indexOf('## Error codes'));
  const rows = new Map<string, string>();
  for (const m of section.matchAll(/^\| `([a-z_]+)` \| (.+) \|$/gm)) rows.set(m[1]!, m[2]!);
  assert.deepEqual([...rows.keys()].sort(), Object.keys(BUNDLE_ERROR_CODES).sort());
  for (const [code, meaning] of Object.entries(BUNDLE_ERROR_CODES)) assert.equal(rows.get(code), meaning, code);
});

test('every code the bundle sources throw is in BUNDLE_ERROR_CODES', () => {
  const files = [
    ...readdirSync(path.join(repoRoot, 'packages/core/src/bundle')).map((f) => path.join(repoRoot, 'packages/core/src/bundle', f)),
    ...readdirSync(path.join(repoRoot, 'packages/cli/src/commands/bundle')).map((f) => path.join(repoRoot, 'packages/cli/src/commands/bundle', f)),
  ];
  const found = new Set<string>();
  for (const f of files) {
    const src = readFileSync(f, 'utf8');
    for (const m of src.matchAll(/(?:new (?:Bundle)?FormatError|refuse|this\.reject)\(\s*'([a-z_]+)'/g)) found.add(m[1]!);
    for (const m of src.matchAll(/failure\((?:[^()]|\([^()]*\))*?,\s*'([a-z_]+)'/g)) found.add(m[1]!);
  }
  assert.ok(found.size >= 15, `scanned ${found.size} codes`);
  for (const code of found) assert.ok(code in BUNDLE_ERROR_CODES, `${code} is thrown but not in BUNDLE_ERROR_CODES`);
});
