import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { runBin } from './helpers.js';

test('trustplane demo plays every step, reports each as expected, exits 0 and cleans up', async () => {
  const r = await runBin(['demo']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  for (const want of ['403 request_binding_mismatch', '403 invalid_request_proof', '403 jti_replay', '401 missing_passport', '403 audience_mismatch', '403 insufficient_key_binding', 'new client accepted', 'removed client denied']) {
    assert.ok(r.stdout.includes(want), `demo output lacks ${want}`);
  }
  assert.ok(!r.stdout.includes('✘'));
  assert.match(r.stdout, /All steps behaved as expected/);
  assert.ok(!r.stdout.includes('\u001b['), 'plain output when not a TTY');
});
