// `trustplane-verifier` as a real process: forward-auth decisions over loopback HTTP in the
// Envoy and NGINX conventions, its admin endpoints, the config file, and a clean SIGTERM.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { encodeBase64url, privateKeyFromSeed, signDocument } from '@trustplane/core';
import { trustMaterial, policyBundle, makeRequest, freePort } from '@trustplane/testkit';
import { runBin, stderrUntil, stopWithSigterm, tempDir } from './helpers.js';

const signer = privateKeyFromSeed(Buffer.alloc(32, 78));
const verifierBin = fileURLToPath(new URL('../../bin/trustplane-verifier.js', import.meta.url));

test('trustplane-verifier: Envoy and NGINX conventions, admin endpoints, config file, SIGTERM', async (t) => {
  const dir = tempDir(t);
  const tm = join(dir, 'tm.json');
  const pb = join(dir, 'pb.json');
  writeFileSync(tm, JSON.stringify(signDocument(trustMaterial(), signer, { kid: 'b1', signerIssuer: 'test' })));
  writeFileSync(pb, JSON.stringify(signDocument(policyBundle(), signer, { kid: 'b1', signerIssuer: 'test' })));
  const [port, adminPort] = [await freePort(), await freePort()];
  const config = join(dir, 'verifier.json');
  writeFileSync(config, JSON.stringify({ bundle: tm, policy_bundle: pb, bundle_signature_public_keys: [`b1=${encodeBase64url(signer.publicKey)}`], trust_forwarded_headers: true, audit_log: 'off' }));
  const child = spawn(process.execPath, [verifierBin, '--config', config, '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${adminPort}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  const stderr = await stderrUntil(child, 'listening on', 'verifier');
  assert.match(stderr(), /conventions: nginx, traefik, envoy \/ext_authz/);
  const base = `http://127.0.0.1:${port}`;

  // Envoy: the original path after the prefix, the original headers as-is.
  const r1 = makeRequest({ nowMs: Date.now() });
  const allow = await request(`${base}/ext_authz/v1/orders/search`, { headers: r1.headers });
  assert.equal(allow.statusCode, 200, await allow.body.text());
  assert.equal(allow.headers['x-trustplane-subject'], 'service:orders-client');
  const replay = await request(`${base}/ext_authz/v1/orders/search`, { headers: r1.headers });
  assert.equal(replay.statusCode, 403);
  assert.deepEqual(await replay.body.json(), { allowed: false, reason: 'jti_replay' });
  // NGINX: X-Original-Method / X-Original-URI (trusted by the config file).
  const r2 = makeRequest({ nowMs: Date.now() });
  const tampered = await request(`${base}/auth`, { headers: { ...r2.headers, 'x-original-method': 'GET', 'x-original-uri': '/v1/orders/search?x=1' } });
  assert.equal(tampered.statusCode, 403);
  assert.equal(tampered.headers['x-trustplane-reason'], 'request_binding_mismatch');
  await tampered.body.text();
  const nginx = await request(`${base}/auth`, { headers: { ...r2.headers, 'x-original-method': 'GET', 'x-original-uri': '/v1/orders/search' } });
  assert.equal(nginx.statusCode, 200);
  await nginx.body.text();

  const ready = await request(`http://127.0.0.1:${adminPort}/readyz`);
  assert.equal(ready.statusCode, 200);
  await ready.body.text();
  const metrics = await (await request(`http://127.0.0.1:${adminPort}/metrics`)).body.text();
  assert.match(metrics, /trustplane_decisions_total\{outcome="allow",reason="request_verified",route="orders.search"\} 2/);
  assert.match(metrics, /trustplane_decisions_total\{outcome="deny",reason="jti_replay",route="orders.search"\} 1/);

  assert.equal(await stopWithSigterm({ child }), 0, stderr());
});

test('trustplane verifier: configuration errors are one clear line (exit 2)', async (t) => {
  const dir = tempDir(t);
  const cases: [string[], RegExp][] = [
    [['verifier'], /--bundle <file> and --policy-bundle <file> are required/],
    [['verifier', '--bundle', 'a', '--policy-bundle', 'b'], /--bundle-signature-public-key is required/],
    [['verifier', '--bundle', 'a', '--policy-bundle', 'b', '--dev-allow-unsigned-bundles', '--replicas', '2'], /--replay memory cannot protect 2 replicas/],
  ];
  for (const [args, want] of cases) {
    const r = await runBin(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, want);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
  const cfg = join(dir, 'c.json');
  writeFileSync(cfg, JSON.stringify({ upstream: 'http://x' }));
  const unknown = await runBin(['verifier', '--config', cfg]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown setting "upstream"/);
});
