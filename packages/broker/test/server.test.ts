import { test, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ManualClock, decodePassportUnverified, type AuditEvent } from '@trustplane/core';
import { brokerKey, T0, BROKER_ISSUER } from '@trustplane/testkit';
import { Broker, softwareSource, startBrokerServer, brokerIssue, brokerExchange, buildIpcEnvelope, BrokerClientError, type BrokerServer } from '../src/index.js';

const repoRoot = path.resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../..');
const dir = mkdtempSync(path.join(tmpdir(), 'tp-broker-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

async function start(o: { readTimeoutMs?: number; idleTimeoutMs?: number; maxConnections?: number; socketGid?: number } = {}): Promise<{ server: BrokerServer; socketPath: string; events: AuditEvent[] }> {
  const socketPath = path.join(dir, `b${n++}.sock`);
  const events: AuditEvent[] = [];
  const broker = new Broker({
    policy: { issuer: BROKER_ISSUER, trustDomain: 'example.local', signingKey: brokerKey, kid: 'broker-key-1', allow: [{ audience: 'orders-api', routes: ['*'] }] },
    sources: [softwareSource('svc:orders-worker')],
    clock: new ManualClock(T0),
  });
  const server = await startBrokerServer({ socketPath, broker, onAudit: (e) => events.push(e), ...o });
  return { server, socketPath, events };
}

const issueReq = { method: 'POST', url: 'https://orders.example/v1/orders', audience: 'orders-api', routeId: 'orders.create', headers: { 'content-type': 'application/json' }, body: '{}' };

/** Write raw bytes, collect everything until the broker closes. */
function raw(socketPath: string, data: string | Buffer | undefined, opts: { end?: boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = createConnection(socketPath);
    const chunks: Buffer[] = [];
    c.on('connect', () => {
      if (data !== undefined) c.write(data);
      if (opts.end === true) c.end();
    });
    c.on('data', (d: Buffer) => chunks.push(d));
    c.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
    c.on('error', reject);
  });
}

test('the socket is owner-only (0600), or 0660 for a configured group; TCP is never opened', async () => {
  const { server, socketPath } = await start();
  assert.ok(statSync(socketPath).isSocket());
  assert.equal(statSync(socketPath).mode & 0o777, 0o600);
  await server.close();
  assert.equal(existsSync(socketPath), false, 'the socket file is removed on close');
  const g = await start({ socketGid: process.getgid!() });
  assert.equal(statSync(g.socketPath).mode & 0o777, 0o660);
  await g.server.close();
});

test('concurrent clients each get their own request-bound passport; audit events carry no secrets', async () => {
  const { server, socketPath, events } = await start();
  const results = await Promise.all(Array.from({ length: 40 }, (_, i) => brokerIssue(socketPath, { ...issueReq, requestId: `r-${i}` })));
  const jtis = new Set<string>();
  results.forEach((r, i) => {
    assert.equal(r.accepted, true);
    if (!r.accepted) return;
    assert.equal(r.response.request_id, `r-${i}`);
    jtis.add(decodePassportUnverified(r.headers['Authorization']!.slice(7)).payload['jti'] as string);
  });
  assert.equal(jtis.size, 40);
  assert.equal(server.stats.issued, 40);
  assert.equal(events.length, 40);
  const e = events[0]!;
  assert.equal(e.component, 'broker');
  assert.equal(e.reason_code, 'broker_passport_issued');
  assert.equal(e.peer, 'unsupported');
  assert.equal(e.key_binding, 'software');
  const first = results[0]!;
  const text = JSON.stringify(events);
  if (first.accepted) {
    assert.ok(!text.includes(first.headers['Authorization']!.slice(7)), 'no passport in audit events');
    assert.ok(!text.includes(first.headers['X-TrustPlane-Proof']!), 'no stamp in audit events');
  }
  await server.close();
});

test('a malformed line is denied with its field named and the request_id echoed; the broker keeps serving', async () => {
  const { server, socketPath, events } = await start();
  const { envelope } = buildIpcEnvelope({ ...issueReq, requestId: 'bad-1' });
  (envelope.request.http as { body_sha256: string }).body_sha256 = 'nothex';
  const r = await brokerExchange(socketPath, JSON.stringify(envelope));
  assert.equal(r.accepted, false);
  assert.equal(r.status, 'deny');
  assert.equal(r.reason_code, 'broker_request_malformed');
  assert.equal(r.request_id, 'bad-1');
  assert.match(r.error!.message, /body_sha256/);
  assert.equal(r.artifacts, null);
  const garbage = JSON.parse(await raw(socketPath, 'hello\n')) as { reason_code: string; request_id: string };
  assert.equal(garbage.reason_code, 'broker_request_malformed');
  assert.equal(garbage.request_id, '');
  assert.equal((await brokerIssue(socketPath, issueReq)).accepted, true);
  assert.equal(events.filter((e) => e.reason_code === 'broker_request_malformed').length, 2);
  await server.close();
});

test('a line over 1 MiB is refused without reading the rest; the broker keeps serving', async () => {
  const { server, socketPath } = await start();
  const answer = await raw(socketPath, Buffer.alloc(1024 * 1024 + 10, 0x61));
  assert.equal((JSON.parse(answer) as { reason_code: string }).reason_code, 'broker_request_too_large');
  // Exactly 1 MiB is within the cap (and then malformed, not too large).
  const atCap = await raw(socketPath, Buffer.concat([Buffer.alloc(1024 * 1024, 0x61), Buffer.from('\n')]));
  assert.equal((JSON.parse(atCap) as { reason_code: string }).reason_code, 'broker_request_malformed');
  assert.equal((await brokerIssue(socketPath, issueReq)).accepted, true);
  await server.close();
});

test('slow clients are dropped, vanished clients cost nothing, a line without LF before EOF is answered', async () => {
  const { server, socketPath } = await start({ readTimeoutMs: 150 });
  assert.equal(await raw(socketPath, '{"version":'), '', 'a client that never finishes its line is dropped');
  assert.equal(server.stats.dropped, 1);
  await new Promise<void>((resolve) => {
    const c = createConnection(socketPath, () => {
      c.write('{"version":"trustplane-broker-ipc-v1"');
      c.destroy();
      resolve();
    });
  });
  const { envelope } = buildIpcEnvelope({ ...issueReq, requestId: 'eof-1' });
  const viaEof = JSON.parse(await raw(socketPath, JSON.stringify(envelope), { end: true })) as { accepted: boolean; request_id: string };
  assert.equal(viaEof.accepted, true);
  assert.equal(viaEof.request_id, 'eof-1');
  assert.equal((await brokerIssue(socketPath, issueReq)).accepted, true);
  await server.close();
});

test('startup refuses to clobber a non-socket file or a live broker, and replaces a stale socket', async () => {
  const file = path.join(dir, 'not-a-socket');
  writeFileSync(file, 'keep me');
  const broker = new Broker({ policy: { issuer: 'i', trustDomain: 't', signingKey: brokerKey, kid: 'k', allow: [] }, sources: [softwareSource('s')] });
  await assert.rejects(startBrokerServer({ socketPath: file, broker }), /not a socket/);
  const live = await start();
  await assert.rejects(startBrokerServer({ socketPath: live.socketPath, broker }), /in use/);
  await live.server.close();
  // A stale socket: a server that died without unlinking (simulated by a listener that is gone).
  const stalePath = path.join(dir, 'stale.sock');
  await new Promise<void>((resolve) => {
    const c = execFile('python3', ['-c', `import socket; s=socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(stalePath)})`]);
    c.on('exit', () => resolve());
  });
  assert.ok(statSync(stalePath).isSocket());
  const s = await startBrokerServer({ socketPath: stalePath, broker });
  await s.close();
});

test('the client reports a missing broker clearly', async () => {
  await assert.rejects(brokerIssue(path.join(dir, 'nobody.sock'), issueReq), (err: unknown) => err instanceof BrokerClientError && /no broker listening/.test(err.message));
});

test('a Python client with SPEC §6 framing (as the Python SDK BrokerClient) talks to this broker unchanged', async () => {
  const { server, socketPath } = await start();
  const { envelope } = buildIpcEnvelope({ ...issueReq, requestId: 'py-1' });
  const out = await new Promise<string>((resolve, reject) => {
    const c = execFile('python3', [path.join(repoRoot, 'conformance/python/broker_ipc_client.py'), socketPath], (err, stdout) => (err ? reject(new Error(`python client failed: ${err.message}`)) : resolve(stdout)));
    c.stdin!.end(JSON.stringify(envelope));
  });
  const r = JSON.parse(out) as { accepted: boolean; request_id: string; artifacts: { passport: { format: string }; stamp: { format: string } } };
  assert.equal(r.accepted, true);
  assert.equal(r.request_id, 'py-1');
  assert.equal(r.artifacts.passport.format, 'compact-jws');
  assert.equal(r.artifacts.stamp.format, 'ed25519-transcript-v1');
  await server.close();
});

test('an unexpected failure inside the broker is internal_error (fail closed) and the broker keeps serving', async () => {
  const socketPath = path.join(dir, `boom${n++}.sock`);
  let explode = true;
  const flaky = { keyBinding: 'software' as const, grant: () => (explode ? (() => { throw new Error('kms unreachable'); })() : { ok: true as const, subject: 'svc:w' }) };
  const logs: string[] = [];
  const broker = new Broker({ policy: { issuer: BROKER_ISSUER, trustDomain: 'example.local', signingKey: brokerKey, kid: 'broker-key-1', allow: [{ audience: 'orders-api', routes: ['*'] }] }, sources: [flaky] });
  const server = await startBrokerServer({ socketPath, broker, onLog: (_l, msg, f) => logs.push(`${msg} ${JSON.stringify(f)}`) });
  try {
    const r = await brokerIssue(socketPath, issueReq);
    assert.equal(r.accepted, false);
    assert.equal(r.response.reason_code, 'internal_error');
    assert.equal(r.response.artifacts, null);
    assert.match(r.response.error!.message, /could not process/);
    assert.ok(!r.response.error!.message.includes('kms'), 'internal detail stays in the operator log');
    assert.ok(logs.some((l) => l.includes('kms unreachable')));
    explode = false;
    assert.equal((await brokerIssue(socketPath, issueReq)).accepted, true);
  } finally {
    await server.close();
  }
});

test('a client that keeps its side open after the answer is dropped after the read timeout, and holds no slot for ever', async () => {
  const { server, socketPath } = await start({ readTimeoutMs: 150 });
  const { envelope } = buildIpcEnvelope({ ...issueReq, requestId: 'hold-1' });
  const started = Date.now();
  const { answer, closedAfterMs } = await new Promise<{ answer: string; closedAfterMs: number }>((resolve, reject) => {
    // allowHalfOpen: this client never ends its side. After the answer it keeps writing a byte
    // now and then: once the broker has dropped the connection, a write fails (EPIPE).
    const c = createConnection({ path: socketPath, allowHalfOpen: true });
    let got = '';
    let poke: NodeJS.Timeout | undefined;
    c.on('connect', () => c.write(`${JSON.stringify(envelope)}\n`));
    c.on('data', (d: Buffer) => (got += d.toString('utf8')));
    c.on('end', () => (poke = setInterval(() => c.write('x'), 20)));
    c.on('error', (err: NodeJS.ErrnoException) => {
      clearInterval(poke);
      c.destroy();
      if (err.code === 'EPIPE' || err.code === 'ECONNRESET') resolve({ answer: got, closedAfterMs: Date.now() - started });
      else reject(err);
    });
    setTimeout(() => {
      clearInterval(poke);
      c.destroy();
      resolve({ answer: got, closedAfterMs: Infinity });
    }, 5000).unref();
  });
  assert.equal((JSON.parse(answer) as { accepted: boolean }).accepted, true);
  assert.ok(closedAfterMs >= 100 && closedAfterMs < 5000, `closed after ${closedAfterMs} ms`);
  await server.close();
});

test('a request line that is not valid UTF-8 is broker_request_malformed, never decoded with replacements', async () => {
  const { server, socketPath } = await start();
  const { envelope } = buildIpcEnvelope({ ...issueReq, requestId: 'utf8-1' });
  const text = JSON.stringify(envelope);
  const at = text.indexOf('orders-api');
  const line = Buffer.concat([Buffer.from(text.slice(0, at)), Buffer.from([0xff, 0xfe, 0xc0, 0x80]), Buffer.from(`${text.slice(at)}\n`)]);
  const r = JSON.parse(await raw(socketPath, line)) as { reason_code: string; accepted: boolean; error: { message: string } };
  assert.equal(r.accepted, false);
  assert.equal(r.reason_code, 'broker_request_malformed');
  assert.match(r.error.message, /not valid UTF-8/);
  await server.close();
});

test('fields that are only whitespace are broker_request_malformed (not retryable), and no passport is signed', async () => {
  const { server, socketPath, events } = await start();
  for (const field of ['path', 'method', 'authority', 'route_id'] as const) {
    const { envelope } = buildIpcEnvelope({ ...issueReq, requestId: `ws-${field}` });
    (envelope.request.http as unknown as Record<string, unknown>)[field] = ' \t';
    const r = await brokerExchange(socketPath, JSON.stringify(envelope));
    assert.equal(r.reason_code, 'broker_request_malformed', `${field}: ${r.error?.message}`);
    assert.equal(r.error?.retryable, false);
    assert.match(r.error.message, new RegExp(field));
    assert.equal(r.artifacts, null);
  }
  assert.equal(events.filter((e) => e.jti !== undefined).length, 0, 'no passport was issued');
  await server.close();
});

test('startup does not replace a socket whose listener is alive but busy (its backlog full)', async () => {
  const busyPath = path.join(dir, 'busy.sock');
  // A listener that never accepts, with a backlog of 0, then filled: further connects get EAGAIN.
  const py = execFile('python3', ['-c', `import socket,time,sys
s=socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(busyPath)}); s.listen(0)
cs=[]
for i in range(8):
    c=socket.socket(socket.AF_UNIX); c.setblocking(False)
    try: c.connect(${JSON.stringify(busyPath)})
    except (BlockingIOError, OSError): pass
    cs.append(c)
print('ready', flush=True); time.sleep(30)`]);
  try {
    await new Promise<void>((resolve) => py.stdout!.on('data', (d: Buffer) => (d.toString().includes('ready') ? resolve() : undefined)));
    const inode = statSync(busyPath).ino;
    const broker = new Broker({ policy: { issuer: 'i', trustDomain: 't', signingKey: brokerKey, kid: 'k', allow: [] }, sources: [softwareSource('s')] });
    await assert.rejects(startBrokerServer({ socketPath: busyPath, broker }), /may be in use by a running broker/);
    assert.equal(statSync(busyPath).ino, inode, 'the live socket is left in place');
  } finally {
    py.kill();
  }
});

test('a socket whose access cannot be set fails the start and is not left listening', async () => {
  // chown refuses a group id out of range (as it refuses, EPERM, a foreign group to a non-root
  // user): the failure comes after listen(), which is the case that must not leave a server up.
  const socketPath = path.join(dir, `acl${n++}.sock`);
  const broker = new Broker({ policy: { issuer: 'i', trustDomain: 't', signingKey: brokerKey, kid: 'k', allow: [] }, sources: [softwareSource('s')] });
  await assert.rejects(startBrokerServer({ socketPath, broker, socketGid: 2 ** 33 }), /gid|range/i);
  assert.equal(existsSync(socketPath), false, 'the socket file is removed');
  await assert.rejects(
    new Promise<void>((resolve, reject) => {
      const c = createConnection(socketPath);
      c.once('connect', () => (c.destroy(), resolve()));
      c.once('error', reject);
    }),
    /ENOENT|ECONNREFUSED/,
  );
});

test('an unknown field with a huge name is refused with its path cut short, in the answer and the audit event', async () => {
  const { server, socketPath, events } = await start();
  const { envelope } = buildIpcEnvelope({ ...issueReq, requestId: 'long-1' });
  (envelope.request as unknown as Record<string, unknown>)['x'.repeat(100_000)] = 1;
  const r = await brokerExchange(socketPath, JSON.stringify(envelope));
  assert.equal(r.reason_code, 'broker_request_malformed');
  assert.match(r.error!.message, /^\$\.request\.x+…: unknown field$/);
  assert.ok(r.error!.message.length < 300, `${r.error!.message.length} characters`);
  assert.ok(JSON.stringify(events.at(-1)).length < 2000);
  await server.close();
});

/** Open `n` connections that send nothing; resolves once all are connected. */
async function idleConnections(socketPath: string, n: number): Promise<Socket[]> {
  const out: Socket[] = [];
  for (let i = 0; i < n; i++) {
    out.push(
      await new Promise<Socket>((resolve, reject) => {
        const c = createConnection(socketPath, () => resolve(c));
        c.once('error', reject);
      }),
    );
    out[i]!.on('error', () => undefined);
  }
  return out;
}

test('300 idle connections do not starve a real caller: its request is answered promptly', { timeout: 20_000 }, async () => {
  // An idle timeout far longer than the test: what keeps the slots free here is the eviction.
  const { server, socketPath } = await start({ idleTimeoutMs: 60_000, readTimeoutMs: 60_000 });
  const idle = await idleConnections(socketPath, 300);
  try {
    const started = Date.now();
    const r = await brokerIssue(socketPath, { ...issueReq, timeoutMs: 2000 });
    const took = Date.now() - started;
    assert.equal(r.accepted, true);
    assert.ok(took < 1000, `answered after ${took} ms`);
    assert.ok(server.stats.evicted >= 300 - 256 + 1, `evicted ${server.stats.evicted}`);
    assert.equal(server.stats.refused, 0);
  } finally {
    for (const c of idle) c.destroy();
    await server.close();
  }
});

test('a connection that sends nothing is dropped after the idle timeout, long before the read timeout', { timeout: 10_000 }, async () => {
  const { server, socketPath } = await start({ idleTimeoutMs: 100, readTimeoutMs: 5000 });
  const started = Date.now();
  assert.equal(await raw(socketPath, undefined), '');
  const took = Date.now() - started;
  assert.ok(took >= 80 && took < 1500, `dropped after ${took} ms`);
  assert.equal(server.stats.dropped, 1);
  // One that has started its line gets the read timeout, not the idle one.
  const { envelope } = buildIpcEnvelope({ ...issueReq, requestId: 'slow-1' });
  const line = `${JSON.stringify(envelope)}\n`;
  const answer = await new Promise<string>((resolve, reject) => {
    const c = createConnection(socketPath, () => {
      c.write(line.slice(0, 10));
      setTimeout(() => c.write(line.slice(10)), 300);
    });
    let got = '';
    c.on('data', (d: Buffer) => (got += d.toString('utf8')));
    c.on('close', () => resolve(got));
    c.on('error', reject);
  });
  assert.equal((JSON.parse(answer) as { accepted: boolean; request_id: string }).request_id, 'slow-1');
  await server.close();
});

test('connection slots: an answered or idle connection is evicted for a new one; requests being read are not, the newcomer is refused', { timeout: 10_000 }, async () => {
  const { server, socketPath } = await start({ maxConnections: 3, idleTimeoutMs: 60_000, readTimeoutMs: 60_000 });
  const { envelope } = buildIpcEnvelope({ ...issueReq, requestId: 'partial-1' });
  const line = `${JSON.stringify(envelope)}\n`;
  const partial = await idleConnections(socketPath, 3);
  const answers = partial.map(
    (c) =>
      new Promise<string>((resolve) => {
        let got = '';
        c.on('data', (d: Buffer) => (got += d.toString('utf8')));
        c.on('close', () => resolve(got));
      }),
  );
  for (const c of partial) c.write(line.slice(0, 20));
  await new Promise((r) => setTimeout(r, 50));
  // Every slot holds a request being read: the newcomer is closed, the readers are untouched.
  // (A write to the closed connection may fail with EPIPE: refused either way.)
  assert.equal(await raw(socketPath, line).catch((err: NodeJS.ErrnoException) => (err.code === 'EPIPE' || err.code === 'ECONNRESET' ? '' : Promise.reject(err))), '');
  assert.equal(server.stats.refused, 1);
  assert.equal(server.stats.evicted, 0);
  partial[0]!.write(line.slice(20));
  assert.equal((JSON.parse(await answers[0]!) as { request_id: string }).request_id, 'partial-1');
  // Now slot 1 is free; an idle connection takes it, and is itself evicted for a real request.
  const [idle] = await idleConnections(socketPath, 1);
  const idleClosed = new Promise<void>((r) => idle!.once('close', () => r()));
  assert.equal((await brokerIssue(socketPath, { ...issueReq, timeoutMs: 2000 })).accepted, true);
  await idleClosed;
  // (The answered connection may still have been lingering when the idle one came: then it went first.)
  const evicted: number = server.stats.evicted;
  assert.ok(evicted === 1 || evicted === 2, `evicted ${evicted}`);
  assert.equal(server.stats.refused, 1);
  for (const c of partial) c.destroy();
  await server.close();
});

test('startBrokerServer refuses a connection cap that is not a positive integer', async () => {
  const broker = new Broker({ policy: { issuer: 'i', trustDomain: 't', signingKey: brokerKey, kid: 'k', allow: [] }, sources: [softwareSource('s')] });
  for (const bad of [0, -3, 2.5]) await assert.rejects(startBrokerServer({ socketPath: path.join(dir, 'cap.sock'), broker, maxConnections: bad }), TypeError);
});
