#!/usr/bin/env node
// npm run bench:http — the adapter over real HTTP, against the bare undici proxy, in one run and
// on the same upstream. Real processes: an upstream (node:http, tiny fixed response), the bare
// proxy (bench/lib/bare-proxy.mjs), the adapter through the built CLI with signed bundles, Redis
// (redis-server), and wrk as the load generator. Every request wrk sends is a VALID signed
// request with its own passport and jti (pre-signed: wrk cannot sign; bench/lib/signed-requests.*).
//
// Cells: {bare proxy, adapter + memory store, adapter + Redis} × {c=1, c=64} × {pinned, unpinned};
// the bare proxy cells run twice (first and last) and the faster run is the baseline. The
// measured ceilings: the bare proxy doing the crypto floor (2 Ed25519 verifies + the SHA-256s)
// per request, i.e. what any verifying proxy costs at the very least (pinned c=1 and c=64,
// unpinned c=1); and at c=1 the same plus one consume round trip per request before forwarding
// — a Redis `SET NX`, or (unpinned) a question to a parent process as the adapter's workers ask
// their primary for the in-memory store: the least such a proxy adds to a request's latency.
// Pinned: the proxy/adapter on core 0 (`taskset -c 0`, one adapter process); wrk, the upstream
// and redis-server on core 1. Unpinned: nothing pinned, the adapter with --workers auto.
// Each cell gets fresh server processes, a warm-up, then a measured run. Server CPU µs/request
// comes from /proc/<pid>/stat (utime+stime, summed over the adapter's primary and workers),
// RSS from /proc/<pid>/status VmRSS (summed). A cell with non-2xx > 0.1 % is marked invalid.
//
//   npm run bench:http               the matrix (~8–9 min) → bench/results/http.{json,md}
//   npm run bench:http -- --rss      RSS over a 60 s load (memory and Redis stores), merged in
// Env: BENCH_HTTP_SECONDS (10), BENCH_HTTP_WARMUP_SECONDS (2), BENCH_HTTP_REQUESTS (70000).
// For investigating one cell: BENCH_HTTP_ONLY=pinned:memory:64,pinned:bare:64 runs only those
// cells and writes no results; BENCH_HTTP_ADAPTER_NODE_ARGS (e.g. --cpu-prof
// --cpu-prof-dir=/tmp/prof) are given to the adapter's node only, BENCH_HTTP_BARE_NODE_ARGS to
// the bare proxy's and the ceilings'. Two cells run only when named in BENCH_HTTP_ONLY:
// `verifier-proxy` and `verifier-proxy-redis`, the bare proxy running the real core Verifier
// (memory store; the adapter's Redis store) per request, which split the adapter's cost above
// the ceiling into the verifier's and the adapter's HTTP handling's (e.g.
// BENCH_HTTP_ONLY=pinned:ceiling:1,pinned:verifier-proxy:1,pinned:memory:1,pinned:bare:1).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, mkdirSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { get as httpGet } from 'node:http';
import { setInterval, clearInterval } from 'node:timers';
import { tmpdir, availableParallelism, cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as core from '../packages/core/dist/src/index.js';
import { writeSignedRequests, REQUEST_PATH } from './lib/signed-requests.mjs';
import { processTree, cpuMicros, rssBytes, machineBusyMicros, selfAndReapedMicros } from './lib/proc.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'packages/cli/bin/trustplane.js');
const LUA = fileURLToPath(new URL('./lib/signed-requests.lua', import.meta.url));
const RESULTS = new URL('./results/', import.meta.url);
const SECONDS = Number(process.env.BENCH_HTTP_SECONDS ?? 10);
const WARMUP_SECONDS = Number(process.env.BENCH_HTTP_WARMUP_SECONDS ?? 2);
const RSS_MODE = process.argv.includes('--rss');
const RSS_SECONDS = Number(process.env.BENCH_HTTP_RSS_SECONDS ?? 60);
const WARMUP_SLICE = 10_000;
const REQUESTS = Number(process.env.BENCH_HTTP_REQUESTS ?? (RSS_MODE ? 260_000 : 70_000));
const INVALID_NON2XX = 0.001;
const ONLY = process.env.BENCH_HTTP_ONLY?.split(',').map((x) => x.trim()).filter(Boolean);
const wanted = (pinned, kind, conns) => ONLY === undefined || ONLY.includes(`${pinned ? 'pinned' : 'unpinned'}:${kind}:${conns}`);

const children = new Set();
function cleanup() {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));
const say = (s) => console.error(s);

// ---------------------------------------------------------------------------------- tools
function haveTool(cmd, args) {
  return spawnSync(cmd, args, { stdio: 'ignore' }).error === undefined;
}
function ensureTool(cmd, args, pkg) {
  if (haveTool(cmd, args)) return true;
  if (process.getuid?.() === 0) {
    say(`${cmd} is missing: apt-get install -y ${pkg}`);
    spawnSync('apt-get', ['install', '-y', pkg], { stdio: 'inherit' });
    if (haveTool(cmd, args)) return true;
  }
  return false;
}
if (!ensureTool('wrk', ['-v'], 'wrk')) {
  say('bench:http needs wrk (Debian/Ubuntu: sudo apt-get install -y wrk). Run as root to have it installed automatically.');
  process.exit(2);
}
const HAVE_REDIS = ensureTool('redis-server', ['--version'], 'redis-server');
if (!HAVE_REDIS) say('WARNING: redis-server is missing (apt-get install -y redis-server): the Redis cells are skipped.');
const HAVE_TASKSET = haveTool('taskset', ['--version']);
const CORES = availableParallelism();
const CAN_PIN = HAVE_TASKSET && CORES >= 2;
if (!CAN_PIN) say('WARNING: pinned runs need taskset and 2 cores; only unpinned runs will be made.');

// ---------------------------------------------------------------------------------- processes
function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function launch(cpuList, cmd, args, opts = {}) {
  const [file, argv] = cpuList === undefined ? [cmd, args] : ['taskset', ['-c', cpuList, cmd, ...args]];
  const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  child.output = () => out;
  child.errors = () => err;
  return child;
}

function waitFor(child, what, test, timeoutMs = 30_000) {
  return new Promise((resolve, reject) => {
    const timer = setInterval(() => {
      const m = test();
      if (m) {
        clearInterval(timer);
        resolve(m);
      } else if (child.exitCode !== null || Date.now() > deadline) {
        clearInterval(timer);
        reject(new Error(`${what} did not start: ${child.errors().slice(-2000)}`));
      }
    }, 20);
    const deadline = Date.now() + timeoutMs;
  });
}

async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(t);
}

function httpOk(url) {
  return new Promise((resolve) => {
    const req = httpGet(url, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode === 200));
    });
    req.once('error', () => resolve(false));
  });
}

async function startUpstream(cpuList) {
  const c = launch(cpuList, process.execPath, [fileURLToPath(new URL('./lib/upstream.mjs', import.meta.url)), '0']);
  const url = await waitFor(c, 'upstream', () => /READY (\S+)/.exec(c.output())?.[1]);
  return { child: c, url };
}

async function startRedis(cpuList, dir) {
  const port = await freePort();
  const c = launch(cpuList, 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir]);
  await waitFor(c, 'redis-server', () => /Ready to accept connections/.test(c.output()));
  return { child: c, url: `redis://127.0.0.1:${port}` };
}

/** The bare proxy and the ceilings built on it run no adapter; reusing a request slice is harmless. */
const isBaseline = (kind) => kind === 'bare' || kind.startsWith('ceiling') || kind.startsWith('verifier-proxy');

async function startBare(cpuList, upstream, mode = 'bare', redisUrl = undefined) {
  const port = await freePort();
  const extra = mode === 'ceiling' ? ['floor'] : mode === 'ceiling-redis' ? ['floor-redis', redisUrl] : mode === 'verifier-proxy' ? ['verify', env.tm, env.pb, env.signing] : mode === 'verifier-proxy-redis' ? ['verify-redis', env.tm, env.pb, env.signing, redisUrl] : [];
  // ceiling-ipc: two processes, the proxy asking its parent for every consume (ipc-parent.mjs).
  const script = mode === 'ceiling-ipc' ? './lib/ipc-parent.mjs' : './lib/bare-proxy.mjs';
  const c = launch(cpuList, process.execPath, [...(process.env.BENCH_HTTP_BARE_NODE_ARGS?.split(' ').filter(Boolean) ?? []), fileURLToPath(new URL(script, import.meta.url)), String(port), upstream, ...extra]);
  const url = await waitFor(c, 'bare proxy', () => /READY (\S+)/.exec(c.output())?.[1]);
  return { child: c, url, pids: () => processTree(c.pid) };
}

async function startAdapter(cpuList, upstream, replay, workers, env, extraNodeArgs = []) {
  const port = await freePort();
  const admin = await freePort();
  const args = [BIN, 'adapter', '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${admin}`, '--upstream', upstream, '--replay', replay, '--workers', String(workers), '--log-level', 'warn', '--audit-log', join(env.dir, 'log', 'audit.jsonl'), '--bundle', env.tm, '--policy-bundle', env.pb, '--bundle-signature-public-key', env.signing];
  const nodeArgs = [...extraNodeArgs, ...(process.env.BENCH_HTTP_ADAPTER_NODE_ARGS?.split(' ').filter(Boolean) ?? [])];
  const c = launch(cpuList, process.execPath, [...nodeArgs, ...args]);
  await waitFor(c, 'adapter', () => c.errors().includes('listening on'));
  const deadline = Date.now() + 15_000;
  while (!(await httpOk(`http://127.0.0.1:${admin}/readyz`))) {
    if (Date.now() > deadline) throw new Error(`adapter not ready: ${c.errors().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child: c, url: `http://127.0.0.1:${port}`, pids: () => processTree(c.pid) };
}

function runWrk(cpuList, url, conns, seconds, file, first, count) {
  return new Promise((resolve, reject) => {
    const c = launch(cpuList, 'wrk', ['-t1', `-c${conns}`, `-d${seconds}s`, '--timeout', '10s', '-s', LUA, url, '--', file, String(first), String(count), REQUEST_PATH]);
    c.once('exit', (code) => {
      const m = /WRK_JSON (\{.*\})/.exec(c.output());
      if (code !== 0 || m === null) reject(new Error(`wrk failed (${code}): ${c.output()} ${c.errors()}`));
      else resolve(JSON.parse(m[1]));
    });
  });
}

// ---------------------------------------------------------------------------------- setup
const dir = mkdtempSync(join(tmpdir(), 'tp-bench-http-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
// Audit events go to their own directory, as in a deployment (bundles from a ConfigMap mount,
// logs elsewhere): the kernel reports every append to a directory's watchers.
mkdirSync(join(dir, 'log'));
const bundleSigner = core.generatePrivateKey();
const callerSeed = randomBytes(32);
const caller = core.privateKeyFromSeed(callerSeed);
const identity = { kid: 'bench-key-1', issuer: 'https://issuer.bench.example', subject: 'service:orders-client', audience: 'orders-api', trustDomain: 'bench.example', baseUrl: 'https://orders.example', routeId: 'orders.search' };
const trust = {
  version: 'trustplane-trust-material-v1',
  issuers: [{ issuer: identity.issuer, trust_domain: identity.trustDomain, source_type: 'software_jwks', keys: [{ kid: identity.kid, alg: 'EdDSA', public_key_b64url: core.encodeBase64url(caller.publicKey) }] }],
};
const policy = {
  version: 'trustplane-bundle-v1',
  policy_id: 'bench',
  policy_version: 1,
  apis: [{ api_id: 'orders-api', audience: identity.audience, base_url: identity.baseUrl }],
  route_groups: [
    {
      route_group_id: 'orders',
      api_id: 'orders-api',
      routes: [{ route_id: identity.routeId, method: 'GET', path_template: '/v1/orders/search', required_key_binding: 'software', freshness_class: 'offline-ok', allowed_sources: [{ source_type: 'software_jwks', issuer: identity.issuer, trust_domain: identity.trustDomain, subject_prefix: 'service:', required_key_binding: 'software' }] }],
    },
  ],
  default_required_key_binding: 'software',
  default_freshness_class: 'bounded',
  default_max_staleness_seconds: 300,
  revocations: [],
};
const env = { dir, tm: join(dir, 'tm.json'), pb: join(dir, 'pb.json'), signing: `bench-bundles=${core.encodeBase64url(bundleSigner.publicKey)}` };
writeFileSync(env.tm, JSON.stringify(core.signDocument(trust, bundleSigner, { kid: 'bench-bundles', signerIssuer: 'bench' })));
writeFileSync(env.pb, JSON.stringify(core.signDocument(policy, bundleSigner, { kid: 'bench-bundles', signerIssuer: 'bench' })));

const machine = { cpu: cpus()[0]?.model, cores: CORES, mem_gb: Math.round(totalmem() / 2 ** 30), node: process.version, wrk: /^wrk \S+/.exec(spawnSync('wrk', ['-v'], { encoding: 'utf8' }).stdout)?.[0], kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(), sodium: core.sodiumAvailable() };

const reqFile = join(dir, 'requests.tsv');
say(`bench:http — ${machine.cpu}, ${CORES} cores, node ${process.version}; signing ${REQUESTS.toLocaleString('en-US')} requests (each its own passport and jti)…`);
const tSign = Date.now();
// Passports are valid for the maximum lifetime (900 s) from now: the whole run fits in it.
await writeSignedRequests(reqFile, { seedHex: callerSeed.toString('hex'), count: REQUESTS, ttlSeconds: 900, identity });
say(`  signed in ${((Date.now() - tSign) / 1000).toFixed(1)} s`);
const signedAt = Date.now();

// ---------------------------------------------------------------------------------- one cell
async function startServer(kind, pinned, upstream, extraNodeArgs = []) {
  const cpu = pinned ? '0' : undefined;
  const infra = pinned ? '1' : undefined;
  let redis;
  if (kind === 'redis' || kind === 'ceiling-redis' || kind === 'verifier-proxy-redis') redis = await startRedis(infra, dir);
  const workers = pinned ? 1 : 'auto';
  const server = isBaseline(kind) ? await startBare(cpu, upstream, kind, redis?.url) : await startAdapter(cpu, upstream, kind === 'memory' ? 'memory' : redis.url, workers, env, extraNodeArgs);
  return { server, redis, workers: isBaseline(kind) ? 1 : pinned ? 1 : CORES };
}

async function stopServer(s) {
  await stop(s.server.child);
  if (s.redis !== undefined) await stop(s.redis.child);
  rmSync(join(dir, 'log', 'audit.jsonl'), { force: true });
}

/**
 * CPU that other tenants of the machine used during a cell, in cores: everything busy minus this
 * benchmark's own process tree (servers, redis and wrk are reaped children by then) and the
 * upstream. The machine is shared; a cell with more than NOISY cores of it is re-run once.
 */
const NOISY = 0.15;
async function cell(kind, pinned, conns, upstream) {
  let r = await cellOnce(kind, pinned, conns, upstream);
  if (r.other_load_cores > NOISY) {
    say(`    other processes used ${r.other_load_cores} cores during that cell: running it again`);
    const again = await cellOnce(kind, pinned, conns, upstream);
    if (again.other_load_cores < r.other_load_cores) r = again;
  }
  return r;
}

async function cellOnce(kind, pinned, conns, upstream) {
  const busy0 = machineBusyMicros();
  const own0 = selfAndReapedMicros() + cpuMicros([upstream.child.pid]);
  const wall0 = process.hrtime.bigint();
  const r = await measureCell(kind, pinned, conns, upstream.url);
  const wallUs = Number(process.hrtime.bigint() - wall0) / 1000;
  const other = (machineBusyMicros() - busy0 - (selfAndReapedMicros() + cpuMicros([upstream.child.pid]) - own0)) / wallUs;
  r.other_load_cores = Math.max(0, Math.round(other * 100) / 100);
  if (r.other_load_cores > NOISY) r.noisy = true;
  return r;
}

async function measureCell(kind, pinned, conns, upstream) {
  const s = await startServer(kind, pinned, upstream);
  const loadCpu = pinned ? '1' : undefined;
  try {
    // Warm-up (JIT, connection pools) on its own slice of requests.
    await runWrk(loadCpu, s.server.url, Math.max(conns, 16), WARMUP_SECONDS, reqFile, 0, WARMUP_SLICE);
    const pids = s.server.pids();
    const redisPids = s.redis === undefined ? [] : [s.redis.child.pid];
    const cpu0 = cpuMicros(pids);
    const rcpu0 = cpuMicros(redisPids);
    const w = await runWrk(loadCpu, s.server.url, conns, SECONDS, reqFile, WARMUP_SLICE, REQUESTS - WARMUP_SLICE);
    const cpuUs = cpuMicros(pids) - cpu0;
    const rcpuUs = cpuMicros(redisPids) - rcpu0;
    const rss = rssBytes(s.server.pids());
    const rate = w.requests / (w.duration_us / 1e6);
    const bad = w.non2xx + w.connect_errors + w.read_errors + w.write_errors + w.timeouts;
    // The bare proxy checks no jti, so reusing its slice is harmless; for the adapter it is a replay.
    const valid = bad / Math.max(1, w.requests) <= INVALID_NON2XX && (isBaseline(kind) || w.wrapped === 0);
    const r = {
      server: kind,
      pinned,
      connections: conns,
      workers: s.workers,
      requests: w.requests,
      req_per_s: Math.round(rate),
      p50_ms: w.p50_us / 1000,
      p99_ms: w.p99_us / 1000,
      server_cpu_us_per_req: Math.round((cpuUs / Math.max(1, w.requests)) * 10) / 10,
      server_cpu_cores: Math.round((cpuUs / w.duration_us) * 100) / 100,
      redis_cpu_us_per_req: s.redis !== undefined ? Math.round((rcpuUs / Math.max(1, w.requests)) * 10) / 10 : undefined,
      rss_mb: Math.round((rss / 2 ** 20) * 10) / 10,
      non2xx: w.non2xx,
      socket_errors: w.connect_errors + w.read_errors + w.write_errors + w.timeouts,
      slice_wrapped: w.wrapped,
      valid,
    };
    say(`  ${pinned ? 'pinned  ' : 'unpinned'} ${kind.padEnd(6)} c=${String(conns).padEnd(2)}  ${String(r.req_per_s).padStart(6)} req/s  p50 ${r.p50_ms.toFixed(2)} ms  p99 ${r.p99_ms.toFixed(2)} ms  ${r.server_cpu_us_per_req} µs/req  ${r.rss_mb} MB${valid ? '' : '  INVALID'}`);
    return r;
  } finally {
    await stopServer(s);
  }
}

// ---------------------------------------------------------------------------------- RSS run
async function rssRun(kind, upstream) {
  // --trace-gc: V8 prints each major GC's heap before -> after; "after" is the live heap, the
  // figure that tells a leak (it climbs from one major GC to the next) from heap sizing.
  const s = await startServer(kind, true, upstream, ['--trace-gc']);
  try {
    const pids = s.server.pids();
    const samples = [];
    const t0 = Date.now();
    const load = runWrk('1', s.server.url, 64, RSS_SECONDS, reqFile, 0, REQUESTS);
    const timer = setInterval(() => samples.push({ t_s: Math.round((Date.now() - t0) / 1000), rss_mb: Math.round((rssBytes(pids) / 2 ** 20) * 10) / 10 }), 5000);
    const w = await load;
    clearInterval(timer);
    // Reference: the median of the first three samples (from 5 s in, warmed up); end: the median
    // of the last three (one sample is at the mercy of the GC's timing). The live jtis the memory
    // store must keep (each until exp + skew) grow by design, and are accounted separately.
    const median = (xs) => [...xs].sort((a, b) => a.rss_mb - b.rss_mb)[Math.floor(xs.length / 2)];
    const first = median(samples.slice(0, 3));
    const last = median(samples.slice(-3));
    const perEntry = existsSync(new URL('memory.json', RESULTS)) ? JSON.parse(readFileSync(new URL('memory.json', RESULTS), 'utf8')).bytes_per_entry : undefined;
    const liveJtiMb = kind === 'memory' && perEntry !== undefined ? Math.round(((w.requests * (last.t_s - first.t_s)) / RSS_SECONDS) * perEntry / 2 ** 20 * 10) / 10 : 0;
    const growth = (last.rss_mb - first.rss_mb) / first.rss_mb;
    const growthNet = (last.rss_mb - liveJtiMb - first.rss_mb) / first.rss_mb;
    const majorGcs = [...s.server.child.output().matchAll(/\s(\d+) ms: Mark-Compact [\d.]+ \([\d.]+\) -> ([\d.]+) \([\d.]+\) MB/g)].map((m) => ({ t_s: Math.round(Number(m[1]) / 100) / 10, live_heap_mb: Number(m[2]) }));
    const r = { server: kind, seconds: RSS_SECONDS, requests: w.requests, live_heap_after_major_gc: majorGcs, req_per_s: Math.round(w.requests / (w.duration_us / 1e6)), non2xx: w.non2xx, slice_wrapped: w.wrapped, samples, growth_pct: Math.round(growth * 10000) / 100, live_jti_state_mb: liveJtiMb, growth_excluding_live_jtis_pct: Math.round(growthNet * 10000) / 100 };
    say(`  ${kind}: live heap after each major GC (process time s: MB): ${majorGcs.map((g) => `${g.t_s}: ${g.live_heap_mb}`).join(', ') || 'none'}`);
    say(`  RSS ${kind}: ${first.rss_mb} → ${last.rss_mb} MB over ${RSS_SECONDS} s (${r.growth_pct} %; live jti state ${liveJtiMb} MB; excluding it ${r.growth_excluding_live_jtis_pct} %), ${w.requests} requests, non-2xx ${w.non2xx}`);
    return r;
  } finally {
    await stopServer(s);
  }
}

// ---------------------------------------------------------------------------------- run
// The crypto floor on one core, then on every core at once: how much a second core can add on
// this machine for this work (shared caches, SMT siblings or a busy host all show up here).
const FLOOR = fileURLToPath(new URL('./lib/floor.mjs', import.meta.url));
async function floorOn(cpuList) {
  const c = launch(cpuList, process.execPath, [FLOOR]);
  await new Promise((r) => c.once('exit', r));
  return JSON.parse(c.output());
}
const floor = await floorOn(CAN_PIN ? '0' : undefined);
if (CAN_PIN) {
  const all = await Promise.all(Array.from({ length: CORES }, (_, i) => floorOn(String(i))));
  floor.all_cores_speedup = Math.round(all.reduce((sum, f) => sum + floor.floor_us / f.floor_us, 0) * 100) / 100;
}
say(`  crypto floor (2 Ed25519 verifies + hashes, ${floor.backend}): ${floor.floor_us.toFixed(1)} µs/request on one core; all ${CORES} cores at once: ${floor.all_cores_speedup ?? '?'}× one core`);

const previous = existsSync(new URL('http.json', RESULTS)) ? JSON.parse(readFileSync(new URL('http.json', RESULTS), 'utf8')) : undefined;
let result;
if (RSS_MODE) {
  if (!CAN_PIN) throw new Error('--rss needs taskset and 2 cores');
  const up = await startUpstream('1');
  const rss = [];
  try {
    for (const kind of HAVE_REDIS ? ['memory', 'redis'] : ['memory']) rss.push(await rssRun(kind, up.url));
  } finally {
    await stop(up.child);
  }
  result = { ...(previous ?? { machine }), rss: { when: new Date().toISOString(), machine, runs: rss } };
} else {
  const cells = [];
  for (const pinned of CAN_PIN ? [true, false] : [false]) {
    const kinds = ['bare', 'ceiling', ...(pinned ? [] : ['ceiling-ipc']), ...(HAVE_REDIS ? ['ceiling-redis'] : []), ...(ONLY === undefined ? [] : ['verifier-proxy', ...(HAVE_REDIS ? ['verifier-proxy-redis'] : [])]), 'memory', ...(HAVE_REDIS ? ['redis'] : [])];
    // The ceilings run one proxy process: unpinned they stand for one connection's path (c=1);
    // with a consume round trip (Redis, or the parent process as the memory store's primary)
    // they exist for the c=1 latency targets.
    const connsOf = (kind) => (kind === 'ceiling' && pinned ? [1, 64] : kind.startsWith('ceiling') ? [1] : [1, 64]);
    if (!kinds.some((k) => connsOf(k).some((c) => wanted(pinned, k, c)))) continue;
    const up = await startUpstream(pinned ? '1' : undefined);
    try {
      for (const kind of kinds) {
        for (const conns of connsOf(kind)) if (wanted(pinned, kind, conns)) cells.push(await cell(kind, pinned, conns, up));
      }
      // The baseline is measured again after the adapter cells and the faster of the two runs is
      // kept: a disturbance (this is a shared VM) can only make a run slower, so keeping the
      // faster baseline keeps every adapter/bare ratio conservative.
      for (const conns of [1, 64]) {
        const i = cells.findIndex((c) => c.server === 'bare' && c.pinned === pinned && c.connections === conns);
        if (i < 0) continue;
        const again = await cell('bare', pinned, conns, up);
        const keep = again.req_per_s > cells[i].req_per_s ? again : cells[i];
        cells[i] = { ...keep, baseline_runs: [cells[i].req_per_s, again.req_per_s] };
      }
    } finally {
      await stop(up.child);
    }
  }
  if ((Date.now() - signedAt) / 1000 > 800) say('WARNING: the run outlived most of the passports’ lifetime');
  result = { when: new Date().toISOString(), machine, seconds_per_cell: SECONDS, warmup_seconds: WARMUP_SECONDS, floor, cells, rss: previous?.rss };
}

// ---------------------------------------------------------------------------------- report
const find = (server, pinned, c) => result.cells?.find((x) => x.server === server && x.pinned === pinned && x.connections === c);
const ratios = [];
// Judged on the unrounded value, reported to three decimals (rounded to two, 0.347× would read
// as a met "0.35×").
const add = (name, value, target, cmp, note = '') => value !== undefined && ratios.push({ name, value: Math.round(value * 1000) / 1000, target, met: cmp === '>=' ? value >= target : value <= target, cmp, note });
const ratio = (a, b) => (a === undefined || b === undefined ? undefined : a.req_per_s / b.req_per_s);
const r3 = (x) => (x === undefined ? undefined : Math.round(x * 1000) / 1000);
const bare1 = find('bare', true, 64);
add('adapter+memory / bare proxy, one core, c=64', ratio(find('memory', true, 64), bare1), 0.4, '>=');
add('adapter+Redis / bare proxy, one core, c=64', ratio(find('redis', true, 64), bare1), 0.35, '>=');
const scaling = result.floor?.all_cores_speedup !== undefined ? `this machine: crypto on all cores at once = ${result.floor.all_cores_speedup}× one core` : '';
add('adapter+memory, 2 cores unpinned / one core, c=64', ratio(find('memory', false, 64), find('memory', true, 64)), 1.3, '>=', scaling);
add('adapter+Redis, 2 cores unpinned / one core, c=64', ratio(find('redis', false, 64), find('redis', true, 64)), 1.3, '>=', scaling);
for (const pinned of [true, false]) {
  for (const kind of ['memory', 'redis']) {
    const a = find(kind, pinned, 1);
    const b = find('bare', pinned, 1);
    // The least a verifying proxy added at c=1 in this run: the crypto floor, plus for Redis one
    // SET NX round trip, and for the unpinned memory store (owned by the primary) one IPC round trip.
    const leastKind = kind === 'redis' ? 'ceiling-redis' : pinned ? 'ceiling' : 'ceiling-ipc';
    const ceilingCell = find(leastKind, pinned, 1);
    const least = ceilingCell === undefined || b === undefined ? '' : `the ceiling${{ 'ceiling-redis': ' with one Redis round trip', 'ceiling-ipc': ' with one IPC round trip', ceiling: '' }[leastKind]} adds ${(ceilingCell.p50_ms - b.p50_ms).toFixed(3)} ms`;
    if (a !== undefined && b !== undefined) add(`added p50 at c=1, adapter+${kind === 'memory' ? 'memory' : 'Redis'} − bare (${pinned ? 'pinned' : 'unpinned'}), ms`, Math.round((a.p50_ms - b.p50_ms) * 1000) / 1000, 0.5, '<=', least);
  }
}
if (bare1 !== undefined && result.floor !== undefined) {
  // Any design that verifies two Ed25519 signatures per request on the proxy's core costs at
  // least the bare proxy's CPU plus the crypto floor per request.
  const ceiling = Math.round((bare1.server_cpu_us_per_req / (bare1.server_cpu_us_per_req + result.floor.floor_us)) * 100) / 100;
  result.one_core_ceiling = { bare_cpu_us_per_req: bare1.server_cpu_us_per_req, floor_us: Math.round(result.floor.floor_us * 10) / 10, max_ratio: ceiling };
  // The same ceiling measured: the bare proxy doing the floor's work per request, over HTTP.
  const measured = find('ceiling', true, 64);
  if (measured !== undefined) {
    result.one_core_ceiling.measured = {
      ceiling_vs_bare: r3(ratio(measured, bare1)),
      memory_vs_ceiling: r3(ratio(find('memory', true, 64), measured)),
      redis_vs_ceiling: r3(ratio(find('redis', true, 64), measured)),
      memory_extra_cpu_us_per_req: find('memory', true, 64) === undefined ? undefined : Math.round((find('memory', true, 64).server_cpu_us_per_req - measured.server_cpu_us_per_req) * 10) / 10,
    };
  }
}
if (result.rss !== undefined) for (const r of result.rss.runs) add(`RSS growth over ${r.seconds} s load, adapter+${r.server === 'memory' ? 'memory (excluding live jtis)' : 'Redis'}, %`, r.server === 'memory' ? r.growth_excluding_live_jtis_pct : r.growth_pct, 10, '<=', [r.server === 'memory' ? `raw ${r.growth_pct} %, of which live jti state ${r.live_jti_state_mb} MB` : '', r.live_heap_after_major_gc === undefined ? '' : `live heap after each major GC: ${r.live_heap_after_major_gc.map((g) => `${g.live_heap_mb} MB at ${g.t_s} s`).join(', ') || 'no major GC in the run'}`].filter(Boolean).join('; '));
result.ratios = ratios;

const label = { bare: 'bare undici proxy', ceiling: 'bare proxy + crypto floor (the ceiling)', 'ceiling-redis': 'bare proxy + crypto floor + one Redis SET NX', 'ceiling-ipc': 'bare proxy + crypto floor + one IPC round trip to a parent process', 'verifier-proxy': 'bare proxy + the core Verifier (memory store)', 'verifier-proxy-redis': 'bare proxy + the core Verifier (Redis store)', memory: 'adapter, memory store', redis: 'adapter, Redis store' };
const rows = (result.cells ?? []).map((c) => `| ${c.pinned ? 'one core' : 'unpinned'} | ${label[c.server]}${c.workers > 1 ? ` (${c.workers} workers)` : ''}${c.baseline_runs ? ` (faster of 2 runs: ${c.baseline_runs.map((x) => x.toLocaleString('en-US')).join(' / ')} req/s)` : ''} | ${c.connections} | ${c.req_per_s.toLocaleString('en-US')} | ${c.p50_ms.toFixed(2)} | ${c.p99_ms.toFixed(2)} | ${c.server_cpu_us_per_req}${c.redis_cpu_us_per_req !== undefined ? ` (+${c.redis_cpu_us_per_req} redis)` : ''} | ${c.server_cpu_cores} | ${c.rss_mb} | ${c.non2xx}${c.valid ? '' : ' INVALID'} | ${c.other_load_cores ?? ''}${c.noisy ? ' (noisy)' : ''} |`);
let md = `| run | server | c | req/s | p50 ms | p99 ms | server CPU µs/req | server cores busy | RSS MB | non-2xx | other tenants' load, cores |\n|---|---|---|---|---|---|---|---|---|---|---|\n${rows.join('\n')}\n\n`;
md += `| target | measured | target | |\n|---|---|---|---|\n${ratios.map((r) => `| ${r.name} | ${r.value}${r.note ? ` (${r.note})` : ''} | ${r.cmp === '>=' ? '≥' : '≤'} ${r.target} | ${r.met ? 'met' : 'NOT met'} |`).join('\n')}\n`;
if (result.one_core_ceiling !== undefined) md += `\nOne-core ceiling for any verifying proxy: bare proxy ${result.one_core_ceiling.bare_cpu_us_per_req} µs/req + crypto floor ${result.one_core_ceiling.floor_us} µs/req (${result.floor.backend}) → at most ${result.one_core_ceiling.max_ratio}× the bare proxy.\n`;
const m = result.one_core_ceiling?.measured;
if (m !== undefined) md += `Measured (one core, c=64): the bare proxy doing the crypto floor per request runs at ${m.ceiling_vs_bare}× the bare proxy; the adapter runs at ${m.memory_vs_ceiling}× that ceiling with the memory store${m.redis_vs_ceiling !== undefined ? ` and ${m.redis_vs_ceiling}× with Redis` : ''} (${m.memory_extra_cpu_us_per_req} µs/req of CPU above it with the memory store).\n`;
md += `\n${machine.cpu}, ${machine.cores} cores, ${machine.mem_gb} GB, Linux ${machine.kernel}, Node ${machine.node}, ${machine.wrk}, libsodium ${machine.sodium ? 'yes' : 'no'}; ${SECONDS} s per cell after ${WARMUP_SECONDS} s warm-up; ${result.when}.\n`;
console.log(md);
if (ONLY !== undefined) {
  say('BENCH_HTTP_ONLY: a partial run, results not written');
  process.exit(0);
}
mkdirSync(RESULTS, { recursive: true });
writeFileSync(new URL('http.json', RESULTS), JSON.stringify(result, null, 2) + '\n');
writeFileSync(new URL('http.md', RESULTS), md);
