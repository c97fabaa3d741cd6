/**
 * WorkloadApiX509Source against the development Workload API endpoint (standing in for a SPIRE agent) that speaks the real Workload API over gRPC on
 * a real Unix socket (testkit/spiffe.ts), with real certificates and an injected clock.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import {
  createTestCa,
  createTestSvid,
  startDevWorkloadApi,
  tempSocketDir,
  type DevWorkloadApi,
  type DevX509SvidResponse,
  type TestCert,
  type TestSvid,
} from '../src/spiffe/dev-agent.js';
import {
  parseWorkloadApiSocket,
  WorkloadApiX509Source,
  WORKLOAD_API_PROTO_PATH,
  type SvidStatus,
  type WorkloadApiX509SourceOptions,
} from '../src/spiffe/index.js';

type SourceEvent = Parameters<NonNullable<WorkloadApiX509SourceOptions['onEvent']>>[0];

const TD = 'acme.example';
const ID = 'spiffe://acme.example/ns/prod/sa/orders';
const SEC = 1000;
const HOUR = 3600 * SEC;
const T0 = Math.floor(Date.now() / SEC) * SEC;
const at = (ms: number): Date => new Date(T0 + ms);

const root = await createTestCa({ trustDomain: TD, notBefore: at(-24 * HOUR), notAfter: at(24 * HOUR) });
const inter = await createTestCa({ trustDomain: TD, issuer: root, notBefore: at(-12 * HOUR), notAfter: at(12 * HOUR) });
const svid = (spiffeId = ID, issuer: TestCert = inter, notAfterMs = HOUR): Promise<TestSvid> =>
  createTestSvid({ issuer, spiffeId, notBefore: at(-60 * SEC), notAfter: at(notAfterMs) });
const leafA = await svid();
const leafB = await svid();

function response(leaf: TestSvid, spiffeId = ID, extra: Partial<DevX509SvidResponse> = {}): DevX509SvidResponse {
  return { svids: [{ spiffeId, chain: [leaf, inter], bundle: [root] }], ...extra };
}

const fp = (c: TestCert): string => `sha256:${createHash('sha256').update(c.der).digest('hex')}`;

async function waitFor(what: string, cond: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface Harness {
  agent: DevWorkloadApi;
  source: WorkloadApiX509Source;
  events: SourceEvent[];
  clock: { ms: number };
  count(type: SourceEvent['type']): number;
}

/** A development agent with `initial`, and a source on its socket with short backoffs. */
async function start(initial?: DevX509SvidResponse, opts: Partial<WorkloadApiX509SourceOptions> = {}): Promise<Harness & AsyncDisposable> {
  const agent = await startDevWorkloadApi(initial === undefined ? {} : { initial });
  const events: SourceEvent[] = [];
  const clock = { ms: T0 };
  const source = new WorkloadApiX509Source({
    socketPath: agent.socketPath,
    trustDomain: TD,
    now: () => clock.ms,
    reconnectMinMs: 20,
    reconnectMaxMs: 80,
    onEvent: (e) => events.push(e),
    ...opts,
  });
  return {
    agent,
    source,
    events,
    clock,
    count: (type) => events.filter((e) => e.type === type).length,
    async [Symbol.asyncDispose]() {
      await source.close();
      await agent.stop();
    },
  };
}

function assertOk(s: SvidStatus, leaf: TestCert): void {
  assert.ok(s.ok, s.ok ? '' : `${s.code}: ${s.detail}`);
  assert.equal(s.identity.fingerprintSha256, fp(leaf));
}

function assertFails(s: SvidStatus, code: string): void {
  assert.equal(s.ok, false, `expected ${code}, got ok`);
  if (!s.ok) assert.equal(s.code, code, s.detail);
}

test('a valid SVID from the agent: ok, identity right, and the request carried workload.spiffe.io', async () => {
  await using h = await start(response(leafA));
  const s = await h.source.ready(2000);
  assert.ok(s.ok, s.ok ? '' : s.detail);
  assert.deepEqual(s.identity, {
    spiffeId: ID,
    trustDomain: TD,
    notBeforeMs: T0 - 60 * SEC,
    notAfterMs: T0 + HOUR,
    serialNumber: leafA.serialHex,
    fingerprintSha256: fp(leafA),
  });
  assert.equal(h.agent.calls.length, 1);
  assert.equal(h.agent.calls[0]?.metadata['workload.spiffe.io'], 'true');
  assert.equal(h.agent.calls[0]?.refused, false);
  assert.deepEqual(h.events.map((e) => e.type), ['svid_updated']);
  assert.equal(h.events[0]?.identity?.spiffeId, ID);
});

test('the development agent refuses a call without workload.spiffe.io, as SPIRE does', async () => {
  const agent = await startDevWorkloadApi();
  try {
    const def = protoLoader.loadSync(WORKLOAD_API_PROTO_PATH, { keepCase: true, defaults: true });
    const Ctor = grpc.loadPackageDefinition(def)['SpiffeWorkloadAPI'] as grpc.ServiceClientConstructor;
    const client = new Ctor(`unix:${agent.socketPath}`, grpc.credentials.createInsecure());
    const err = await new Promise<grpc.ServiceError>((resolve, reject) => {
      const call = (client['FetchX509SVID'] as (req: object, md: grpc.Metadata) => grpc.ClientReadableStream<unknown>)({}, new grpc.Metadata());
      call.on('data', () => reject(new Error('data without the header')));
      call.on('error', resolve);
    });
    client.close();
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(err.details, 'security header missing from request');
    assert.equal(agent.calls[0]?.refused, true);
    assert.equal(agent.calls[0]?.metadata['workload.spiffe.io'], undefined);
  } finally {
    await agent.stop();
  }
});

test('spiffe_id field that differs from the certificate URI SAN is rejected', async () => {
  await using h = await start(response(leafA, 'spiffe://acme.example/ns/prod/sa/billing'));
  assertFails(await h.source.ready(2000), 'svid_spiffe_id_invalid');
  assert.deepEqual(h.events.map((e) => e.type), ['svid_rejected']);
});

test('wrong trust domain and selector mismatch through the agent', async () => {
  const foreign = await svid('spiffe://other.example/ns/prod/sa/orders');
  {
    await using h = await start(response(foreign, 'spiffe://other.example/ns/prod/sa/orders'));
    assertFails(await h.source.ready(2000), 'svid_trust_domain_mismatch');
  }
  {
    await using h = await start(response(leafA), { selector: { exact: 'spiffe://acme.example/ns/prod/sa/billing' } });
    assertFails(await h.source.ready(2000), 'svid_id_not_allowed');
  }
  {
    await using h = await start(response(leafA), { selector: { prefix: 'spiffe://acme.example/ns/staging' } });
    assertFails(await h.source.ready(2000), 'svid_id_not_allowed');
  }
});

test('several SVIDs: the first one passing trust domain and selector is taken; federated bundles grant no trust', async () => {
  const billing = await svid('spiffe://acme.example/ns/prod/sa/billing');
  const both: DevX509SvidResponse = {
    svids: [
      { spiffeId: 'spiffe://acme.example/ns/prod/sa/billing', chain: [billing, inter], bundle: [root] },
      { spiffeId: ID, chain: [leafA, inter], bundle: [root] },
    ],
  };
  {
    await using h = await start(both, { selector: { exact: ID } });
    assertOk(await h.source.ready(2000), leafA);
  }
  // An SVID whose issuer is only in federated_bundles (not in its own bundle) does not validate.
  const otherRoot = await createTestCa({ trustDomain: 'other.example', notBefore: at(-HOUR), notAfter: at(HOUR) });
  const viaFederation = await svid(ID, otherRoot);
  {
    await using h = await start(response(viaFederation, ID, { federatedBundles: { 'spiffe://other.example': otherRoot.der } }));
    assertFails(await h.source.ready(2000), 'svid_chain_invalid');
  }
});

test('rotation: a new SVID replaces the old; an invalid push is rejected and the old one kept', async () => {
  await using h = await start(response(leafA));
  assertOk(await h.source.ready(2000), leafA);
  h.agent.push(response(leafB));
  await waitFor('second svid_updated', () => h.count('svid_updated') === 2);
  assertOk(h.source.status(), leafB);
  // Invalid pushes: expired leaf, leaf chained to an unknown CA, CA-flagged leaf.
  const expired = await createTestSvid({ issuer: inter, spiffeId: ID, notBefore: at(-2 * HOUR), notAfter: at(-HOUR) });
  const stranger = await createTestCa({ trustDomain: TD, notBefore: at(-HOUR), notAfter: at(HOUR) });
  const caLeaf = await createTestSvid({ issuer: inter, spiffeId: ID, ca: true, notBefore: at(-60 * SEC), notAfter: at(HOUR) });
  h.agent.push(response(expired));
  h.agent.push({ svids: [{ spiffeId: ID, chain: [await svid(ID, stranger)], bundle: [root] }] });
  h.agent.push(response(caLeaf));
  await waitFor('three rejections', () => h.count('svid_rejected') === 3);
  assert.deepEqual(h.events.filter((e) => e.type === 'svid_rejected').map((e) => e.detail.split(':')[0]), ['svid_expired', 'svid_chain_invalid', 'svid_not_leaf']);
  assertOk(h.source.status(), leafB);
});

test('stream error before any SVID: svid_unavailable, then the SVID arrives after the reconnect', async () => {
  await using h = await start();
  await waitFor('stream open', () => h.agent.openStreams() === 1);
  h.agent.failStreams(grpc.status.UNAVAILABLE, 'agent restarting');
  const s = await h.source.ready(2000);
  assertFails(s, 'svid_unavailable');
  assert.match(s.ok ? '' : s.detail, /UNAVAILABLE/);
  h.agent.push(response(leafA));
  await waitFor('svid_updated after reconnect', () => h.count('svid_updated') === 1);
  assertOk(h.source.status(), leafA);
  assert.equal(h.agent.calls.length, 2);
});

test('stream error keeps the last valid SVID until it expires by the injected clock', async () => {
  await using h = await start(response(leafA));
  assertOk(await h.source.ready(2000), leafA);
  h.agent.clear(); // the reconnected stream gets nothing
  h.agent.failStreams(grpc.status.INTERNAL, 'boom');
  await waitFor('stream_error', () => h.count('stream_error') === 1);
  assertOk(h.source.status(), leafA);
  await waitFor('reconnect', () => h.agent.calls.length === 2 && h.agent.openStreams() === 1);
  h.agent.failStreams(grpc.status.UNAVAILABLE, 'still down');
  await waitFor('second stream_error', () => h.count('stream_error') === 2);
  h.clock.ms = T0 + HOUR; // the leaf's notAfter: still valid
  assertOk(h.source.status(), leafA);
  h.clock.ms = T0 + HOUR + 1;
  assertFails(h.source.status(), 'svid_expired');
  assertFails(await h.source.ready(), 'svid_expired');
});

test('the agent ending the stream: the source reconnects and gets the SVID again', async () => {
  await using h = await start(response(leafA));
  assertOk(await h.source.ready(2000), leafA);
  h.agent.endStreams();
  await waitFor('reconnected and updated', () => h.count('svid_updated') === 2);
  assert.equal(h.count('stream_error'), 1);
  assert.equal(h.agent.calls.length, 2);
  assertOk(h.source.status(), leafA);
});

test('agent socket absent: svid_unavailable; once the agent starts, the source reconnects and becomes ok', async () => {
  const dir = tempSocketDir();
  const events: SourceEvent[] = [];
  const source = new WorkloadApiX509Source({ socketPath: `unix://${dir.socketPath}`, trustDomain: TD, now: () => T0, reconnectMinMs: 20, reconnectMaxMs: 60, onEvent: (e) => events.push(e) });
  let agent: DevWorkloadApi | undefined;
  try {
    assertFails(await source.ready(2000), 'svid_unavailable');
    assert.ok(events.some((e) => e.type === 'stream_error'));
    assertFails(source.status(), 'svid_unavailable');
    agent = await startDevWorkloadApi({ socketPath: dir.socketPath, initial: response(leafA) });
    await waitFor('ok after the agent starts', () => source.status().ok);
    assertOk(source.status(), leafA);
    assert.equal(agent.calls[0]?.metadata['workload.spiffe.io'], 'true');
  } finally {
    await source.close();
    await agent?.stop();
    dir.remove();
  }
});

test('the private key never appears in events or statuses; close() ends the stream', async () => {
  await using h = await start(response(leafA));
  assertOk(await h.source.ready(2000), leafA);
  h.agent.push(response(leafB, 'spiffe://acme.example/ns/prod/sa/billing'));
  await waitFor('rejection', () => h.count('svid_rejected') === 1);
  const text = JSON.stringify([h.events, h.source.status()]);
  for (const leaf of [leafA, leafB]) {
    const key = Buffer.from(leaf.keyPkcs8);
    for (const enc of [key.toString('hex'), key.toString('base64'), key.subarray(-32).toString('hex')]) assert.ok(!text.includes(enc));
  }
  assert.equal(h.agent.openStreams(), 1);
  await h.source.close();
  await waitFor('stream closed at the agent', () => h.agent.openStreams() === 0);
  assertFails(h.source.status(), 'svid_unavailable');
});

test('socket addresses: unix:///path, unix:/path, a path; TCP and authorities refused', () => {
  assert.equal(parseWorkloadApiSocket('unix:///run/spire/sockets/agent.sock'), '/run/spire/sockets/agent.sock');
  assert.equal(parseWorkloadApiSocket('unix:/run/spire/sockets/agent.sock'), '/run/spire/sockets/agent.sock');
  assert.equal(parseWorkloadApiSocket('/run/spire/sockets/agent.sock'), '/run/spire/sockets/agent.sock');
  for (const bad of ['', 'tcp://127.0.0.1:8081', 'unix://host/agent.sock', 'unix:agent.sock', 'unix:///a.sock?x=1', 'http://x/y']) {
    assert.throws(() => parseWorkloadApiSocket(bad), TypeError, bad);
  }
  assert.throws(() => new WorkloadApiX509Source({ socketPath: '/tmp/x.sock', trustDomain: 'Acme.Example' }), TypeError);
});

test('an update with no SVID withdraws the identity at once; a later SVID restores it', async () => {
  await using h = await start(response(leafA));
  assertOk(await h.source.ready(2000), leafA);
  h.agent.push({ svids: [] });
  await waitFor('withdrawn', () => !h.source.status().ok);
  const s = h.source.status();
  assertFails(s, 'svid_unavailable');
  assert.match(s.ok ? '' : s.detail, /identity withdrawn by the Workload API/);
  assert.ok(h.events.some((e) => e.type === 'svid_rejected' && e.detail.startsWith('withdrawn X.509-SVID')));
  h.agent.push(response(leafB));
  await waitFor('svid_updated again', () => h.count('svid_updated') === 2);
  assertOk(h.source.status(), leafB);
});

test('PERMISSION_DENIED from the agent withdraws the identity; other stream errors keep the last valid SVID', async () => {
  await using h = await start(response(leafA));
  assertOk(await h.source.ready(2000), leafA);
  h.agent.clear(); // the reconnected stream gets nothing
  h.agent.failStreams(grpc.status.PERMISSION_DENIED, 'no identity issued');
  await waitFor('stream_error', () => h.count('stream_error') === 1);
  const s = h.source.status();
  assertFails(s, 'svid_unavailable');
  assert.match(s.ok ? '' : s.detail, /withdrawn.*PERMISSION_DENIED/);
});
