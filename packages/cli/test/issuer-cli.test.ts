// The issuer service end to end: in process with an injected clock (a full rotation cycle seen
// by a Verifier on a JwksTrustSource), and as real processes (`trustplane-issuer`, `trustplane
// issuer rotate` beside it, `trustplane verifier` with and without --allow-jwks-fetch).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { BundleWatcher, ManualClock, MemoryReplayStore, Verifier, encodeBase64url, issuePassport, parsePrivateKey, parsePublicKey, privateKeyFromSeed, signDocument, signRequest, type Ed25519PrivateKey, type TrustMaterial } from '@trustplane/core';
import { IssuerKeyring, startIssuer } from '@trustplane/issuer';
import { JwksTrustSource } from '@trustplane/adapter';
import { ISSUER, T0, freePort, makeRequest, policyBundle, trustMaterial } from '@trustplane/testkit';
import { binPath, run, tempDir } from './helpers.js';

const signer = privateKeyFromSeed(Buffer.alloc(32, 91));
const issuerBin = fileURLToPath(new URL('../../bin/trustplane-issuer.js', import.meta.url));

function writeSignedPair(dir: string, tm: TrustMaterial, pb = policyBundle()): void {
  writeFileSync(join(dir, 'tm.json'), JSON.stringify(signDocument(tm, signer, { kid: 'b', signerIssuer: 'test' })));
  writeFileSync(join(dir, 'pb.json'), JSON.stringify(signDocument(pb, signer, { kid: 'b', signerIssuer: 'test' })));
}

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

test('issuer --help lists the verbs and flags', async () => {
  const top = await run('issuer', '--help');
  assert.equal(top.code, 0);
  for (const verb of ['serve', 'rotate', 'jwks']) assert.match(top.stdout, new RegExp(`^  ${verb} `, 'm'));
  const serve = await run('issuer', 'serve', '--help');
  for (const flag of ['--key-dir <dir>', '--issuer <url>', '--public-url <url>', '--listen <host:port>', '--rotate-every <seconds>', '--prepublish <seconds>', '--max-lifetime <seconds>', '--skew <seconds>', 'TRUSTPLANE_ISSUER_KEY_DIR']) {
    assert.ok(serve.stdout.includes(flag), `serve --help lacks ${flag}`);
  }
  assert.ok((await run('issuer', 'rotate', '--help')).stdout.includes('--json'));
});

test('issuer jwks / rotate: the first key created with a clear message, the next key pre-published; usage errors exit 2', async (t) => {
  const dir = join(tempDir(t), 'keys');
  const first = await run('issuer', 'jwks', '--key-dir', dir);
  assert.equal(first.code, 0, first.stderr);
  const one = JSON.parse(first.stdout) as { keys: { kid: string; kty: string; crv: string; x: string }[] };
  assert.equal(one.keys.length, 1);
  assert.deepEqual([one.keys[0]!.kty, one.keys[0]!.crv], ['OKP', 'Ed25519']);
  assert.match(first.stderr, new RegExp(`had no keys: created the first issuer key ${one.keys[0]!.kid}`));
  assert.equal(statSync(join(dir, `${one.keys[0]!.kid}.key`)).mode & 0o777, 0o600);
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  const rotated = await run('issuer', 'rotate', '--key-dir', dir, '--json');
  assert.equal(rotated.code, 0, rotated.stderr);
  assert.equal(rotated.stderr, '', 'no "created" message for an existing directory');
  const next = JSON.parse(rotated.stdout) as { kid: string; activates_at: number };
  assert.ok(next.activates_at > Date.now() / 1000 + 3000, 'signs an hour later by default');
  const human = await run('issuer', 'rotate', '--key-dir', dir);
  assert.match(human.stdout, new RegExp(`^next key ${next.kid} published; it signs from \\d{4}-`), 'a pending rotation is reported, not repeated');
  const two = JSON.parse((await run('issuer', 'jwks', '--key-dir', dir)).stdout) as { keys: { kid: string }[] };
  assert.deepEqual(two.keys.map((k) => k.kid), [one.keys[0]!.kid, next.kid]);
  // Nothing printed holds private material.
  const secret = readFileSync(join(dir, `${one.keys[0]!.kid}.key`), 'utf8').trim();
  for (const out of [first.stdout, rotated.stdout, human.stdout]) assert.ok(!out.includes(secret.slice(0, 43)));

  const usage: [string[], RegExp][] = [
    [['issuer', 'jwks', '--key-dir', dir, '--rotate-every', '10', '--prepublish', '10'], /--rotate-every must be longer than --prepublish/],
    [['issuer', 'jwks', '--key-dir', dir, '--skew', 'soon'], /--skew must be a non-negative integer/],
    [['issuer', 'jwks'], /--key-dir/],
    [['issuer', 'serve', '--key-dir', dir, '--issuer', 'http://issuer.acme.example'], /--issuer "http:\/\/issuer.acme.example" must be https/],
    [['issuer', 'serve', '--key-dir', dir, '--issuer', 'https://issuer.acme.example', '--listen', 'nowhere'], /--listen must be HOST:PORT/],
  ];
  for (const [args, re] of usage) {
    const r = await run(...args);
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.stderr, re);
  }
  // A key directory that cannot be read: exit 1.
  writeFileSync(join(dir, 'keyring.json'), '{');
  const broken = await run('issuer', 'jwks', '--key-dir', dir);
  assert.equal(broken.code, 1);
  assert.match(broken.stderr, /cannot open --key-dir .*not valid JSON/);
});

test('end to end, in process: a Verifier on a JwksTrustSource follows the issuer through a rotation cycle', async (t) => {
  const clock = new ManualClock(T0);
  const dir = tempDir(t);
  const keyring = IssuerKeyring.open(join(dir, 'keys'), { clock, rotateEverySeconds: 86_400, prepublishSeconds: 3600, maxPassportLifetimeSeconds: 900, skewSeconds: 30 });
  const svc = await startIssuer({ listen: { host: '127.0.0.1', port: 0 }, issuer: ISSUER, keyring, maintainEveryMs: 0 });
  t.after(() => svc.close());
  // Enrollment: the trust material pins the issuer's first key and names its jwks_uri.
  const a = keyring.signingKey();
  const tm = trustMaterial();
  tm.issuers[0] = { ...tm.issuers[0]!, jwks_uri: `${svc.url}/.well-known/jwks.json`, keys: [{ kid: a.kid, alg: 'EdDSA', public_key_b64url: encodeBase64url(a.privateKey.publicKey) }] };
  writeSignedPair(dir, tm);
  const bundleKeys = new Map([['b', parsePublicKey(encodeBase64url(signer.publicKey))]]);
  const watcher = new BundleWatcher({ trustMaterialFile: join(dir, 'tm.json'), policyBundleFile: join(dir, 'pb.json'), trustMaterialKeys: bundleKeys, policyBundleKeys: bundleKeys, pollIntervalMs: 0, watchDirectories: false });
  assert.ok(watcher.start());
  t.after(() => watcher.close());
  const source = new JwksTrustSource({ bundles: watcher, clock, pollMs: 0 });
  t.after(() => source.close());
  const verifier = new Verifier({ policy: source, replayStore: new MemoryReplayStore(), clock });
  await source.start();
  assert.equal(source.readiness(), undefined);
  const verify = async (key: { kid: string; privateKey: Ed25519PrivateKey }, iatMs = clock.now(), ttlSeconds = 300) => {
    const d = await verifier.verify(makeRequest({ signingKey: key.privateKey, kid: key.kid, issuer: ISSUER, nowMs: iatMs, ttlSeconds }));
    return d.allowed ? 'allowed' : d.reason;
  };
  const known = () => source.status()[0]!.kids ?? [];
  const at = (seconds: number) => clock.set(seconds * 1000);
  assert.equal(await verify(a), 'allowed');

  // Rotation 1: B is published an hour before it signs; the verifier learns it from its cache refresh.
  const b = keyring.rotate();
  clock.advance(301_000);
  await source.refreshDue();
  assert.ok(known().includes(b.kid), 'B is known to the verifier before it signs');
  assert.equal(keyring.signingKey().kid, a.kid);
  at(b.activates_at);
  const bKey = keyring.signingKey();
  assert.equal(bKey.kid, b.kid);
  assert.equal(await verify(bKey), 'allowed', 'the first passport B signs is accepted, no unknown-kid miss');

  // Rotation 2, by the service's own step: C pre-published, B retires when C starts signing.
  at(b.activates_at + 86_400 - 3600);
  const c = keyring.maintain().rotated!;
  clock.advance(301_000);
  await source.refreshDue();
  assert.ok(known().includes(c));
  const switchAt = keyring.timeline().find((e) => e.kid === c)!.activates_at;
  const lastByB = switchAt - 1;
  at(switchAt);
  const cKey = keyring.signingKey();
  assert.equal(cKey.kid, c);
  assert.equal(await verify(cKey), 'allowed');
  // B's last passport (900 s, the longest lifetime) verifies until it expires: B stays published.
  at(switchAt + 899);
  keyring.maintain();
  await source.refreshDue();
  assert.ok(known().includes(b.kid), 'B still published within lifetime + skew');
  assert.equal(await verify(bKey, lastByB * 1000, 900), 'allowed');
  // After its retention B is unpublished; once the verifier refreshes, B is no longer trusted.
  at(switchAt + 930);
  assert.deepEqual(keyring.maintain().removed, [b.kid]);
  clock.advance(301_000);
  await source.refreshDue();
  assert.deepEqual(known(), [c]);
  assert.equal(await verify(bKey), 'unknown_issuer_key', 'a passport from the unpublished key (say, a leaked copy) is refused');
  // The enrolled key stays trusted: pinned keys change only with the trust material.
  assert.equal(await verify(a), 'allowed');
});

test('real processes: trustplane-issuer, `issuer rotate` beside it, verifiers with and without --allow-jwks-fetch', async (t) => {
  const dir = tempDir(t);
  const keyDir = join(dir, 'keys');
  const [port, vport, aport, pport, paport] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
  const issuerUrl = `http://127.0.0.1:${port}`;
  // Enrollment from `trustplane issuer jwks`: pin the first key, name the jwks_uri.
  const enrolled = (JSON.parse((await run('issuer', 'jwks', '--key-dir', keyDir)).stdout) as { keys: { kid: string; x: string }[] }).keys[0]!;
  const tm = {
    version: 'trustplane-trust-material-v1',
    issuers: [{ issuer: issuerUrl, trust_domain: 'example.local', source_type: 'oidc_jwks', jwks_uri: `${issuerUrl}/.well-known/jwks.json`, keys: [{ kid: enrolled.kid, alg: 'EdDSA', public_key_b64url: enrolled.x }] }],
  } as TrustMaterial;
  writeSignedPair(
    dir,
    tm,
    policyBundle((pb) => {
      pb.route_groups[0]!.routes[0]!.allowed_sources = [{ source_type: 'oidc_jwks', issuer: issuerUrl, trust_domain: 'example.local', subject_exact: 'service:orders-client', required_key_binding: 'software' }];
    }),
  );
  const common = ['--bundle', join(dir, 'tm.json'), '--policy-bundle', join(dir, 'pb.json'), '--bundle-signature-public-key', `b=${encodeBase64url(signer.publicKey)}`, '--audit-log', 'off'];
  const iss = await spawnUntil([issuerBin, '--key-dir', keyDir, '--issuer', issuerUrl, '--listen', `127.0.0.1:${port}`, '--prepublish', '1'], 'serving', t);
  // Rotate from another process while the service runs: the service publishes the next key.
  const rotated = await run('issuer', 'rotate', '--key-dir', keyDir, '--prepublish', '1', '--json');
  assert.equal(rotated.code, 0, rotated.stderr);
  const next = JSON.parse(rotated.stdout) as { kid: string; activates_at: number };
  const jwks = (await (await request(`${issuerUrl}/.well-known/jwks.json`)).body.json()) as { keys: { kid: string }[] };
  assert.deepEqual(jwks.keys.map((k) => k.kid), [enrolled.kid, next.kid]);

  const [fetching, pinnedOnly] = await Promise.all([
    spawnUntil([binPath, 'verifier', '--listen', `127.0.0.1:${vport}`, '--admin-listen', `127.0.0.1:${aport}`, '--allow-jwks-fetch', ...common], 'listening on', t),
    spawnUntil([binPath, 'verifier', '--listen', `127.0.0.1:${pport}`, '--admin-listen', `127.0.0.1:${paport}`, ...common], 'listening on', t),
  ]);
  const ready = await request(`http://127.0.0.1:${aport}/readyz`);
  assert.equal(ready.statusCode, 200, await ready.body.text());

  // Wait until the pre-published key signs.
  await new Promise((r) => setTimeout(r, Math.max(0, next.activates_at * 1000 - Date.now() + 20)));
  const current = IssuerKeyring.open(keyDir).signingKey();
  assert.equal(current.kid, next.kid, 'the pre-published key signs now');
  const firstKey = { kid: enrolled.kid, privateKey: parsePrivateKey(readFileSync(join(keyDir, `${enrolled.kid}.key`), 'utf8')) };
  const check = async (verifierPort: number, key: { kid: string; privateKey: Ed25519PrivateKey }) => {
    const p = issuePassport({ signingKey: key.privateKey, kid: key.kid, issuer: issuerUrl, subject: 'service:orders-client', audience: 'orders-api', trustDomain: 'example.local', ttlSeconds: 300 });
    const s = signRequest({ passport: p.token, privateKey: key.privateKey, method: 'GET', url: 'https://orders.example/v1/orders/search', routeId: 'orders.search' });
    const r = await request(`http://127.0.0.1:${verifierPort}/ext_authz/v1/orders/search`, { headers: { ...s.headers, connection: 'close' } });
    const body = await r.body.text();
    return r.statusCode === 200 ? 200 : `${r.statusCode} ${body}`;
  };
  assert.equal(await check(vport, current), 200, 'a passport from the rotated-in key, no bundle change');
  assert.equal(await check(vport, firstKey), 200, 'the retiring key still verifies');
  // Fetching is opt-in: without the flag only the pinned key counts.
  assert.equal(await check(pport, current), '401 {"allowed":false,"reason":"unknown_issuer_key"}');
  assert.equal(await check(pport, firstKey), 200);

  const children = [fetching.child, pinnedOnly.child, iss.child];
  const exits = children.map((c) => new Promise((r) => c.once('exit', r)));
  for (const c of children) c.kill('SIGTERM');
  assert.deepEqual(await Promise.all(exits), [0, 0, 0], 'SIGTERM: graceful exit 0');
  assert.ok(!iss.stderr().includes(readFileSync(join(keyDir, `${next.kid}.key`), 'utf8').trim().slice(0, 43)), 'no key material in the service log');
});
