import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { buildTranscript, normalizeQuery, bodySha256, canonicalAllowList, FormatError, type TranscriptInput } from '../src/index.js';
import { normalizeQueryReference } from '../src/transcript.js';
import { readVector } from './helpers.js';

interface Vector {
  vector_id: string;
  raw_request: { query: string; body_utf8: string; headers: { name: string; value: string }[] };
  transcript: Record<string, unknown> & { headers: { allow_list: string[] } };
  canonical: { lines: string[]; sha256: string };
}

/** The transcript inputs of a conformance vector; every derived field is recomputed. */
export function inputFromVector(v: Vector): TranscriptInput {
  const t = v.transcript;
  return {
    method: t['method'] as string,
    scheme: t['scheme'] as string,
    authority: t['authority'] as string,
    path: t['path'] as string,
    rawQuery: v.raw_request.query,
    audience: t['audience'] as string,
    routeId: t['route_id'] as string,
    contentEncoding: t['content_encoding'] as string,
    body: v.raw_request.body_utf8,
    headers: v.raw_request.headers,
    headerAllowList: t.headers.allow_list,
    passportJti: t['passport_jti'] as string,
    nonce: t['nonce'] as string,
    issuedAt: t['issued_at'] as number,
    keyBinding: t['key_binding'] as string,
  };
}

for (const file of ['v1/transcript-v1.json', 'v1/transcript-v1.ambiguous-query-headers.json']) {
  test(`conformance ${file}: lines and sha256`, () => {
    const v = readVector(file) as unknown as Vector;
    const t = buildTranscript(inputFromVector(v));
    assert.deepEqual(t.lines, v.canonical.lines);
    assert.equal(t.sha256, v.canonical.sha256);
    // The digest is SHA-256 of the LF-joined lines, independently recomputed.
    assert.equal(createHash('sha256').update(v.canonical.lines.join('\n')).digest('hex'), v.canonical.sha256);
    assert.equal(t.digest.toString('hex'), v.canonical.sha256);
    assert.equal(t.bodySha256, v.transcript['body_sha256']);
    const qn = v.transcript['query_normalization'] as { normalized: string; sha256: string };
    assert.equal(normalizeQuery(v.raw_request.query), qn.normalized);
  });
}

test('conformance body-sha256-v1', () => {
  const v = readVector('v1/body-sha256-v1.json') as { vectors: { bytes_utf8: string; sha256: string }[] };
  assert.ok(v.vectors.length >= 2);
  for (const vec of v.vectors) {
    assert.equal(bodySha256(vec.bytes_utf8), vec.sha256);
    assert.equal(bodySha256(Buffer.from(vec.bytes_utf8, 'utf8')), vec.sha256);
  }
});

test('SPEC §1 query normalization example', () => {
  assert.equal(normalizeQuery('z=last&a=2&a=10&space=a%20b&encoded=%7E&empty='), 'a=10&a=2&empty=&encoded=~&space=a%20b&z=last');
});

test('query normalization details', () => {
  const cases: [string, string][] = [
    ['', ''],
    ['?', ''],
    ['  ?a=1  ', 'a=1'],
    ['??a=1', '%3Fa=1'], // only ONE leading '?' is dropped
    ['a', 'a='], // no '=' → empty value
    ['a&&b', '=&a=&b='], // empty segments are kept
    ['a=1;b=2', 'a=1%3Bb%3D2'], // ';' is data
    ['q=a+b', 'q=a%2Bb'], // '+' stays '+'
    ['k=%e2%82%ac', 'k=%E2%82%AC'], // lower-case escapes re-encoded upper-case
    ['k=€', 'k=%E2%82%AC'], // raw UTF-8 is encoded
    ['b=2&a=2&a=1', 'a=1&a=2&b=2'],
    ['x=%41%42', 'x=AB'],
    ['a=b=c', 'a=b%3Dc'], // split at the FIRST '='
    ['%7e=1', '~=1'],
    ['Z=1&a=1', 'Z=1&a=1'], // byte order: upper-case sorts first
    ['k=%F0%9F%98%80', 'k=%F0%9F%98%80'],
  ];
  for (const [raw, want] of cases) assert.equal(normalizeQuery(raw), want, `normalizeQuery(${JSON.stringify(raw)})`);
});

test('property: the already-canonical fast path of query normalization changes no result', () => {
  const outcome = (f: (q: string) => string, q: string): string => {
    try {
      return f(q);
    } catch (e) {
      return `error ${(e as FormatError).code}`;
    }
  };
  // Mostly canonical pieces (so the fast path is taken often), with the characters that must
  // send a query down the full path: '=', '&', '%', '+', non-ASCII, a '-' that sorts before '='.
  const unit = fc.constantFrom('a', 'b', 'B', '0', '-', '.', '_', '~', '=', '&', '%41', '+', 'é', ' ', '?');
  fc.assert(
    fc.property(fc.string({ unit, maxLength: 16 }), (q) => assert.equal(outcome(normalizeQuery, q), outcome(normalizeQueryReference, q), JSON.stringify(q))),
    { numRuns: 5000 },
  );
  for (const q of ['a=1&a-b=1', 'a-b=1&a=1', 'a=2&a=10', 'a=10&a=2', 'a=&a=', 'b=1&a=1', '=1&a=1', 'a=1&=1']) {
    assert.equal(normalizeQuery(q), normalizeQueryReference(q), q);
  }
});

test('malformed percent escapes are a specific error', () => {
  for (const raw of ['a=%zz', 'a=%4', 'a=%', '%G1=x', 'ok=1&bad=%zz']) {
    assert.throws(() => normalizeQuery(raw), (e: unknown) => e instanceof FormatError && e.code === 'invalid_query_percent_encoding', raw);
  }
});

test('invalid UTF-8 after percent-decoding is a specific error', () => {
  for (const raw of ['a=%ff', 'a=%C3', 'a=%C0%AF', 'a=%ED%A0%80', 'a=%F4%90%80%80', 'a=%E2%82', `a=\ud800`]) {
    assert.throws(() => normalizeQuery(raw), (e: unknown) => e instanceof FormatError && e.code === 'invalid_query_utf8', raw);
  }
});

const base = (): TranscriptInput => inputFromVector(readVector('v1/transcript-v1.json') as unknown as Vector);

test('a missing allow-listed header is a specific error', () => {
  const input = { ...base(), headers: [{ name: 'X-TrustPlane-Nonce', value: 'n' }] };
  assert.throws(() => buildTranscript(input), (e: unknown) => e instanceof FormatError && e.code === 'missing_signed_header');
});

test('empty required fields are specific errors', () => {
  const fields: [keyof TranscriptInput, string][] = [
    ['method', 'missing_method'],
    ['scheme', 'missing_scheme'],
    ['authority', 'missing_authority'],
    ['path', 'missing_path'],
    ['audience', 'missing_audience'],
    ['routeId', 'missing_route_id'],
    ['passportJti', 'missing_passport_jti'],
    ['nonce', 'missing_nonce'],
    ['keyBinding', 'missing_key_binding'],
  ];
  for (const [field, code] of fields) {
    assert.throws(() => buildTranscript({ ...base(), [field]: '  ' }), (e: unknown) => e instanceof FormatError && e.code === code, String(field));
  }
  for (const bad of [0, -1, 1.5, Number.NaN]) {
    assert.throws(() => buildTranscript({ ...base(), issuedAt: bad }), (e: unknown) => e instanceof FormatError && e.code === 'missing_issued_at');
  }
});

test('a line feed inside a field is refused (it would forge a line)', () => {
  assert.throws(() => buildTranscript({ ...base(), passportJti: 'a\nnonce=x' }), (e: unknown) => e instanceof FormatError && e.code === 'invalid_field');
});

test('header selection: first occurrence wins, names case-folded, values trimmed and hashed', () => {
  const t = buildTranscript({
    ...base(),
    headers: [
      { name: 'content-type', value: '  application/json ' },
      { name: 'Content-Type', value: 'text/plain' },
      { name: 'x-trustplane-nonce', value: 'nonce-v1-001' },
    ],
    headerAllowList: [' X-TrustPlane-Nonce', 'CONTENT-TYPE', 'content-type', ''],
  });
  const sha = (s: string) => createHash('sha256').update(s).digest('hex');
  assert.equal(t.lines[12], 'headers.allow_list=content-type,x-trustplane-nonce');
  assert.equal(t.lines[13], `headers.selected=content-type:${sha('application/json')},x-trustplane-nonce:${sha('nonce-v1-001')}`);
});

test('normalization of method, scheme, authority, content encoding; path untouched', () => {
  const t = buildTranscript({ ...base(), method: ' post ', scheme: 'HTTPS', authority: 'Orders.Example:8443', path: ' /V1/./Orders%2F ', contentEncoding: ' GZIP ' });
  assert.equal(t.lines[1], 'method=POST');
  assert.equal(t.lines[2], 'scheme=https');
  assert.equal(t.lines[3], 'authority=orders.example:8443');
  assert.equal(t.lines[4], 'path=/V1/./Orders%2F');
  assert.equal(t.lines[7], 'content_encoding=gzip');
  assert.equal(buildTranscript({ ...base(), contentEncoding: '' }).lines[7], 'content_encoding=identity');
});

test('allow-list order is code-point order (Python sorted), not UTF-16 code-unit order', () => {
  // Expected order produced by CPython: sorted(['\ufeffa', '\U00042d2b', 'content-type', 'z']).
  // JavaScript's default sort would put the astral name (a surrogate pair, 0xD8CB…) before U+FEFF.
  assert.deepEqual(canonicalAllowList(['\u{42d2b}', 'Content-Type', '\ufeffa', 'z']), [
    'content-type',
    'z',
    '\ufeffa',
    '\u{42d2b}',
  ]);
  assert.deepEqual(canonicalAllowList(['\u{10000}', '\uffff', '\ud7ff']), ['\ud7ff', '\uffff', '\u{10000}']);
});

test('time bucket is floor(iat / 20)', () => {
  for (const [iat, bucket] of [[1740000019, 87000000], [1740000020, 87000001], [19, 0], [20, 1]] as const) {
    assert.equal(buildTranscript({ ...base(), issuedAt: iat }).lines[18], `time_bucket=${bucket}`);
  }
});

test('property: normalizeQuery returns a string or a FormatError, never anything else', () => {
  const alphabet = fc.constantFrom('a', 'Z', '=', '&', '%', '+', ';', '?', ' ', '~', '.', '2', 'f', 'F', 'é', '😀', '\ud800', '/');
  fc.assert(
    fc.property(fc.array(alphabet, { maxLength: 40 }).map((a) => a.join('')), (raw) => {
      try {
        const out = normalizeQuery(raw);
        assert.match(out, /^[A-Za-z0-9\-._~%=&]*$/);
        // Idempotent: a normalized query normalizes to itself.
        assert.equal(normalizeQuery(out), out);
      } catch (e) {
        assert.ok(e instanceof FormatError, String(e));
      }
    }),
    { numRuns: 3000 },
  );
});
