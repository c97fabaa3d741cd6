// The issuer service over real loopback HTTP: JWKS, discovery, cache headers, errors, rotation.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { request } from 'undici';
import { ManualClock, encodeBase64url, formatPrivateKey, generatePrivateKey } from '@trustplane/core';
import { IssuerKeyring, issuerUrlProblem, jwksMaxAgeSeconds, startIssuer, type IssuerServerOptions } from '../src/index.js';

const T = 1_800_000_000_000;

function keyring(t: { after(fn: () => void): void }, clock = new ManualClock(T), prepublishSeconds = 3600): IssuerKeyring {
  const d = mkdtempSync(path.join(tmpdir(), 'tp-issuer-srv-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return IssuerKeyring.open(path.join(d, 'keys'), { clock, prepublishSeconds });
}

async function serve(t: { after(fn: () => Promise<void>): void }, opts: Omit<IssuerServerOptions, 'listen'>) {
  const svc = await startIssuer({ listen: { host: '127.0.0.1', port: 0 }, maintainEveryMs: 0, ...opts });
  t.after(() => svc.close());
  return svc;
}

async function get(url: string, method = 'GET') {
  const r = await request(url, { method });
  return { status: r.statusCode, headers: r.headers, text: await r.body.text() };
}

test('GET /.well-known/jwks.json and /.well-known/openid-configuration: the published keys, honest discovery, cache headers', async (t) => {
  const k = keyring(t);
  const next = k.rotate();
  const svc = await serve(t, { issuer: 'https://issuer.acme.example', keyring: k });
  const jwks = await get(`${svc.url}/.well-known/jwks.json`);
  assert.equal(jwks.status, 200);
  assert.equal(jwks.headers['content-type'], 'application/json');
  assert.equal(jwks.headers['cache-control'], 'public, max-age=300');
  const doc = JSON.parse(jwks.text) as { keys: Record<string, string>[] };
  assert.deepEqual(doc.keys.map((x) => x['kid']), [k.signingKey().kid, next.kid], 'the next key is pre-published');
  assert.deepEqual(doc.keys[0], { kty: 'OKP', crv: 'Ed25519', x: encodeBase64url(k.signingKey().privateKey.publicKey), kid: k.signingKey().kid, alg: 'EdDSA', use: 'sig' });
  // No private material anywhere the service answers.
  const secrets = readdirSync(k.dir).filter((f) => f.endsWith('.key')).map((f) => readFileSync(path.join(k.dir, f), 'utf8').trim());
  const seed = encodeBase64url(k.signingKey().privateKey.seed);
  const disc = await get(`${svc.url}/.well-known/openid-configuration`);
  const health = await get(`${svc.url}/healthz`);
  for (const body of [jwks.text, disc.text, health.text]) {
    assert.ok(!body.includes(seed));
    for (const s of secrets) assert.ok(!body.includes(s.slice(0, 43)));
  }
  assert.equal(disc.status, 200);
  assert.deepEqual(JSON.parse(disc.text), {
    issuer: 'https://issuer.acme.example',
    jwks_uri: 'https://issuer.acme.example/.well-known/jwks.json',
    id_token_signing_alg_values_supported: ['EdDSA'],
    response_types_supported: [],
    subject_types_supported: ['public'],
  });
  assert.equal(svc.jwksUri, 'https://issuer.acme.example/.well-known/jwks.json');
  assert.deepEqual(JSON.parse(health.text), { status: 'ok', signing_kid: k.signingKey().kid });
  assert.equal(health.headers['cache-control'], 'no-store');
  const head = await get(`${svc.url}/.well-known/jwks.json`, 'HEAD');
  assert.equal(head.status, 200);
  assert.equal(head.text, '');
});

test('404 JSON for unknown paths, 405 for other methods; request bytes are never echoed', async (t) => {
  const svc = await serve(t, { issuer: 'http://127.0.0.1:1', keyring: keyring(t) });
  for (const p of ['/', '/keys', '/.well-known/jwks.json.bak', '/.well-known/%3Cscript%3E']) {
    const r = await get(`${svc.url}${p}`);
    assert.equal(r.status, 404, p);
    assert.deepEqual(JSON.parse(r.text), { error: 'not_found' });
  }
  for (const m of ['POST', 'PUT', 'DELETE', 'OPTIONS']) {
    const r = await get(`${svc.url}/.well-known/jwks.json`, m);
    assert.equal(r.status, 405, m);
    assert.equal(r.headers['allow'], 'GET, HEAD');
    assert.deepEqual(JSON.parse(r.text), { error: 'method_not_allowed' });
  }
  // The query string is ignored.
  assert.equal((await get(`${svc.url}/.well-known/jwks.json?x=1`)).status, 200);
});

test('an issuer or public URL with a path: jwks_uri under it, served with or without the prefix', async (t) => {
  const svc = await serve(t, { issuer: 'https://idp.acme.example/tenants/a', publicUrl: 'https://keys.acme.example/a/', keyring: keyring(t) });
  assert.equal(svc.jwksUri, 'https://keys.acme.example/a/.well-known/jwks.json');
  assert.equal((await get(`${svc.url}/a/.well-known/jwks.json`)).status, 200);
  assert.equal((await get(`${svc.url}/.well-known/jwks.json`)).status, 200);
  const disc = JSON.parse((await get(`${svc.url}/a/.well-known/openid-configuration`)).text) as Record<string, unknown>;
  assert.equal(disc['issuer'], 'https://idp.acme.example/tenants/a');
  assert.equal(disc['jwks_uri'], 'https://keys.acme.example/a/.well-known/jwks.json');
});

test('issuer URLs: https, or http on loopback; no credentials, query or fragment', async (t) => {
  assert.equal(issuerUrlProblem('https://issuer.acme.example'), undefined);
  assert.equal(issuerUrlProblem('http://127.0.0.1:8443'), undefined);
  assert.equal(issuerUrlProblem('http://localhost:8443'), undefined);
  assert.equal(issuerUrlProblem('http://[::1]:8443'), undefined);
  assert.match(issuerUrlProblem('http://issuer.acme.example') ?? '', /must be https/);
  assert.match(issuerUrlProblem('https://u:p@issuer.acme.example') ?? '', /credentials/);
  assert.match(issuerUrlProblem('https://issuer.acme.example/?a=1') ?? '', /query/);
  assert.match(issuerUrlProblem('issuer') ?? '', /not a URL/);
  const k = keyring(t);
  await assert.rejects(startIssuer({ listen: { host: '127.0.0.1', port: 0 }, issuer: 'http://issuer.acme.example', keyring: k }), /issuer .* must be https/);
  await assert.rejects(startIssuer({ listen: { host: '127.0.0.1', port: 0 }, issuer: 'https://issuer.acme.example', publicUrl: 'ftp://x', keyring: k }), /publicUrl/);
});

test('max-age never exceeds half the pre-publication window', (t) => {
  assert.equal(jwksMaxAgeSeconds(keyring(t, new ManualClock(T), 3600)), 300);
  assert.equal(jwksMaxAgeSeconds(keyring(t, new ManualClock(T), 120)), 60);
  assert.equal(jwksMaxAgeSeconds(keyring(t, new ManualClock(T), 0)), 0);
});

test('the service runs the rotation step: at start and on its timer; the JWKS follows; close is graceful', async (t) => {
  const clock = new ManualClock(T);
  const k = keyring(t, clock);
  const first = k.signingKey().kid;
  clock.advance((86_400 - 3600) * 1000);
  const logs: string[] = [];
  const svc = await startIssuer({ listen: { host: '127.0.0.1', port: 0 }, issuer: 'https://issuer.acme.example', keyring: k, maintainEveryMs: 20, onLog: (_l, msg, f) => logs.push(`${msg} ${JSON.stringify(f)}`) });
  t.after(() => svc.close()); // a failed assertion must not leave the server (and this run) hanging
  const kids = async () => (JSON.parse((await get(`${svc.url}/.well-known/jwks.json`)).text) as { keys: { kid: string }[] }).keys.map((x) => x.kid);
  const [, next] = await kids();
  assert.ok(next !== undefined && next !== first, 'rotated at start: the next key is published');
  assert.match(logs[0] ?? '', /issuer key created/);
  // Past the switch and the retention: the timer unpublishes the old key.
  clock.advance((3600 + 930) * 1000);
  // The 20 ms maintenance timer runs on its own schedule: poll until its pass has finished (the
  // JWKS changes before the key file is deleted and the pass logged; a loaded machine delays it).
  const unpublished = () => logs.some((l) => l.includes('unpublished and deleted') && l.includes(first));
  for (const deadline = Date.now() + 5000; !unpublished() && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(await kids(), [next]);
  assert.ok(unpublished(), 'the old key was unpublished and deleted');
  assert.ok(!logs.some((l) => /[A-Za-z0-9_-]{86}/.test(l)), 'no key material in logs');
  await svc.close();
  await svc.close();
  await assert.rejects(request(`${svc.url}/healthz`));
});

test('the service never waits for the key directory lock: a held lock skips the step, requests are answered, the next step retries', async (t) => {
  const clock = new ManualClock(T);
  const k = keyring(t, clock);
  clock.advance((86_400 - 3600) * 1000); // a rotation is due
  // A key file no entry names, older than the timeline: kept, and reported once.
  const unnamed = `issuer-20270115-${encodeBase64url(generatePrivateKey().publicKey).slice(0, 8)}.key`;
  writeFileSync(path.join(k.dir, unnamed), `${formatPrivateKey(generatePrivateKey())}\n`, { mode: 0o600 });
  const earlier = new Date(Date.now() - 60_000);
  utimesSync(path.join(k.dir, unnamed), earlier, earlier);
  // `trustplane issuer rotate` holds the lock (fresh: not taken over as stale).
  const lock = path.join(k.dir, 'keyring.lock');
  writeFileSync(lock, '4242 0123456789abcdef\n');
  const logs: { level: string; msg: string; fields?: Record<string, unknown> }[] = [];
  const started = Date.now();
  const svc = await startIssuer({ listen: { host: '127.0.0.1', port: 0 }, issuer: 'https://issuer.acme.example', keyring: k, maintainEveryMs: 20, onLog: (level, msg, fields) => logs.push({ level, msg, ...(fields !== undefined ? { fields } : {}) }) });
  t.after(() => svc.close());
  assert.ok(Date.now() - started < 1500, 'startup did not wait for the lock (it used to, ~2 s)');
  const jwks = await get(`${svc.url}/.well-known/jwks.json`);
  assert.equal(jwks.status, 200);
  assert.equal((JSON.parse(jwks.text) as { keys: unknown[] }).keys.length, 1, 'nothing rotated while the lock is held');
  assert.match(logs[0]?.msg ?? '', /^issuer key maintenance skipped: another process holds the key directory lock/);
  assert.equal(logs[0]?.level, 'info');
  // The other process releases it: a later step does the work.
  rmSync(lock);
  const created = () => logs.some((l) => l.msg === 'issuer key created');
  for (const deadline = Date.now() + 5000; !created() && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
  assert.ok(created(), 'the rotation ran once the lock was free');
  await new Promise((r) => setTimeout(r, 100)); // a few more steps
  assert.ok(!logs.some((l) => l.level === 'error'), JSON.stringify(logs.filter((l) => l.level === 'error')));
  const kept = logs.filter((l) => l.level === 'warn');
  assert.equal(kept.length, 1, 'an unnamed key file is reported once, not at every step');
  assert.deepEqual(kept[0]!.fields?.['files'], [unnamed]);
  assert.ok(readdirSync(k.dir).includes(unnamed), 'and kept');
});
