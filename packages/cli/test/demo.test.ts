import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { runBin } from './helpers.js';

test('trustplane demo plays every step, reports each as expected, exits 0 and cleans up', async () => {
  const r = await runBin(['demo']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  for (const want of ['403 request_binding_mismatch', '403 invalid_request_proof', '403 jti_replay', '401 missing_passport', '403 audience_mismatch', '403 insufficient_key_binding', 'new client accepted', 'removed client denied']) {
    assert.ok(r.stdout.includes(want), `demo output lacks ${want}`);
  }
  // The four caller shapes of the Acme Orders story, each accepted.
  for (const who of ['upstream saw script:alice-laptop', 'upstream saw ec2:i-0abc123:billing', 'upstream saw system:serviceaccount:n8n:n8n-runner', 'upstream saw spiffe://acme.example/ns/orders/sa/fulfillment-worker']) {
    assert.ok(r.stdout.includes(who), `demo output lacks ${who}`);
  }
  assert.match(r.stdout, /SVID spiffe:\/\/acme\.example\/ns\/orders\/sa\/fulfillment-worker verified/);
  assert.ok(!r.stdout.includes('✘'));
  assert.match(r.stdout, /All steps behaved as expected/);
  assert.ok(!r.stdout.includes('\u001b['), 'plain output when not a TTY');
});
