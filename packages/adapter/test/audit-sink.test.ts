import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { buildAuditEvent } from '@trustplane/core';
import { createAuditSink } from '../src/index.js';
import { LineBatcher, PIPE_BUF } from '../src/audit-sink.js';

const event = (i: number) => buildAuditEvent({ component: 'adapter', accepted: i % 2 === 0, reason_code: i % 2 === 0 ? 'request_verified' : 'jti_replay', detail_reason: `decision ${i}`, occurredAtMs: 1_700_000_000_000 + i, jti: `jti-${i}` });

test('file audit sink: events written in one burst and across turns all arrive, whole lines, in order; close flushes', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tp-audit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'audit.jsonl');
  const sink = createAuditSink(file);
  for (let i = 0; i < 1000; i++) sink.write(event(i));
  await new Promise((r) => setImmediate(r));
  for (let i = 1000; i < 1500; i++) sink.write(event(i));
  await sink.close();
  const lines = readFileSync(file, 'utf8').split('\n');
  assert.equal(lines.pop(), '', 'the file ends with a newline');
  assert.equal(lines.length, 1500);
  lines.forEach((l, i) => assert.equal((JSON.parse(l) as { jti: string }).jti, `jti-${i}`));
});

test('stdout batching: a burst goes out in chunks of whole lines no larger than PIPE_BUF (atomic on a shared pipe)', () => {
  const writes: string[] = [];
  const b = new LineBatcher((chunk) => writes.push(chunk), PIPE_BUF);
  for (let i = 0; i < 200; i++) b.push(`${JSON.stringify(event(i))}\n`);
  b.flush();
  assert.ok(writes.length > 1 && writes.length < 200, `${writes.length} writes`);
  for (const w of writes) {
    assert.ok(Buffer.byteLength(w) <= PIPE_BUF, 'each write fits PIPE_BUF');
    assert.ok(w.endsWith('\n'), 'whole lines only');
  }
  const lines = writes.join('').trimEnd().split('\n');
  assert.deepEqual(lines.map((l) => (JSON.parse(l) as { jti: string }).jti), Array.from({ length: 200 }, (_, i) => `jti-${i}`));
});

test('file audit sink: a file that cannot be opened is refused at creation, with the path and the cause', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tp-audit-'));
  try {
    assert.throws(() => createAuditSink(path.join(dir, 'missing-dir', 'audit.jsonl')), /cannot open the audit log .*missing-dir.*ENOENT/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
