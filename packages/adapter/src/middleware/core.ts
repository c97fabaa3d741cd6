/**
 * The ONE shared core call behind every in-process middleware (node:http, Express, Fastify):
 * verify the head, then read the body with the bounded, hashing reader and check it against
 * the proof, with the request's distinct headers, and hand back the decision together with the buffered body (the stream is consumed, so the
 * framework must get the bytes from here). Denials are answered by `sendDenial` with the same
 * `{"allowed":false,"reason":"<code>"}` body and mapped status as the reverse proxy.
 */
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import type { AllowDecision, ReasonCode, RequestHeaders, Verifier } from '@trustplane/core';
import { readBody } from '../body.js';

export interface VerifyNodeRequestOptions {
  /** Largest body buffered for hashing (→ 413 `body_too_large`). Default 1 MiB. */
  maxBodyBytes?: number;
  /**
   * The request target (path + optional `?query`) as received. Defaults to `req.originalUrl`
   * (Express, unaffected by router mounting) or `req.url`.
   */
  target?: string;
  /** Read the body from this stream instead of `req` (Fastify's preParsing payload). */
  bodyStream?: Readable;
  requestId?: string;
}

export interface NodeVerifyDenial {
  allowed: false;
  reason: ReasonCode;
  status: number;
  detail: string;
  body: undefined;
  /** The client went away mid-body: destroy the response rather than answer. */
  aborted?: true;
}

export type NodeVerifyResult = { allowed: true; decision: AllowDecision; body: Buffer } | NodeVerifyDenial;

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

function splitTarget(url: string): { path: string; query: string } | undefined {
  if (!url.startsWith('/')) return undefined;
  const q = url.indexOf('?');
  return q < 0 ? { path: url, query: '' } : { path: url.slice(0, q), query: url.slice(q + 1) };
}

function deny(reason: ReasonCode, status: number, detail: string): NodeVerifyDenial {
  return { allowed: false, reason, status, detail, body: undefined };
}

/**
 * Verify a node:http request in-process. Everything that does not need the body is checked
 * first (`verifyHeadBatch`): a request that fails it is answered with its body unread, so a
 * caller without a valid passport and proof cannot make the server buffer anything. Resolves
 * after the whole body has been read and checked against the proof.
 */
export async function verifyNodeRequest(verifier: Verifier, req: IncomingMessage, opts: VerifyNodeRequestOptions = {}): Promise<NodeVerifyResult> {
  const raw = opts.target ?? (req as IncomingMessage & { originalUrl?: string }).originalUrl ?? req.url ?? '';
  const target = splitTarget(raw);
  if (target === undefined) return deny('malformed_request', 400, 'request target is not in origin-form');
  const source = (opts.bodyStream ?? req) as IncomingMessage;
  if (source.headers === undefined) Object.defineProperty(source, 'headers', { value: {}, configurable: true });
  // readBody consults Content-Length and `complete` on the stream it reads; a substitute
  // payload stream lacks them, so the declared length is checked against the request here.
  const declared = req.headers['content-length'];
  const max = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  if (declared !== undefined && Number(declared) > max) return deny('body_too_large', 413, `Content-Length ${declared} exceeds the maximum ${max}`);
  const [head] = verifier.verifyHeadBatch([{ method: req.method ?? '', path: target.path, query: target.query, headers: req.headersDistinct, ...(opts.requestId !== undefined ? { requestId: opts.requestId } : {}) }]);
  if (head!.allowed === false) return deny(head!.reason, head!.status, head!.detail);
  const body = await readBody(source, max);
  if (!body.ok) {
    head!.take(); // never completed: the jti stays unused
    if (body.reason === 'aborted') return { ...deny('malformed_request', 400, body.detail), aborted: true };
    return deny('body_too_large', 413, body.detail);
  }
  const decision = await verifier.completeHead(head!, body.sha256);
  if (!decision.allowed) return deny(decision.reason, decision.status, decision.detail);
  return { allowed: true, decision, body: body.chunks.length === 1 ? body.chunks[0]! : Buffer.concat(body.chunks, body.length) };
}

export interface BufferedRequest {
  method: string;
  /** Path + optional `?query`, exactly as received. */
  target: string;
  /** Lower-case names → values (distinct values when the framework keeps them). */
  headers: RequestHeaders;
  body: Buffer;
  /** SHA-256 of `body` when already computed while streaming. */
  bodySha256?: string;
  requestId?: string;
}

/**
 * The verify call itself, for a request whose body is already buffered. `verifyNodeRequest`
 * ends here; frameworks on the Fetch API (Hono) call it directly.
 */
export async function decideBuffered(verifier: Verifier, r: BufferedRequest): Promise<NodeVerifyResult> {
  const target = splitTarget(r.target);
  if (target === undefined) return deny('malformed_request', 400, 'request target is not in origin-form');
  const decision = await verifier.verify({
    method: r.method,
    path: target.path,
    query: target.query,
    headers: r.headers,
    bodySha256: r.bodySha256 ?? createHash('sha256').update(r.body).digest('hex'),
    ...(r.requestId !== undefined ? { requestId: r.requestId } : {}),
  });
  if (!decision.allowed) return deny(decision.reason, decision.status, decision.detail);
  return { allowed: true, decision, body: r.body };
}

/** The JSON denial body every middleware answers with. */
export function denialBody(reason: ReasonCode): string {
  return `{"allowed":false,"reason":"${reason}"}`;
}
