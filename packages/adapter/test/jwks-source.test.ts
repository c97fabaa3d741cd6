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
import { BROKER_ISSUER, ISSUER, T0, makeRequest, policyBundle, trustMaterial } from '@trustplane/testkit';
import { JwksTrustSource, jwksUriProblem, type JwksTrustSourceEvent, type JwksTrustSourceOptions } from '../src/jwks-source.js';

const signer = privateKeyFromSeed(Buffer.alloc(32, 51));
const fetchedKey = privateKeyFromSeed(Buffer.alloc(32, 52));
const laterKey = privateKeyFromSeed(Buffer.alloc(32, 53));
const jwk = (kid: string, key: typeof fetchedKey) => ({ kty: 'OKP', crv: 'Ed25519', x: encodeBase64url(key.publicKey), kid, alg: 'EdDSA', use: 'sig' });

interface Reply {
  /** 0: never answer (a hung issuer). */
  status: number;
  body: string | Buffer;
  headers: Record<string, string>;
  /** Send the body in pieces without a Content-Length. */
  chunked?: boolean;
}

/** A JWKS endpoint whose answer the test changes; counts hits. */
async function jwksServer(): Promise<{ url: string; hits: () => number; answer: (status: number, body: string | Buffer, headers?: Record<string, string>, chunked?: boolean) => void; close: () => Promise<void> }> {
  let reply: Reply = { status: 200, body: JSON.stringify({ keys: [jwk('fetched-1', fetchedKey)] }), headers: { 'cache-control': 'max-age=120' } };
  let hits = 0;
  const server: Server = createServer((_req, res) => {
    hits++;
    if (reply.status === 0) return;
    if (reply.chunked === true) {
      res.writeHead(reply.status, { 'content-type': 'application/json', ...reply.headers });
      const b = Buffer.from(reply.body);
      for (let i = 0; i < b.length; i += 8192) res.write(b.subarray(i, i + 8192));
      res.end();
      return;
    }
    res.writeHead(reply.status, { 'content-type': 'application/json', ...reply.headers }).end(reply.body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`,
    hits: () => hits,
    answer: (status, body, headers = {}, chunked = false) => (reply = { status, body, headers, chunked }),
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

async function setup(t: { after(fn: () => unknown): void }, extra: Partial<JwksTrustSourceOptions> = {}) {
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
  const source = new JwksTrustSource({ bundles: watcher, clock, pollMs: 0, onEvent: (e) => events.push(e), ...extra });
  t.after(() => source.close());
  const verifier = new Verifier({ policy: source, replayStore: new MemoryReplayStore(), clock });
  let version = 7;
  /** A new bundle pair (trust material `m`, the policy bundle one version up), reloaded. */
  const reloadWith = (m: typeof tm) => {
    version++;
    writeFileSync(path.join(dir, 'tm.json'), JSON.stringify(signDocument(m, signer, { kid: 's', signerIssuer: 'test' })));
    writeFileSync(path.join(dir, 'pb.json'), JSON.stringify(signDocument(policyBundle((b) => (b.policy_version = version)), signer, { kid: 's', signerIssuer: 'test' })));
    assert.equal(watcher.reload(), 'loaded');
  };
  return { jwks, source, verifier, clock, events, reloadWith };
}

const byFetched = (kid = 'fetched-1', key = fetchedKey, nowMs = T0) => makeRequest({ signingKey: key, kid, nowMs });

test('fetched keys are added to the pinned ones: a passport signed by a fetched key is accepted; pinned keys still work', async (t) => {
  const { source, verifier, events } = await setup(t);
  assert.match(source.readiness() ?? '', /no JWKS fetched yet/);
  await source.start();
  assert.equal(source.readiness(), undefined);
  assert.equal(events[0]?.type, 'fetched');
  assert.deepEqual(events[0]?.kids, ['fetched-1']);
  assert.deepEqual(source.status().map((s) => [s.issuer, s.kids]), [[ISSUER, ['fetched-1']]]);
  const d = await verifier.verify(byFetched());
  assert.equal(d.allowed, true, d.allowed ? '' : d.detail);
  if (d.allowed) {
    // Inherits the issuer's issuer, trust domain and source type.
    assert.equal(d.issuer, ISSUER);
    assert.equal(d.trustDomain, 'example.local');
    assert.equal(d.sourceType, 'software_jwks');
  }
  assert.equal((await verifier.verify(makeRequest({ nowMs: T0 }))).allowed, true, 'the pinned key');
  // The compiled policy is reused between requests (no per-request recompile).
  assert.equal(source.current()!.policy, source.current()!.policy);
});

test('cache: max-age honoured within bounds; no recompile when a refresh brings the same keys; a new key set recompiles once', async (t) => {
  const { jwks, source, clock } = await setup(t);
  await source.start();
  const p1 = source.current()!.policy;
  const hits = jwks.hits();
  clock.advance(119_000);
  await source.refreshDue();
  assert.equal(jwks.hits(), hits, 'max-age=120: still fresh');
  clock.advance(1000);
  await source.refreshDue();
  assert.equal(jwks.hits(), hits + 1, 'expired: refetched');
  assert.equal(source.current()!.policy, p1, 'same keys: same compiled policy');
  // max-age below the floor is raised to the minimum (60 s here).
  jwks.answer(200, JSON.stringify({ keys: [jwk('fetched-1', fetchedKey), jwk('later-1', laterKey)] }), { 'cache-control': 'max-age=1' });
  clock.advance(120_000);
  await source.refreshDue();
  const p2 = source.current()!.policy;
  assert.notEqual(p2, p1, 'a new key set: recompiled');
  assert.equal(source.current()!.policy, p2);
  assert.ok(p2.keysByKid.has('later-1'));
  const s = source.status()[0]!;
  assert.equal(s.refreshAtMs - s.fetchedAtMs!, 60_000);
});

test('unknown kid: denied at once, refetch triggered at most once per interval, then accepted', async (t) => {
  const { jwks, source, verifier, clock } = await setup(t);
  await source.start();
  jwks.answer(200, JSON.stringify({ keys: [jwk('fetched-1', fetchedKey), jwk('later-1', laterKey)] }));
  const hitsBefore = jwks.hits();
  // Within the interval after the startup fetch: no refetch yet.
  await verifier.verify(byFetched('later-1', laterKey));
  await source.idle();
  assert.equal(jwks.hits(), hitsBefore, 'rate-limited: the startup fetch was < 30 s ago');
  clock.advance(31_000);
  const d1 = await verifier.verify(byFetched('later-1', laterKey, clock.now()));
  assert.equal(d1.allowed ? 'allowed' : d1.reason, 'unknown_issuer_key', 'verification never waits for a fetch');
  await source.idle();
  assert.equal(jwks.hits(), hitsBefore + 1);
  assert.equal((await verifier.verify(byFetched('later-1', laterKey, clock.now()))).allowed, true);
  // An attacker spraying unknown kids costs at most one fetch per interval.
  for (let i = 0; i < 20; i++) await verifier.verify(byFetched(`bogus-${i}`, laterKey, clock.now()));
  await source.idle();
  assert.equal(jwks.hits(), hitsBefore + 1);
  clock.advance(30_000);
  for (let i = 0; i < 20; i++) await verifier.verify(byFetched(`bogus-${i}`, laterKey, clock.now()));
  await source.idle();
  assert.equal(jwks.hits(), hitsBefore + 2, 'one more after the next interval');
});

test('issuer down or answering garbage: the last good key set keeps serving; each failure is reported', async (t) => {
  const { jwks, source, verifier, clock, events } = await setup(t, { fetchTimeoutMs: 300 });
  await source.start();
  const longKid = 'k'.repeat(257);
  const bad: [string, number, string | Buffer, Record<string, string>?, boolean?][] = [
    ['HTTP 503', 503, 'down'],
    ['a redirect (not followed)', 302, '', { location: 'http://127.0.0.1:1/jwks' }],
    ['not JSON', 200, 'not json'],
    ['not UTF-8', 200, Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])],
    ['a JSON array', 200, '[]'],
    ['duplicate member names', 200, '{"keys":[],"keys":[]}'],
    ['private key material', 200, '{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"a","d":"secret"}]}'],
    ['RSA only (wrong kty)', 200, '{"keys":[{"kty":"RSA","n":"x","e":"AQAB","kid":"r"}]}'],
    ['X25519 only (wrong crv)', 200, JSON.stringify({ keys: [{ ...jwk('x1', laterKey), crv: 'X25519' }] })],
    ['a non-EdDSA alg only', 200, JSON.stringify({ keys: [{ ...jwk('r1', laterKey), alg: 'RS256' }] })],
    ['duplicate kid', 200, JSON.stringify({ keys: [jwk('dup', fetchedKey), jwk('dup', laterKey)] })],
    ['a kid over 256 characters', 200, JSON.stringify({ keys: [jwk(longKid, laterKey)] })],
    ['a non-string kid', 200, JSON.stringify({ keys: [{ ...jwk('n', laterKey), kid: 7 }] })],
    ['an x that is not 32 bytes', 200, JSON.stringify({ keys: [{ ...jwk('short', laterKey), x: 'AAAA' }] })],
    ['a small-order key', 200, JSON.stringify({ keys: [{ ...jwk('zero', laterKey), x: encodeBase64url(Buffer.concat([Buffer.from([1]), Buffer.alloc(31)])) }] })],
    ['oversized (Content-Length)', 200, JSON.stringify({ keys: [jwk('fetched-1', fetchedKey)], pad: 'x'.repeat(70 * 1024) })],
    ['oversized (chunked)', 200, JSON.stringify({ keys: [jwk('fetched-1', fetchedKey)], pad: 'x'.repeat(70 * 1024) }), {}, true],
    ['a hung issuer (timeout)', 0, ''],
  ];
  for (const [what, status, body, headers, chunked] of bad) {
    jwks.answer(status, body, headers, chunked);
    clock.advance(121_000);
    await source.refreshDue();
    assert.equal(events.at(-1)?.type, 'fetch_failed', what);
    assert.match(events.at(-1)!.detail, /keeping the last good key set/, what);
    assert.deepEqual(source.status()[0]!.kids, ['fetched-1'], what);
    const d = await verifier.verify(byFetched('fetched-1', fetchedKey, clock.now()));
    assert.equal(d.allowed, true, `still trusted after: ${what}`);
  }
  assert.equal(source.readiness(), undefined, 'ready: it has a key set');
  assert.ok(!events.some((e) => e.detail.includes('secret')), 'no JWKS content is echoed into events');
  // A failure is retried after the refetch interval, not at once.
  jwks.answer(200, JSON.stringify({ keys: [jwk('fetched-1', fetchedKey), jwk('later-1', laterKey)] }), { 'cache-control': 'max-age=120' });
  const hits = jwks.hits();
  await source.refreshDue();
  assert.equal(jwks.hits(), hits);
  clock.advance(30_000);
  await source.refreshDue();
  assert.equal(events.at(-1)?.type, 'fetched');
  assert.deepEqual(source.status()[0]!.kids, ['fetched-1', 'later-1']);
});

test('the last good key set serves at most maxStaleSeconds without a successful fetch; then its keys are dropped until one succeeds', async (t) => {
  const { jwks, source, verifier, clock, events } = await setup(t, { maxStaleSeconds: 3600 });
  await source.start();
  jwks.answer(503, 'down');
  // Failures for just under an hour: still trusted.
  clock.advance(3_500_000);
  await source.refreshDue();
  assert.equal(events.at(-1)?.type, 'fetch_failed');
  assert.equal((await verifier.verify(byFetched('fetched-1', fetchedKey, clock.now()))).allowed, true);
  // Past it: the fetched keys are dropped; pinned keys still verify; readiness is unaffected.
  clock.advance(200_000);
  await source.refreshDue();
  assert.equal(events.at(-1)?.type, 'keys_expired');
  assert.match(events.at(-1)!.detail, /HTTP 503; no successful fetch for 3700 s: its fetched keys are dropped/);
  assert.equal(source.status()[0]!.kids, undefined);
  const d = await verifier.verify(byFetched('fetched-1', fetchedKey, clock.now()));
  assert.equal(d.allowed, false);
  assert.equal(d.allowed ? '' : d.reason, 'unknown_issuer_key');
  assert.equal((await verifier.verify(makeRequest({ nowMs: clock.now() }))).allowed, true, 'the pinned key');
  assert.equal(source.readiness(), undefined);
  // Retried at the refetch interval; the next successful fetch brings the keys back.
  jwks.answer(200, JSON.stringify({ keys: [jwk('fetched-1', fetchedKey)] }), { 'cache-control': 'max-age=120' });
  clock.advance(30_000);
  await source.refreshDue();
  assert.equal(events.at(-1)?.type, 'fetched');
  assert.equal((await verifier.verify(byFetched('fetched-1', fetchedKey, clock.now()))).allowed, true);
});

test('a fetched kid may not replace or move a pinned key (this issuer\'s or another\'s)', async (t) => {
  const { jwks, source, verifier, events } = await setup(t);
  // The issuer's JWKS claims this issuer's pinned kid and the broker issuer's pinned kid with other keys.
  jwks.answer(200, JSON.stringify({ keys: [jwk('client-key-1', laterKey), jwk('broker-key-1', laterKey), jwk('fetched-1', fetchedKey)] }));
  await source.start();
  for (const kid of ['client-key-1', 'broker-key-1']) {
    const d = await verifier.verify(makeRequest({ signingKey: laterKey, kid, nowMs: T0 }));
    assert.equal(d.allowed, false, kid);
    assert.ok(events.some((e) => e.type === 'key_refused' && e.detail.includes(kid)), kid);
  }
  // The rest of the set is still used.
  assert.equal((await verifier.verify(byFetched())).allowed, true);
});

test('a fetched kid stays with the issuer that published it first, while it keeps publishing it', async (t) => {
  const { jwks, source, verifier, clock, events, reloadWith } = await setup(t);
  const second = await jwksServer();
  t.after(() => second.close());
  const secondKey = privateKeyFromSeed(Buffer.alloc(32, 54));
  second.answer(200, JSON.stringify({ keys: [jwk('shared-kid', secondKey)] }), { 'cache-control': 'max-age=60' });
  const tm = trustMaterial();
  tm.issuers[0]!.jwks_uri = jwks.url;
  tm.issuers[1]!.jwks_uri = second.url;
  reloadWith(tm);
  await source.start();
  assert.deepEqual(source.status().map((s) => [s.issuer, s.kids]), [[ISSUER, ['fetched-1']], [BROKER_ISSUER, ['shared-kid']]]);
  // The first issuer in the trust material now publishes the same kid with a key of its own.
  jwks.answer(200, JSON.stringify({ keys: [jwk('fetched-1', fetchedKey), jwk('shared-kid', laterKey)] }), { 'cache-control': 'max-age=60' });
  clock.advance(121_000);
  await source.refreshDue();
  assert.deepEqual(source.status()[0]!.kids, ['fetched-1', 'shared-kid']);
  const takeover = await verifier.verify(makeRequest({ signingKey: laterKey, kid: 'shared-kid', nowMs: clock.now() }));
  assert.equal(takeover.allowed, false, 'the kid stayed with the issuer that published it first');
  assert.ok(events.some((e) => e.type === 'key_refused' && e.issuer === ISSUER && e.detail.includes('shared-kid')));
  assert.equal((await verifier.verify(byFetched('fetched-1', fetchedKey, clock.now()))).allowed, true);
  // Once the first publisher drops it, the kid is free for the other issuer.
  second.answer(200, JSON.stringify({ keys: [jwk('other-kid', secondKey)] }), { 'cache-control': 'max-age=60' });
  clock.advance(121_000);
  await source.refreshDue();
  assert.equal((await verifier.verify(makeRequest({ signingKey: laterKey, kid: 'shared-kid', nowMs: clock.now() }))).allowed, true);
});

test('readiness fails until the first fetch succeeds; a bundle that drops jwks_uri stops fetching', async (t) => {
  const { jwks, source, verifier, reloadWith, clock } = await setup(t);
  jwks.answer(500, 'no');
  await source.start();
  assert.match(source.readiness() ?? '', /^no JWKS fetched yet for https:\/\/issuer\.example\/software-jwks \(jwks_fetch_failed: HTTP 500\)/);
  // Pinned keys serve meanwhile.
  assert.equal((await verifier.verify(makeRequest({ nowMs: T0 }))).allowed, true);
  assert.equal((await verifier.verify(byFetched())).allowed, false);
  jwks.answer(200, JSON.stringify({ keys: [jwk('fetched-1', fetchedKey)] }));
  clock.advance(30_000);
  await source.refreshDue();
  assert.equal(source.readiness(), undefined);
  assert.equal((await verifier.verify(byFetched('fetched-1', fetchedKey, clock.now()))).allowed, true);
  // The trust material is updated without a jwks_uri: fetched keys stop counting at once.
  reloadWith(trustMaterial());
  assert.deepEqual(source.status(), []);
  assert.equal(source.readiness(), undefined);
  const d = await verifier.verify(byFetched('fetched-1', fetchedKey, clock.now()));
  assert.equal(d.allowed ? 'allowed' : d.reason, 'unknown_issuer_key');
});

test('jwks_uri: https, or http on loopback only; never credentials; refused URIs are never fetched', async (t) => {
  assert.equal(jwksUriProblem('https://issuer.example/jwks'), undefined);
  assert.equal(jwksUriProblem('http://127.0.0.1:8443/jwks'), undefined);
  assert.equal(jwksUriProblem('http://[::1]:8443/jwks'), undefined);
  assert.equal(jwksUriProblem('http://localhost:8443/jwks'), undefined);
  assert.match(jwksUriProblem('http://issuer.example/jwks') ?? '', /must be https/);
  assert.match(jwksUriProblem('http://10.0.0.1/jwks') ?? '', /must be https/);
  assert.match(jwksUriProblem('https://u:p@issuer.example/jwks') ?? '', /credentials/);
  assert.match(jwksUriProblem('file:///etc/passwd') ?? '', /must be https/);
  assert.match(jwksUriProblem('not a url') ?? '', /not a URL/);

  const { source, reloadWith, events } = await setup(t);
  const tm = trustMaterial();
  tm.issuers[0]!.jwks_uri = 'http://issuer.example/.well-known/jwks.json';
  reloadWith(tm);
  await source.start();
  assert.match(source.readiness() ?? '', /jwks_uri_refused/);
  assert.ok(events.some((e) => e.type === 'fetch_failed' && /must be https/.test(e.detail)));
});
