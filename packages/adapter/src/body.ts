/**
 * Reading a request body for verification: hashed while it streams in, held in memory only up
 * to a configured maximum (→ 413 `body_too_large`), so a caller cannot make the adapter buffer
 * without bound. The body must be complete before the decision: the upstream is never
 * contacted for a request that is not yet verified.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/**
 * Whether the request's framing says it has no body at all: neither Content-Length nor
 * Transfer-Encoding (RFC 9112 §6.3: then the body length is zero), or Content-Length: 0. Node's
 * parser frames the message the same way, so such a request needs no reading and no hashing.
 */
export function hasNoBody(headers: Readonly<Record<string, string | readonly string[] | undefined>>): boolean {
  const cl = headers['content-length'];
  return headers['transfer-encoding'] === undefined && (cl === undefined || cl === '0');
}

export type BodyResult = { ok: true; chunks: Buffer[]; length: number; sha256: string } | { ok: false; reason: 'body_too_large' | 'aborted'; detail: string };

export function readBody(req: IncomingMessage, maxBytes: number): Promise<BodyResult> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > maxBytes) {
    return Promise.resolve({ ok: false, reason: 'body_too_large', detail: `Content-Length ${declared} exceeds the maximum ${maxBytes}` });
  }
  return new Promise((resolve) => {
    const hash = createHash('sha256');
    const chunks: Buffer[] = [];
    let length = 0;
    let done = false;
    const finish = (r: BodyResult) => {
      if (done) return;
      done = true;
      req.removeListener('data', onData);
      resolve(r);
    };
    const onData = (chunk: Buffer) => {
      length += chunk.length;
      if (length > maxBytes) {
        finish({ ok: false, reason: 'body_too_large', detail: `body exceeds the maximum ${maxBytes} bytes` });
        return;
      }
      hash.update(chunk);
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => finish({ ok: true, chunks, length, sha256: hash.digest('hex') }));
    req.once('error', (err) => finish({ ok: false, reason: 'aborted', detail: err.message }));
    req.once('close', () => {
      if (!req.complete) finish({ ok: false, reason: 'aborted', detail: 'client closed the connection before the body ended' });
    });
  });
}
