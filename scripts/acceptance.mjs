#!/usr/bin/env node
// The acceptance gate (`npm run acceptance`): the deterministic local checks, in order, each a
// real command — build, lint, every test (unit, integration with real redis-server, nginx, gRPC
// and Unix sockets, packaging and the Helm render), the cross-language conformance harness, and
// the demo. Stops at the first failing step; prints a summary with durations.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const steps = [
  ['build', [npm, 'run', 'build']],
  ['lint', [npm, 'run', 'lint']],
  ['tests (unit, integration, packaging, helm)', [process.execPath, 'scripts/run-tests.mjs']],
  ['conformance: TypeScript vs Python, 10,000 generated cases', [process.execPath, 'scripts/conformance.mjs', '--count', '10000']],
  ['demo', [process.execPath, 'packages/cli/bin/trustplane.js', 'demo']],
];

const results = [];
for (const [name, [cmd, ...args]] of steps) {
  console.log(`\n=== acceptance: ${name}\n$ ${[cmd, ...args].join(' ')}`);
  const started = Date.now();
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  const ok = r.status === 0;
  results.push({ name, ok, seconds });
  if (!ok) break;
}
console.log('\n=== acceptance summary');
for (const r of results) console.log(`${r.ok ? 'PASS' : 'FAIL'}  ${r.seconds.padStart(6)} s  ${r.name}`);
const skipped = steps.slice(results.length).map(([name]) => name);
for (const name of skipped) console.log(`SKIP       -    ${name} (an earlier step failed)`);
const failed = results.some((r) => !r.ok);
console.log(failed ? '\nacceptance: FAILED' : '\nacceptance: passed');
process.exit(failed ? 1 : 0);
