/**
 * Broker context (issue 17, finding 12): caller-chosen `ctx` values pass through as the caller
 * chose them; fields the broker pins (`pinnedContext`, `--ctx FIELD=VALUE`) are set by the broker
 * and a caller cannot change them. Over the real Unix socket.
 */
import { test, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ManualClock, decodePassportUnverified, type AuditEvent } from '@trustplane/core';
import { brokerKey, T0, BROKER_ISSUER } from '@trustplane/testkit';
import { Broker, softwareSource, startBrokerServer, brokerIssue, type BrokerPolicy } from '../src/index.js';

const dir = mkdtempSync(path.join(tmpdir(), 'tp-broker-ctx-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

async function start(extra: Partial<BrokerPolicy>) {
  const socketPath = path.join(dir, `c${n++}.sock`);
  const events: AuditEvent[] = [];
  const broker = new Broker({
    policy: { issuer: BROKER_ISSUER, trustDomain: 'example.local', signingKey: brokerKey, kid: 'broker-key-1', allow: [{ audience: 'orders-api', routes: ['*'] }], ...extra },
    sources: [softwareSource('svc:orders-worker')],
    clock: new ManualClock(T0),
  });
  const server = await startBrokerServer({ socketPath, broker, onAudit: (e) => events.push(e) });
  return { server, socketPath, events };
}

const req = { method: 'GET', url: 'https://orders.example/v1/orders/1', audience: 'orders-api', routeId: 'orders.get', headers: {} };
const ctxOf = (token: string) => (decodePassportUnverified(token).payload as { ctx?: Record<string, string> }).ctx;

test('broker ctx without pins: the values are the caller\'s choice, copied as given (what a context policy then proves)', async () => {
  const { server, socketPath } = await start({});
  try {
    const r = await brokerIssue(socketPath, { ...req, ctx: { tool_name: 'anything-the-caller-says' } });
    assert.equal(r.accepted, true);
    assert.deepEqual(ctxOf(r.response.artifacts!.passport.value), { tool_name: 'anything-the-caller-says' });
    const none = await brokerIssue(socketPath, req);
    assert.equal(ctxOf(none.response.artifacts!.passport.value), undefined);
  } finally {
    await server.close();
  }
});

test('broker ctx pinned by the broker: always in the passport; the same value is accepted; another value is refused (broker_context_pinned) and nothing is signed', async () => {
  const { server, socketPath, events } = await start({ pinnedContext: { tool_name: 'orders-runner' }, allowedContextFields: ['ticket'] });
  try {
    // The caller sends nothing: the broker sets the field.
    const bare = await brokerIssue(socketPath, req);
    assert.equal(bare.accepted, true);
    assert.deepEqual(ctxOf(bare.response.artifacts!.passport.value), { tool_name: 'orders-runner' });
    // Caller-chosen fields (allowed ones) sit beside the pinned ones.
    const mixed = await brokerIssue(socketPath, { ...req, ctx: { ticket: 'T-1', tool_name: 'orders-runner' } });
    assert.equal(mixed.accepted, true, JSON.stringify(mixed.response.error));
    assert.deepEqual(ctxOf(mixed.response.artifacts!.passport.value), { ticket: 'T-1', tool_name: 'orders-runner' });
    // Another value for a pinned field: refused, clearly, with no artifacts.
    const before = events.length;
    const forged = await brokerIssue(socketPath, { ...req, ctx: { tool_name: 'admin-console' } });
    assert.equal(forged.accepted, false);
    assert.equal(forged.response.reason_code, 'broker_context_pinned');
    assert.equal(forged.response.artifacts, null);
    assert.equal(forged.response.error?.retryable, false);
    assert.equal(forged.response.error?.message, 'context field tool_name is set by the broker; the request asks for another value');
    assert.deepEqual(forged.response.error?.details, { field: 'tool_name' });
    assert.equal(events.length, before + 1);
    assert.equal(events.at(-1)?.reason_code, 'broker_context_pinned');
    assert.equal(events.at(-1)?.jti, undefined, 'no passport was issued');
    // Case matters: a near-spelling is another value.
    const upper = await brokerIssue(socketPath, { ...req, ctx: { tool_name: 'Orders-Runner' } });
    assert.equal(upper.response.reason_code, 'broker_context_pinned');
    // A field neither pinned nor allowed is still refused as before.
    const other = await brokerIssue(socketPath, { ...req, ctx: { tenant: 'acme' } });
    assert.equal(other.response.reason_code, 'broker_request_malformed');
  } finally {
    await server.close();
  }
});

test('broker pinned ctx configuration is checked at construction', () => {
  const make = (pinnedContext: Record<string, string>) =>
    new Broker({ policy: { issuer: BROKER_ISSUER, trustDomain: 'example.local', signingKey: brokerKey, kid: 'k', allow: [], pinnedContext }, sources: [softwareSource('s')] });
  assert.throws(() => make({ 'Tool-Name': 'x' }), /snake_case/);
  assert.throws(() => make({ tool_name: 'x'.repeat(1025) }), /at most 1024/);
  assert.throws(() => make({ tool_name: 'a\nb' }), /line feed/);
  assert.throws(() => make(Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`f${i}`, 'v']))), /at most 32/);
  assert.doesNotThrow(() => make({ tool_name: 'orders-runner' }));
});
