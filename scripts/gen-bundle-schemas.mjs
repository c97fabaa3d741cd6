#!/usr/bin/env node
// Writes schemas/*.schema.json from the schema objects the loader validates with
// (packages/core/src/bundle/schema-documents.ts). A test keeps the two equal.
// Usage: npm run build && node scripts/gen-bundle-schemas.mjs
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUNDLE_SCHEMAS } from '../packages/core/dist/src/index.js';

const root = new URL('..', import.meta.url).pathname;
mkdirSync(join(root, 'schemas'), { recursive: true });
for (const { file, schema } of BUNDLE_SCHEMAS) {
  writeFileSync(join(root, 'schemas', file), `${JSON.stringify(schema, null, 2)}\n`);
  console.log(`wrote schemas/${file}`);
}
