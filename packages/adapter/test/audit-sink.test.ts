import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { buildAuditEvent } from '@trustplane/core';
import { createAuditSink } from '../src/index.js';
import { AuditLineBuffer, PIPE_BUF } from '../src/audit-sink.js';

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
  const b = new AuditLineBuffer('test', (chunk) => (writes.push(chunk.toString()), chunk.length), 1 << 20, PIPE_BUF);
  b.push(Array.from({ length: 200 }, (_, i) => `${JSON.stringify(event(i))}\n`));
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

test('audit line buffer: a sink that takes nothing holds lines up to its buffer, then drops and counts them; readiness says blocked until it drains', async () => {
  let open = false;
  const out: string[] = [];
  const b = new AuditLineBuffer('test', (chunk) => (open ? (out.push(chunk.toString()), chunk.length) : 0), 4096, PIPE_BUF);
  const line = (i: number) => `${JSON.stringify(event(i))}\n`;
  const size = Buffer.byteLength(line(0));
  const fits = Math.floor(4096 / size);
  b.push(Array.from({ length: fits + 5 }, (_, i) => line(i)));
  assert.equal(b.dropped(), 5);
  assert.match(b.problem() ?? '', /^audit sink blocked: 5 events dropped$/);
  open = true;
  await new Promise((r) => setTimeout(r, 120)); // the retry timer (50 ms)
  assert.equal(b.problem(), undefined);
  assert.equal(out.join('').split('\n').length - 1, fits, 'every held line written, whole');
  assert.equal(b.dropped(), 5);
});

test('file audit sink: a FIFO nobody reads is refused at creation (ENXIO) instead of blocking', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tp-audit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const fifo = path.join(dir, 'audit.fifo');
  execFileSync('mkfifo', [fifo]);
  assert.throws(() => createAuditSink(fifo), /cannot open the audit log .*audit\.fifo: no process is reading the FIFO \(ENXIO\)/);
});

test('file audit sink: a device that refuses every write (/dev/full, ENOSPC) never throws into the caller; close gives up after its timeout and counts what it could not write', async () => {
  const sink = createAuditSink('/dev/full', { closeTimeoutMs: 100 });
  for (let i = 0; i < 10; i++) sink.write(event(i));
  await new Promise((r) => setImmediate(r));
  assert.equal(sink.dropped?.(), 0, 'held, not yet dropped');
  const started = Date.now();
  await sink.close();
  assert.ok(Date.now() - started < 1000);
  assert.equal(sink.dropped?.(), 10);
});
