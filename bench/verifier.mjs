#!/usr/bin/env node
// Verifier pipeline benchmark (no HTTP), meant to run pinned to one core (npm run bench does).
// Reports requests/s and ratios measured in the same run against:
//  (a) the raw floor: two Ed25519 verifies + the request's SHA-256 work, same backend;
//  (b) the same pipeline on the node:crypto backend;
//  (c) jose's jwtVerify of a bare EdDSA JWT, awaited one at a time (a typical JWT middleware).
import { writeFileSync, mkdirSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import os from 'node:os';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import * as core from '../packages/core/dist/src/index.js';
import * as jose from 'jose';

const DURATION_MS = Number(process.env.BENCH_MS ?? 3000); // measured time per candidate, split into rounds
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 2500); // per candidate; with 1 s the pipeline's first round was still ~8 % slow
const N = 4000; // distinct pre-signed requests per round (each has its own jti)
const BATCH = 16; // requests per verifyBatch call in the batched pipeline candidate
const T0 = Date.now();

const issuerKey = core.privateKeyFromSeed(Buffer.alloc(32, 1));
const trust = {
  version: 'trustplane-trust-material-v1',
  issuers: [{ issuer: 'https://issuer.example', trust_domain: 'example.local', source_type: 'software_jwks', keys: [{ kid: 'k1', alg: 'EdDSA', public_key_b64url: core.encodeBase64url(issuerKey.publicKey) }] }],
};
const bundle = {
  version: 'trustplane-bundle-v1',
  apis: [{ api_id: 'orders', audience: 'orders-api', base_url: 'https://orders.example' }],
  route_groups: [{ route_group_id: 'g', api_id: 'orders', routes: [{ route_id: 'orders.create', method: 'POST', path_template: '/v1/orders', freshness_class: 'offline-ok', allowed_sources: [{ source_type: 'software_jwks', issuer: 'https://issuer.example', trust_domain: 'example.local', subject_prefix: 'service:' }] }] }],
};
const body = Buffer.from(JSON.stringify({ order_id: 'ord_123', amount: '42.00', currency: 'USD', items: [{ sku: 'sku-1', qty: 2 }] }));

function makeRequests(n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const p = core.issuePassport({ signingKey: issuerKey, kid: 'k1', issuer: 'https://issuer.example', subject: 'service:orders-client', audience: 'orders-api', trustDomain: 'example.local', ttlSeconds: 600 });
    const s = core.signRequest({ passport: p.token, privateKey: issuerKey, method: 'POST', url: 'https://orders.example/v1/orders?currency=USD&expand=items', routeId: 'orders.create', body, headers: { 'content-type': 'application/json' } });
    const headers = { 'content-type': 'application/json', 'user-agent': 'bench', accept: '*/*' };
    for (const [k, v] of Object.entries(s.headers)) headers[k.toLowerCase()] = v;
    out.push({ method: 'POST', path: '/v1/orders', query: 'currency=USD&expand=items', headers, body });
  }
  return out;
}

// Each candidate is a function called with a running index, and lives in its own worker thread
// (its own JIT state: the node:crypto pipeline cannot make the libsodium pipeline's call sites
// polymorphic, as it did when they shared one isolate). All threads are pinned with the process.
// The main thread warms every candidate up (until the JIT has settled), then runs them in ROUNDS
// short rounds that take turns (A B C D E, A B C D E, …), one at a time, so a slow spell on this
// shared VM hits every candidate alike. Ratios are the median over rounds of the ratio within
// each round; rates are the median over rounds.
/** `perCall`: requests one call of `fn` handles (a batch candidate handles BATCH). */
function candidate(name, fn, perCall = 1) {
  return { name, fn, perCall, next: 0 };
}

async function runFor(c, ms) {
  const start = process.hrtime.bigint();
  let ops = 0;
  let elapsed = 0;
  while (elapsed < ms) {
    for (let i = 0; i < 100; i++) {
      const pending = c.fn(c.next++); // the floor is synchronous: no await turn charged to it
      if (pending !== undefined) await pending;
    }
    ops += 100 * c.perCall;
    elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  }
  return (ops / elapsed) * 1000;
}

const median = (xs) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** A candidate in its own thread: `run(ms)` resolves to its rate over that time. */
function threaded(kind, backendName) {
  const w = new Worker(new URL(import.meta.url), { workerData: { kind, backendName } });
  let waiting;
  w.on('message', (m) => waiting?.(m));
  w.on('error', (err) => {
    console.error(err);
    process.exit(1);
  });
  const ask = (msg) => new Promise((resolve) => ((waiting = resolve), w.postMessage(msg)));
  return {
    rates: [],
    ready: ask({ cmd: 'name' }),
    run: (ms) => ask({ cmd: 'run', ms }),
    close: () => w.terminate(),
  };
}

async function measure(cands) {
  for (const c of cands) c.name = await c.ready;
  for (const c of cands) await c.run(WARMUP_MS);
  for (let r = 0; r < ROUNDS; r++) for (const c of cands) c.rates.push(await c.run(DURATION_MS / ROUNDS));
  for (const c of cands) {
    console.error(`  ${c.name.padEnd(44)} ${Math.round(median(c.rates)).toString().padStart(7)} /s  (rounds ${c.rates.map((x) => Math.round(x)).join(' ')})`);
    await c.close();
  }
}

/** Median over rounds of a.rate / b.rate, with the per-round spread. */
function ratio(a, b) {
  const per = a.rates.map((x, i) => x / b.rates[i]);
  return { median: median(per), min: Math.min(...per), max: Math.max(...per) };
}

function pipelineCandidate(backendName, batched = false) {
  const backend = core.getEd25519Backend(backendName);
  const policy = core.compilePolicy(trust, bundle, { backend });
  const reqs = makeRequests(N);
  const provider = new core.StaticPolicyProvider(policy, Date.now());
  const fresh = () => new core.Verifier({ policy: provider, replayStore: new core.MemoryReplayStore(), backend });
  let v = fresh();
  const check = (d) => {
    if (!d.allowed) throw new Error(`unexpected deny ${d.reason}: ${d.detail}`);
  };
  // Every measured request is a valid, first-use request (the allow path real traffic takes):
  // each pass over the N pre-signed requests starts with an empty replay store.
  if (!batched) {
    return candidate(`verifier pipeline (${backend.name})`, async (i) => {
      if (i % N === 0) v = fresh();
      check(await v.verify(reqs[i % N]));
    });
  }
  // As the adapter runs it under load: the requests of one event-loop turn in one verifyBatch.
  const batches = N / BATCH;
  return candidate(
    `verifier pipeline, batches of ${BATCH} (${backend.name})`,
    async (i) => {
      if (i % batches === 0) v = fresh();
      const start = (i % batches) * BATCH;
      for (const d of v.verifyBatch(reqs.slice(start, start + BATCH))) check(await d);
    },
    BATCH,
  );
}

function floorCandidate(backendName) {
  const backend = core.getEd25519Backend(backendName);
  const reqs = makeRequests(200);
  const pk = backend.importPublicKey(issuerKey.publicKey);
  const items = reqs.map((r) => {
    const token = r.headers.authorization.slice(7);
    const dot = token.lastIndexOf('.');
    return { input: Buffer.from(token.slice(0, dot)), sig: Buffer.from(token.slice(dot + 1), 'base64url'), proof: Buffer.from(r.headers['x-trustplane-proof'], 'base64url'), transcript: 'x'.repeat(900) };
  });
  return candidate(`raw floor: 2 verifies + hashes (${backend.name})`, (i) => {
    const it = items[i % items.length];
    // The hashes a request needs: body, query, two header values, the transcript.
    // Same hashing primitive as the pipeline (the fastest one available), so the floor is honest.
    core.sha256Hex(body);
    core.sha256Hex('currency=USD&expand=items');
    core.sha256Hex('application/json');
    core.sha256Hex('0123456789abcdef0123456789abcdef');
    const digest = Buffer.from(core.sha256Hex(it.transcript), 'hex');
    if (!backend.verify(pk, it.input, it.sig)) throw new Error('floor verify failed');
    backend.verify(pk, digest, it.proof); // false (different digest), same cost
  });
}

function joseCandidate() {
  const jwk = { kty: 'OKP', crv: 'Ed25519', x: core.encodeBase64url(issuerKey.publicKey) };
  const key = createPublicKey({ key: jwk, format: 'jwk' });
  const tokens = makeRequests(200).map((r) => r.headers.authorization.slice(7));
  return candidate('jose jwtVerify, bare EdDSA JWT (awaited)', async (i) => {
    await jose.jwtVerify(tokens[i % tokens.length], key, { algorithms: ['EdDSA'], audience: 'orders-api', clockTolerance: 30 });
  });
}

/**
 * A request that must be refused before any signature work, on the default backend: `unknown-kid`
 * names a key the trust material does not have; `malformed` carries a passport whose claims
 * segment is not base64url (one character replaced), with every other header valid, so it goes
 * through the header checks and route resolution first.
 */
function rejectCandidate(kind, backendName) {
  const backend = core.getEd25519Backend(backendName);
  const policy = core.compilePolicy(trust, bundle, { backend });
  const v = new core.Verifier({ policy: new core.StaticPolicyProvider(policy, Date.now()), replayStore: new core.MemoryReplayStore(), backend });
  const good = makeRequests(1)[0];
  const auth = good.headers.authorization;
  const payloadAt = auth.indexOf('.') + 20;
  const authorization =
    kind === 'unknown-kid'
      ? auth.replace('eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0', 'eyJhbGciOiJFZERTQSIsImtpZCI6Im5vcGUiLCJ0eXAiOiJKV1QifQ')
      : `${auth.slice(0, payloadAt)}*${auth.slice(payloadAt + 1)}`;
  const bad = { ...good, headers: { ...good.headers, authorization } };
  const want = kind === 'unknown-kid' ? 'unknown_issuer_key' : 'malformed_passport';
  return candidate(`${kind} request rejected`, async () => {
    const d = await v.verify(bad);
    if (d.allowed || d.reason !== want) throw new Error(`expected ${want}, got ${d.allowed ? 'allow' : d.reason}`);
  });
}

if (!isMainThread) {
  const { kind, backendName } = workerData;
  const c =
    kind === 'floor' ? floorCandidate(backendName) : kind === 'pipeline' ? pipelineCandidate(backendName) : kind === 'pipeline-batch' ? pipelineCandidate(backendName, true) : kind === 'jose' ? joseCandidate() : rejectCandidate(kind, backendName);
  parentPort.on('message', async (m) => parentPort.postMessage(m.cmd === 'name' ? c.name : await runFor(c, m.ms)));
} else {
const hasSodium = core.sodiumAvailable();
const main = hasSodium ? 'sodium' : 'node';
console.error(`verifier benchmark — node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'}, default backend ${main}${hasSodium ? '' : ' (sodium-native not installed!)'}`);
const floor = threaded('floor', main);
const pipe = threaded('pipeline', main);
const batchPipe = threaded('pipeline-batch', main);
const nodePipe = main === 'node' ? undefined : threaded('pipeline', 'node');
const joseC = threaded('jose');
const unknownKid = threaded('unknown-kid', main);
const malformed = threaded('malformed', main);
await measure([floor, pipe, batchPipe, ...(nodePipe ? [nodePipe] : []), joseC, unknownKid, malformed]);

const ratios = {
  pipeline_vs_floor: ratio(pipe, floor),
  batched_pipeline_vs_floor: ratio(batchPipe, floor),
  pipeline_vs_node_crypto_pipeline: ratio(pipe, nodePipe ?? pipe),
  pipeline_vs_jose: ratio(pipe, joseC),
  unknown_kid_reject_vs_accept: ratio(unknownKid, pipe),
  malformed_reject_vs_accept: ratio(malformed, pipe),
};
const result = {
  when: new Date().toISOString(),
  node: process.version,
  cpu: os.cpus()[0]?.model,
  backend: main,
  pinned: process.env.BENCH_PINNED ?? 'unknown',
  method: `${ROUNDS} alternating rounds of ${DURATION_MS / ROUNDS} ms per candidate after ${WARMUP_MS} ms warm-up each; rates are medians over rounds, ratios medians of per-round ratios`,
  rates_per_s: Object.fromEntries([['floor', floor], ['pipeline', pipe], ['pipeline_batched', batchPipe], ['pipeline_node_crypto', nodePipe ?? pipe], ['jose_jwt_verify', joseC], ['unknown_kid_reject', unknownKid], ['malformed_reject', malformed]].map(([k, c]) => [k, median(c.rates)])),
  ratios: Object.fromEntries(Object.entries(ratios).map(([k, v]) => [k, v.median])),
  ratio_range_over_rounds: Object.fromEntries(Object.entries(ratios).map(([k, v]) => [k, [v.min, v.max]])),
  targets: { pipeline_vs_floor: 0.85, batched_pipeline_vs_floor: 0.85, pipeline_vs_node_crypto_pipeline: 1.6, pipeline_vs_jose: 1.0, unknown_kid_reject_vs_accept: 5, malformed_reject_vs_accept: 5 },
};
// Three decimals below 10×: rounded to two, 0.847× would print as a "0.85×" that is NOT met.
const fmt = (x) => x.toFixed(x < 10 ? 3 : 1);
const rows = Object.entries(result.ratios).map(([k, v]) => { const [lo, hi] = result.ratio_range_over_rounds[k]; return `| ${k} | ${fmt(v)}× | ${fmt(lo)}–${fmt(hi)}× | ≥ ${result.targets[k]}× | ${v >= result.targets[k] ? 'met' : 'NOT met'} |`; });
const md = `| ratio | median of rounds | range over rounds | target | |\n|---|---|---|---|---|\n${rows.join('\n')}\n`;
console.log(md);
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(new URL('./results/verifier.json', import.meta.url), JSON.stringify(result, null, 2) + '\n');
writeFileSync(new URL('./results/verifier.md', import.meta.url), md);
void T0;
}
