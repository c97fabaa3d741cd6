#!/usr/bin/env node
// Regenerates docs/reason-codes.md from the registry (packages/core/src/reasons.ts, built).
// A test keeps the two equal; run this after changing the registry: npm run docs:reasons
import { writeFileSync } from 'node:fs';
const { REASONS } = await import('../packages/core/dist/src/reasons.js');
const rows = Object.entries(REASONS).map(([code, r]) => `| \`${code}\` | ${r.status} | ${r.origin} | ${r.meaning} |`);
const doc = `# Reason codes

Every denial carries one stable reason code and the HTTP status below. The adapter answers
\`{"allowed":false,"reason":"<code>"}\` with that status and never echoes request bytes; the
audit event carries the human detail. \`spec\` codes are the ones TrustPlane documents (SPEC §5);
\`extension\` codes are this project's, in the same style (SPEC §9.2).

Status classes: 401 the passport or proof headers do not authenticate; 403 policy, binding and
replay denials; 400 an ambiguous HTTP request; 413 body too large; 503 the verifier cannot
decide (no bundle, stale bundle, replay store unavailable); 502/504 upstream failures.

This table is generated from \`packages/core/src/reasons.ts\` (\`npm run docs:reasons\`) and a
test keeps the two equal, both ways.

| code | status | origin | meaning |
|---|---|---|---|
${rows.join('\n')}
`;
writeFileSync(new URL('../docs/reason-codes.md', import.meta.url), doc);
console.log(`wrote docs/reason-codes.md (${rows.length} codes)`);
