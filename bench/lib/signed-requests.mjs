// Pre-signed requests for the HTTP benchmark: every line is one request (fresh passport, fresh
// jti, its own proof) as tab-separated header values, in the order signed-requests.lua expects.
// Signing is spread over worker threads; the order of lines does not matter.
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { createWriteStream } from 'node:fs';
import { availableParallelism } from 'node:os';
import * as core from '../../packages/core/dist/src/index.js';

export const HEADER_NAMES = ['authorization', 'x-trustplane-transcript-sha256', 'x-trustplane-proof', 'x-trustplane-nonce', 'x-trustplane-body-sha256'];
export const REQUEST_PATH = '/v1/orders/search?status=open';

function sign(seedHex, count, ttlSeconds, identity) {
  const key = core.privateKeyFromSeed(Buffer.from(seedHex, 'hex'));
  const lines = [];
  for (let i = 0; i < count; i++) {
    const p = core.issuePassport({ signingKey: key, kid: identity.kid, issuer: identity.issuer, subject: identity.subject, audience: identity.audience, trustDomain: identity.trustDomain, ttlSeconds });
    const s = core.signRequest({ passport: p.token, privateKey: key, method: 'GET', url: `${identity.baseUrl}${REQUEST_PATH}`, routeId: identity.routeId });
    const h = {};
    for (const [k, v] of Object.entries(s.headers)) h[k.toLowerCase()] = v;
    if (Object.keys(h).length !== HEADER_NAMES.length) throw new Error(`unexpected signed headers: ${Object.keys(h).join(', ')}`);
    lines.push(HEADER_NAMES.map((n) => h[n]).join('\t'));
  }
  return lines.join('\n') + '\n';
}

if (!isMainThread && workerData?.role === 'signed-requests') {
  const { seedHex, count, ttlSeconds, identity } = workerData;
  for (let done = 0; done < count; done += 2000) parentPort.postMessage(sign(seedHex, Math.min(2000, count - done), ttlSeconds, identity));
}

/** Write `count` signed requests to `file`, signing on `threads` worker threads. */
export async function writeSignedRequests(file, { seedHex, count, ttlSeconds, identity, threads = availableParallelism() }) {
  const out = createWriteStream(file);
  const lanes = Array.from({ length: threads }, (_, i) => {
    const n = Math.floor(count / threads) + (i < count % threads ? 1 : 0);
    return new Promise((resolve, reject) => {
      const w = new Worker(new URL(import.meta.url), { workerData: { role: 'signed-requests', seedHex, count: n, ttlSeconds, identity } });
      w.on('message', (text) => out.write(text));
      w.once('error', reject);
      w.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`signing thread exited ${code}`))));
    });
  });
  await Promise.all(lanes);
  await new Promise((r) => out.end(r));
}
