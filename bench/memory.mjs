#!/usr/bin/env node
// Memory per live jti in the in-memory replay store: 1,000,000 entries consumed through the
// real key function (core replayKey), heapUsed delta after full GCs / entries. Needs --expose-gc
// (npm run bench:memory passes it). Writes bench/results/memory.{json,md}.
import { writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import * as core from '../packages/core/dist/src/index.js';

const N = Number(process.env.BENCH_ENTRIES ?? 1_000_000);
const TARGET = 150;
if (typeof globalThis.gc !== 'function') {
  console.error('bench/memory.mjs needs --expose-gc (run it with: npm run bench:memory)');
  process.exit(2);
}

function settle() {
  for (let i = 0; i < 4; i++) globalThis.gc();
  return process.memoryUsage().heapUsed;
}

const issuer = 'https://issuer.example/software-jwks';
const nowMs = Date.now();
// One issuer: it may hold the whole store here (issuerShare 1); per-entry memory is what is measured.
const store = new core.MemoryReplayStore({ maxEntries: N, issuerShare: 1 });
const before = settle();
const t0 = process.hrtime.bigint();
for (let i = 0; i < N; i++) {
  // jtis as issuePassport mints them (22 base64url chars); expiries spread over 15 minutes
  const jti = `j${i.toString(36).padStart(21, '0')}`;
  if (store.consume(core.replayKey(issuer, jti), nowMs + 60_000 + (i % 900) * 1000, nowMs) !== 'fresh') throw new Error('unexpected replay');
}
const fillMs = Number(process.hrtime.bigint() - t0) / 1e6;
const after = settle();
if (store.size !== N) throw new Error(`store holds ${store.size}, expected ${N}`);
// A sample of lookups after the fill: every one must be a replay.
for (let i = 0; i < N; i += 9973) {
  if (store.consume(core.replayKey(issuer, `j${i.toString(36).padStart(21, '0')}`), nowMs + 1_000_000, nowMs) !== 'replay') throw new Error('lost an entry');
}
const perEntry = (after - before) / N;
const result = {
  when: new Date().toISOString(),
  node: process.version,
  cpu: os.cpus()[0]?.model,
  entries: N,
  heap_used_delta_bytes: after - before,
  bytes_per_entry: Math.round(perEntry * 10) / 10,
  target_bytes_per_entry: TARGET,
  met: perEntry <= TARGET,
  fill_ms: Math.round(fillMs),
};
const md = `| live jtis | heapUsed delta | bytes / entry | target | |\n|---|---|---|---|---|\n| ${N.toLocaleString('en-US')} | ${(result.heap_used_delta_bytes / 1e6).toFixed(1)} MB | ${result.bytes_per_entry} | ≤ ${TARGET} | ${result.met ? 'met' : 'NOT met'} |\n`;
console.log(md);
if (process.env.BENCH_NO_WRITE === undefined) {
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(new URL('./results/memory.json', import.meta.url), JSON.stringify(result, null, 2) + '\n');
  writeFileSync(new URL('./results/memory.md', import.meta.url), md);
}
