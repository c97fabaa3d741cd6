/**
 * node:http and Express middleware: `(req, res, next)`. On allow it sets `req.trustplane` (the
 * allow decision) and `req.trustplaneBody` (the raw body bytes, which the verifier had to
 * consume to hash) and calls `next()`; on denial it answers the mapped status with
 * `{"allowed":false,"reason":"<code>"}` and never calls `next`.
 *
 * Express: mount it BEFORE any body parser (express.json() & co.) — a parser that ran first has
 * consumed the stream, and a parser that runs after finds it ended. Read the body from
 * `req.trustplaneBody` (e.g. `JSON.parse(req.trustplaneBody.toString())`).
 *
 * Any router settings are fine (Express's default case-insensitive routing, Routers with their
 * own `caseSensitive` or `strict`, mounted anywhere): the path is verified as
 * `req.originalUrl`, and the verifier refuses (`non_canonical_path`, 400) a path whose route
 * would differ as a router may read it — ignoring case, percent-decoded, without a trailing
 * slash — so `/v1/orders/SEARCH` signed for `/v1/orders/{id}` never reaches the
 * `/v1/orders/search` handler.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AllowDecision, Verifier } from '@trustplane/core';
import { sendDenial } from '../proxy.js';
import { verifyNodeRequest } from './core.js';

export interface TrustPlaneMiddlewareOptions {
  /** Largest body buffered for hashing (→ 413). Default 1 MiB. */
  maxBodyBytes?: number;
}

/** What the middleware adds to the request. */
export interface TrustPlaneRequestFields {
  trustplane?: AllowDecision;
  trustplaneBody?: Buffer;
}

export type TrustPlaneRequest = IncomingMessage & TrustPlaneRequestFields;

export type NodeMiddleware = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

export function createTrustPlaneMiddleware(verifier: Verifier, opts: TrustPlaneMiddlewareOptions = {}): NodeMiddleware {
  return (req, res, next) => {
    verifyNodeRequest(verifier, req, opts.maxBodyBytes !== undefined ? { maxBodyBytes: opts.maxBodyBytes } : {}).then(
      (r) => {
        if (!r.allowed) {
          if (r.aborted === true) res.destroy();
          else sendDenial(res, r.reason, r.status === 413);
          return;
        }
        const tr = req as TrustPlaneRequest;
        tr.trustplane = r.decision;
        tr.trustplaneBody = r.body;
        next();
      },
      () => sendDenial(res, 'internal_error', true), // fail closed
    );
  };
}

/** Express middleware: the same function, named for discoverability. */
export const createTrustPlaneExpressMiddleware = createTrustPlaneMiddleware;
