import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildAuditEvent, auditEventForDecision, Verifier, StaticPolicyProvider, ManualClock, MemoryReplayStore, AUDIT_EVENT_VERSION } from '../src/index.js';
import { compiled, makeRequest, T0, repoRoot } from './helpers.js';

const REQUIRED = ['version', 'occurred_at', 'component', 'outcome', 'accepted', 'reason_code', 'detail_reason'];

test('audit event: required fields, RFC 3339 UTC time, control characters neutralised, long fields capped', () => {
  const e = buildAuditEvent({ component: 'adapter', accepted: false, reason_code: 'jti_replay', detail_reason: 'x\ny\u0007'.padEnd(2000, 'z'), occurredAtMs: T0, route_id: 'r' });
  for (const k of REQUIRED) assert.ok(k in e, k);
  assert.equal(e.version, AUDIT_EVENT_VERSION);
  assert.equal(e.occurred_at, '2025-02-19T21:20:00.000Z');
  assert.equal(e.outcome, 'deny');
  assert.ok(!e.detail_reason.includes('\n'));
  assert.ok(e.detail_reason.length < 600);
  // Each condition alone: a short field with a control character, a long clean one.
  const short = buildAuditEvent({ component: 'adapter', accepted: true, reason_code: 'request_verified', detail_reason: 'ok', occurredAtMs: T0, subject: 'svc\u007f\tx' });
  assert.equal(short.subject, 'svc??x');
  const long = buildAuditEvent({ component: 'adapter', accepted: true, reason_code: 'request_verified', detail_reason: 'a'.repeat(513), occurredAtMs: T0 + 1 });
  assert.equal(long.detail_reason, `${'a'.repeat(512)}…`);
  assert.equal(long.occurred_at, '2025-02-19T21:20:00.001Z', 'a new millisecond gets its own time');
  assert.equal(buildAuditEvent({ component: 'adapter', accepted: true, reason_code: 'request_verified', detail_reason: 'x', occurredAtMs: T0 }).occurred_at, '2025-02-19T21:20:00.000Z');
});

test('audit events for allow and deny decisions never contain the passport, the proof or header values', async () => {
  const v = new Verifier({ policy: new StaticPolicyProvider(compiled(), T0), replayStore: new MemoryReplayStore(), clock: new ManualClock(T0 + 1000) });
  const req = makeRequest({ headers: { 'content-type': 'application/vnd.secret-value' } });
  const secrets = [String(req.headers['authorization']).slice(7), String(req.headers['x-trustplane-proof']), 'secret-value', String(req.headers['x-trustplane-nonce'])];
  for (const r of [req, { ...req, path: '/v1/orders/other' }, req]) {
    const d = await v.verify(r);
    const event = auditEventForDecision(d, { component: 'verifier', occurredAtMs: T0, requestId: 'req-1' });
    const text = JSON.stringify(event);
    for (const s of secrets) {
      for (const part of [s, s.slice(0, 24), s.slice(-24)]) assert.ok(!text.includes(part), `audit event leaks ${part.slice(0, 10)}…`);
    }
    assert.equal(event.request_id, 'req-1');
    assert.equal(event.policy_version, 7);
  }
});

test('the audit event keys match SPEC §5 exactly (no extra field can sneak in)', () => {
  const spec = readFileSync(join(repoRoot, 'docs/audit-events.md'), 'utf8');
  const e = buildAuditEvent({ component: 'broker', accepted: true, reason_code: 'broker_passport_issued', detail_reason: 'ok', occurredAtMs: T0, route_id: 'r', issuer: 'i', subject: 's', jti: 'j', policy_version: 1, peer: { uid: 1 } });
  for (const k of Object.keys(e)) assert.ok(spec.includes(`\`${k}\``), `field ${k} is documented in docs/audit-events.md`);
});
