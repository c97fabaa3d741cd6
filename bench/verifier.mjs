#!/usr/bin/env node
// Verifier pipeline benchmark (no HTTP), meant to run pinned to one core (npm run bench does).
// Reports requests/s and ratios measured in the same run against:
//  (a) the raw floor: two Ed25519 verifies + the request's SHA-256 work, same backend;
//  (b) the same pipeline on the node:crypto backend;
//  (c) jose's jwtVerify of a bare EdDSA JWT, awaited one at a time (a typical JWT middleware).
import { writeFileSync, mkdirSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import os from 'node:os';
import * as core from '../packages/core/dist/src/index.js';
import * as jose from 'jose';

const DURATION_MS = Number(process.env.BENCH_MS ?? 2000);
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 1000);
const N = 4000; // distinct pre-signed requests per round (each has its own jti)
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

async function rate(name, fn) {
  // Warm up until the JIT has settled (a fixed 300 calls left the pipeline partly unoptimised),
  // then run rounds until DURATION_MS has passed. Every candidate gets the same warm-up.
  const warmUntil = Date.now() + WARMUP_MS;
  for (let i = 0; Date.now() < warmUntil; i++) await fn(i);
  let ops = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < DURATION_MS) {
    for (let i = 0; i < 500; i++) await fn(ops + i);
    ops += 500;
    elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  }
  const r = (ops / elapsed) * 1000;
  console.error(`  ${name.padEnd(44)} ${Math.round(r).toString().padStart(7)} /s`);
  return r;
}

async function pipelineRate(backendName) {
  const backend = core.getEd25519Backend(backendName);
  const policy = core.compilePolicy(trust, bundle, { backend });
  let store = new core.MemoryReplayStore();
  let reqs = makeRequests(N);
  const v = new core.Verifier({ policy: new core.StaticPolicyProvider(policy, Date.now()), replayStore: store, backend });
  let failures = 0;
  const r = await rate(`verifier pipeline (${backend.name})`, async (i) => {
    const d = await v.verify(reqs[i % N]);
    if (!d.allowed) {
      failures++;
      if (d.reason !== 'jti_replay') throw new Error(`unexpected deny ${d.reason}: ${d.detail}`);
    }
  });
  // Replays after the first N are expected (requests are reused); they cost the full pipeline too.
  return { rate: r, replays: failures };
}

function floorRate(backendName) {
  const backend = core.getEd25519Backend(backendName);
  const reqs = makeRequests(200);
  const pk = backend.importPublicKey(issuerKey.publicKey);
  const items = reqs.map((r) => {
    const token = r.headers.authorization.slice(7);
    const dot = token.lastIndexOf('.');
    return { input: Buffer.from(token.slice(0, dot)), sig: Buffer.from(token.slice(dot + 1), 'base64url'), proof: Buffer.from(r.headers['x-trustplane-proof'], 'base64url'), transcript: 'x'.repeat(900) };
  });
  return rate(`raw floor: 2 verifies + hashes (${backend.name})`, (i) => {
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

async function joseRate() {
  const jwk = { kty: 'OKP', crv: 'Ed25519', x: core.encodeBase64url(issuerKey.publicKey) };
  const key = createPublicKey({ key: jwk, format: 'jwk' });
  const tokens = makeRequests(200).map((r) => r.headers.authorization.slice(7));
  return rate('jose jwtVerify, bare EdDSA JWT (awaited)', async (i) => {
    await jose.jwtVerify(tokens[i % tokens.length], key, { algorithms: ['EdDSA'], audience: 'orders-api', clockTolerance: 30 });
  });
}

const hasSodium = core.sodiumAvailable();
const main = hasSodium ? 'sodium' : 'node';
console.error(`verifier benchmark — node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'}, default backend ${main}${hasSodium ? '' : ' (sodium-native not installed!)'}`);
const floor = await floorRate(main);
const pipe = await pipelineRate(main);
const nodePipe = main === 'node' ? pipe : await pipelineRate('node');
const joseR = await joseRate();
const malformed = await (async () => {
  const policy = core.compilePolicy(trust, bundle);
  const v = new core.Verifier({ policy: new core.StaticPolicyProvider(policy, Date.now()), replayStore: new core.MemoryReplayStore() });
  const good = makeRequests(1)[0];
  const bad = { ...good, headers: { ...good.headers, authorization: good.headers.authorization.replace('eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0', 'eyJhbGciOiJFZERTQSIsImtpZCI6Im5vcGUiLCJ0eXAiOiJKV1QifQ') } };
  return rate('unknown-kid request rejected', async () => {
    const d = await v.verify(bad);
    if (d.allowed || d.reason !== 'unknown_issuer_key') throw new Error(`expected unknown_issuer_key, got ${d.allowed ? 'allow' : d.reason}`);
  });
})();

const result = {
  when: new Date().toISOString(),
  node: process.version,
  cpu: os.cpus()[0]?.model,
  backend: main,
  pinned: process.env.BENCH_PINNED ?? 'unknown',
  rates_per_s: { floor, pipeline: pipe.rate, pipeline_node_crypto: nodePipe.rate, jose_jwt_verify: joseR, unknown_kid_reject: malformed },
  ratios: {
    pipeline_vs_floor: pipe.rate / floor,
    pipeline_vs_node_crypto_pipeline: pipe.rate / nodePipe.rate,
    pipeline_vs_jose: pipe.rate / joseR,
    unknown_kid_reject_vs_accept: malformed / pipe.rate,
  },
  targets: { pipeline_vs_floor: 0.85, pipeline_vs_node_crypto_pipeline: 1.6, pipeline_vs_jose: 1.0, unknown_kid_reject_vs_accept: 5 },
};
const rows = Object.entries(result.ratios).map(([k, v]) => `| ${k} | ${v.toFixed(2)}× | ≥ ${result.targets[k]}× | ${v >= result.targets[k] ? 'met' : 'NOT met'} |`);
const md = `| ratio | measured | target | |\n|---|---|---|---|\n${rows.join('\n')}\n`;
console.log(md);
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(new URL('./results/verifier.json', import.meta.url), JSON.stringify(result, null, 2) + '\n');
writeFileSync(new URL('./results/verifier.md', import.meta.url), md);
void T0;
