// The issuer service end to end: in process with an injected clock (a full rotation cycle seen
// by a Verifier on a JwksTrustSource), and as real processes (`trustplane-issuer`, `trustplane
// issuer rotate` beside it, `trustplane verifier` with and without --allow-jwks-fetch).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
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

test('issuer jwks / rotate: an existing key directory only, never a new one; a pending rotation is reported, not repeated; usage errors exit 2', async (t) => {
  const base = tempDir(t);
  const dir = join(base, 'keys');
  // A mistyped --key-dir is an error, not a new issuer identity: only `serve` creates keys.
  for (const verb of ['jwks', 'rotate']) {
    const typo = await run('issuer', verb, '--key-dir', join(base, 'kyes'));
    assert.equal(typo.code, 1, verb);
    assert.equal(typo.stdout, '');
    assert.equal(typo.stderr, `trustplane: issuer_key_dir: cannot open --key-dir ${JSON.stringify(join(base, 'kyes'))}: ${join(base, 'kyes')}: no issuer keys; start \`trustplane issuer serve\` to create the first\n`);
    assert.ok(!existsSync(join(base, 'kyes')), `${verb} created no directory`);
  }
  mkdirSync(dir, { mode: 0o700 });
  assert.equal((await run('issuer', 'rotate', '--key-dir', dir)).code, 1, 'an empty directory: no keys');
  assert.deepEqual(readdirSync(dir), [], 'and none created');

  const service = IssuerKeyring.open(dir); // as `trustplane issuer serve` with the defaults leaves it
  const first = await run('issuer', 'jwks', '--key-dir', dir);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(first.stderr, '');
  const one = JSON.parse(first.stdout) as { keys: { kid: string; kty: string; crv: string; x: string }[] };
  assert.deepEqual(one.keys.map((k) => [k.kid, k.kty, k.crv]), [[service.signingKey().kid, 'OKP', 'Ed25519']]);
  const rotated = await run('issuer', 'rotate', '--key-dir', dir, '--json');
  assert.equal(rotated.code, 0, rotated.stderr);
  assert.equal(rotated.stderr, '');
  const next = JSON.parse(rotated.stdout) as { kid: string; activates_at: number; already_published: boolean };
  assert.equal(next.already_published, false);
  assert.ok(next.activates_at > Date.now() / 1000 + 3000, 'signs an hour later by default');
  const human = await run('issuer', 'rotate', '--key-dir', dir);
  assert.match(human.stdout, new RegExp(`^next key ${next.kid} already published; it signs from \\d{4}-\\S+ \\(no new key created\\)\n$`), 'a pending rotation is reported, not repeated');
  const again = JSON.parse((await run('issuer', 'rotate', '--key-dir', dir, '--json')).stdout) as { kid: string; already_published: boolean };
  assert.deepEqual([again.kid, again.already_published], [next.kid, true]);
  const two = JSON.parse((await run('issuer', 'jwks', '--key-dir', dir)).stdout) as { keys: { kid: string }[] };
  assert.deepEqual(two.keys.map((k) => k.kid), [one.keys[0]!.kid, next.kid]);
  // Nothing printed holds private material.
  const secret = readFileSync(join(dir, `${one.keys[0]!.kid}.key`), 'utf8').trim();
  for (const out of [first.stdout, rotated.stdout, human.stdout]) assert.ok(!out.includes(secret.slice(0, 43)));

  // A key directory that cannot be created: exit 1, unless a flag is wrong first (exit 2).
  writeFileSync(join(base, 'file'), '');
  const nowhere = join(base, 'file', 'keys');
  const usage: [string[], RegExp][] = [
    [['issuer', 'serve', '--key-dir', nowhere, '--issuer', 'https://issuer.acme.example', '--rotate-every', '200', '--prepublish', '200'], /--rotate-every must be longer than --prepublish/],
    [['issuer', 'serve', '--key-dir', nowhere, '--issuer', 'https://issuer.acme.example', '--prepublish', '119'], /^trustplane: --prepublish must be at least 120 s, got 119: verifiers cache the JWKS for at least 60 s, so a shorter window can let the next key sign before they know it\n$/],
    [['issuer', 'rotate', '--key-dir', dir, '--prepublish', '60'], /--prepublish must be at least 120 s, got 60/],
    [['issuer', 'rotate', '--key-dir', dir, '--prepublish', '7200'], /--prepublish 7200 differs from 3600, recorded in .*keyring\.json by `trustplane issuer serve`: leave it out/],
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
  assert.equal((await run('issuer', 'jwks', '--key-dir', dir, '--prepublish', '3600', '--skew', '30')).code, 0, 'flags equal to the recorded settings are fine');
  // A key directory open to group or others: exit 1, naming the fix.
  chmodSync(dir, 0o770);
  const open = await run('issuer', 'jwks', '--key-dir', dir);
  assert.equal(open.code, 1);
  assert.match(open.stderr, /writable by group or others \(mode 0770\): run chmod 700 /);
  chmodSync(dir, 0o700);
  // Key files without keyring.json: exit 1, naming them and the recovery.
  const state = readFileSync(join(dir, 'keyring.json'), 'utf8');
  rmSync(join(dir, 'keyring.json'));
  const lost = await run('issuer', 'jwks', '--key-dir', dir);
  assert.equal(lost.code, 1);
  const keyFiles = [`${one.keys[0]!.kid}.key`, `${next.kid}.key`].sort(); // listed sorted
  assert.ok(lost.stderr.includes(`holds ${keyFiles.join(', ')} but no keyring.json: refusing to create a new key beside them; restore keyring.json from a backup`), lost.stderr);
  // A key directory that cannot be read: exit 1.
  writeFileSync(join(dir, 'keyring.json'), '{');
  const broken = await run('issuer', 'jwks', '--key-dir', dir);
  assert.equal(broken.code, 1);
  assert.match(broken.stderr, /cannot open --key-dir .*not valid JSON/);
  writeFileSync(join(dir, 'keyring.json'), state);
});

test('issuer rotate uses the settings the service recorded: the retiring key stays published for the service\'s lifetime + skew', async (t) => {
  const dir = join(tempDir(t), 'keys');
  const service = IssuerKeyring.open(dir, { maxPassportLifetimeSeconds: 3600 }); // `issuer serve --max-lifetime 3600`
  const first = service.signingKey().kid;
  const refused = await run('issuer', 'rotate', '--key-dir', dir, '--max-lifetime', '900');
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /--max-lifetime 900 differs from 3600, recorded in /);
  const r = await run('issuer', 'rotate', '--key-dir', dir, '--json'); // rotate's own default would be 900
  assert.equal(r.code, 0, r.stderr);
  const next = JSON.parse(r.stdout) as { kid: string; activates_at: number };
  const old = service.timeline().find((e) => e.kid === first)!;
  assert.equal(old.retires_at, next.activates_at);
  assert.equal(old.expires_at, next.activates_at + 3630);
  // A keyring.json written before settings were recorded: jwks reads it, rotate waits for the service to record them.
  const stateFile = join(dir, 'keyring.json');
  const { keys } = JSON.parse(readFileSync(stateFile, 'utf8')) as { keys: unknown[] };
  writeFileSync(stateFile, JSON.stringify({ keys }));
  assert.equal((await run('issuer', 'jwks', '--key-dir', dir)).code, 0);
  const legacy = await run('issuer', 'rotate', '--key-dir', dir);
  assert.equal(legacy.code, 1);
  assert.match(legacy.stderr, /^trustplane: issuer_key_dir: cannot rotate in --key-dir .*keyring\.json records no settings \(written by an older version\): start `trustplane issuer serve` once to record them, then retry\n$/);
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

test('trustplane-issuer on a new directory: creates the first key, records its settings; `issuer rotate` beside it uses them', async (t) => {
  const keyDir = join(tempDir(t), 'keys');
  const port = await freePort();
  const iss = await spawnUntil([issuerBin, '--key-dir', keyDir, '--issuer', `http://127.0.0.1:${port}`, '--listen', `127.0.0.1:${port}`, '--max-lifetime', '3600'], 'serving', t);
  const kid = /had no keys: created the first issuer key (issuer-\d{8}-[A-Za-z0-9_-]{8}) \(signs from now; private key file 0600\)/.exec(iss.stderr())?.[1];
  assert.ok(kid !== undefined, iss.stderr());
  assert.equal(statSync(keyDir).mode & 0o777, 0o700);
  assert.equal(statSync(join(keyDir, `${kid}.key`)).mode & 0o777, 0o600);
  const state = JSON.parse(readFileSync(join(keyDir, 'keyring.json'), 'utf8')) as { settings: unknown };
  assert.deepEqual(state.settings, { rotate_every_seconds: 86_400, prepublish_seconds: 3600, max_passport_lifetime_seconds: 3600, skew_seconds: 30 });
  const r = await run('issuer', 'rotate', '--key-dir', keyDir, '--json');
  assert.equal(r.code, 0, r.stderr);
  const next = JSON.parse(r.stdout) as { kid: string; activates_at: number };
  const timeline = IssuerKeyring.open(keyDir, { create: false }).timeline();
  assert.equal(timeline.find((e) => e.kid === kid)!.expires_at, next.activates_at + 3630, 'the service\'s --max-lifetime, not rotate\'s default');
  const jwks = (await (await request(`http://127.0.0.1:${port}/.well-known/jwks.json`)).body.json()) as { keys: { kid: string }[] };
  assert.deepEqual(jwks.keys.map((k) => k.kid), [kid, next.kid], 'the service publishes the rotation');
  const exit = new Promise((res) => iss.child.once('exit', res));
  iss.child.kill('SIGTERM');
  assert.equal(await exit, 0);
});

test('real processes: trustplane-issuer, a rotation beside it, verifiers with and without --allow-jwks-fetch', async (t) => {
  const dir = tempDir(t);
  const keyDir = join(dir, 'keys');
  const [port, vport, aport, pport, paport] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
  const issuerUrl = `http://127.0.0.1:${port}`;
  // A directory whose first key has signed for 117 s (an injected clock), with the shortest
  // --prepublish the CLI accepts (120 s): a rotation on that clock lets the next key sign 3 s
  // from now, so the test need not wait two minutes. The service runs on real time.
  const settings = { rotateEverySeconds: 86_400, prepublishSeconds: 120, maxPassportLifetimeSeconds: 900, skewSeconds: 30 };
  const beside = IssuerKeyring.open(keyDir, { clock: new ManualClock(Date.now() - 117_000), ...settings });
  const iss = await spawnUntil([issuerBin, '--key-dir', keyDir, '--issuer', issuerUrl, '--listen', `127.0.0.1:${port}`, '--prepublish', '120'], 'serving', t);
  assert.ok(!iss.stderr().includes('had no keys'), 'an existing directory: no new key');
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
  // Rotate from another process (this one) while the service runs: the service publishes the next key.
  const next = beside.rotate();
  // `trustplane issuer rotate` beside them: the pending rotation is reported, not repeated.
  const rotated = await run('issuer', 'rotate', '--key-dir', keyDir, '--json');
  assert.equal(rotated.code, 0, rotated.stderr);
  assert.deepEqual(JSON.parse(rotated.stdout), { kid: next.kid, public_key_b64url: next.public_key_b64url, created_at: next.created_at, activates_at: next.activates_at, already_published: true });
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
  const current = IssuerKeyring.open(keyDir, { create: false }).signingKey();
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
