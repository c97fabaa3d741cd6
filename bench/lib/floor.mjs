// The per-request cryptographic floor of any verifier of this protocol, in µs: two Ed25519
// verifications (passport, proof) plus the request's SHA-256s, on the default backend — the same
// floor bench/verifier.mjs measures. Prints one JSON line. Run it pinned (bench/http.mjs does).
import * as core from '../../packages/core/dist/src/index.js';

const backend = core.getEd25519Backend(core.sodiumAvailable() ? 'sodium' : 'node');
const key = core.privateKeyFromSeed(Buffer.alloc(32, 1));
const pk = backend.importPublicKey(key.publicKey);
const items = Array.from({ length: 64 }, (_, i) => {
  const p = core.issuePassport({ signingKey: key, kid: 'k1', issuer: 'https://issuer.example', subject: 'service:orders-client', audience: 'orders-api', trustDomain: 'example.local', ttlSeconds: 600 });
  const s = core.signRequest({ passport: p.token, privateKey: key, method: 'GET', url: `https://orders.example/v1/orders/search?status=open&i=${i}`, routeId: 'orders.search' });
  const dot = p.token.lastIndexOf('.');
  return { input: Buffer.from(p.token.slice(0, dot)), sig: Buffer.from(p.token.slice(dot + 1), 'base64url'), proof: Buffer.from(s.headers['X-TrustPlane-Proof'], 'base64url'), transcript: 'x'.repeat(900) };
});
const one = (it) => {
  core.sha256Hex('');
  core.sha256Hex('status=open');
  core.sha256Hex('0123456789abcdef0123456789abcdef');
  const digest = Buffer.from(core.sha256Hex(it.transcript), 'hex');
  if (!backend.verify(pk, it.input, it.sig)) throw new Error('floor verify failed');
  backend.verify(pk, digest, it.proof);
};
for (let i = 0; i < 500; i++) one(items[i % items.length]);
let n = 0;
const t0 = process.hrtime.bigint();
let el = 0;
while (el < 1500) {
  for (let i = 0; i < 200; i++) one(items[(n + i) % items.length]);
  n += 200;
  el = Number(process.hrtime.bigint() - t0) / 1e6;
}
console.log(JSON.stringify({ backend: backend.name, floor_us: (el * 1000) / n }));
