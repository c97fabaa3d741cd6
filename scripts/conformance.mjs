#!/usr/bin/env node
// Cross-language conformance (docs/conformance.md): the TypeScript transcript-v1 / passport code
// against the stdlib Python reference in conformance/python, on the shipped vectors and on N
// fast-check generated cases (fixed seed), all answered by one python3 process.
// Usage: node scripts/conformance.mjs [--count N] [--seed S]   (npm run conformance builds first)
import { fileURLToPath } from 'node:url';
import { runConformance, summaryLine, describeDifferences, DEFAULT_SEED } from '@trustplane/testkit';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
let count = 10000;
let seed = DEFAULT_SEED;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const value = () => {
    const v = Number(args[++i]);
    if (!Number.isSafeInteger(v) || v < 0) {
      console.error(`${a} needs a non-negative integer`);
      process.exit(2);
    }
    return v;
  };
  if (a === '--count') count = value();
  else if (a === '--seed') seed = value();
  else {
    console.error(`unknown argument ${a}\nusage: node scripts/conformance.mjs [--count N] [--seed S]`);
    process.exit(2);
  }
}

const started = Date.now();
const report = await runConformance({ repoRoot, count, seed });
console.log(
  `TS vs Python (seed ${seed}): ${report.transcriptCases} transcripts + ${report.passportCases} passports generated, ` +
    `${report.refusals} refused identically by both, ${report.stricterByDesign} refused only by TS by design ` +
    `(a line feed inside a field), in ${((Date.now() - started) / 1000).toFixed(1)} s`,
);
console.log(summaryLine(report));
if (report.differences.length > 0) {
  console.log(describeDifferences(report, 5));
  process.exit(1);
}
