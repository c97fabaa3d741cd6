import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import * as path from 'node:path';
import { compareOutcomes, runConformance, describeDifferences } from '@trustplane/testkit';
import { repoRoot } from './helpers.js';

const run = promisify(execFile);

test('the Python reference passes its own unit tests against the vendored vectors', async () => {
  const { stderr } = await run('python3', ['-m', 'unittest'], { cwd: path.join(repoRoot, 'conformance/python') });
  assert.match(stderr, /\nOK\s*$/);
});

test('TypeScript and the Python reference agree on the vectors and 3,000 generated cases', async () => {
  const report = await runConformance({ repoRoot, count: 3000, seed: 7 });
  assert.equal(report.vectors, 2);
  assert.equal(report.generated, 3000);
  // Both accepting and refusing paths must be exercised, or agreement would prove little.
  assert.ok(report.refusals > 300 && report.refusals < 2700, `refusals ${report.refusals}`);
  assert.equal(report.differences.length, 0, describeDifferences(report));
});

test('the comparison notices each kind of divergence', () => {
  const lines = ['version=trustplane-transcript-v1'];
  assert.equal(compareOutcomes({ ok: true, lines, sha256: 'aa' }, { ok: true, lines, sha256: 'aa' }), null);
  assert.match(compareOutcomes({ ok: true, lines, sha256: 'aa' }, { ok: true, lines, sha256: 'ab' }) ?? '', /sha256 differs/);
  assert.match(compareOutcomes({ ok: true, lines, sha256: 'aa' }, { ok: true, lines: [...lines, 'x'], sha256: 'aa' }) ?? '', /lines differ/);
  assert.match(compareOutcomes({ ok: true, lines, sha256: 'aa' }, { ok: false, error: 'missing_path' }) ?? '', /TS accepted, Python refused/);
  assert.match(compareOutcomes({ ok: false, error: 'missing_nonce' }, { ok: false, error: 'missing_path' }) ?? '', /error codes differ/);
  assert.equal(compareOutcomes({ ok: false, error: 'missing_nonce' }, { ok: false, error: 'missing_nonce' }), null);
  assert.match(compareOutcomes({ ok: true, signing_input: 'a.b' }, { ok: true, signing_input: 'a.c' }) ?? '', /signing inputs differ/);
});
