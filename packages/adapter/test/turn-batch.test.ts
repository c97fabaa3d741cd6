import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { MemoryReplayStore, StaticPolicyProvider, Verifier, compilePolicy, type Decision, type VerifyRequest } from '@trustplane/core';
import { makeRequest, policyBundle, trustMaterial } from '@trustplane/testkit';
import { verifyPerTurn } from '../src/turn-batch.js';

const numbered = (n: number): Decision => ({ allowed: false, reason: 'internal_error', status: 500, detail: `decision ${n}` });

test('verifyPerTurn: requests queued in one turn are verified together, in arrival order, after the turn', async () => {
  const calls: string[] = [];
  let n = 0;
  const verify = verifyPerTurn({ verify: (r: VerifyRequest) => (calls.push(r.path), Promise.resolve(numbered(n++))) });
  const pending = ['/a', '/b', '/c'].map((path) => verify({ method: 'GET', path, headers: {} }));
  assert.deepEqual(calls, [], 'nothing is verified while the turn is still queueing');
  const decisions = await Promise.all(pending);
  assert.deepEqual(calls, ['/a', '/b', '/c']);
  assert.deepEqual(decisions.map((d) => (d.allowed ? '' : d.detail)), ['decision 0', 'decision 1', 'decision 2'], 'each request gets its own decision');
  // The next turn is a new batch.
  const later = await verify({ method: 'GET', path: '/d', headers: {} });
  assert.equal(later.allowed ? '' : later.detail, 'decision 3');
  assert.deepEqual(calls, ['/a', '/b', '/c', '/d']);
});

test('verifyPerTurn: a verifier that throws fails only that request', async () => {
  const verify = verifyPerTurn({
    verify: (r: VerifyRequest) => {
      if (r.path === '/boom') throw new Error('boom');
      return Promise.resolve(numbered(0));
    },
  });
  const [a, b, c] = await Promise.allSettled(['/ok', '/boom', '/ok'].map((path) => verify({ method: 'GET', path, headers: {} })));
  assert.equal(a!.status, 'fulfilled');
  assert.equal(b!.status, 'rejected');
  assert.equal(c!.status, 'fulfilled');
});

test('verifyPerTurn with the real verifier: copies of one request in one batch → exactly one allowed, the rest jti_replay', async () => {
  const verifier = new Verifier({ policy: new StaticPolicyProvider(compilePolicy(trustMaterial(), policyBundle())), replayStore: new MemoryReplayStore() });
  const verify = verifyPerTurn(verifier);
  const req = makeRequest({ nowMs: Date.now() });
  const other = makeRequest({ nowMs: Date.now() });
  const decisions = await Promise.all([req, req, other, req, other].map((r) => verify(r)));
  assert.deepEqual(
    decisions.map((d) => (d.allowed ? 'allow' : d.reason)),
    ['allow', 'jti_replay', 'allow', 'jti_replay', 'jti_replay'],
  );
});
