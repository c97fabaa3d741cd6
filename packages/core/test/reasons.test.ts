import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REASONS, TrustPlaneError, FormatError, decodeBase64url } from '../src/index.js';
import { repoRoot } from './helpers.js';

/** docs/reason-codes.md and the registry stay equal, both ways (code, status, meaning). */
test('docs/reason-codes.md equals the reason-code registry', () => {
  const doc = readFileSync(join(repoRoot, 'docs/reason-codes.md'), 'utf8');
  const rows = new Map<string, { status: number; origin: string; meaning: string }>();
  for (const line of doc.split('\n')) {
    const m = /^\| `([a-z_]+)` \| (\d{3}) \| (spec|extension) \| (.+) \|$/.exec(line);
    if (m !== null) rows.set(m[1]!, { status: Number(m[2]), origin: m[3]!, meaning: m[4]! });
  }
  for (const [code, info] of Object.entries(REASONS)) {
    const row = rows.get(code);
    assert.ok(row !== undefined, `${code} is missing from docs/reason-codes.md`);
    assert.equal(row.status, info.status, code);
    assert.equal(row.origin, info.origin, code);
    assert.equal(row.meaning, info.meaning, code);
  }
  for (const code of rows.keys()) assert.ok(code in REASONS, `docs/reason-codes.md lists ${code}, which the registry does not have`);
});

test('SPEC §5 documented codes are all present with the statuses SPEC §5/§9.2 fix', () => {
  const spec = ['request_binding_mismatch', 'invalid_request_proof', 'jti_replay', 'bundle_route_missing', 'bundle_policy_missing', 'stale_bundle_fail_closed', 'bundle_freshness_unknown', 'source_issuer_mismatch', 'source_trust_domain_mismatch', 'source_subject_mismatch', 'insufficient_key_binding', 'missing_provenance', 'provenance_mismatch', 'missing_context', 'context_mismatch'];
  for (const c of spec) assert.equal((REASONS as Record<string, { origin: string }>)[c]?.origin, 'spec', c);
  assert.equal(REASONS.missing_passport.status, 401);
  assert.equal(REASONS.audience_mismatch.status, 403);
  assert.equal(REASONS.body_too_large.status, 413);
  assert.equal(REASONS.replay_store_unavailable.status, 503);
  assert.equal(REASONS.upstream_unavailable.status, 502);
});

test('input errors carry no stack frames (cheap to refuse garbage) and leave Error.stackTraceLimit as it was', () => {
  const before = Error.stackTraceLimit;
  const tp = new TrustPlaneError('malformed_passport', 'detail', { cause: 'c' });
  const fe = new FormatError('invalid_json', 'message');
  assert.equal(tp.stack, 'TrustPlaneError: malformed_passport: detail');
  assert.equal(tp.cause, 'c');
  assert.equal(fe.stack, 'FormatError: invalid_json: message');
  assert.throws(() => decodeBase64url('*', 1, 'x'), (err: unknown) => err instanceof FormatError && !String(err.stack).includes('\n    at '));
  assert.equal(Error.stackTraceLimit, before);
  assert.match(String(new Error('other').stack), /\n {4}at /, 'other errors keep their stacks');
});
