import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { buildTranscript } from '@trustplane/core';
import { isOneErrorLine, run, runBin, tempDir, vectorDir } from './helpers.js';

interface Vector {
  raw_request: { query: string; body_utf8?: string; body_b64?: string; headers: { name: string; value: string }[] };
  transcript: Record<string, unknown> & { headers: { allow_list: string[] } };
  canonical: { lines: string[]; sha256: string };
}

const SHIPPED = ['transcript-v1.json', 'transcript-v1.ambiguous-query-headers.json'];

function loadVector(name: string): Vector {
  return JSON.parse(readFileSync(path.join(vectorDir, name), 'utf8')) as Vector;
}

/** What core computes for a vector's inputs — the oracle for modified copies. */
function expected(v: Vector): { lines: string[]; sha256: string } {
  const t = v.transcript;
  const body = v.raw_request.body_b64 !== undefined ? Buffer.from(v.raw_request.body_b64, 'base64') : Buffer.from(v.raw_request.body_utf8 ?? '', 'utf8');
  const r = buildTranscript({
    method: t['method'] as string,
    scheme: t['scheme'] as string,
    authority: t['authority'] as string,
    path: t['path'] as string,
    rawQuery: v.raw_request.query,
    audience: t['audience'] as string,
    routeId: t['route_id'] as string,
    contentEncoding: t['content_encoding'] as string,
    body,
    headers: v.raw_request.headers,
    headerAllowList: t.headers.allow_list,
    passportJti: t['passport_jti'] as string,
    nonce: t['nonce'] as string,
    issuedAt: t['issued_at'] as number,
    keyBinding: t['key_binding'] as string,
  });
  return { lines: [...r.lines], sha256: r.sha256 };
}

function writeVector(dir: string, name: string, v: unknown): string {
  const file = path.join(dir, name);
  writeFileSync(file, JSON.stringify(v, null, 2));
  return file;
}

test('transcript --vector: the shipped vectors give their canonical lines and sha256 (bin)', async () => {
  for (const name of SHIPPED) {
    const v = loadVector(name);
    const r = await runBin(['transcript', '--vector', path.join(vectorDir, name)]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { lines: v.canonical.lines, sha256: v.canonical.sha256 });
    const json = await run('transcript', '--vector', path.join(vectorDir, name), '--json');
    assert.equal(json.stdout, r.stdout);
  }
});

test('transcript --vector: derived fields are recomputed from raw_request, never read', async (t) => {
  const dir = tempDir(t);
  const v = loadVector('transcript-v1.ambiguous-query-headers.json');
  v.raw_request.query = 'b=2&a=%e2%82%ac&a=1&flag';
  v.raw_request.headers[2]!.value = 'application/problem+json';
  v.raw_request.body_utf8 = 'hello';
  v.transcript['issued_at'] = 1740000999;
  const r = await run('transcript', '--vector', writeVector(dir, 'modified.json', v));
  assert.equal(r.code, 0, r.stderr);
  const got = JSON.parse(r.stdout) as { lines: string[]; sha256: string };
  const want = expected(v);
  assert.deepEqual(got, want);
  // It really changed: the stale derived fields and canonical part in the file were ignored.
  assert.notEqual(got.sha256, v.canonical.sha256);
  assert.ok(got.lines.includes('query_normalization.normalized=a=%E2%82%AC&a=1&b=2&flag='));
  assert.ok(got.lines.includes('time_bucket=87000049'));
});

test('transcript --vector: body_b64 (standard base64) and body_utf8 give the same transcript', async (t) => {
  const dir = tempDir(t);
  const v = loadVector('transcript-v1.json');
  const b64 = structuredClone(v);
  b64.raw_request.body_b64 = Buffer.from(v.raw_request.body_utf8!, 'utf8').toString('base64');
  delete b64.raw_request.body_utf8;
  const r = await run('transcript', '--vector', writeVector(dir, 'b64.json', b64));
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { lines: v.canonical.lines, sha256: v.canonical.sha256 });
  // Binary bodies, which body_utf8 cannot carry.
  const bin = structuredClone(b64);
  bin.raw_request.body_b64 = Buffer.from([0xff, 0xfe, 0x00, 0x80]).toString('base64');
  const rb = await run('transcript', '--vector', writeVector(dir, 'bin.json', bin));
  assert.equal(rb.code, 0, rb.stderr);
  assert.deepEqual(JSON.parse(rb.stdout), expected(bin));
});

test('transcript --vector: a missing input field fails (exit 1) naming the field', async (t) => {
  const dir = tempDir(t);
  const fields: [string, (v: Vector) => void][] = [
    ['transcript.method', (v) => delete v.transcript['method']],
    ['transcript.issued_at', (v) => delete v.transcript['issued_at']],
    ['transcript.headers.allow_list', (v) => delete (v.transcript.headers as Partial<Vector['transcript']['headers']>).allow_list],
    ['raw_request.query', (v) => delete (v.raw_request as Partial<Vector['raw_request']>).query],
    ['raw_request.headers', (v) => delete (v.raw_request as Partial<Vector['raw_request']>).headers],
    ['raw_request.body_utf8', (v) => delete v.raw_request.body_utf8],
    ['raw_request', (v) => delete (v as Partial<Vector>).raw_request],
  ];
  for (const [field, drop] of fields) {
    const v = loadVector('transcript-v1.json');
    drop(v);
    const r = await run('transcript', '--vector', writeVector(dir, 'missing.json', v));
    assert.equal(r.code, 1, field);
    assert.ok(isOneErrorLine(r.stderr), r.stderr);
    assert.ok(r.stderr.startsWith(`trustplane: missing_vector_field: vector field ${field} `), r.stderr);
    assert.equal(r.stdout, '');
  }
  const wrongType = loadVector('transcript-v1.json');
  wrongType.transcript['issued_at'] = '1740000000';
  const r = await run('transcript', '--vector', writeVector(dir, 'type.json', wrongType));
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^trustplane: invalid_vector_field: vector field transcript\.issued_at /);
});

test('transcript --vector: core format errors are reported with their code (exit 1)', async (t) => {
  const dir = tempDir(t);
  const cases: [string, (v: Vector) => void][] = [
    ['invalid_query_percent_encoding', (v) => (v.raw_request.query = 'a=%zz')],
    ['invalid_query_utf8', (v) => (v.raw_request.query = 'a=%ff')],
    ['missing_signed_header', (v) => v.transcript.headers.allow_list.push('x-absent')],
    ['missing_method', (v) => (v.transcript['method'] = '  ')],
    ['missing_issued_at', (v) => (v.transcript['issued_at'] = 0)],
  ];
  for (const [code, change] of cases) {
    const v = loadVector('transcript-v1.json');
    change(v);
    const r = await run('transcript', '--vector', writeVector(dir, 'bad.json', v));
    assert.equal(r.code, 1, code);
    assert.ok(isOneErrorLine(r.stderr), r.stderr);
    assert.ok(r.stderr.startsWith(`trustplane: ${code}: `), r.stderr);
  }
});

test('transcript --vector: strict JSON, a 1 MiB cap, and unreadable files', async (t) => {
  const dir = tempDir(t);
  const dup = path.join(dir, 'dup.json');
  writeFileSync(dup, '{"raw_request":{},"raw_request":{}}');
  const r1 = await run('transcript', '--vector', dup);
  assert.equal(r1.code, 1);
  assert.match(r1.stderr, /^trustplane: invalid_json: /);

  const big = path.join(dir, 'big.json');
  writeFileSync(big, `{"pad":"${'x'.repeat(1024 * 1024)}"}`);
  const r2 = await run('transcript', '--vector', big);
  assert.equal(r2.code, 1);
  assert.match(r2.stderr, /^trustplane: too_large: /);

  const r3 = await run('transcript', '--vector', dir);
  assert.equal(r3.code, 1);
  assert.ok(isOneErrorLine(r3.stderr), r3.stderr);

  const notObject = path.join(dir, 'array.json');
  writeFileSync(notObject, '[]');
  const r4 = await run('transcript', '--vector', notObject);
  assert.equal(r4.code, 1);
  assert.match(r4.stderr, /invalid_vector_field/);

  const badB64 = loadVector('transcript-v1.json');
  badB64.raw_request.body_b64 = 'a-b_';
  delete badB64.raw_request.body_utf8;
  const r5 = await run('transcript', '--vector', writeVector(dir, 'b64.json', badB64));
  assert.equal(r5.code, 1);
  assert.match(r5.stderr, /invalid_vector_field: vector field raw_request\.body_b64 is not standard base64/);
});
