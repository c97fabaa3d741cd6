import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { request } from 'undici';
import { connect } from 'node:net';
import { MemoryReplayStore, StaticPolicyProvider, compilePolicy, type ReplayStore, type VerifyRequest } from '@trustplane/core';
import { makeRequest, policyBundle, trustMaterial, startEchoUpstream, type EchoUpstream } from '@trustplane/testkit';
import { startAdapter, MemoryAuditSink, type RunningAdapter } from '../src/index.js';

let upstream: EchoUpstream;
before(async () => {
  upstream = await startEchoUpstream();
});
after(async () => {
  await upstream.close();
});

async function withAdapter(fn: (a: RunningAdapter, audit: MemoryAuditSink) => Promise<void>, opts: { replayStore?: ReplayStore; maxBodyBytes?: number; upstream?: string; upstreamHeadersTimeoutMs?: number } = {}): Promise<void> {
  const audit = new MemoryAuditSink();
  // Passports in these tests are issued "now" (real clock), so the adapter runs on the real clock.
  const a = await startAdapter({
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    upstream: opts.upstream ?? upstream.url,
    policy: new StaticPolicyProvider(compilePolicy(trustMaterial(), policyBundle())),
    replayStore: opts.replayStore ?? new MemoryReplayStore(),
    audit,
    ...(opts.maxBodyBytes !== undefined ? { maxBodyBytes: opts.maxBodyBytes } : {}),
    ...(opts.upstreamHeadersTimeoutMs !== undefined ? { upstreamHeadersTimeoutMs: opts.upstreamHeadersTimeoutMs } : {}),
  });
  try {
    await fn(a, audit);
  } finally {
    await a.close(2000);
  }
}

/** Send a VerifyRequest-shaped request to the adapter over HTTP. */
async function send(a: RunningAdapter, r: VerifyRequest, extraHeaders: Record<string, string | string[]> = {}) {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(r.headers)) if (v !== undefined) headers[k] = v as string | string[];
  Object.assign(headers, extraHeaders);
  const res = await request(`${a.url}${r.path}${r.query ? `?${r.query}` : ''}`, { method: r.method as 'GET', headers, body: r.body === undefined ? null : Buffer.from(r.body) });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: (() => { try { return JSON.parse(text) as Record<string, unknown>; } catch { return undefined; } })() };
}

const now = () => ({ nowMs: Date.now() });

/** Send raw HTTP/1.1 bytes (for what a well-behaved client library refuses to send). */
function rawHttp(url: string, text: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(u.port), u.hostname, () => sock.write(text));
    let out = '';
    sock.on('data', (d: Buffer) => (out += d.toString('latin1')));
    sock.on('end', () => resolve(out));
    sock.on('error', reject);
  });
}

test('allow: GET and POST reach the upstream with the verified identity, path and query bytes exactly as verified', async () => {
  await withAdapter(async (a, audit) => {
    const before = upstream.requests.length;
    const get = makeRequest({ ...now(), query: 'z=1&a=%7e&b=caf%C3%A9' });
    const r1 = await send(a, get);
    assert.equal(r1.status, 200, r1.text);
    assert.equal(r1.json?.['subject'], 'service:orders-client');
    const post = makeRequest({ ...now(), method: 'POST', path: '/v1/orders', body: '{"order_id":"ord_123"}', headers: { 'content-type': 'application/json' } });
    const r2 = await send(a, post);
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.json?.['body'], '{"order_id":"ord_123"}');
    const seen = upstream.requests.slice(before);
    assert.equal(seen.length, 2);
    assert.equal(seen[0]!.url, '/v1/orders/search?z=1&a=%7e&b=caf%C3%A9');
    for (const rec of seen) {
      assert.equal(rec.headers['authorization'], undefined);
      assert.equal(rec.headers['x-trustplane-proof'], undefined);
      assert.equal(rec.headers['x-trustplane-nonce'], undefined);
      assert.equal(rec.headers['x-trustplane-issuer'], 'https://issuer.example/software-jwks');
      assert.equal(rec.headers['x-trustplane-trust-domain'], 'example.local');
      assert.match(String(rec.headers['x-trustplane-jti']), /^jti-/);
      assert.ok(rec.headers['x-request-id']);
    }
    assert.equal(audit.events.filter((e) => e.accepted).length, 2);
  });
});

test('spoofed identity headers are replaced on allow, and never reach the upstream on deny', async () => {
  await withAdapter(async (a) => {
    const spoof = { 'x-trustplane-subject': 'service:admin', 'x-trustplane-issuer': 'https://evil.example', 'x-trustplane-jti': 'forged' };
    const before = upstream.requests.length;
    const ok = await send(a, makeRequest(now()), spoof);
    assert.equal(ok.status, 200);
    const rec = upstream.requests.at(-1)!;
    assert.equal(rec.headers['x-trustplane-subject'], 'service:orders-client');
    assert.equal(rec.headers['x-trustplane-issuer'], 'https://issuer.example/software-jwks');
    assert.equal(rec.rawHeaders.filter((h) => h.toLowerCase() === 'x-trustplane-subject').length, 1);
    const denied = await send(a, makeRequest({ ...now(), subject: 'service:intruder' }), spoof);
    assert.equal(denied.status, 403);
    assert.equal(upstream.requests.length, before + 1);
  });
});

test('hop-by-hop and Connection-nominated headers are stripped both ways', async () => {
  await withAdapter(async (a) => {
    const req = makeRequest(now());
    const lines = Object.entries(req.headers).map(([k, v]) => `${k}: ${String(v)}`);
    const raw = await rawHttp(a.url, `GET /v1/orders/search HTTP/1.1\r\nhost: orders.example\r\n${lines.join('\r\n')}\r\nconnection: close, x-secret-hop\r\nx-secret-hop: do-not-forward\r\nte: trailers\r\n\r\n`);
    assert.match(raw, /^HTTP\/1\.1 200 /);
    const rec = upstream.requests.at(-1)!;
    assert.equal(rec.headers['x-secret-hop'], undefined);
    assert.equal(rec.headers['te'], undefined);
    assert.doesNotMatch(raw, /x-hop:/i); // nominated by the upstream's Connection header
    assert.match(raw, /x-upstream: orders/i);
  });
});

const denials: { name: string; status: number; reason: string; make: () => { req: VerifyRequest; extra?: Record<string, string> } }[] = [
  { name: 'tampered path', status: 403, reason: 'request_binding_mismatch', make: () => ({ req: { ...makeRequest({ ...now(), path: '/v1/orders/ord_1', subject: 'service:a' }), path: '/v1/orders/ord_2' } }) },
  { name: 'tampered query', status: 403, reason: 'request_binding_mismatch', make: () => ({ req: { ...makeRequest({ ...now(), query: 'limit=1' }), query: 'limit=1000' } }) },
  { name: 'tampered body', status: 403, reason: 'request_binding_mismatch', make: () => ({ req: { ...makeRequest({ ...now(), method: 'POST', path: '/v1/orders', body: '{"amount":"1"}' }), body: Buffer.from('{"amount":"9"}') } }) },
  { name: 'swapped method', status: 403, reason: 'bundle_route_missing', make: () => ({ req: { ...makeRequest(now()), method: 'DELETE' } }) },
  { name: 'wrong audience', status: 403, reason: 'audience_mismatch', make: () => ({ req: makeRequest({ ...now(), audience: 'billing-api' }) }) },
  { name: 'unknown key', status: 401, reason: 'unknown_issuer_key', make: () => ({ req: makeRequest({ ...now(), kid: 'nobody' }) }) },
  { name: 'expired passport', status: 401, reason: 'passport_expired', make: () => ({ req: makeRequest({ nowMs: Date.now() - 3_600_000 }) }) },
  { name: 'corrupted proof', status: 403, reason: 'invalid_request_proof', make: () => { const r = makeRequest(now()); const p = String(r.headers['x-trustplane-proof']); return { req: { ...r, headers: { ...r.headers, 'x-trustplane-proof': (p[0] === 'A' ? 'B' : 'A') + p.slice(1) } } }; } },
  { name: 'missing passport', status: 401, reason: 'missing_passport', make: () => { const r = makeRequest(now()); const h = { ...r.headers }; delete h['authorization']; return { req: { ...r, headers: h } }; } },
];

for (const d of denials) {
  test(`deny over HTTP: ${d.name} → ${d.status} ${d.reason}, upstream never contacted`, async () => {
    await withAdapter(async (a, audit) => {
      const before = upstream.requests.length;
      const { req, extra } = d.make();
      const r = await send(a, req, extra);
      assert.equal(r.status, d.status, r.text);
      assert.deepEqual(r.json, { allowed: false, reason: d.reason });
      assert.equal(upstream.requests.length, before);
      assert.equal(audit.events.at(-1)?.reason_code, d.reason);
      assert.equal(audit.events.at(-1)?.accepted, false);
    });
  });
}

test('replay over HTTP: the second identical request is 403 jti_replay and never forwarded', async () => {
  await withAdapter(async (a) => {
    const req = makeRequest(now());
    const before = upstream.requests.length;
    assert.equal((await send(a, req)).status, 200);
    const again = await send(a, req);
    assert.equal(again.status, 403);
    assert.deepEqual(again.json, { allowed: false, reason: 'jti_replay' });
    assert.equal(upstream.requests.length, before + 1);
  });
});

test('a body over the maximum is 413 body_too_large and nothing is forwarded', async () => {
  await withAdapter(
    async (a) => {
      const before = upstream.requests.length;
      const req = makeRequest({ ...now(), method: 'POST', path: '/v1/orders', body: 'x'.repeat(2048) });
      const r = await send(a, req);
      assert.equal(r.status, 413);
      assert.deepEqual(r.json, { allowed: false, reason: 'body_too_large' });
      assert.equal(upstream.requests.length, before);
    },
    { maxBodyBytes: 1024 },
  );
});

test('upstream down → 502 upstream_unavailable; upstream too slow → 504 upstream_timeout', async () => {
  await withAdapter(
    async (a) => {
      const r = await send(a, makeRequest(now()));
      assert.equal(r.status, 502);
      assert.deepEqual(r.json, { allowed: false, reason: 'upstream_unavailable' });
    },
    { upstream: 'http://127.0.0.1:9' },
  );
  upstream.behaviour = 'hang';
  try {
    await withAdapter(
      async (a) => {
        const r = await send(a, makeRequest(now()));
        assert.equal(r.status, 504);
        assert.deepEqual(r.json, { allowed: false, reason: 'upstream_timeout' });
      },
      { upstreamHeadersTimeoutMs: 300 },
    );
  } finally {
    upstream.behaviour = 'echo';
  }
});

test('a request target that is not origin-form, or a CONNECT, is 400 malformed_request (audited)', async () => {
  await withAdapter(async (a, audit) => {
    const connectRaw = await rawHttp(a.url, 'CONNECT orders.example:443 HTTP/1.1\r\nhost: orders.example:443\r\nx-request-id: tunnel-1\r\n\r\n');
    assert.match(connectRaw, /^HTTP\/1\.1 400 /);
    assert.match(connectRaw, /\{"allowed":false,"reason":"malformed_request"\}/);
    const tunnel = audit.events.filter((e) => e.request_id === 'tunnel-1');
    assert.equal(tunnel.length, 1);
    assert.equal(tunnel[0]!.reason_code, 'malformed_request');
    assert.equal(tunnel[0]!.outcome, 'deny');
    for (const target of ['*', 'http://orders.example/v1/orders/search']) {
      const raw = await rawHttp(a.url, `OPTIONS ${target} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer x\r\nconnection: close\r\n\r\n`);
      assert.match(raw, /^HTTP\/1\.1 400 /);
      assert.match(raw, /\{"allowed":false,"reason":"malformed_request"\}/);
    }
  });
});

/** The raw HTTP/1.x text of a signed GET, with the given Host lines (none, one, two). */
function rawSignedGet(r: VerifyRequest, hostLines: string, version = '1.1'): string {
  let head = `GET ${r.path}${r.query ? `?${r.query}` : ''} HTTP/${version}\r\n${hostLines}`;
  for (const [k, v] of Object.entries(r.headers)) if (typeof v === 'string') head += `${k}: ${v}\r\n`;
  return `${head}connection: close\r\n\r\n`;
}

test('an HTTP/1.1 request without a Host, or with two, is 400 malformed_request (JSON, audited); its jti stays unused', async () => {
  await withAdapter(async (a, audit) => {
    const before = upstream.requests.length;
    const noHost = makeRequest(now());
    const raw = await rawHttp(a.url, rawSignedGet(noHost, ''));
    assert.match(raw, /^HTTP\/1\.1 400 /);
    assert.match(raw, /\{"allowed":false,"reason":"malformed_request"\}/);
    const twoHosts = makeRequest(now());
    const raw2 = await rawHttp(a.url, rawSignedGet(twoHosts, 'host: a.example\r\nhost: b.example\r\n'));
    assert.match(raw2, /^HTTP\/1\.1 400 /);
    assert.match(raw2, /\{"allowed":false,"reason":"malformed_request"\}/);
    assert.equal(upstream.requests.length, before);
    const details = audit.events.filter((e) => e.reason_code === 'malformed_request').map((e) => e.detail_reason);
    assert.deepEqual(details, ['no Host header', 'more than one Host header']);
    // Denied before verification: both passports are still unused.
    assert.equal((await send(a, noHost)).status, 200);
    assert.equal((await send(a, twoHosts)).status, 200);
    // HTTP/1.0 has no Host requirement: the same kind of request is verified and forwarded.
    const raw10 = await rawHttp(a.url, rawSignedGet(makeRequest(now()), '', '1.0'));
    assert.match(raw10, /^HTTP\/1\.1 200 /);
  });
});

test('admin endpoints: healthz, readyz, and metrics with decisions by reason and route', async () => {
  await withAdapter(async (a) => {
    await send(a, makeRequest(now()));
    await send(a, makeRequest({ ...now(), audience: 'x' }));
    const h = await request(`${a.adminUrl}/healthz`);
    assert.equal(h.statusCode, 200);
    await h.body.dump();
    const rz = await request(`${a.adminUrl}/readyz`);
    assert.equal(rz.statusCode, 200);
    await rz.body.dump();
    const m = await request(`${a.adminUrl}/metrics`);
    const text = await m.body.text();
    assert.match(text, /trustplane_decisions_total\{outcome="allow",reason="request_verified",route="orders.search"\} 1/);
    assert.match(text, /trustplane_decisions_total\{outcome="deny",reason="audience_mismatch",route="orders.search"\} 1/);
    assert.match(text, /trustplane_bundle_policy_version 7/);
    assert.match(text, /trustplane_verify_duration_seconds_bucket/);
  });
});

test('readyz is 503 without a bundle, and every request is then 503 bundle_policy_missing', async () => {
  const a = await startAdapter({ listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, upstream: upstream.url, policy: new StaticPolicyProvider(), replayStore: new MemoryReplayStore(), audit: new MemoryAuditSink() });
  try {
    const rz = await request(`${a.adminUrl}/readyz`);
    assert.equal(rz.statusCode, 503);
    assert.match(await rz.body.text(), /no valid signed bundle/);
    const r = await send(a, makeRequest(now()));
    assert.equal(r.status, 503);
    assert.deepEqual(r.json, { allowed: false, reason: 'bundle_policy_missing' });
  } finally {
    await a.close();
  }
});

test('graceful shutdown: in-flight requests finish, new connections are refused', async (t) => {
  // The upstream answers 150 ms late, and close() is called once the request has reached it: the
  // request is then certainly in flight inside the adapter (a fixed sleep raced the connect).
  upstream.behaviour = 'slow';
  t.after(() => (upstream.behaviour = 'echo'));
  const a = await startAdapter({ listen: { host: '127.0.0.1', port: 0 }, upstream: upstream.url, policy: new StaticPolicyProvider(compilePolicy(trustMaterial(), policyBundle())), replayStore: new MemoryReplayStore(), audit: new MemoryAuditSink() });
  const seen = upstream.requests.length;
  const inflight = send(a, makeRequest(now()));
  for (const deadline = Date.now() + 5000; upstream.requests.length === seen; ) {
    assert.ok(Date.now() < deadline, 'the request never reached the upstream');
    await new Promise((r) => setTimeout(r, 2));
  }
  const closed = a.close(5000);
  const r = await inflight;
  assert.equal(r.status, 200);
  await closed;
  await assert.rejects(request(`${a.url}/v1/orders/search`));
});

/** Raw HTTP/1.1 head lines of a signed request (its own Content-Length when it has a body). */
function headLines(req: VerifyRequest, extra: string[] = []): string {
  const lines = Object.entries(req.headers).map(([k, v]) => `${k}: ${String(v)}`);
  if (req.body !== undefined) lines.push(`content-length: ${req.body.length}`);
  return `${req.method} ${req.path}${req.query ? `?${req.query}` : ''} HTTP/1.1\r\nhost: orders.example\r\n${[...lines, ...extra].join('\r\n')}\r\n\r\n`;
}

/** Connect, send `head`, and collect everything until the server closes; `onData` may answer. */
function exchange(url: string, head: string, onData?: (sofar: string, write: (s: string | Buffer) => void) => void): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(u.port), u.hostname, () => sock.write(head));
    let out = '';
    sock.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      onData?.(out, (s) => sock.write(s));
    });
    sock.on('close', () => resolve(out));
    sock.on('error', reject);
  });
}

test('Expect: 100-continue: a signed POST gets 100 Continue, then is verified and forwarded without Expect', async () => {
  await withAdapter(async (a, audit) => {
    const before = upstream.requests.length;
    const req = makeRequest({ ...now(), method: 'POST', path: '/v1/orders', body: '{"order_id":"ord_7"}', headers: { 'content-type': 'application/json' } });
    let sent = false;
    const out = await exchange(a.url, headLines(req, ['expect: 100-continue', 'connection: close']), (sofar, write) => {
      if (!sent && sofar.startsWith('HTTP/1.1 100 Continue\r\n\r\n')) {
        sent = true;
        write(Buffer.from(req.body!));
      }
    });
    assert.ok(sent, `no 100 Continue: ${out}`);
    assert.match(out, /\r\n\r\nHTTP\/1\.1 200 /);
    assert.equal(upstream.requests.length, before + 1);
    const rec = upstream.requests.at(-1)!;
    assert.equal(rec.body.toString(), '{"order_id":"ord_7"}');
    assert.equal(rec.headers['expect'], undefined);
    assert.equal(audit.events.at(-1)?.reason_code, 'request_verified');
  });
});

test('Expect: 100-continue without a passport, or with a body over the maximum: refused at once, no 100 Continue, no body read', async () => {
  await withAdapter(
    async (a) => {
      const before = upstream.requests.length;
      const noPassport = await exchange(a.url, 'POST /v1/orders HTTP/1.1\r\nhost: orders.example\r\ncontent-length: 999999999\r\nexpect: 100-continue\r\n\r\n');
      assert.match(noPassport, /^HTTP\/1\.1 401 /);
      assert.doesNotMatch(noPassport, /100 Continue/);
      assert.match(noPassport, /"reason":"missing_passport"/);
      const req = makeRequest({ ...now(), method: 'POST', path: '/v1/orders', body: 'x'.repeat(2048) });
      const tooLarge = await exchange(a.url, headLines(req, ['expect: 100-continue']));
      assert.match(tooLarge, /^HTTP\/1\.1 413 /);
      assert.doesNotMatch(tooLarge, /100 Continue/);
      assert.equal(upstream.requests.length, before);
    },
    { maxBodyBytes: 1024 },
  );
});

test('a signed header sent twice, or nominated by Connection, is 400 malformed_request, never forwarded, and its jti stays unused', async () => {
  await withAdapter(async (a, audit) => {
    const before = upstream.requests.length;
    const req = makeRequest({ ...now(), method: 'POST', path: '/v1/orders', body: '{"order_id":"ord_8"}', headers: { 'content-type': 'application/json' } });
    const body = String(req.body);
    const twice = await exchange(a.url, headLines(req, ['content-type: text/evil', 'connection: close']) + body);
    assert.match(twice, /^HTTP\/1\.1 400 /);
    assert.match(twice, /\{"allowed":false,"reason":"malformed_request"\}/);
    assert.match(String(audit.events.at(-1)?.detail_reason), /signed header content-type is repeated/);
    const nominated = await exchange(a.url, headLines(req, ['connection: close, content-type']) + body);
    assert.match(nominated, /^HTTP\/1\.1 400 /);
    assert.match(String(audit.events.at(-1)?.detail_reason), /nominated by Connection/);
    assert.equal(upstream.requests.length, before);
    // Neither denial consumed the jti: the request as signed still goes through, once.
    assert.equal((await send(a, req)).status, 200);
    assert.equal(upstream.requests.length, before + 1);
  });
});

test('identity and credential headers spelled with underscores never reach the upstream', async () => {
  await withAdapter(async (a) => {
    const r = await send(a, makeRequest(now()), { X_TrustPlane_Subject: 'service:admin', x_trustplane_trust_domain: 'admin.local', X_Request_Id: 'forged', authorization_: 'kept' });
    assert.equal(r.status, 200, r.text);
    const rec = upstream.requests.at(-1)!;
    const names = rec.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    assert.deepEqual(names.filter((n) => n.includes('_')), ['authorization_']);
    assert.equal(rec.headers['x-trustplane-subject'], 'service:orders-client');
  });
});

test('a malformed request on a connection whose previous response is still in progress closes it, with no bytes spliced in', async (t) => {
  upstream.behaviour = 'slow';
  t.after(() => (upstream.behaviour = 'echo'));
  await withAdapter(async (a) => {
    const seen = upstream.requests.length;
    let sentBad = false;
    // One keep-alive connection: the valid request first, the malformed one once it is in flight.
    const spliced = await new Promise<string>((resolve, reject) => {
      const u = new URL(a.url);
      const sock = connect(Number(u.port), u.hostname, () => sock.write(headLines(makeRequest(now()))));
      let got = '';
      sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
      sock.on('close', () => resolve(got));
      sock.on('error', reject);
      const poll = setInterval(() => {
        if (upstream.requests.length > seen && !sentBad) {
          sentBad = true;
          clearInterval(poll);
          sock.write('GET /x HTTP/1.1\r\nhost: o\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n');
        }
      }, 2);
    });
    assert.ok(sentBad);
    assert.doesNotMatch(spliced, /400 Bad Request|malformed_request/);
  });
});

test('identity header values are sent as is when plain visible ASCII, else percent-encoded whole, so two subjects never arrive alike', async () => {
  const { safeHeaderValue } = await import('../src/headers.js');
  assert.equal(safeHeaderValue('service:orders-client'), 'service:orders-client');
  assert.equal(safeHeaderValue('service:café'), 'service%3Acaf%C3%A9');
  assert.equal(safeHeaderValue('service:caf%C3%A9'), 'service%3Acaf%25C3%25A9');
  assert.notEqual(safeHeaderValue('service:café'), safeHeaderValue('service:caf%C3%A9'));
});

test('an admin port already in use fails startup, and leaves the proxy port closed', async () => {
  const { createServer } = await import('node:net');
  const taken = createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
  const port = (taken.address() as { port: number }).port;
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
  const proxyPort = (probe.address() as { port: number }).port;
  await new Promise<void>((r) => probe.close(() => r()));
  try {
    await assert.rejects(
      startAdapter({ listen: { host: '127.0.0.1', port: proxyPort }, admin: { host: '127.0.0.1', port }, upstream: upstream.url, policy: new StaticPolicyProvider(compilePolicy(trustMaterial(), policyBundle())), replayStore: new MemoryReplayStore(), audit: new MemoryAuditSink() }),
      /EADDRINUSE/,
    );
    await assert.rejects(request(`http://127.0.0.1:${proxyPort}/v1/orders/search`), /ECONNREFUSED/);
  } finally {
    await new Promise<void>((r) => taken.close(() => r()));
  }
});

test('a transfer coding other than chunked is 400 malformed_request; plain chunked bodies are verified as usual', async () => {
  await withAdapter(async (a) => {
    const before = upstream.requests.length;
    const req = makeRequest({ ...now(), method: 'POST', path: '/v1/orders', body: 'hello' });
    const { body: _body, ...noBody } = req;
    const head = headLines(noBody, ['connection: close']).replace(/\r\n\r\n$/, '\r\n');
    const coded = await exchange(a.url, `${head}transfer-encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`);
    assert.match(coded, /^HTTP\/1\.1 400 /);
    assert.match(coded, /"reason":"malformed_request"/);
    assert.equal(upstream.requests.length, before);
    const chunked = await exchange(a.url, `${head}transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`);
    assert.match(chunked, /^HTTP\/1\.1 200 /);
    assert.equal(upstream.requests.at(-1)!.body.toString(), 'hello');
  });
});

test('a body is read only for a verified head: a bad passport is answered at once with the body unsent, a tampered body spends no jti', { timeout: 10_000 }, async () => {
  await withAdapter(async (a, audit) => {
    const before = upstream.requests.length;
    // 50 uploads that declare 512 KiB and never send it, with a passport that does not verify:
    // each is answered and closed at once (the adapter used to wait for the body, holding up
    // to --max-body-bytes each, for the request timeout).
    const post = makeRequest({ ...now(), method: 'POST', path: '/v1/orders', body: 'x' });
    const forged = { ...post, headers: { ...post.headers, authorization: 'Bearer eyJhbGciOiJFZERTQSIsImtpZCI6ImNsaWVudC1rZXktMSJ9.e30.' + 'A'.repeat(86) } };
    const started = Date.now();
    const answers = await Promise.all(Array.from({ length: 50 }, () => exchange(a.url, headLines(forged).replace('content-length: 1', 'content-length: 524288'))));
    for (const r of answers) assert.match(r, /^HTTP\/1\.1 401 .*"reason":"invalid_passport_signature"/s);
    assert.ok(Date.now() - started < 5000, 'answered without waiting for bodies');
    // Expect: 100-continue with a passport that does not verify: no 100 Continue.
    const expect = await exchange(a.url, headLines(forged, ['expect: 100-continue']));
    assert.match(expect, /^HTTP\/1\.1 401 /);
    assert.doesNotMatch(expect, /100 Continue/);
    // A verified head with a body other than the one signed: request_binding_mismatch, and the
    // same request with its own body is then accepted (its jti was not spent).
    const good = makeRequest({ ...now(), method: 'POST', path: '/v1/orders', body: '{"a":1}', headers: { 'content-type': 'application/json' } });
    const tampered = await send(a, { ...good, body: Buffer.from('{"a":2}') });
    assert.equal(tampered.status, 403, tampered.text);
    assert.equal(tampered.json?.['reason'], 'request_binding_mismatch');
    const ok = await send(a, good);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(upstream.requests.length, before + 1, 'only the verified request was forwarded');
    assert.equal(audit.events.filter((e) => e['reason_code'] === 'invalid_passport_signature').length, 51);
  });
});
