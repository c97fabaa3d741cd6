/**
 * Connection limits over real TCP: a connection that times out (or sends what node:http cannot
 * parse) is destroyed by the adapter, not left half-closed for a client that never reads; the
 * connection cap closes connections past it at once.
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { MemoryReplayStore, StaticPolicyProvider, compilePolicy } from '@trustplane/core';
import { makeRequest, policyBundle, trustMaterial, startEchoUpstream, type EchoUpstream } from '@trustplane/testkit';
import { startAdapter, MemoryAuditSink, type AdapterOptions, type RunningAdapter } from '../src/index.js';

let upstream: EchoUpstream;
before(async () => {
  upstream = await startEchoUpstream();
});
after(async () => {
  await upstream.close();
});

async function withAdapter(opts: Partial<AdapterOptions>, fn: (a: RunningAdapter) => Promise<void>): Promise<void> {
  const a = await startAdapter({
    listen: { host: '127.0.0.1', port: 0 },
    upstream: upstream.url,
    policy: new StaticPolicyProvider(compilePolicy(trustMaterial(), policyBundle())),
    replayStore: new MemoryReplayStore(),
    audit: new MemoryAuditSink(),
    ...opts,
  });
  try {
    await fn(a);
  } finally {
    await a.close(500);
  }
}

interface Client {
  socket: Socket;
  /** Resolves with ms since the connect was asked for, when the socket closes. */
  closed: Promise<number>;
  received: () => string;
}

/** Connect, write `text` once connected; `read: false` never reads (the socket stays paused). */
function client(url: string, text: string, read: boolean): Promise<Client> {
  const u = new URL(url);
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const socket = connect(Number(u.port), u.hostname);
    let got = '';
    const closed = new Promise<number>((r) => socket.once('close', () => r(Date.now() - started)));
    socket.on('error', () => undefined); // a reset is one of the ways a connection ends
    if (read) socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    socket.once('connect', () => {
      if (!read) socket.pause();
      if (text !== '') socket.write(text);
      resolve({ socket, closed, received: () => got });
    });
    socket.once('error', reject);
  });
}

function openConnections(a: RunningAdapter): Promise<number> {
  return new Promise((resolve, reject) => a.server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
}

/** Poll the server's open connections until `ok`; the ms it took, or a failure after `ms`. */
async function untilConnections(a: RunningAdapter, ok: (n: number) => boolean, ms: number, what: string): Promise<number> {
  const started = Date.now();
  for (;;) {
    const n = await openConnections(a);
    if (ok(n)) return Date.now() - started;
    if (Date.now() - started > ms) assert.fail(`${what}: still ${n} open connections after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Resolve with the value, or reject after `ms` (every wait in these tests is bounded). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p.finally(() => clearTimeout(timer)), new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))]);
}

/** The head of a signed POST declaring a body of `length` bytes (the body itself not included). */
function signedHead(length: number): string {
  const r = makeRequest({ nowMs: Date.now(), method: 'POST', path: '/v1/orders', body: 'x'.repeat(length) });
  const lines = Object.entries(r.headers).map(([k, v]) => `${k}: ${v}`);
  return `POST /v1/orders HTTP/1.1\r\nHost: x\r\n${lines.join('\r\n')}\r\ncontent-length: ${length}\r\n\r\n`;
}

test('timed-out connections whose clients never read are destroyed within the timeout, all of them', { timeout: 10_000 }, async () => {
  await withAdapter({ headersTimeoutMs: 300, requestTimeoutMs: 600 }, async (a) => {
    const N = 100;
    const clients: Client[] = [];
    for (let i = 0; i < N; i++) {
      // Three kinds of stalled client: an unfinished header block, a body that never comes, nothing at all.
      // The body is read only after a verified head, so the stalled upload is properly signed.
      const text = i % 3 === 0 ? 'GET /v1/orders/search HTTP/1.1\r\nHost: x\r\nX-Slow: ' : i % 3 === 1 ? signedHead(100) + 'ab' : '';
      clients.push(await client(a.url, text, false));
    }
    assert.equal(await openConnections(a), N);
    // A client that never reads never sees the FIN either: count on the server side. Request
    // timeout 600 ms, noticed within 150 ms, then at most 1 s to take the 400: 3 s is ample.
    await untilConnections(a, (n) => n === 0, 3000, 'every stalled connection destroyed by the server');
    for (const c of clients) c.socket.destroy();
  });
});

test('a timed-out client that reads gets the 400 malformed_request, then the connection is closed', { timeout: 10_000 }, async () => {
  await withAdapter({ headersTimeoutMs: 300, requestTimeoutMs: 600 }, async (a) => {
    const c = await client(a.url, 'GET /v1/orders/search HTTP/1.1\r\nHost: x\r\n', true);
    await within(c.closed, 2000, 'closed');
    assert.match(c.received(), /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.ok(c.received().endsWith('{"allowed":false,"reason":"malformed_request"}'));
  });
});

test('a request node:http cannot parse: 400, and the connection is destroyed even if the client never reads', { timeout: 10_000 }, async () => {
  await withAdapter({}, async (a) => {
    const c = await client(a.url, 'GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n', false);
    await untilConnections(a, (n) => n === 0, 2000, 'malformed connection destroyed by the server');
    c.socket.destroy();
  });
});

test('CONNECT is refused and its socket destroyed even if the client never reads', { timeout: 10_000 }, async () => {
  await withAdapter({}, async (a) => {
    const c = await client(a.url, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', false);
    await untilConnections(a, (n) => n === 0, 2000, 'CONNECT socket destroyed by the server');
    c.socket.destroy();
    const reader = await client(a.url, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', true);
    await within(reader.closed, 2000, 'closed');
    assert.match(reader.received(), /^HTTP\/1\.1 400 /);
  });
});

test('--max-connections: connections past the cap are closed at once; below it they are served', { timeout: 10_000 }, async () => {
  await withAdapter({ maxConnections: 5 }, async (a) => {
    const held: Client[] = [];
    for (let i = 0; i < 5; i++) held.push(await client(a.url, '', false));
    // Accepted and counted before the next one arrives.
    await untilConnections(a, (n) => n === 5, 1000, 'five accepted');
    const extra = await client(a.url, 'GET /v1/orders/search HTTP/1.1\r\nHost: x\r\n\r\n', true);
    await within(extra.closed, 1000, 'the connection past the cap closed');
    assert.equal(extra.received(), '', 'nothing is read from, or answered on, a refused connection');
    let stillOpen = 0;
    for (const c of held) if (!c.socket.destroyed && c.socket.readyState === 'open') stillOpen++;
    assert.equal(stillOpen, 5, 'the connections within the cap are untouched');
    // One slot freed: a new connection is served (denied for lack of a passport, but answered).
    held[0]!.socket.destroy();
    await untilConnections(a, (n) => n === 4, 1000, 'one freed');
    const next = await client(a.url, 'GET /v1/orders/search HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', true);
    await within(next.closed, 2000, 'answered and closed');
    assert.match(next.received(), /^HTTP\/1\.1 401 /);
    assert.ok(next.received().includes('"reason":"missing_passport"'));
    for (const c of held) c.socket.destroy();
  });
});

test('startAdapter refuses a connection cap that is not a positive integer', { timeout: 10_000 }, async () => {
  for (const bad of [0, -1, 1.5]) {
    await assert.rejects(
      startAdapter({ listen: { host: '127.0.0.1', port: 0 }, upstream: upstream.url, policy: new StaticPolicyProvider(compilePolicy(trustMaterial(), policyBundle())), replayStore: new MemoryReplayStore(), audit: new MemoryAuditSink(), maxConnections: bad }),
      TypeError,
    );
  }
});
