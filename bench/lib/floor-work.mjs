// One request's cryptographic floor for any verifier of this protocol: two Ed25519
// verifications (passport, proof) plus the request's SHA-256s, on the default backend, over
// realistic inputs (a real passport and proof). Used by bench/lib/floor.mjs (the floor alone)
// and by bench/lib/bare-proxy.mjs --floor (the bare proxy doing this work per request: the
// measured one-core ceiling of any verifying proxy).
import * as core from '../../packages/core/dist/src/index.js';

export function floorWork() {
  const backend = core.getEd25519Backend(core.sodiumAvailable() ? 'sodium' : 'node');
  const key = core.privateKeyFromSeed(Buffer.alloc(32, 1));
  const pk = backend.importPublicKey(key.publicKey);
  const items = Array.from({ length: 64 }, (_, i) => {
    const p = core.issuePassport({ signingKey: key, kid: 'k1', issuer: 'https://issuer.example', subject: 'service:orders-client', audience: 'orders-api', trustDomain: 'example.local', ttlSeconds: 600 });
    const s = core.signRequest({ passport: p.token, privateKey: key, method: 'GET', url: `https://orders.example/v1/orders/search?status=open&i=${i}`, routeId: 'orders.search' });
    const dot = p.token.lastIndexOf('.');
    return { input: Buffer.from(p.token.slice(0, dot)), sig: Buffer.from(p.token.slice(dot + 1), 'base64url'), proof: Buffer.from(s.headers['X-TrustPlane-Proof'], 'base64url'), transcript: 'x'.repeat(900) };
  });
  let n = 0;
  /** Does one request's floor work; throws if a signature that must verify does not. */
  const one = () => {
    const it = items[n++ % items.length];
    core.sha256Hex('');
    core.sha256Hex('status=open');
    core.sha256Hex('0123456789abcdef0123456789abcdef');
    const digest = Buffer.from(core.sha256Hex(it.transcript), 'hex');
    if (!backend.verify(pk, it.input, it.sig)) throw new Error('floor verify failed');
    backend.verify(pk, digest, it.proof);
  };
  return { backend: backend.name, one };
}
