/**
 * Hono middleware (Fetch API). The body is read from `c.req.raw` (bounded), hashed, and put in
 * Hono's body cache so `c.req.json()` / `c.req.text()` still work in handlers. Headers come
 * from `c.req.raw.headers` — the Fetch API joins repeated headers with ", ", so a duplicated
 * header is seen as one combined value (a doubled Authorization then fails as a malformed
 * passport rather than as a duplicate). Path and query are taken byte-for-byte from the raw URL.
 * On allow `c.get('trustplane')` holds the decision and `c.get('trustplaneBody')` the raw body.
 */
import type { MiddlewareHandler } from 'hono';
import type { AllowDecision, ReasonCode, Verifier } from '@trustplane/core';
import { DEFAULT_MAX_BODY_BYTES, decideBuffered, denialBody } from './core.js';

export interface TrustPlaneHonoOptions {
  /** Largest body buffered for hashing (→ 413). Default 1 MiB. */
  maxBodyBytes?: number;
}

export interface TrustPlaneHonoEnv {
  Variables: { trustplane: AllowDecision; trustplaneBody: Buffer };
}

function deny(reason: ReasonCode, status: number): Response {
  const headers: Record<string, string> = { 'content-type': 'application/json', 'cache-control': 'no-store' };
  if (status === 401) headers['www-authenticate'] = 'Bearer realm="trustplane"';
  return new Response(denialBody(reason), { status, headers });
}

/** The request target (path + query) exactly as in the URL string, without re-normalising it. */
function rawTarget(url: string): string {
  const afterScheme = url.indexOf('//');
  const slash = url.indexOf('/', afterScheme < 0 ? 0 : afterScheme + 2);
  if (slash < 0) return '/';
  const hash = url.indexOf('#', slash);
  return hash < 0 ? url.slice(slash) : url.slice(slash, hash);
}

async function readLimited(body: ReadableStream<Uint8Array> | null, max: number): Promise<Buffer | undefined> {
  if (body === null) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let length = 0;
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    length += value.byteLength;
    if (length > max) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
  }
  return Buffer.concat(chunks, length);
}

export function trustplaneHono(verifier: Verifier, opts: TrustPlaneHonoOptions = {}): MiddlewareHandler<TrustPlaneHonoEnv> {
  const max = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  return async (c, next) => {
    const raw = c.req.raw;
    const declared = raw.headers.get('content-length');
    if (declared !== null && Number(declared) > max) return deny('body_too_large', 413);
    const body = await readLimited(raw.body, max);
    if (body === undefined) return deny('body_too_large', 413);
    const headers: Record<string, string[]> = {};
    raw.headers.forEach((value, name) => {
      (headers[name.toLowerCase()] ??= []).push(value);
    });
    const r = await decideBuffered(verifier, { method: raw.method, target: rawTarget(raw.url), headers, body });
    if (!r.allowed) return deny(r.reason, r.status);
    // Later c.req.json()/text()/arrayBuffer() read from Hono's cache, not the consumed stream.
    const ab = r.body.buffer.slice(r.body.byteOffset, r.body.byteOffset + r.body.byteLength) as ArrayBuffer;
    (c.req.bodyCache as Record<string, unknown>)['arrayBuffer'] = Promise.resolve(ab);
    c.set('trustplane', r.decision);
    c.set('trustplaneBody', r.body);
    await next();
    return undefined;
  };
}
