import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { buildAuditEvent } from '@trustplane/core';
import { createAuditSink } from '../src/index.js';

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
