/**
 * Broker → adapter end to end over real sockets: the broker on a real Unix socket (in-process,
 * and as the real `trustplane-broker` process), the adapter on real loopback HTTP, a real
 * upstream. The adapter sees only public trust material.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { MemoryReplayStore, StaticPolicyProvider, compilePolicy, formatPrivateKey, type PolicyBundle } from '@trustplane/core';
import { startAdapter, MemoryAuditSink, type RunningAdapter } from '@trustplane/adapter';
import { Broker, brokerIssue, softwareSource, spiffeSource, startBrokerServer, startDevWorkloadApiFor, type SignerSource, type BrokerIssueRequest } from '@trustplane/broker';
import { brokerKey, BROKER_ISSUER, policyBundle, trustMaterial, startEchoUpstream, type EchoUpstream } from '@trustplane/testkit';
import { run, tempDir } from './helpers.js';

const WORKER = 'spiffe://example.local/ns/orders/sa/worker';
const svid = { status: () => ({ ok: true as const, identity: { spiffeId: WORKER, trustDomain: 'example.local' } }) };

/** orders.create also accepts the broker's software passports for svc:orders-worker. */
function bundle(): PolicyBundle {
  return policyBundle((b) => {
    b.route_groups[0]!.routes.find((r) => r.route_id === 'orders.create')!.allowed_sources.push({
      source_type: 'spiffe_spire',
      issuer: BROKER_ISSUER,
      trust_domain: 'example.local',
      subject_exact: 'svc:orders-worker',
      required_key_binding: 'software',
    });
  });
}

async function withStack(sources: SignerSource[], t: Parameters<typeof tempDir>[0], fn: (s: { socket: string; adapter: RunningAdapter; upstream: EchoUpstream }) => Promise<void>): Promise<void> {
  const dir = tempDir(t);
  const socket = path.join(dir, 'broker.sock');
  const broker = new Broker({ policy: { issuer: BROKER_ISSUER, trustDomain: 'example.local', signingKey: brokerKey, kid: 'broker-key-1', allow: [{ audience: 'orders-api', routes: ['*'] }] }, sources });
  const server = await startBrokerServer({ socketPath: socket, broker });
  const upstream = await startEchoUpstream();
  const adapter = await startAdapter({
    listen: { host: '127.0.0.1', port: 0 },
    upstream: upstream.url,
    policy: new StaticPolicyProvider(compilePolicy(trustMaterial(), bundle())),
    replayStore: new MemoryReplayStore(),
    audit: new MemoryAuditSink(),
  });
  try {
    await fn({ socket, adapter, upstream });
  } finally {
    await adapter.close();
    await upstream.close();
    await server.close();
  }
}

/** Send to the adapter with the broker's headers; the URL the broker signed is https://orders.example… */
async function send(adapter: RunningAdapter, method: string, pathAndQuery: string, headers: Record<string, string>, body?: string): Promise<{ status: number; reason?: string }> {
  const r = await request(`${adapter.url}${pathAndQuery}`, { method: method as 'GET', headers, ...(body !== undefined ? { body } : {}) });
  const text = await r.body.text();
  let reason: string | undefined;
  try {
    reason = (JSON.parse(text) as { reason?: string }).reason;
  } catch {
    reason = undefined;
  }
  return { status: r.statusCode, ...(reason !== undefined ? { reason } : {}) };
}

async function issue(socket: string, req: Omit<BrokerIssueRequest, 'audience'>): Promise<Record<string, string>> {
  const r = await brokerIssue(socket, { audience: 'orders-api', ...req });
  assert.equal(r.accepted, true, r.accepted ? '' : `${r.response.reason_code}: ${r.response.error?.message}`);
  return r.accepted ? r.headers : {};
}

test('broker-issued request: accepted once; changed path, corrupted proof and a second send are denied', async (t) => {
  await withStack([softwareSource('svc:orders-worker'), spiffeSource(svid)], t, async ({ socket, adapter, upstream }) => {
    const create = await issue(socket, { method: 'POST', url: 'https://orders.example/v1/orders', routeId: 'orders.create', headers: { 'content-type': 'application/json' }, body: '{"sku":"A1"}', requestedKeyBinding: 'software', acceptableKeyBindings: ['software'] });
    const ok = await send(adapter, 'POST', '/v1/orders', { 'content-type': 'application/json', ...create }, '{"sku":"A1"}');
    assert.deepEqual(ok, { status: 200 });
    assert.equal(upstream.requests.length, 1);
    assert.equal(upstream.requests[0]!.headers['authorization'], undefined, 'the passport is not forwarded');
    assert.deepEqual(await send(adapter, 'POST', '/v1/orders', { 'content-type': 'application/json', ...create }, '{"sku":"A1"}'), { status: 403, reason: 'jti_replay' });

    // attested_workload for GET /v1/orders/ord_1 (route with provenance and context policies).
    const get = () => issue(socket, { method: 'GET', url: 'https://orders.example/v1/orders/ord_1', routeId: 'orders.get', requestedKeyBinding: 'attested_workload', ctx: { tool_name: 'orders-worker' } });
    assert.deepEqual(await send(adapter, 'GET', '/v1/orders/ord_2', await get()), { status: 403, reason: 'request_binding_mismatch' });
    const h = await get();
    const proof = h['X-TrustPlane-Proof']!;
    const corrupted = { ...h, 'X-TrustPlane-Proof': (proof[0] === 'A' ? 'B' : 'A') + proof.slice(1) };
    assert.deepEqual(await send(adapter, 'GET', '/v1/orders/ord_1', corrupted), { status: 403, reason: 'invalid_request_proof' });
    // Denials consumed nothing: the same passport with its real proof still goes through, once.
    assert.deepEqual(await send(adapter, 'GET', '/v1/orders/ord_1', h), { status: 200 });
    assert.deepEqual(await send(adapter, 'GET', '/v1/orders/ord_1', h), { status: 403, reason: 'jti_replay' });
    assert.equal(upstream.requests.length, 2);
  });
});

test('a route demanding attested_workload refuses a software broker', async (t) => {
  await withStack([softwareSource(WORKER)], t, async ({ socket, adapter, upstream }) => {
    // Asked for the route's real minimum, the software broker refuses outright…
    const refused = await brokerIssue(socket, { method: 'GET', url: 'https://orders.example/v1/orders/ord_1', audience: 'orders-api', routeId: 'orders.get', requestedKeyBinding: 'attested_workload' });
    assert.equal(refused.accepted, false);
    assert.equal(refused.response.reason_code, 'insufficient_key_binding');
    // …and a software passport it does issue is refused by the adapter.
    const h = await issue(socket, { method: 'GET', url: 'https://orders.example/v1/orders/ord_1', routeId: 'orders.get', ctx: { tool_name: 'orders-worker' } });
    assert.deepEqual(await send(adapter, 'GET', '/v1/orders/ord_1', h), { status: 403, reason: 'insufficient_key_binding' });
    assert.equal(upstream.requests.length, 0);
  });
});

test('the real trustplane-broker process and `trustplane broker issue`', async (t) => {
  const dir = tempDir(t);
  const keyFile = path.join(dir, 'broker.key');
  writeFileSync(keyFile, `${formatPrivateKey(brokerKey)}\n`, { mode: 0o600 });
  const socket = path.join(dir, 'broker.sock');
  const bin = fileURLToPath(new URL('../../bin/trustplane-broker.js', import.meta.url));
  const child = spawn(process.execPath, [bin, '--socket', socket, '--issuer', BROKER_ISSUER, '--trust-domain', 'example.local', '--signing-key', keyFile, '--kid', 'broker-key-1', '--allow', 'orders-api=orders.create', '--software-subject', 'svc:orders-worker', '--audit-log', 'off'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  t.after(() => child.kill('SIGKILL'));
  for (let i = 0; i < 100 && !stderr.includes('listening on'); i++) await new Promise((r) => setTimeout(r, 50));
  assert.match(stderr, /listening on .*broker\.sock \(classes: software; audiences: orders-api\)/);

  const upstream = await startEchoUpstream();
  const adapter = await startAdapter({ listen: { host: '127.0.0.1', port: 0 }, upstream: upstream.url, policy: new StaticPolicyProvider(compilePolicy(trustMaterial(), bundle())), replayStore: new MemoryReplayStore(), audit: new MemoryAuditSink() });
  try {
    const r = await run('broker', 'issue', '--socket', socket, '--method', 'POST', '--url', 'https://orders.example/v1/orders', '--audience', 'orders-api', '--route-id', 'orders.create', '--header', 'Content-Type: application/json', '--data', '{"sku":"B2"}');
    assert.equal(r.code, 0, r.stderr);
    const headers = JSON.parse(r.stdout) as Record<string, string>;
    assert.deepEqual(Object.keys(headers).sort(), ['Authorization', 'Content-Type', 'X-TrustPlane-Body-SHA256', 'X-TrustPlane-Nonce', 'X-TrustPlane-Proof', 'X-TrustPlane-Signed-Headers', 'X-TrustPlane-Transcript-SHA256']);
    assert.deepEqual(await send(adapter, 'POST', '/v1/orders', headers, '{"sku":"B2"}'), { status: 200 });
    // A route the broker policy does not cover: exit 1 with the reason code.
    const denied = await run('broker', 'issue', '--socket', socket, '--method', 'GET', '--url', 'https://orders.example/v1/orders/ord_1', '--audience', 'orders-api', '--route-id', 'orders.get');
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /broker_route_not_allowed/);
    const curl = await run('broker', 'issue', '--socket', socket, '--method', 'POST', '--url', 'https://orders.example/v1/orders', '--audience', 'orders-api', '--route-id', 'orders.create', '--data', 'x', '--curl');
    assert.equal(curl.code, 0, curl.stderr);
    assert.match(curl.stdout, /^curl -sS -X POST 'https:\/\/orders\.example\/v1\/orders' -H 'Authorization: Bearer [^']+' .*--data-binary 'x'\n$/);
  } finally {
    await adapter.close();
    await upstream.close();
  }
  child.kill('SIGTERM');
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  assert.equal(code, 0, stderr);
  assert.equal(existsSync(socket), false, 'the socket is removed on shutdown');
});

test('broker serve --ctx: the broker pins a context field a route policy requires; a caller asking for another value is refused; a caller-chosen field passes as chosen', async (t) => {
  const dir = tempDir(t);
  const keyFile = path.join(dir, 'broker.key');
  writeFileSync(keyFile, `${formatPrivateKey(brokerKey)}\n`, { mode: 0o600 });
  const socket = path.join(dir, 'broker.sock');
  const bin = fileURLToPath(new URL('../../bin/trustplane-broker.js', import.meta.url));
  const child = spawn(process.execPath, [bin, '--socket', socket, '--issuer', BROKER_ISSUER, '--trust-domain', 'example.local', '--signing-key', keyFile, '--kid', 'broker-key-1', '--allow', 'orders-api', '--software-subject', 'svc:orders-worker', '--ctx', 'tool_name=orders-runner', '--audit-log', 'off'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  t.after(() => child.kill('SIGKILL'));
  for (let i = 0; i < 100 && !stderr.includes('listening on'); i++) await new Promise((r) => setTimeout(r, 50));
  assert.match(stderr, /listening on/);
  // orders.create accepts the broker's passports only with ctx.tool_name = orders-runner,
  // orders.get only with ctx.ticket = T-1 (a field the broker does not pin).
  const policy = policyBundle((b) => {
    const rule = (ctx: Record<string, string>) => ({ source_type: 'spiffe_spire' as const, issuer: BROKER_ISSUER, trust_domain: 'example.local', subject_exact: 'svc:orders-worker', required_key_binding: 'software' as const, context_policy: ctx });
    b.route_groups[0]!.routes.find((r) => r.route_id === 'orders.create')!.allowed_sources.push(rule({ required_tool_name: 'orders-runner' }));
    b.route_groups[0]!.routes.find((r) => r.route_id === 'orders.get')!.allowed_sources.push(rule({ required_ticket: 'T-1' }));
  });
  const upstream = await startEchoUpstream();
  const adapter = await startAdapter({ listen: { host: '127.0.0.1', port: 0 }, upstream: upstream.url, policy: new StaticPolicyProvider(compilePolicy(trustMaterial(), policy)), replayStore: new MemoryReplayStore(), audit: new MemoryAuditSink() });
  try {
    const create = ['broker', 'issue', '--socket', socket, '--method', 'POST', '--url', 'https://orders.example/v1/orders', '--audience', 'orders-api', '--route-id', 'orders.create', '--data', '{}'];
    // The caller sends no ctx: the broker's pinned field satisfies the route's context policy.
    const ok = await run(...create);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(await send(adapter, 'POST', '/v1/orders', JSON.parse(ok.stdout) as Record<string, string>, '{}'), { status: 200 });
    // The caller asks for another value of the pinned field: refused by the broker, nothing signed.
    const forged = await run(...create, '--ctx', 'tool_name=admin-console');
    assert.equal(forged.code, 1);
    assert.equal(forged.stderr, 'trustplane: broker_context_pinned: the broker refused (context field tool_name is set by the broker; the request asks for another value)\n');
    // A field the broker does not pin is the caller's choice: whatever it says reaches the passport.
    const get = ['broker', 'issue', '--socket', socket, '--method', 'GET', '--url', 'https://orders.example/v1/orders/ord_1', '--audience', 'orders-api', '--route-id', 'orders.get'];
    const chosen = await run(...get, '--ctx', 'ticket=T-1');
    assert.equal(chosen.code, 0, chosen.stderr);
    assert.deepEqual(await send(adapter, 'GET', '/v1/orders/ord_1', JSON.parse(chosen.stdout) as Record<string, string>), { status: 200 });
    const without = await run(...get);
    assert.equal(without.code, 0, without.stderr);
    assert.deepEqual(await send(adapter, 'GET', '/v1/orders/ord_1', JSON.parse(without.stdout) as Record<string, string>), { status: 403, reason: 'missing_context' });
  } finally {
    await adapter.close();
    await upstream.close();
  }
  child.kill('SIGTERM');
  assert.equal(await new Promise<number | null>((resolve) => child.once('exit', resolve)), 0, stderr);
});

test('broker serve: usage errors are one clear line, exit 2', async (t) => {
  const dir = tempDir(t);
  const keyFile = path.join(dir, 'k');
  writeFileSync(keyFile, `${formatPrivateKey(brokerKey)}\n`, { mode: 0o600 });
  const base = ['broker', 'serve', '--socket', path.join(dir, 's.sock'), '--issuer', 'i', '--trust-domain', 't', '--signing-key', keyFile, '--kid', 'k', '--allow', 'orders-api'];
  const noSource = await run(...base);
  assert.equal(noSource.code, 2);
  assert.match(noSource.stderr, /no signer source/);
  const ttl = await run(...base, '--software-subject', 's', '--ttl', '901');
  assert.equal(ttl.code, 2);
  assert.match(ttl.stderr, /--ttl must be an integer 1\.\.900/);
  const fallback = await run(...base, '--spiffe-socket', path.join(dir, 'nope'), '--allow-software-fallback');
  assert.equal(fallback.code, 2);
  for (const [ctx, message] of [
    [['--ctx', 'Tool=x'], /--ctx "Tool=x": expected FIELD=VALUE with a snake_case FIELD/],
    [['--ctx', 'novalue'], /expected FIELD=VALUE/],
    [['--ctx', 'a=1', '--ctx', 'a=2'], /--ctx a is given twice/],
    [['--ctx', `a=${'x'.repeat(1025)}`], /at most 1024 characters/],
  ] as const) {
    const r = await run(...base, '--software-subject', 's', ...ctx);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, message);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
  const badKey = await run('broker', 'serve', '--socket', path.join(dir, 's.sock'), '--issuer', 'i', '--trust-domain', 't', '--signing-key', path.join(dir, 'missing'), '--kid', 'k', '--allow', 'a', '--software-subject', 's');
  assert.equal(badKey.code, 1);
  assert.match(badKey.stderr, /cannot read --signing-key/);
});

test('SPIFFE end to end: trustplane-broker verifies the SVID from a Workload API endpoint; attested_workload accepted; wrong trust domain refused', async (t) => {
  const dir = tempDir(t);
  const keyFile = path.join(dir, 'broker.key');
  writeFileSync(keyFile, `${formatPrivateKey(brokerKey)}\n`, { mode: 0o600 });
  const bin = fileURLToPath(new URL('../../bin/trustplane-broker.js', import.meta.url));
  const startBroker = async (agentSocket: string, socket: string) => {
    const child = spawn(process.execPath, [bin, '--socket', socket, '--issuer', BROKER_ISSUER, '--trust-domain', 'example.local', '--signing-key', keyFile, '--kid', 'broker-key-1', '--allow', 'orders-api', '--spiffe-socket', `unix://${agentSocket}`, '--spiffe-id-prefix', 'spiffe://example.local/ns/orders', '--audit-log', 'off'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    t.after(() => child.kill('SIGKILL'));
    for (let i = 0; i < 200 && !stderr.includes('listening on'); i++) await new Promise((r) => setTimeout(r, 50));
    return { child, stderr: () => stderr };
  };

  const agent = await startDevWorkloadApiFor({ trustDomain: 'example.local', spiffeId: WORKER, socketPath: path.join(dir, 'agent.sock') });
  t.after(() => agent.stop());
  const b = await startBroker(agent.socketPath, path.join(dir, 'b.sock'));
  assert.match(b.stderr(), /SPIFFE SVID spiffe:\/\/example\.local\/ns\/orders\/sa\/worker verified/);
  assert.match(b.stderr(), /classes: attested_workload/);
  assert.equal(agent.calls[0]?.metadata['workload.spiffe.io'], 'true', 'the broker sends the Workload API security header');

  const upstream = await startEchoUpstream();
  const adapter = await startAdapter({ listen: { host: '127.0.0.1', port: 0 }, upstream: upstream.url, policy: new StaticPolicyProvider(compilePolicy(trustMaterial(), bundle())), replayStore: new MemoryReplayStore(), audit: new MemoryAuditSink() });
  try {
    const h = await issue(path.join(dir, 'b.sock'), { method: 'GET', url: 'https://orders.example/v1/orders/ord_1', routeId: 'orders.get', requestedKeyBinding: 'attested_workload', ctx: { tool_name: 'orders-worker' } });
    assert.deepEqual(await send(adapter, 'GET', '/v1/orders/ord_1', h), { status: 200 });
    assert.equal(upstream.requests[0]!.headers['x-trustplane-subject'], WORKER);
  } finally {
    await adapter.close();
    await upstream.close();
  }

  // An agent serving an SVID of another trust domain: the broker refuses to attest.
  const foreign = await startDevWorkloadApiFor({ trustDomain: 'evil.example', spiffeId: 'spiffe://evil.example/ns/orders/sa/worker', socketPath: path.join(dir, 'agent2.sock') });
  t.after(() => foreign.stop());
  const b2 = await startBroker(foreign.socketPath, path.join(dir, 'b2.sock'));
  assert.match(b2.stderr(), /no valid SPIFFE SVID yet \(svid_trust_domain_mismatch/);
  const refused = await brokerIssue(path.join(dir, 'b2.sock'), { method: 'GET', url: 'https://orders.example/v1/orders/ord_1', audience: 'orders-api', routeId: 'orders.get', requestedKeyBinding: 'attested_workload' });
  assert.equal(refused.accepted, false);
  assert.equal(refused.response.reason_code, 'workload_attestation_failed');
  assert.match(refused.response.error!.message, /svid_trust_domain_mismatch/);
});
