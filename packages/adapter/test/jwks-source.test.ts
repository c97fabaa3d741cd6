// JwksTrustSource against a real JWKS endpoint on loopback HTTP and a real BundleWatcher on
// signed files; time (cache expiry, refetch rate limit) through an injected clock.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { BundleWatcher, ManualClock, MemoryReplayStore, Verifier, encodeBase64url, parsePublicKey, privateKeyFromSeed, signDocument } from '@trustplane/core';
import { ISSUER, T0, makeRequest, policyBundle, trustMaterial } from '@trustplane/testkit';
import { JwksTrustSource, jwksUriProblem, type JwksTrustSourceEvent } from '../src/jwks-source.js';

const signer = privateKeyFromSeed(Buffer.alloc(32, 51));
const fetchedKey = privateKeyFromSeed(Buffer.alloc(32, 52));
const laterKey = privateKeyFromSeed(Buffer.alloc(32, 53));
const jwk = (kid: string, key: typeof fetchedKey) => ({ kty: 'OKP', crv: 'Ed25519', x: encodeBase64url(key.publicKey), kid, alg: 'EdDSA', use: 'sig' });

/** A JWKS endpoint whose answer the test changes; counts hits. */
async function jwksServer(): Promise<{ url: string; hits: () => number; answer: (status: number, body: string, headers?: Record<string, string>) => void; close: () => Promise<void> }> {
  let reply = { status: 200, body: JSON.stringify({ keys: [jwk('fetched-1', fetchedKey)] }), headers: { 'cache-control': 'max-age=120' } as Record<string, string> };
  let hits = 0;
  const server: Server = createServer((_req, res) => {
    hits++;
    res.writeHead(reply.status, { 'content-type': 'application/json', ...reply.headers }).end(reply.body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`,
    hits: () => hits,
    answer: (status, body, headers = {}) => (reply = { status, body, headers }),
    close: () => new Promise((r) => server.close(() => r())),
  };
}

async function setup(t: { after(fn: () => unknown): void }) {
  const dir = mkdtempSync(path.join(tmpdir(), 'tp-jwks-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const jwks = await jwksServer();
  t.after(() => jwks.close());
  const tm = trustMaterial();
  tm.issuers[0]!.jwks_uri = jwks.url;
  writeFileSync(path.join(dir, 'tm.json'), JSON.stringify(signDocument(tm, signer, { kid: 's', signerIssuer: 'test' })));
  writeFileSync(path.join(dir, 'pb.json'), JSON.stringify(signDocument(policyBundle(), signer, { kid: 's', signerIssuer: 'test' })));
  const keys = new Map([['s', parsePublicKey(encodeBase64url(signer.publicKey))]]);
  const watcher = new BundleWatcher({ trustMaterialFile: path.join(dir, 'tm.json'), policyBundleFile: path.join(dir, 'pb.json'), trustMaterialKeys: keys, policyBundleKeys: keys, pollIntervalMs: 0, watchDirectories: false });
  assert.ok(watcher.start());
  t.after(() => watcher.close());
  const clock = new ManualClock(T0);
  const events: JwksTrustSourceEvent[] = [];
  const source = new JwksTrustSource({ bundles: watcher, clock, pollMs: 0, onEvent: (e) => events.push(e) });
  t.after(() => source.close());
  const verifier = new Verifier({ policy: source, replayStore: new MemoryReplayStore(), clock });
  return { jwks, source, verifier, clock, events };
}

const byFetched = (kid = 'fetched-1', key = fetchedKey) => makeRequest({ signingKey: key, kid, nowMs: T0 });

test('fetched keys are added to the pinned ones: a passport signed by a fetched key is accepted; pinned keys still work', async (t) => {
  const { source, verifier, events } = await setup(t);
  assert.match(source.readiness() ?? '', /no JWKS fetched yet/);
  await source.start();
  assert.equal(source.readiness(), undefined);
  assert.equal(events[0]?.type, 'fetched');
  assert.deepEqual(events[0]?.kids, ['fetched-1']);
  const d = await verifier.verify(byFetched());
  assert.equal(d.allowed, true, d.allowed ? '' : d.detail);
  assert.equal((await verifier.verify(makeRequest({ nowMs: T0 }))).allowed, true, 'the pinned key');
  // The compiled policy is reused between requests (no per-request recompile).
  assert.equal(source.current()!.policy, source.current()!.policy);
});

test('unknown kid: denied at once, refetch triggered at most once per interval, then accepted', async (t) => {
  const { jwks, source, verifier, clock } = await setup(t);
  await source.start();
  jwks.answer(200, JSON.stringify({ keys: [jwk('fetched-1', fetchedKey), jwk('later-1', laterKey)] }));
  const hitsBefore = jwks.hits();
  clock.advance(31_000);
  const d1 = await verifier.verify(byFetched('later-1', laterKey));
  assert.equal(d1.allowed ? 'allowed' : d1.reason, 'unknown_issuer_key', 'verification never waits for a fetch');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(jwks.hits(), hitsBefore + 1);
  assert.equal((await verifier.verify(byFetched('later-1', laterKey))).allowed, true);
  // An attacker spraying unknown kids costs at most one fetch per interval.
  for (let i = 0; i < 20; i++) await verifier.verify(byFetched(`bogus-${i}`, laterKey));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(jwks.hits(), hitsBefore + 1);
});

test('issuer down or answering garbage: the last good key set keeps serving; each failure is reported', async (t) => {
  const { jwks, source, verifier, clock, events } = await setup(t);
  await source.start();
  const bad: [number, string, Record<string, string>?][] = [
    [503, 'down'],
    [200, 'not json'],
    [200, '{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"a","d":"secret"}]}'],
    [200, '{"keys":[{"kty":"RSA","n":"x","e":"AQAB","kid":"r"}]}'],
    [200, '{"keys":[],"keys":[]}'],
    [200, JSON.stringify({ keys: [jwk('fetched-1', fetchedKey)], pad: 'x'.repeat(70 * 1024) })],
  ];
  for (const [status, body, headers] of bad) {
    jwks.answer(status, body, headers);
    clock.advance(121_000);
    source.onUnknownKid('x');
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(events.at(-1)?.type, 'fetch_failed', body.slice(0, 40));
    assert.match(events.at(-1)!.detail, /keeping the last good key set/);
    assert.equal((await verifier.verify(makeRequest({ signingKey: fetchedKey, kid: 'fetched-1', nowMs: clock.now() }))).allowed, true, `still trusted after: ${body.slice(0, 40)}`);
  }
  assert.equal(source.readiness(), undefined, 'ready: it has a key set');
});

test('a fetched kid may not replace a pinned key; readiness fails when the first fetch fails; only https or loopback http', async (t) => {
  const { jwks, source, verifier, events } = await setup(t);
  // The issuer's JWKS claims the pinned kid with another key.
  jwks.answer(200, JSON.stringify({ keys: [jwk('client-key-1', laterKey)] }));
  await source.start();
  assert.equal((await verifier.verify(makeRequest({ signingKey: laterKey, kid: 'client-key-1', nowMs: T0 }))).allowed ? 'allowed' : 'denied', 'denied');
  assert.ok(events.some((e) => e.type === 'key_refused' && /client-key-1/.test(e.detail)));

  const t2 = await setup(t);
  t2.jwks.answer(500, 'no');
  await t2.source.start();
  assert.match(t2.source.readiness() ?? '', new RegExp(`no JWKS fetched yet for ${ISSUER.replace(/[/.]/g, '\\$&')} \\(jwks_fetch_failed|HTTP 500`));

  assert.equal(jwksUriProblem('https://issuer.example/jwks'), undefined);
  assert.equal(jwksUriProblem('http://127.0.0.1:8443/jwks'), undefined);
  assert.match(jwksUriProblem('http://issuer.example/jwks') ?? '', /must be https/);
  assert.match(jwksUriProblem('https://u:p@issuer.example/jwks') ?? '', /credentials/);
  assert.match(jwksUriProblem('file:///etc/passwd') ?? '', /must be https/);
});
