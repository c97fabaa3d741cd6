// The forwarding half of the proxy against a real upstream that misbehaves in the ways real
// ones do: large and slow responses, repeated and latin-1 response headers, 1xx responses,
// clients that vanish mid-response, chunked and empty request bodies, request ids.
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { MemoryReplayStore, StaticPolicyProvider, compilePolicy } from '@trustplane/core';
import { makeRequest, policyBundle, trustMaterial } from '@trustplane/testkit';
import { startAdapter, MemoryAuditSink, type RunningAdapter } from '../src/index.js';

interface Seen {
  url: string;
  rawHeaders: string[];
  body: Buffer;
  closedEarly: boolean;
}

const BIG = Buffer.alloc(8 * 1024 * 1024);
for (let i = 0; i < BIG.length; i++) BIG[i] = (i * 131 + (i >> 11)) & 0xff;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let upstream: Server;
let upstreamUrl: string;
const seen: Seen[] = [];
/** Resolves when the upstream sees the response of the endless route closed by its peer. */
let endlessClosed: Promise<void>;
let markEndlessClosed: () => void = () => undefined;

function route(req: IncomingMessage, res: ServerResponse, rec: Seen): void {
  const path = req.url ?? '';
  if (path.startsWith('/v1/orders/big')) {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(BIG.length) });
    let off = 0;
    const pump = () => {
      while (off < BIG.length) {
        const next = BIG.subarray(off, off + 64 * 1024);
        off += next.length;
        if (!res.write(next)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  } else if (path.startsWith('/v1/orders/headers')) {
    // Written raw so that the bytes are exactly these: two Set-Cookie, one latin-1 value.
    res.socket!.write(Buffer.from('HTTP/1.1 200 OK\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nx-latin: caf\xe9\r\ncontent-length: 2\r\n\r\nok', 'latin1'));
  } else if (path.startsWith('/v1/orders/hints')) {
    res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('after hints');
  } else if (path.startsWith('/v1/orders/endless')) {
    res.writeHead(200, { 'content-type': 'text/plain' });
    const t = setInterval(() => res.write('tick\n'), 5);
    res.once('close', () => {
      clearInterval(t);
      rec.closedEarly = !res.writableFinished;
      markEndlessClosed();
    });
  } else {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ url: path, length: rec.body.length }));
  }
}

before(async () => {
  upstream = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rec: Seen = { url: req.url ?? '', rawHeaders: req.rawHeaders, body: Buffer.concat(chunks), closedEarly: false };
      seen.push(rec);
      route(req, res, rec);
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
});
after(async () => {
  upstream.closeAllConnections();
  await new Promise<void>((r) => upstream.close(() => r()));
});

async function withAdapter(fn: (a: RunningAdapter, audit: MemoryAuditSink) => Promise<void>): Promise<void> {
  const audit = new MemoryAuditSink();
  const a = await startAdapter({
    listen: { host: '127.0.0.1', port: 0 },
    upstream: upstreamUrl,
    policy: new StaticPolicyProvider(compilePolicy(trustMaterial(), policyBundle())),
    replayStore: new MemoryReplayStore(),
    audit,
  });
  try {
    await fn(a, audit);
  } finally {
    await a.close(2000);
  }
}

const signed = (path: string, extra: { method?: string; body?: string; headers?: Record<string, string> } = {}) =>
  makeRequest({ nowMs: Date.now(), path, routeId: extra.method === 'POST' ? 'orders.create' : 'orders.get', ...extra });

/** One raw HTTP/1.1 exchange on a fresh connection; the whole response as latin-1. */
function rawHttp(url: string, head: string, body = ''): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(u.port), u.hostname, () => sock.write(Buffer.from(head + body, 'latin1')));
    let out = '';
    sock.on('data', (d: Buffer) => (out += d.toString('latin1')));
    sock.on('end', () => resolve(out));
    sock.on('error', reject);
  });
}

const headLines = (h: Record<string, string>) => Object.entries(h).map(([k, v]) => `${k}: ${v}\r\n`).join('');

test('an 8 MiB response read slowly arrives intact (backpressure both ways)', async () => {
  await withAdapter(async (a) => {
    const r = signed('/v1/orders/big');
    const res = await request(`${a.url}${r.path}`, { headers: r.headers });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-length'], String(BIG.length));
    const parts: Buffer[] = [];
    let n = 0;
    for await (const chunk of res.body) {
      parts.push(chunk as Buffer);
      // A slow reader: pause now and then so the adapter's socket buffer fills.
      if (++n % 16 === 0) await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const got = Buffer.concat(parts);
    assert.equal(got.length, BIG.length);
    assert.equal(sha(got), sha(BIG));
  });
});

test('repeated response headers stay repeated and latin-1 bytes pass unchanged', async () => {
  await withAdapter(async (a) => {
    const r = signed('/v1/orders/headers');
    const raw = await rawHttp(a.url, `GET ${r.path} HTTP/1.1\r\nhost: orders.example\r\nconnection: close\r\n${headLines(r.headers)}\r\n`);
    assert.match(raw, /^HTTP\/1\.1 200 /);
    assert.equal(raw.match(/^set-cookie: /gim)?.length, 2);
    assert.match(raw, /\r\nset-cookie: a=1\r\n/i);
    assert.match(raw, /\r\nset-cookie: b=2\r\n/i);
    assert.ok(raw.includes('\r\nx-latin: caf\xe9\r\n'), 'the 0xE9 byte is forwarded as is');
    assert.ok(raw.endsWith('\r\n\r\nok'));
  });
});

test('a 1xx informational response from the upstream is not forwarded; the final response is', async () => {
  await withAdapter(async (a) => {
    const r = signed('/v1/orders/hints');
    const raw = await rawHttp(a.url, `GET ${r.path} HTTP/1.1\r\nhost: orders.example\r\nconnection: close\r\n${headLines(r.headers)}\r\n`);
    assert.match(raw, /^HTTP\/1\.1 200 /);
    assert.doesNotMatch(raw, /^HTTP\/1\.1 103/m);
    assert.ok(raw.includes('\r\nafter hints\r\n'), raw);
  });
});

test('a client that leaves mid-response aborts the upstream request; the adapter keeps serving', { timeout: 10_000 }, async () => {
  await withAdapter(async (a) => {
    endlessClosed = new Promise<void>((r) => (markEndlessClosed = r));
    const r = signed('/v1/orders/endless');
    const u = new URL(a.url);
    await new Promise<void>((resolve, reject) => {
      const sock = connect(Number(u.port), u.hostname, () => sock.write(`GET ${r.path} HTTP/1.1\r\nhost: orders.example\r\n${headLines(r.headers)}\r\n`));
      let got = '';
      sock.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (got.includes('tick\n')) {
          sock.destroy();
          resolve();
        }
      });
      sock.on('error', reject);
    });
    await endlessClosed;
    assert.equal(seen.at(-1)!.closedEarly, true, 'the upstream response was cut off, not completed');
    const next = signed('/v1/orders/ord_9');
    const res = await request(`${a.url}${next.path}`, { headers: next.headers });
    assert.equal(res.statusCode, 200);
    await res.body.text();
  });
});

test('request bodies: chunked is hashed and forwarded with its length; Content-Length: 0 forwards none', async () => {
  await withAdapter(async (a) => {
    const body = '{"order_id":"ord_chunked","note":"' + 'x'.repeat(5000) + '"}';
    const r = signed('/v1/orders', { method: 'POST', body, headers: { 'content-type': 'application/json' } });
    const parts = [body.slice(0, 1000), body.slice(1000, 3000), body.slice(3000)];
    const chunked = parts.map((p) => `${p.length.toString(16)}\r\n${p}\r\n`).join('') + '0\r\n\r\n';
    const raw = await rawHttp(a.url, `POST ${r.path} HTTP/1.1\r\nhost: orders.example\r\nconnection: close\r\ntransfer-encoding: chunked\r\n${headLines(r.headers)}\r\n`, chunked);
    assert.match(raw, /^HTTP\/1\.1 200 /);
    const rec = seen.at(-1)!;
    assert.equal(rec.body.toString(), body);
    const lower = rec.rawHeaders.map((h, i) => (i % 2 === 0 ? h.toLowerCase() : h));
    assert.equal(lower[lower.indexOf('content-length') + 1], String(Buffer.byteLength(body)));
    assert.equal(lower.indexOf('transfer-encoding'), -1);

    // A tampered chunked body is caught like any other.
    const evil = chunked.replace('ord_chunked', 'ord_CHUNKED');
    const before = seen.length;
    const denied = await rawHttp(a.url, `POST ${r.path} HTTP/1.1\r\nhost: orders.example\r\nconnection: close\r\ntransfer-encoding: chunked\r\n${headLines(signed('/v1/orders', { method: 'POST', body, headers: { 'content-type': 'application/json' } }).headers)}\r\n`, evil);
    assert.match(denied, /^HTTP\/1\.1 403 /);
    assert.match(denied, /"reason":"request_binding_mismatch"/);
    assert.equal(seen.length, before);

    const empty = signed('/v1/orders', { method: 'POST', body: '' });
    const res = await request(`${a.url}${empty.path}`, { method: 'POST', headers: { ...empty.headers, 'content-length': '0' }, body: '' });
    assert.equal(res.statusCode, 200, await res.body.text());
    assert.equal(seen.at(-1)!.body.length, 0);
  });
});

test('X-Request-Id: one valid value is kept end to end; a repeated or invalid one is replaced', async () => {
  await withAdapter(async (a, audit) => {
    const upstreamId = () => {
      const h = seen.at(-1)!.rawHeaders;
      const ids = h.filter((_, i) => i % 2 === 1 && h[i - 1]!.toLowerCase() === 'x-request-id');
      assert.equal(ids.length, 1, 'exactly one X-Request-Id upstream');
      return ids[0]!;
    };
    const r1 = signed('/v1/orders/ord_1');
    await (await request(`${a.url}${r1.path}`, { headers: { ...r1.headers, 'x-request-id': 'req-abc-123' } })).body.text();
    assert.equal(upstreamId(), 'req-abc-123');
    assert.equal(audit.events.at(-1)!.request_id, 'req-abc-123');

    const r2 = signed('/v1/orders/ord_2');
    const raw = await rawHttp(a.url, `GET ${r2.path} HTTP/1.1\r\nhost: orders.example\r\nconnection: close\r\nx-request-id: one\r\nx-request-id: two\r\n${headLines(r2.headers)}\r\n`);
    assert.match(raw, /^HTTP\/1\.1 200 /);
    const replaced = upstreamId();
    assert.match(replaced, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(audit.events.at(-1)!.request_id, replaced);

    const r3 = signed('/v1/orders/ord_3');
    await (await request(`${a.url}${r3.path}`, { headers: { ...r3.headers, 'x-request-id': 'x'.repeat(129) } })).body.text();
    assert.notEqual(upstreamId(), 'x'.repeat(129));
  });
});
