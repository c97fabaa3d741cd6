import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { binPath, runBin } from './helpers.js';

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

test('trustplane demo interrupted (SIGINT) exits 130 and leaves no directory behind (it holds a private key)', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'tp-demo-int-'));
  try {
    const child = spawn(process.execPath, [binPath, 'demo'], { env: { ...process.env, TMPDIR: tmp }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    // Interrupt once the demo is under way (its first command has run).
    for (let i = 0; i < 200 && !out.includes('$ trustplane') && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(readdirSync(tmp).some((n) => n.startsWith('trustplane-demo-')), 'the demo directory exists while it runs');
    child.kill('SIGINT');
    assert.equal(await exited, 130);
    assert.deepEqual(readdirSync(tmp), []);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
