// The issuer service as a real process, a verifier trusting it by jwks_uri (opt-in), and key
// rotation: a pre-published key signs passports that are accepted with no bundle change.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { encodeBase64url, issuePassport, privateKeyFromSeed, signDocument, signRequest } from '@trustplane/core';
import { IssuerKeyring } from '@trustplane/issuer';
import { freePort, policyBundle } from '@trustplane/testkit';
import { binPath, run, tempDir } from './helpers.js';

const signer = privateKeyFromSeed(Buffer.alloc(32, 91));
const issuerBin = fileURLToPath(new URL('../../bin/trustplane-issuer.js', import.meta.url));

async function spawnUntil(args: string[], ready: string, t: { after(fn: () => unknown): void }): Promise<{ child: ChildProcess; stderr: () => string }> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (stderr.includes(ready)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${stderr}`)));
  });
  return { child, stderr: () => stderr };
}

test('issuer jwks / rotate: keys created on first use, the next key pre-published', async (t) => {
  const dir = join(tempDir(t), 'keys');
  const first = await run('issuer', 'jwks', '--key-dir', dir);
  assert.equal(first.code, 0, first.stderr);
  const one = JSON.parse(first.stdout) as { keys: { kid: string; kty: string; crv: string }[] };
  assert.equal(one.keys.length, 1);
  assert.equal(one.keys[0]!.kty, 'OKP');
  const rotated = await run('issuer', 'rotate', '--key-dir', dir, '--json');
  assert.equal(rotated.code, 0, rotated.stderr);
  const next = JSON.parse(rotated.stdout) as { kid: string; activates_at: number };
  assert.ok(next.activates_at > Date.now() / 1000 + 3000, 'signs an hour later by default');
  const two = JSON.parse((await run('issuer', 'jwks', '--key-dir', dir)).stdout) as { keys: { kid: string }[] };
  assert.deepEqual(two.keys.map((k) => k.kid), [one.keys[0]!.kid, next.kid]);
  const bad = await run('issuer', 'jwks', '--key-dir', dir, '--rotate-every', '10', '--prepublish', '10');
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--rotate-every must be longer than --prepublish/);
});

test('trustplane-issuer + trustplane verifier --allow-jwks-fetch: a rotated-in key is trusted without a bundle change', async (t) => {
  const dir = tempDir(t);
  const keyDir = join(dir, 'keys');
  const port = await freePort();
  const issuerUrl = `http://127.0.0.1:${port}`;
  // Enrollment: the trust material pins the issuer's first key and names its jwks_uri.
  const keyring = IssuerKeyring.open(keyDir, { prepublishSeconds: 4, rotateEverySeconds: 86_400 });
  const firstKey = keyring.signingKey();
  const next = keyring.rotate(); // published now, signs four seconds from now
  const tm = {
    version: 'trustplane-trust-material-v1',
    issuers: [{ issuer: issuerUrl, trust_domain: 'example.local', source_type: 'oidc_jwks', jwks_uri: `${issuerUrl}/.well-known/jwks.json`, keys: [{ kid: firstKey.kid, alg: 'EdDSA', public_key_b64url: encodeBase64url(firstKey.privateKey.publicKey) }] }],
  };
  const pb = policyBundle((b) => {
    b.route_groups[0]!.routes[0]!.allowed_sources = [{ source_type: 'oidc_jwks', issuer: issuerUrl, trust_domain: 'example.local', subject_exact: 'service:orders-client', required_key_binding: 'software' }];
  });
  writeFileSync(join(dir, 'tm.json'), JSON.stringify(signDocument(tm, signer, { kid: 'b', signerIssuer: 'test' })));
  writeFileSync(join(dir, 'pb.json'), JSON.stringify(signDocument(pb, signer, { kid: 'b', signerIssuer: 'test' })));

  const iss = await spawnUntil([issuerBin, '--key-dir', keyDir, '--issuer', issuerUrl, '--listen', `127.0.0.1:${port}`, '--prepublish', '4'], 'serving', t);
  const jwks = (await (await request(`${issuerUrl}/.well-known/jwks.json`)).body.json()) as { keys: { kid: string }[] };
  assert.deepEqual(jwks.keys.map((k) => k.kid), [firstKey.kid, next.kid]);

  const [vport, aport] = [await freePort(), await freePort()];
  const v = await spawnUntil([binPath, 'verifier', '--listen', `127.0.0.1:${vport}`, '--admin-listen', `127.0.0.1:${aport}`, '--bundle', join(dir, 'tm.json'), '--policy-bundle', join(dir, 'pb.json'), '--bundle-signature-public-key', `b=${encodeBase64url(signer.publicKey)}`, '--allow-jwks-fetch', '--audit-log', 'off'], 'listening on', t);
  const ready = await request(`http://127.0.0.1:${aport}/readyz`);
  assert.equal(ready.statusCode, 200, await ready.body.text());

  // Wait until the pre-published key starts signing.
  await new Promise((r) => setTimeout(r, Math.max(0, next.activates_at * 1000 - Date.now() + 100)));
  const rotatedIn = IssuerKeyring.open(keyDir).signingKey();
  assert.equal(rotatedIn.kid, next.kid, 'the pre-published key signs now');
  const check = async (key: typeof rotatedIn) => {
    const p = issuePassport({ signingKey: key.privateKey, kid: key.kid, issuer: issuerUrl, subject: 'service:orders-client', audience: 'orders-api', trustDomain: 'example.local', ttlSeconds: 300 });
    const s = signRequest({ passport: p.token, privateKey: key.privateKey, method: 'GET', url: 'https://orders.example/v1/orders/search', routeId: 'orders.search' });
    const r = await request(`http://127.0.0.1:${vport}/ext_authz/v1/orders/search`, { headers: s.headers });
    await r.body.dump();
    return r.statusCode;
  };
  assert.equal(await check(rotatedIn), 200, 'a passport from the rotated-in key');
  assert.equal(await check(firstKey), 200, 'the retiring key still verifies (it stays published)');
  const exits = [v.child, iss.child].map((c) => new Promise((r) => c.once('exit', r)));
  v.child.kill('SIGTERM');
  iss.child.kill('SIGTERM');
  assert.deepEqual(await Promise.all(exits), [0, 0]);
});

test('without --allow-jwks-fetch only pinned keys count (fetching is opt-in)', async (t) => {
  const dir = tempDir(t);
  const keyring = IssuerKeyring.open(join(dir, 'keys'));
  const port = await freePort();
  const pinned = privateKeyFromSeed(Buffer.alloc(32, 92));
  const tm = { version: 'trustplane-trust-material-v1', issuers: [{ issuer: `http://127.0.0.1:${port}`, trust_domain: 'example.local', source_type: 'oidc_jwks', jwks_uri: `http://127.0.0.1:${port}/.well-known/jwks.json`, keys: [{ kid: 'pinned', alg: 'EdDSA', public_key_b64url: encodeBase64url(pinned.publicKey) }] }] };
  writeFileSync(join(dir, 'tm.json'), JSON.stringify(signDocument(tm, signer, { kid: 'b', signerIssuer: 'test' })));
  writeFileSync(join(dir, 'pb.json'), JSON.stringify(signDocument(policyBundle(), signer, { kid: 'b', signerIssuer: 'test' })));
  await spawnUntil([issuerBin, '--key-dir', join(dir, 'keys'), '--issuer', `http://127.0.0.1:${port}`, '--listen', `127.0.0.1:${port}`], 'serving', t);
  const vport = await freePort();
  await spawnUntil([binPath, 'verifier', '--listen', `127.0.0.1:${vport}`, '--admin-listen', `127.0.0.1:${await freePort()}`, '--bundle', join(dir, 'tm.json'), '--policy-bundle', join(dir, 'pb.json'), '--bundle-signature-public-key', `b=${encodeBase64url(signer.publicKey)}`, '--audit-log', 'off'], 'listening on', t);
  const key = keyring.signingKey();
  const p = issuePassport({ signingKey: key.privateKey, kid: key.kid, issuer: `http://127.0.0.1:${port}`, subject: 'service:orders-client', audience: 'orders-api', trustDomain: 'example.local' });
  const s = signRequest({ passport: p.token, privateKey: key.privateKey, method: 'GET', url: 'https://orders.example/v1/orders/search', routeId: 'orders.search' });
  const r = await request(`http://127.0.0.1:${vport}/ext_authz/v1/orders/search`, { headers: s.headers });
  assert.equal(r.statusCode, 401);
  assert.deepEqual(await r.body.json(), { allowed: false, reason: 'unknown_issuer_key' });
});
