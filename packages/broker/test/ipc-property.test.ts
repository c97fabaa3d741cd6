/**
 * Property tests for the broker's parsers of untrusted bytes (issue 17, "Standing suites"): the
 * IPC v1 request line (`parseIpcLine`: an envelope or an IpcRequestError), the server's framing
 * over a real Unix socket (one definitive JSON answer per connection whatever the chunking, never
 * `internal_error`), SPIFFE IDs and the DER framing of SVIDs (a value or `svid_malformed`).
 */
import { test, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { FormatError, ManualClock, canonicalAllowList, normalizeQuery, sha256Hex, type JsonValue } from '@trustplane/core';
import { BROKER_ISSUER, PropertyTally, T0, brokerKey } from '@trustplane/testkit';
import { Broker, IpcRequestError, buildIpcEnvelope, parseIpcLine, softwareSource, startBrokerServer, type IpcEnvelope, type IpcResponse } from '../src/index.js';
import { parseSpiffeId, splitConcatenatedDer } from '../src/spiffe/index.js';
import { checkCertificateFrame } from '../src/spiffe/der.js';
import { concatDer, createTestCa, createTestSvid } from '../src/spiffe/dev-agent.js';

const tally = new PropertyTally('broker parsers');
const repoRoot = path.resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../..');
const dir = mkdtempSync(path.join(tmpdir(), 'tp-broker-prop-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const PROTO_KEYS = ['__proto__', 'constructor', 'prototype', 'toString'];
const vector = JSON.parse(readFileSync(path.join(repoRoot, 'conformance/vectors/v1/broker-ipc-v1.success.json'), 'utf8')) as { version: string; kind: string; request: Record<string, JsonValue> };
const vectorLine = JSON.stringify({ version: vector.version, kind: vector.kind, request: vector.request });

function parsed(line: string): IpcEnvelope | IpcRequestError {
  try {
    return parseIpcLine(line);
  } catch (e) {
    if (e instanceof IpcRequestError) return e;
    assert.fail(`parseIpcLine threw ${String(e)} (${(e as Error)?.constructor?.name}) for ${line.slice(0, 300)}`);
  }
}

test('property: parseIpcLine on junk text gives an envelope or an IpcRequestError', () => {
  const unit = fc.oneof(
    { weight: 5, arbitrary: fc.constantFrom('{', '}', '[', ']', ':', ',', '"', '"request"', '"version"', '"trustplane-broker-ipc-v1"', '"__proto__"', 'null', '1', ' ') },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 3 }) },
    { weight: 1, arbitrary: fc.constantFrom('\ud800', '\\ud800', '\\u0000', '9007199254740993') },
  );
  tally.check(
    fc.property(fc.array(unit, { maxLength: 40 }).map((a) => a.join('')), (line) => {
      const r = parsed(line);
      assert.ok(r instanceof IpcRequestError, 'junk never parses as a request');
      assert.ok(r.detail.length < 1000, 'the detail stays short');
    }),
    { numRuns: 1500 },
  );
});

/** Every location in a JSON value (root excluded), as key paths. */
function locations(v: JsonValue, at: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  if (at.length > 0) out.push(at);
  if (Array.isArray(v)) v.forEach((x, i) => locations(x, [...at, i], out));
  else if (v !== null && typeof v === 'object') for (const k of Object.keys(v)) locations(v[k]!, [...at, k], out);
  return out;
}

const junkValue: fc.Arbitrary<JsonValue> = fc.oneof(
  fc.constantFrom<JsonValue>(null, '', ' ', 'a\nb', 0, -1, true, [], {}, 'x'.repeat(8193), 'software', 'hardware_local', 'Content-Type', 'content-type', 'x-trustplane-nonce', 'a,b', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 'a=1&a=1', '%zz', '\ud83d\ude00'),
  fc.dictionary(fc.constantFrom(...PROTO_KEYS, 'name', 'value_sha256', 'raw'), fc.string({ maxLength: 3 }), { maxKeys: 2 }) as fc.Arbitrary<JsonValue>,
  fc.jsonValue({ maxDepth: 1 }) as fc.Arbitrary<JsonValue>,
);

test('property: parseIpcLine on a mutated valid request gives a self-consistent envelope or an IpcRequestError', () => {
  assert.ok(!(parsed(vectorLine) instanceof IpcRequestError));
  const op = fc.record({ kind: fc.constantFrom('set', 'delete', 'add'), at: fc.nat(), value: junkValue, key: fc.constantFrom(...PROTO_KEYS, 'extra', 'request_id') });
  tally.check(
    fc.property(fc.array(op, { minLength: 1, maxLength: 3 }), (ops) => {
      const doc = JSON.parse(vectorLine) as JsonValue;
      for (const o of ops) {
        const locs = locations(doc);
        if (locs.length === 0) break;
        const loc = locs[o.at % locs.length]!;
        let parent = doc as Record<string | number, JsonValue>;
        for (const k of loc.slice(0, -1)) parent = parent[k] as Record<string | number, JsonValue>;
        const last = loc[loc.length - 1]!;
        const target = parent[last];
        if (o.kind === 'set') Object.defineProperty(parent, last, { value: o.value, enumerable: true, writable: true, configurable: true });
        else if (o.kind === 'delete') {
          if (Array.isArray(parent)) parent.splice(last as number, 1);
          else delete parent[last];
        } else if (target !== null && typeof target === 'object' && !Array.isArray(target)) Object.defineProperty(target, o.key, { value: o.value, enumerable: true, writable: true, configurable: true });
      }
      const r = parsed(JSON.stringify(doc));
      if (r instanceof IpcRequestError) return;
      // Accepted: the broker signs what it computes, so what it accepted must agree with itself.
      const h = r.request.http;
      assert.equal(normalizeQuery(h.query.raw), h.query.normalized);
      assert.equal(sha256Hex(h.query.normalized), h.query.sha256);
      assert.deepEqual(canonicalAllowList(h.headers.allow_list), h.headers.allow_list);
      assert.deepEqual(
        h.headers.selected.map((s) => s.name),
        h.headers.allow_list,
      );
      const nonce = h.headers.selected.find((s) => s.name === 'x-trustplane-nonce');
      if (nonce !== undefined) assert.equal(nonce.value_sha256, sha256Hex(h.nonce));
      assert.deepEqual(Object.keys(r.request.ctx.values), r.request.ctx.selected_fields);
    }),
    { numRuns: 3000 },
  );
});

// ---------------------------------------------------------------------------------------------
// server framing over a real Unix socket

/** Send `chunks` (pausing between them), optionally half-close; collect everything until close. */
function exchange(socketPath: string, chunks: readonly Buffer[], end: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = createConnection(socketPath);
    const got: Buffer[] = [];
    c.on('data', (d: Buffer) => got.push(d));
    c.on('close', () => resolve(Buffer.concat(got).toString('utf8')));
    c.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' || err.code === 'ECONNRESET' ? undefined : reject(err)));
    c.on('connect', () => {
      let i = 0;
      const next = (): void => {
        if (i < chunks.length) {
          c.write(chunks[i++]!);
          setImmediate(next);
        } else if (end) c.end();
      };
      next();
    });
  });
}

test('property: the broker answers every framing of a line with exactly one JSON response, never internal_error', async () => {
  const socketPath = path.join(dir, 'framing.sock');
  const broker = new Broker({
    policy: { issuer: BROKER_ISSUER, trustDomain: 'example.local', signingKey: brokerKey, kid: 'broker-key-1', allow: [{ audience: 'orders-api', routes: ['*'] }] },
    sources: [softwareSource('svc:orders-worker')],
    clock: new ManualClock(T0),
  });
  const server = await startBrokerServer({ socketPath, broker, readTimeoutMs: 2000 });
  after(() => server.close());
  const good = JSON.stringify(buildIpcEnvelope({ method: 'POST', url: 'https://orders.example/v1/orders?b=2&a=1', audience: 'orders-api', routeId: 'orders.create', headers: { 'content-type': 'application/json' }, body: '{}' }).envelope);
  const line = fc.oneof(
    { weight: 3, arbitrary: fc.constant(Buffer.from(good)) },
    { weight: 1, arbitrary: fc.constant(Buffer.from(vectorLine)) },
    { weight: 1, arbitrary: fc.tuple(fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 4 })).map(([at, junk]) => Buffer.concat([Buffer.from(good.slice(0, at % good.length)), junk, Buffer.from(good.slice(at % good.length))])) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b.filter((x) => x !== 0x0a))) },
  );
  await tally.checkAsync(
    fc.asyncProperty(line, fc.array(fc.nat(), { maxLength: 4 }), fc.boolean(), fc.uint8Array({ maxLength: 8 }), async (bytes, cuts, newline, trailer) => {
      // The line, split at random points, then either LF (+ anything after it) or a half-close.
      const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      const chunks: Buffer[] = [];
      let prev = 0;
      for (const p of [...points, bytes.length]) {
        if (p > prev) chunks.push(bytes.subarray(prev, p));
        prev = p;
      }
      if (newline) chunks.push(Buffer.concat([Buffer.from('\n'), trailer]));
      const out = await exchange(socketPath, chunks, !newline || trailer.length > 0);
      if (bytes.length === 0 && !newline) {
        assert.equal(out, '', 'an empty half-closed connection gets no answer');
        return;
      }
      assert.ok(out.endsWith('\n') && out.indexOf('\n') === out.length - 1, `one line: ${JSON.stringify(out.slice(0, 200))}`);
      const res = JSON.parse(out) as IpcResponse;
      assert.notEqual(res.reason_code, 'internal_error', res.error?.message);
      if (res.accepted) assert.ok(res.artifacts !== null && res.error === null);
      else assert.ok(res.artifacts === null && res.error !== null && res.error.code === res.reason_code);
      // The unchanged good request is accepted however it was chunked.
      if (bytes.toString('utf8') === good) assert.equal(res.accepted, true, JSON.stringify(res.error));
    }),
    { numRuns: 300, timeLimitMs: 3000, minRuns: 30 },
  );
});

// ---------------------------------------------------------------------------------------------
// SPIFFE IDs and SVID DER framing

test('property: parseSpiffeId gives an ID whose parts re-check, or a reason string', () => {
  const unit = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom('a', 'z', '0', '.', '-', '_', '/', '/', 'ns', 'prod', 'A') },
    { weight: 2, arbitrary: fc.constantFrom('%2F', '%2e', ':', '@', '?', '#', ' ', '..', '//', 'é', '\u0000', '\ud800') },
  );
  const id = fc.oneof(fc.array(unit, { maxLength: 20 }).map((a) => `spiffe://${a.join('')}`), fc.array(unit, { maxLength: 20 }).map((a) => a.join('')), fc.constantFrom('spiffe://', 'SPIFFE://a/b', `spiffe://${'a'.repeat(256)}`, `spiffe://a/${'b'.repeat(2100)}`));
  tally.check(
    fc.property(id, (s) => {
      const r = parseSpiffeId(s);
      if (typeof r === 'string') {
        assert.ok(r.length > 0 && r.length < 200);
        return;
      }
      assert.equal(r.id, s);
      assert.equal(`spiffe://${r.trustDomain}${r.path}`, s);
      assert.match(r.trustDomain, /^[a-z0-9._-]{1,255}$/);
      if (r.path !== '') for (const seg of r.path.slice(1).split('/')) assert.ok(/^[A-Za-z0-9._-]+$/.test(seg) && seg !== '.' && seg !== '..', seg);
    }),
    { numRuns: 3000 },
  );
});

test('property: DER splitting and certificate framing give a value covering the input, or svid_malformed', async () => {
  const nowMs = Math.floor(Date.now() / 1000) * 1000;
  const root = await createTestCa({ trustDomain: 'acme.example', notBefore: new Date(nowMs - 3_600_000), notAfter: new Date(nowMs + 3_600_000) });
  const leaf = await createTestSvid({ issuer: root, spiffeId: 'spiffe://acme.example/ns/prod/sa/orders', notBefore: new Date(nowMs - 60_000), notAfter: new Date(nowMs + 3_600_000) });
  const chain = concatDer([leaf, root]);
  const bytes = fc.oneof(
    fc.tuple(fc.nat(), fc.nat(7)).map(([at, bit]) => {
      const b = Buffer.from(chain);
      b[at % b.length]! ^= 1 << bit;
      return b;
    }),
    fc.nat().map((at) => Buffer.from(chain).subarray(0, at % chain.length)),
    fc.tuple(fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 6 })).map(([at, junk]) => Buffer.concat([Buffer.from(chain).subarray(0, at % chain.length), junk, Buffer.from(chain).subarray(at % chain.length)])),
    fc.uint8Array({ maxLength: 48 }).map((b) => Buffer.from(b)),
    fc.constantFrom(Buffer.from([0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), Buffer.from([0x30, 0x80, 0x00, 0x00]), Buffer.from([0x30, 0x81, 0x05, 0x00])),
  );
  const malformed = (e: unknown): boolean => e instanceof FormatError && e.code === 'svid_malformed';
  tally.check(
    fc.property(bytes, (b) => {
      let parts: Uint8Array[];
      try {
        parts = splitConcatenatedDer(b);
      } catch (e) {
        assert.ok(malformed(e), String(e));
        return;
      }
      assert.deepEqual(Buffer.concat(parts), b, 'the elements cover the input exactly');
      for (const p of parts) {
        try {
          const frame = checkCertificateFrame(p);
          assert.match(frame.serialHex, /^[0-9a-f]+$/);
        } catch (e) {
          assert.ok(malformed(e), String(e));
        }
      }
    }),
    { numRuns: 3000 },
  );
});

test('property: counts (every property in this file ran)', (t) => {
  t.diagnostic(tally.summary());
  assert.equal(tally.properties, 5);
});
